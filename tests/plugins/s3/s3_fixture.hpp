// Fixtures for the s3 suites: child processes with their own environment (a background server
// that prints where it listens — s3rver, the fault proxy — and run-to-completion commands such
// as `ember fit`), s3rver in a temp directory on a free loopback port, and the built s3.so
// loaded in-process and registered for "s3" in a UrlSpace with ember::register_storage (as
// Session does).
//
// No sleep-polling: a child's output is read from a pipe with poll() (a reader thread for
// background servers, which wakes wait_for() through a condition variable), and exits are
// awaited on a pidfd with poll(), every wait bounded by a deadline.
#pragma once

#include <ember/net/http.hpp>
#include <ember/loader.hpp>
#include <ember/plugin_backend.hpp>
#include <ember/storage.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "run_process.hpp"
#include "temp_dir.hpp"

namespace ember::test {

using Clock = std::chrono::steady_clock;

// Milliseconds left until deadline, for poll(): 0 when past, capped to fit an int.
inline int ms_until(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : static_cast<int>(std::min<long long>(ms, 1 << 30));
}

// What a child gets: argv[0] is a path (not searched in PATH); the parent's environment minus
// any variable whose name starts with one of drop_prefixes, plus (overriding) env; cwd if set.
struct ChildSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::vector<std::string> drop_prefixes;
  std::string cwd;
};

// A started child: its pid, a pidfd for it (-1 on kernels without pidfd_open) and whether it
// leads its own process group (so a signal reaches its children too).
class Child {
 public:
  Child() = default;
  // Fork and exec spec; its stdin is /dev/null, stdout and stderr go to out_fd and err_fd.
  Child(const ChildSpec& spec, int out_fd, int err_fd, bool own_group) : group_(own_group) {
    if (spec.argv.empty()) throw std::invalid_argument("Child: empty argv");
    what_ = spec.argv[0];
    for (std::size_t i = 1; i < spec.argv.size() && i < 4; ++i) what_ += " " + spec.argv[i];
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      std::string kv(*e);
      std::string name = kv.substr(0, kv.find('='));
      bool drop = spec.env.count(name) > 0;
      for (const auto& p : spec.drop_prefixes) drop = drop || name.rfind(p, 0) == 0;
      if (!drop) envs.push_back(kv);
    }
    for (const auto& kv : spec.env) envs.push_back(kv.first + "=" + kv.second);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const auto& a : spec.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const char* cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed for " + what_ + ": " + std::strerror(errno));
    if (pid_ == 0) {
      if (own_group) ::setpgid(0, 0);
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      ::dup2(out_fd, 1);
      ::dup2(err_fd, 2);
      if (cwd && ::chdir(cwd) != 0) {
        const char msg[] = "child: chdir failed\n";
        (void)!::write(2, msg, sizeof msg - 1);
        ::_exit(126);
      }
      ::execve(args[0], args.data(), envp.data());
      const char msg[] = "child: exec failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    // Also here, so a signal to the group cannot race the child's own setpgid.
    if (own_group) ::setpgid(pid_, pid_);
    // The child is not reaped before we wait for it, so the pid still names it here.
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  ~Child() { stop(); }
  Child(Child&& o) noexcept { *this = std::move(o); }
  Child& operator=(Child&& o) noexcept {
    if (this != &o) {
      stop();
      pid_ = o.pid_, pidfd_ = o.pidfd_, group_ = o.group_, status_ = o.status_, what_ = std::move(o.what_);
      o.pid_ = -1, o.pidfd_ = -1;
    }
    return *this;
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  const std::string& what() const { return what_; }
  int pidfd() const { return pidfd_; }
  bool running() const { return pid_ > 0; }

  // Wait until the child exits or deadline passes; true when it exited (and was reaped).
  bool wait_until(Clock::time_point deadline) {
    if (pid_ <= 0) return true;
    if (pidfd_ >= 0) {
      for (;;) {
        pollfd p{pidfd_, POLLIN, 0};
        int r = ::poll(&p, 1, ms_until(deadline));
        if (r > 0) break;
        if (r == 0) return false;
        if (errno != EINTR) break;  // cannot wait on the pidfd: fall through to a blocking reap
      }
    }
    // Exited (or no pidfd: the caller bounds this by sending SIGKILL first).
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
    release();
    return true;
  }
  // The exit code, or 128 + signal when a signal ended it (after wait_until returned true).
  int exit_code() const {
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : WIFSIGNALED(status_) ? 128 + WTERMSIG(status_) : -1;
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(group_ ? -pid_ : pid_, sig);
  }
  // SIGTERM, up to grace for it to exit, then SIGKILL (always reaped, never left a zombie).
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(1000)) {
    if (pid_ <= 0) return;
    if (pidfd_ >= 0) {
      signal(SIGTERM);
      if (wait_until(Clock::now() + grace)) return;
    }
    signal(SIGKILL);
    wait_until(Clock::now() + std::chrono::seconds(30));
  }

 private:
  void release() {
    pid_ = -1;
    if (pidfd_ >= 0) ::close(pidfd_);
    pidfd_ = -1;
  }
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool group_ = false;
  int status_ = 0;
  std::string what_;
};

// A server-like child whose stdout+stderr are read from a pipe by a thread that keeps them in
// memory and appends them to a log file (for diagnostics), so the child never blocks on a full
// pipe. wait_for() sleeps on a condition variable until new output matches (how s3rver and the
// proxy announce their port), the child exits, or the deadline passes. Stopped (SIGTERM to its
// group, then SIGKILL) on destruction.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env,
             std::filesystem::path log)
      : log_path_(std::move(log)) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    read_fd_ = p[0];
    ::fcntl(read_fd_, F_SETFL, ::fcntl(read_fd_, F_GETFL) | O_NONBLOCK);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    log_fd_ = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    try {
      if (wake_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
      child_ = Child(ChildSpec{argv, extra_env, {}, {}}, p[1], p[1], /*own_group=*/true);
    } catch (...) {
      ::close(p[1]);
      close_fds();
      throw;
    }
    ::close(p[1]);
    // The reader thread's own handle on the pidfd: Child closes its one when it reaps.
    if (child_.pidfd() >= 0) exit_fd_ = ::fcntl(child_.pidfd(), F_DUPFD_CLOEXEC, 0);
    reader_ = std::thread([this] { pump(); });
  }
  ~Background() {
    stop();
    close_fds();
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // Group 1 of the first match of re in the output, waiting up to timeout.
  std::string wait_for(const std::string& re, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::regex pattern(re);
    auto deadline = Clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      drain_locked();
      std::smatch m;
      if (std::regex_search(text_, m, pattern)) return m[1];
      if (eof_ || exited_) {
        std::string text = text_;
        lock.unlock();
        std::string how = child_.wait_until(Clock::now() + std::chrono::seconds(5))
                              ? "exited (code " + std::to_string(child_.exit_code()) + ")"
                              : "closed its output";
        throw std::runtime_error(child_.what() + " " + how + " before it was ready; its output:\n" + text);
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        drain_locked();
        if (std::regex_search(text_, m, pattern)) return m[1];
        throw std::runtime_error(child_.what() + " did not print /" + re + "/ within " + std::to_string(timeout.count()) +
                                 " s; its output:\n" + text_);
      }
    }
  }
  // Everything the child printed so far (including what is still in the pipe).
  std::string read_log() {
    std::lock_guard<std::mutex> lock(mu_);
    drain_locked();
    return text_;
  }
  void stop() {
    child_.stop();
    if (reader_.joinable()) {
      std::uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof one);
      reader_.join();
    }
  }

 private:
  // The reader thread: wait for output (or the child's exit, or stop()), then drain.
  void pump() {
    for (;;) {
      pollfd fds[3] = {{read_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {exit_fd_, POLLIN, 0}};
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (eof_) return;
        if (exited_) fds[2].fd = -1;
      }
      int r = ::poll(fds, 3, -1);
      if (r < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      std::lock_guard<std::mutex> lock(mu_);
      if (fds[2].revents) exited_ = true;
      drain_locked();
      cv_.notify_all();
    }
  }
  // Read whatever the pipe holds now (non-blocking); mu_ held.
  void drain_locked() {
    if (eof_) return;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(read_fd_, buf, sizeof buf);
      if (n > 0) {
        text_.append(buf, static_cast<std::size_t>(n));
        if (log_fd_ >= 0) (void)!::write(log_fd_, buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof_ = true;
      return;
    }
  }
  void close_fds() {
    for (int* fd : {&read_fd_, &wake_fd_, &log_fd_, &exit_fd_})
      if (*fd >= 0) ::close(*fd), *fd = -1;
  }

  std::filesystem::path log_path_;
  int read_fd_ = -1, wake_fd_ = -1, log_fd_ = -1, exit_fd_ = -1;
  Child child_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  bool eof_ = false, exited_ = false;
};

// Run spec to completion, capturing stdout and stderr (as run_process does, plus an environment
// of its own); killed (SIGKILL, exit code 137) if it is still running at the deadline.
inline ProcessResult run_child(const ChildSpec& spec, std::chrono::seconds timeout = std::chrono::seconds(600)) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]), ::close(out_pipe[1]);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  std::unique_ptr<Child> child;
  try {
    child = std::make_unique<Child>(spec, out_pipe[1], err_pipe[1], /*own_group=*/true);
  } catch (...) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    throw;
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  const auto deadline = Clock::now() + timeout;
  ProcessResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  bool timed_out = false;
  char buf[65536];
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    int r = ::poll(fds, 2, ms_until(deadline));
    if (r == 0) {
      timed_out = true;
      break;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (timed_out) {
    child->signal(SIGKILL);
    result.err += "\n[killed: still running after " + std::to_string(timeout.count()) + " s]\n";
  }
  // Output closed: the child is exiting (or a grandchild kept the pipe; bounded either way).
  if (!child->wait_until(deadline + std::chrono::seconds(30))) child->stop();
  result.exit_code = child->running() ? -1 : child->exit_code();
  return result;
}

inline std::string source_root() { return require_env("EMBER_SOURCE_ROOT"); }

// s3rver (npm, installed by scripts/bootstrap into .deps/npm) with a fresh data directory and
// the given buckets, on 127.0.0.1 and a port it picks. A missing s3rver is a failure that says
// how to install it, never a skipped test.
class S3rver {
 public:
  explicit S3rver(const std::vector<std::string>& buckets = {"test"}) : dir_("ember-s3rver") {
    std::string js = source_root() + "/.deps/npm/node_modules/s3rver/bin/s3rver.js";
    if (!std::filesystem::exists(js))
      throw std::runtime_error("s3rver is not installed (" + js + " is missing): run scripts/bootstrap");
    std::string node = "/usr/bin/node";
    if (!std::filesystem::exists(node)) throw std::runtime_error("node is not installed (/usr/bin/node): run scripts/bootstrap");
    std::filesystem::create_directories(dir_ / "data");
    std::vector<std::string> argv{node, js, "-d", (dir_ / "data").string(), "-a", "127.0.0.1", "-p", "0"};
    for (const auto& b : buckets) argv.push_back("--configure-bucket"), argv.push_back(b);
    // Truncated ListObjectsV2 answers need the legacy provider under OpenSSL 3.
    proc_ = std::make_unique<Background>(argv, std::map<std::string, std::string>{{"NODE_OPTIONS", "--openssl-legacy-provider"}},
                                         dir_ / "s3rver.log");
    port_ = proc_->wait_for(R"(listening on [0-9.]+:([0-9]+))");
  }
  const std::string& port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + port_; }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  const TempDir& dir() const { return dir_; }
  std::string log() const { return proc_->read_log(); }

 private:
  TempDir dir_;
  std::unique_ptr<Background> proc_;
  std::string port_;
};

// tests/plugins/s3/fault_proxy.py in front of the S3 server on upstream_port, acting on a schedule of
// faults (a JSON list of rules; see the script); with checksums, it also checks request
// checksums as S3 does. Stopped on destruction.
class FaultProxy {
 public:
  FaultProxy(const std::string& upstream_port, const std::string& rules, bool checksums = false) : dir_("ember-s3-proxy") {
    write_file(dir_ / "rules.json", rules);
    std::string script = require_env("EMBER_S3_TEST_DIR") + "/fault_proxy.py";
    std::vector<std::string> argv{"/usr/bin/python3", script, upstream_port, (dir_ / "rules.json").string()};
    if (checksums) argv.push_back("--checksums");
    proc_ = std::make_unique<Background>(argv, std::map<std::string, std::string>{}, dir_ / "proxy.log");
    port_ = proc_->wait_for(R"(listening on [0-9.]+:([0-9]+))");
  }
  std::string endpoint() const { return "http://127.0.0.1:" + port_; }
  std::string log() const { return proc_->read_log(); }
  // How many requests got this action ("status", "reset", "slow", "corrupt", "forward") and
  // matched re.
  int count(const std::string& action, const std::string& re = ".*") const {
    return lines("REQ [0-9]+ (.*) -> " + action, re);
  }
  // How many requests carried this checksum header ("Content-MD5", "x-amz-checksum-crc32c")
  // and it matched the body (with checksums).
  int verified(const std::string& header) const { return lines("SUM [0-9]+ (.*) ok", "^" + header + "$"); }
  // How many requests the checksum checks refused.
  int refused() const { return lines("BAD [0-9]+ (.*)", ".*"); }
  // How many "barrier" groups were passed / broken (see the script).
  int barriers(const std::string& outcome) const { return lines("BARRIER (passed|broken) [0-9]+", "^" + outcome + "$"); }

  // The open multipart uploads of bucket, as ListMultipartUploads through the proxy (which
  // tracks them as S3 does) lists them: "key uploadId" each.
  std::vector<std::string> open_uploads(const std::string& bucket) const {
    ember::http::Client c("http", "127.0.0.1", port_);
    auto r = c.send({"GET", "/" + bucket + "?uploads=", {}, ""});
    if (r.status != 200) throw std::runtime_error("ListMultipartUploads via the proxy: HTTP " + std::to_string(r.status) + " " + r.body);
    std::vector<std::string> out;
    std::regex up("<Upload><Key>([^<]*)</Key><UploadId>([^<]*)</UploadId>");
    for (std::sregex_iterator it(r.body.begin(), r.body.end(), up), end; it != end; ++it)
      out.push_back((*it)[1].str() + " " + (*it)[2].str());
    return out;
  }
  // The HTTP status ListParts gets for an upload through the proxy (404 once aborted).
  int list_parts_status(const std::string& bucket, const std::string& key, const std::string& upload_id) const {
    ember::http::Client c("http", "127.0.0.1", port_);
    return c.send({"GET", "/" + bucket + "/" + key + "?uploadId=" + upload_id, {}, ""}).status;
  }
  // The uploadIds of the CreateMultipartUploads the proxy saw answered, from its log of
  // requests that carried one.
  std::vector<std::string> upload_ids() const {
    std::vector<std::string> out;
    std::regex id("REQ [0-9]+ [A-Z]+ [^ ]*[?&]uploadId=([^& ]+)");
    std::string text = log();
    for (std::sregex_iterator it(text.begin(), text.end(), id), end; it != end; ++it)
      if (std::find(out.begin(), out.end(), (*it)[1].str()) == out.end()) out.push_back((*it)[1].str());
    return out;
  }
  // The largest number of requests matching re (on "METHOD target") that were inside the proxy
  // at the same moment, from its REQ and END lines (monotonic start and end times).
  int max_overlap(const std::string& re) const {
    std::string text = log();
    std::regex req("REQ ([0-9]+) (.*) -> "), end_line("END ([0-9]+) ([0-9.]+) ([0-9.]+)"), want(re);
    std::map<std::string, bool> matching;
    for (std::sregex_iterator it(text.begin(), text.end(), req), e; it != e; ++it)
      matching[(*it)[1].str()] = std::regex_search((*it)[2].str(), want);
    std::vector<std::pair<double, int>> events;  // (time, +1 start / -1 end); ends sort first
    for (std::sregex_iterator it(text.begin(), text.end(), end_line), e; it != e; ++it) {
      if (!matching[(*it)[1].str()]) continue;
      events.emplace_back(std::stod((*it)[2].str()), +1);
      events.emplace_back(std::stod((*it)[3].str()), -1);
    }
    std::sort(events.begin(), events.end());
    int now = 0, most = 0;
    for (const auto& ev : events) most = std::max(most, now += ev.second);
    return most;
  }

 private:
  // Lines matching line_re whose group 1 matches re.
  int lines(const std::string& line_re, const std::string& re) const {
    std::regex line(line_re);
    std::regex want(re);
    int n = 0;
    std::string text = log();
    for (std::sregex_iterator it(text.begin(), text.end(), line), end; it != end; ++it)
      if (std::regex_search((*it)[1].str(), want)) ++n;
    return n;
  }

  TempDir dir_;
  std::unique_ptr<Background> proc_;
  std::string port_;
};

// A UrlSpace with s3:// served by the built plugin (EMBER_S3_SO) configured with config_json,
// registered the way Session registers a storage plugin (ember::register_storage).
// Services that keep what plugins log, for tests of warnings.
class RecordingServices : public Services {
 public:
  void log(const std::string& plugin_id, int level, std::string_view message) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back("[" + plugin_id + "] " + std::to_string(level) + " " + std::string(message));
    }
    Services::log(plugin_id, level, message);
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

struct S3Urls {
  RecordingServices services;  // the plugin's host side (its own URL space), keeping its log
  PluginInstance instance;
  storage::UrlSpace urls;
  explicit S3Urls(const std::string& config_json)
      : instance(open_library(require_env("EMBER_S3_SO")), boost::json::parse(config_json), services, "test config") {
    if (!instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1))
      throw std::runtime_error(instance.library().path() + " offers no " EMBER_STORAGE_V1);
    register_storage(instance, urls);
  }
};

// A plugin config for a local server: path style, s3rver's access key id (it refuses unknown ids;
// it does not check v4 signatures) and a secret that no message may contain.
inline std::string local_config(const std::string& endpoint, const std::string& extra = "") {
  return R"({"endpoint_url": ")" + endpoint +
         R"(", "region": "us-east-1", "access_key_id": "S3RVER", "secret_access_key": "test-secret-DO-NOT-PRINT")" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

// Deterministic pseudo-random bytes (xorshift), so a mismatch shows where it starts.
inline std::string pattern_bytes(std::size_t n, std::uint64_t seed = 0x9E3779B97F4A7C15ull) {
  std::string out(n, '\0');
  std::uint64_t x = seed | 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

}  // namespace ember::test
