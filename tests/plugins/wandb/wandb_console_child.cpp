// A program for wandb_console_test: an app that embeds Ember's wandb plugin (loaded in-process
// through the plugin fixture) and writes to its stdout and stderr in the ways programs do while
// the run captures the console; then it finalizes the run and writes once more. Its own stdout and
// stderr are what the test sees as the terminal. After finalize it prints the plugin's log lines
// to stderr as "log: LEVEL: message".
//
//   wandb_console_child lines CONFIG_JSON
//       printf, iostreams, write(2), a child process, a progress line redrawn with '\r', CRLF,
//       invalid UTF-8, a pre-signed URL, a line without its newline; one history row
//   wandb_console_child tty CONFIG_JSON
//       says whether fds 1 and 2 are terminals and how wide, and redraws a progress line
//   wandb_console_child flood CONFIG_JSON SERVER_URL N
//       waits until the server holds the plugin's first request (the worker is stuck in it), writes
//       N numbered lines to stdout, then lets the server answer
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <ember/net/http.hpp>
#include <iostream>
#include <string>

#include "plugin_fixture.hpp"

using ember::test::FakeTrainer;
using ember::test::LoadedPlugin;

namespace {

void server_call(const std::string& base, const std::string& method, const std::string& target, const std::string& body) {
  ember::http::Url u = ember::http::Url::parse(base);
  ember::http::Options o;
  o.timeout = std::chrono::milliseconds(60000);
  ember::http::Client c(u.scheme, u.host, u.port, o);
  auto r = c.send({method, target, {{"Content-Type", "application/json"}}, body});
  if (r.status != 200) throw std::runtime_error(method + " " + target + ": HTTP " + std::to_string(r.status) + " " + r.body);
}

void print_lines(LoadedPlugin& p) {
  std::printf("out 1\n");
  std::fflush(stdout);
  std::fprintf(stderr, "err 1\n");
  std::cout << "out 2" << std::endl;
  std::cerr << "err 2" << std::endl;
  if (::write(1, "out 3 write\n", 12) != 12) throw std::runtime_error("write to fd 1 failed");
  std::printf("progress 10%%\rprogress 60%%\rprogress 100%%\n");
  std::printf("crlf line\r\n");
  std::printf("bad utf8 \xff\xfe end\n");
  std::printf("caf\xc3\xa9 \xe2\x9c\x93\n");
  std::printf("upload to https://s.example/k?X-Goog-Signature=SIGSECRET&X-Goog-Date=1 failed\n");  // a pre-signed URL
  std::fflush(stdout);
  if (std::system("echo out from a child process") != 0) throw std::runtime_error("system() failed");
  std::fprintf(stderr, "err 3\n");
  ember_metric_t m{ember::cstr("loss"), 0.5};
  ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, 1, 0};
  p.check(p.logger().log_metrics(p.self(), &ctx, &m, 1), "log_metrics");
  std::printf("no newline at the end");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: wandb_console_child lines|tty|flood CONFIG_JSON [SERVER_URL N]\n");
    return 2;
  }
  const std::string mode = argv[1];
  FakeTrainer t;
  try {
    LoadedPlugin p(ember::test::library_from_env("EMBER_WANDB_SO"), argv[2], t);
    p.call(EMBER_HOOK_ID_setup, ember::test::hook_args(EMBER_STAGE_FIT));  // the run (and the capture) starts
    if (mode == "lines") {
      print_lines(p);
    } else if (mode == "tty") {
      winsize ws{};
      ::ioctl(1, TIOCGWINSZ, &ws);
      std::printf("isatty(1)=%d isatty(2)=%d columns=%d\n", ::isatty(1), ::isatty(2), static_cast<int>(ws.ws_col));
      std::fflush(stdout);
      std::fprintf(stderr, "progress 50%%\rprogress 100%%\n");
    } else if (mode == "flood" && argc == 5) {
      const std::string server = argv[3];
      const long n = std::atol(argv[4]);
      server_call(server, "GET", "/_wait?cond=held&n=1&timeout=60", "");
      for (long i = 0; i < n; ++i)
        std::printf("flood %07ld ..................................................................\n", i);
      std::fflush(stdout);
      server_call(server, "POST", "/_control", R"({"hold": false})");
    } else {
      throw std::runtime_error("unknown mode " + mode);
    }
    p.check(p.logger().finalize(p.self(), ember::cstr("success")), "finalize");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wandb_console_child: %s\n", e.what());
    for (const auto& l : t.all_lines()) std::fprintf(stderr, "log: %s\n", l.c_str());
    return 1;
  }
  std::printf("after finalize\n");
  std::fflush(stdout);
  for (const auto& l : t.all_lines()) std::fprintf(stderr, "log: %s\n", l.c_str());
  return 0;
}
