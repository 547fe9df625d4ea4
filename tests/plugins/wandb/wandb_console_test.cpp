// wandb console capture: an app embedding the plugin (wandb_console_child, a separate process so
// that its fds 1 and 2 are its own) writes to stdout and stderr while the run captures them; the
// test checks the terminal (the child's captured stdout/stderr) still got every byte, and the
// server got the lines as file_stream output.log lines and the run file output.log; offline runs
// write OutputRawRecords that `ember wandb sync` uploads; a flood faster than the worker is dropped
// and counted, never blocking the writer; lines kept in the spool are sent by `ember wandb sync`.
#define BOOST_TEST_MODULE wandb_console
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <algorithm>
#include <ctime>
#include <filesystem>
#include <regex>
#include <sstream>

#include "../../support/run_process.hpp"
#include "../../support/temp_dir.hpp"
#include "wandb_api.hpp"
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace wb = ember::wandb;
using ember::test::run_process;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

using Env = ember::test::wandb::CleanEnv;

std::string config(const Server& s, const std::string& id, const TempDir& spool, const std::string& extra = "") {
  return R"({"project": "proj", "id": ")" + id + R"(", "base_url": ")" + s.url() + R"(", "spool_dir": ")" +
         spool.path().string() + R"(", "post_interval_s": 0.2, "stats_interval_s": 0, "retry_initial_s": 0.05,
            "retry_max_s": 0.2, "finalize_timeout_s": 60)" + extra + "}";
}

// The child under coreutils' timeout: a writer that blocked would show as exit 124, not as a hang.
ember::test::ProcessResult child(std::vector<std::string> args) {
  std::vector<std::string> argv{"/usr/bin/timeout", "300", ember::test::require_env("EMBER_WANDB_CONSOLE_CHILD")};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

// The child with fds 1 and 2 on a pseudo-terminal COLUMNS wide (the test reads its other side):
// everything the terminal received, and the exit code.
std::pair<std::string, int> child_on_a_terminal(std::vector<std::string> args, unsigned short columns) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  BOOST_REQUIRE(master >= 0);
  char name[128];
  BOOST_REQUIRE(::grantpt(master) == 0 && ::unlockpt(master) == 0 && ::ptsname_r(master, name, sizeof name) == 0);
  int slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  BOOST_REQUIRE(slave >= 0);
  winsize ws{};
  ws.ws_row = 40, ws.ws_col = columns;
  ::ioctl(slave, TIOCSWINSZ, &ws);
  std::vector<std::string> argv{"/usr/bin/timeout", "300", ember::test::require_env("EMBER_WANDB_CONSOLE_CHILD")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(slave, 1);
    ::dup2(slave, 2);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(slave);
  std::string out;
  char buf[4096];
  for (;;) {  // until every writer is gone: EIO on Linux
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<std::size_t>(n));
    else if (n < 0 && errno == EINTR) continue;
    else break;
  }
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)};
}

// A file_stream output.log line split into (stderr?, unix time, text); fails the test on another shape.
struct Parsed {
  bool err = false;
  double time = 0;
  std::string text;
};
Parsed parse_wire(const std::string& line) {
  static const std::regex re(R"(^(ERROR )?(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6}) (.*)$)");
  std::smatch m;
  Parsed p;
  BOOST_REQUIRE_MESSAGE(std::regex_match(line, m, re), "not an output.log line: '" + line + "'");
  std::tm tm{};
  tm.tm_year = std::stoi(m[2]) - 1900, tm.tm_mon = std::stoi(m[3]) - 1, tm.tm_mday = std::stoi(m[4]);
  tm.tm_hour = std::stoi(m[5]), tm.tm_min = std::stoi(m[6]), tm.tm_sec = std::stoi(m[7]);
  p.err = m[1].matched;
  p.time = static_cast<double>(::timegm(&tm)) + std::stoi(m[8]) / 1e6;
  p.text = m[9];
  return p;
}

std::vector<std::string> texts(const std::vector<Parsed>& lines, bool err) {
  std::vector<std::string> out;
  for (const auto& l : lines)
    if (l.err == err) out.push_back(l.text);
  return out;
}

std::vector<Parsed> output_lines(const json::object& run) {
  std::vector<Parsed> out;
  for (const auto& l : run.at("output").as_array()) out.push_back(parse_wire(std::string(l.as_string())));
  return out;
}

double now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// What wandb_console_child's "lines" mode writes, as the captured text of each line.
const std::vector<std::string> kStdout = {"out 1",     "out 2",           "out 3 write", "progress 100%",
                                          "crlf line", "bad utf8 \xEF\xBF\xBD\xEF\xBF\xBD end", "caf\xc3\xa9 \xe2\x9c\x93",
                                          "upload to https://s.example/k?... failed",  // the query (signature) cut
                                          "out from a child process", "no newline at the end"};
const std::vector<std::string> kStderr = {"err 1", "err 2", "err 3"};

// Each needle found after the previous one.
void expect_in_order(const std::string& hay, const std::vector<std::string>& needles, const std::string& what) {
  std::size_t at = 0;
  for (const auto& n : needles) {
    std::size_t p = hay.find(n, at);
    BOOST_TEST(p != std::string::npos, what << ": '" << n << "' missing or out of order in:\n" << hay);
    if (p != std::string::npos) at = p + n.size();
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb_console)

BOOST_AUTO_TEST_CASE(console_lines_reach_output_log_in_order_with_stderr_marked_and_the_terminal_sees_everything) {
  Env env;
  Server srv;
  TempDir spool("wandb-con-spool");
  const double t0 = now();
  auto r = child({"lines", config(srv, "con00001", spool)});
  const double t1 = now();
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());

  // The terminal: every byte as written, and the line after finalize (the fds are back).
  expect_in_order(r.out,
                  {"out 1\n", "out 2\n", "out 3 write\n", "progress 10%\rprogress 60%\rprogress 100%\n", "crlf line\r\n",
                   "bad utf8 \xff\xfe end\n", "caf\xc3\xa9 \xe2\x9c\x93\n", "out from a child process\n",
                   "no newline at the endafter finalize\n"},
                  "child stdout");
  expect_in_order(r.err, {"err 1\n", "err 2\n", "err 3\n"}, "child stderr");
  BOOST_TEST(r.out.find("k?X-Goog-Signature=SIGSECRET&X-Goog-Date=1 failed\n") != std::string::npos);  // the terminal: unchanged

  json::object run = srv.run("con00001");
  BOOST_REQUIRE_MESSAGE(!run.empty(), r.describe());
  auto lines = output_lines(run);
  // Each stream in order; stderr marked ERROR; nothing after finalize; nothing else.
  BOOST_TEST(texts(lines, false) == kStdout, boost::test_tools::per_element());
  BOOST_TEST(texts(lines, true) == kStderr, boost::test_tools::per_element());
  BOOST_TEST(lines.size() == kStdout.size() + kStderr.size());
  for (const auto& l : lines) BOOST_TEST((l.time >= t0 - 1 && l.time <= t1 + 1), l.text << " at " << l.time);
  BOOST_TEST(run.at("output").as_array().size() == lines.size());  // offsets 0..N-1, none overwritten

  // The run file output.log: the texts, one per line; announced as uploaded; the row went too.
  const auto& files = run.at("files").as_object();
  BOOST_REQUIRE(files.contains("output.log"));
  std::vector<std::string> file_lines;
  std::stringstream in(std::string(files.at("output.log").as_string()));
  for (std::string l; std::getline(in, l);) file_lines.push_back(l);
  std::vector<std::string> want;
  for (const auto& l : lines) want.push_back(l.text);
  BOOST_TEST(file_lines == want, boost::test_tools::per_element());
  const auto& up = run.at("uploaded").as_array();
  BOOST_TEST(std::count(up.begin(), up.end(), json::value("output.log")) == 1);
  BOOST_TEST(run.at("history").as_array().size() == 1u);
  BOOST_TEST(run.at("complete").as_bool());
}

// On a terminal the capture uses a pseudo-terminal: the app still sees terminals of the same width
// (so it keeps line buffering and '\r' redraws), and the terminal gets the bytes unchanged.
BOOST_AUTO_TEST_CASE(on_a_terminal_the_app_still_sees_a_terminal_of_the_same_width) {
  Env env;
  Server srv;
  TempDir spool("wandb-con-spool");
  auto [terminal, code] = child_on_a_terminal({"tty", config(srv, "con00008", spool)}, 97);
  BOOST_REQUIRE_MESSAGE(code == 0, terminal);
  BOOST_TEST(terminal.find("isatty(1)=1 isatty(2)=1 columns=97") != std::string::npos, terminal);
  BOOST_TEST(terminal.find("progress 50%\rprogress 100%") != std::string::npos, terminal);
  json::object run = srv.run("con00008");
  BOOST_REQUIRE(!run.empty());
  auto lines = output_lines(run);
  BOOST_TEST(texts(lines, false) == std::vector<std::string>{"isatty(1)=1 isatty(2)=1 columns=97"}, boost::test_tools::per_element());
  BOOST_TEST(texts(lines, true) == std::vector<std::string>{"progress 100%"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(console_off_captures_nothing_and_leaves_the_terminal_alone) {
  Env env;
  Server srv;
  TempDir spool("wandb-con-spool");
  auto r = child({"lines", config(srv, "con00002", spool, R"(, "console": "off")")});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  expect_in_order(r.out, {"out 1\n", "out 3 write\n", "out from a child process\n", "no newline at the endafter finalize\n"},
                  "child stdout");
  expect_in_order(r.err, {"err 1\n", "err 3\n"}, "child stderr");
  json::object run = srv.run("con00002");
  BOOST_REQUIRE_MESSAGE(!run.empty(), r.describe());
  BOOST_TEST(run.at("output").as_array().empty());
  BOOST_TEST(!run.at("files").as_object().contains("output.log"));
  BOOST_TEST(run.at("history").as_array().size() == 1u);
  BOOST_TEST(run.at("complete").as_bool());

  // WANDB_CONSOLE=off does the same; a config key wins over it, and a bad value is refused by name.
  ::setenv("WANDB_CONSOLE", "off", 1);
  auto r2 = child({"lines", config(srv, "con00003", spool)});
  BOOST_REQUIRE_MESSAGE(r2.exit_code == 0, r2.describe());
  BOOST_TEST(srv.run("con00003").at("output").as_array().empty());
  auto r3 = child({"lines", config(srv, "con00004", spool, R"(, "console": "redirect")")});
  BOOST_REQUIRE_MESSAGE(r3.exit_code == 0, r3.describe());
  BOOST_TEST(srv.run("con00004").at("output").as_array().size() == kStdout.size() + kStderr.size());
  ::setenv("WANDB_CONSOLE", "wrap", 1);
  auto r4 = child({"lines", config(srv, "con00005", spool)});
  BOOST_TEST(r4.exit_code != 0);
  BOOST_TEST(r4.err.find("config key console (or WANDB_CONSOLE): expected auto, redirect or off, got 'wrap'") !=
                 std::string::npos,
             r4.describe());
  ::unsetenv("WANDB_CONSOLE");
}

// The worker is stuck in a request the server holds while the app writes 100000 lines: the relay
// keeps teeing to the terminal and drops what does not fit in max_queue_mb, counting it; the
// lines that fit are sent in order once the server answers.
BOOST_AUTO_TEST_CASE(a_flood_while_the_worker_is_stuck_is_dropped_and_counted_and_never_blocks_the_writer) {
  Env env;
  Server srv;
  TempDir spool("wandb-con-spool");
  srv.control(R"({"hold": true})");
  const long n = 100000;
  auto r = child({"flood", config(srv, "con00006", spool, R"(, "max_queue_mb": 1, "http_timeout_s": 120)"), srv.url(),
                  std::to_string(n)});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe().substr(0, 4000));

  // The terminal got every line.
  long seen = 0;
  for (std::size_t p = 0; (p = r.out.find("flood ", p)) != std::string::npos; p += 6) ++seen;
  BOOST_TEST(seen == n);

  // The count is reported at finalize, and adds up with what the server got.
  static const std::regex re(R"(console: (\d+) of (\d+) captured lines dropped)");
  std::smatch m;
  BOOST_REQUIRE_MESSAGE(std::regex_search(r.err, m, re), r.err.substr(r.err.size() > 4000 ? r.err.size() - 4000 : 0));
  const long dropped = std::stol(m[1]), captured = std::stol(m[2]);
  BOOST_TEST(captured == n);
  BOOST_TEST(dropped > 0);
  json::object run = srv.run("con00006");
  BOOST_REQUIRE(!run.empty());
  auto lines = output_lines(run);
  BOOST_TEST(static_cast<long>(lines.size()) == n - dropped);
  // The queue filled with the first lines; those arrive in order, none twice.
  for (std::size_t i = 0; i < lines.size(); ++i) {
    char want[32];
    std::snprintf(want, sizeof want, "flood %07ld ", static_cast<long>(i));
    if (lines[i].text.rfind(want, 0) != 0) {
      BOOST_TEST(lines[i].text.rfind(want, 0) == 0u, "line " << i << ": " << lines[i].text);
      break;
    }
  }
  BOOST_TEST(run.at("complete").as_bool());
}

// A refused key: the console lines are kept in the spool with the rows, finalize counts them, and
// `ember wandb sync SPOOL_DIR` sends them and output.log.
BOOST_AUTO_TEST_CASE(console_lines_kept_in_the_spool_are_sent_by_ember_wandb_sync) {
  Env env("wrongwrongwrongwrongwrongwrongwrongwrong");
  Server srv;
  TempDir spool("wandb-con-spool");
  auto r = child({"lines", config(srv, "con00009", spool)});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.err.find("1 history rows, 0 system-metric rows, 13 console lines") != std::string::npos, r.describe());
  BOOST_TEST(srv.run("con00009").empty());
  std::vector<fs::path> dirs;
  for (auto& e : fs::directory_iterator(spool.path())) dirs.push_back(e.path());
  BOOST_REQUIRE_EQUAL(dirs.size(), 1u);

  ::setenv("WANDB_API_KEY", kKey.c_str(), 1);
  auto s = run_process({ember::test::require_env("EMBER_EXE"), "wandb", "sync", dirs[0].string(), "--base-url", srv.url()});
  BOOST_REQUIRE_MESSAGE(s.exit_code == 0, s.describe());
  json::object run = srv.run("con00009");
  BOOST_REQUIRE(!run.empty());
  auto lines = output_lines(run);
  BOOST_TEST(texts(lines, false) == kStdout, boost::test_tools::per_element());
  BOOST_TEST(texts(lines, true) == kStderr, boost::test_tools::per_element());
  BOOST_TEST(run.at("files").as_object().contains("output.log"));
  BOOST_TEST(run.at("history").as_array().size() == 1u);
  BOOST_TEST(run.at("complete").as_bool());
}

BOOST_AUTO_TEST_CASE(offline_console_lines_are_output_raw_records_and_sync_uploads_them) {
  Env env;
  ::unsetenv("WANDB_API_KEY");
  Server srv;
  TempDir dir("wandb-con-offline");
  auto r = child({"lines", R"({"mode": "offline", "project": "proj", "id": "con00007", "save_dir": ")" + dir.path().string() +
                               R"(", "stats_interval_s": 0})"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(srv.state().at("requests").as_array().empty());
  fs::path run_dir;
  for (auto& e : fs::directory_iterator(dir.path() / "wandb")) run_dir = e.path();
  BOOST_REQUIRE(!run_dir.empty());

  // Record 13 (output_raw): output_type 1 = stdout, absent (0) = stderr; the line keeps its "\n".
  std::string bytes = ember::test::read_file(run_dir / "run-con00007.wandb");
  std::vector<wb::ConsoleLine> raw;
  std::size_t first_raw = 0, index = 0, run_index = 0;
  for (const auto& rec : wb::txlog::read_all(bytes, "run-con00007.wandb")) {
    ++index;
    if (wb::decode_record(rec).type == wb::kRun) run_index = index;
    if (auto l = wb::decode_output_raw(rec)) {
      if (raw.empty()) first_raw = index;
      raw.push_back(*l);
    }
  }
  BOOST_REQUIRE_MESSAGE(!raw.empty(), "no OutputRawRecord in run-con00007.wandb");
  BOOST_TEST(first_raw > run_index);
  BOOST_TEST(bytes.find(std::string("out 1\n")) != std::string::npos);
  std::vector<std::string> out_texts, err_texts;
  for (const auto& l : raw) (l.err ? err_texts : out_texts).push_back(l.text);
  BOOST_TEST(out_texts == kStdout, boost::test_tools::per_element());
  BOOST_TEST(err_texts == kStderr, boost::test_tools::per_element());
  BOOST_TEST(raw.front().time > 1.6e9);

  // `ember wandb sync DIR` (read_offline_dir + upload_run): the same lines, stderr marked, and
  // the run file output.log.
  wb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  wb::Api api(o);
  wb::upload_run(api, wb::read_offline_dir(run_dir));
  json::object run = srv.run("con00007");
  BOOST_REQUIRE(!run.empty());
  auto lines = output_lines(run);
  BOOST_TEST(texts(lines, false) == kStdout, boost::test_tools::per_element());
  BOOST_TEST(texts(lines, true) == kStderr, boost::test_tools::per_element());
  BOOST_REQUIRE(!lines.empty());
  BOOST_TEST(std::abs(lines.front().time - raw.front().time) < 1e-3);
  BOOST_TEST(run.at("files").as_object().contains("output.log"));
  BOOST_TEST(run.at("complete").as_bool());
}

BOOST_AUTO_TEST_SUITE_END()
