// The W&B-protocol test server (wandb_server.py) as a child process, for the wandb tests and the
// benchmark: started on a free loopback port (read from its first stdout line), queried through
// /_state, controlled through /_control, awaited through one blocking /_wait.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <ember/net/http.hpp>
#include <stdexcept>
#include <string>

#include "../../support/temp_dir.hpp"

namespace ember::test::wandb {

namespace json = boost::json;

inline const std::string kKey = "0123456789abcdef0123456789abcdef01234567";  // 40 chars, test only

// The environment of a wandb test (and of the processes it starts): the given key in
// WANDB_API_KEY, and none of the outside world's W&B settings or launcher ranks.
struct CleanEnv {
  explicit CleanEnv(const std::string& key = kKey) {
    ::setenv("WANDB_API_KEY", key.c_str(), 1);
    for (const char* v : {"WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_BASE_URL", "WANDB_DIR",
                          "WANDB_RESUME", "WANDB_NAME", "WANDB_TAGS", "WANDB_CONSOLE", "RANK", "LOCAL_RANK"})
      ::unsetenv(v);
  }
};

// wandb_server.py as a child process; the port comes from its first stdout line.
class Server {
 public:
  explicit Server(const std::string& api_key = kKey) {
    std::string script = ember::test::require_env("EMBER_WANDB_SERVER");
    log_ = (dir_ / "requests.jsonl").string();
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::string key_arg = "--api-key=" + api_key;
      std::string log_arg = "--log=" + log_;
      ::execl("/usr/bin/python3", "python3", script.c_str(), key_arg.c_str(), log_arg.c_str(), (char*)nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(out[0]);
    if (line.empty()) throw std::runtime_error("wandb_server.py did not print its port");
    port_ = line;
  }
  ~Server() {
    ::kill(pid_, SIGTERM);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  std::string url() const { return "http://127.0.0.1:" + port_; }

  // The whole recorded state: a benchmark's 500,000 rows make it far larger than the client's
  // default body limit for answers, so this one call lifts it.
  json::object state() {
    ember::http::Options o;
    o.max_body = 0;
    ember::http::Client c("http", "127.0.0.1", port_, o);
    auto r = c.send({"GET", "/_state", {}, ""});
    return json::parse(r.body).as_object();
  }
  void control(const std::string& body) {
    ember::http::Client c("http", "127.0.0.1", port_, {});
    auto r = c.send({"POST", "/_control", {{"Content-Type", "application/json"}}, body});
    BOOST_REQUIRE_EQUAL(r.status, 200);
  }
  json::object run(const std::string& name) {
    json::object st = state();  // kept alive: the loop below borrows from it
    for (auto& r : st.at("runs").as_array())
      if (r.at("name").as_string() == name) return r.as_object();
    return {};
  }
  // One blocking GET /_wait: the server answers when the condition holds (it re-checks on every
  // request it records) or after timeout_s (408). No polling, no sleeps.
  void wait_for(const std::string& cond, const std::string& run, std::int64_t n, double timeout_s = 20) {
    ember::http::Options o;
    o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000) + 10000);
    ember::http::Client c("http", "127.0.0.1", port_, o);
    std::string target = "/_wait?cond=" + cond + "&n=" + std::to_string(n) + "&timeout=" + std::to_string(timeout_s);
    if (!run.empty()) target += "&run=" + run;
    auto r = c.send({"GET", target, {}, ""});
    BOOST_REQUIRE_MESSAGE(r.status == 200, "timed out waiting for the server: " + target + ": " + r.body);
  }
  std::string request_log() { return ember::test::read_file(log_); }
  // The bytes stored under /storage/KEY (a run file: "runs/ENTITY/PROJECT/RUN/PATH").
  std::string blob(const std::string& key) {
    ember::http::Client c("http", "127.0.0.1", port_, {});
    auto r = c.send({"GET", "/storage/" + key, {}, ""});
    BOOST_REQUIRE_MESSAGE(r.status == 200, "GET /storage/" + key + ": HTTP " + std::to_string(r.status));
    return r.body;
  }

 private:
  ember::test::TempDir dir_{"wandb-server"};
  std::string log_, port_;
  pid_t pid_ = -1;
};

}  // namespace ember::test::wandb
