// Fixtures for the s3 suites: a background process that prints where it listens (s3rver, the
// fault proxy), s3rver in a temp directory on a free loopback port, and the built s3.so loaded
// in-process as a storage::Backend registered for "s3" in a UrlSpace (as Session does).
#pragma once

#include <ember/loader.hpp>
#include <ember/storage.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "run_process.hpp"
#include "temp_dir.hpp"

namespace ember::test {

// A child process whose stdout+stderr go to a log file; wait_for() polls the log for a regex
// (how s3rver and the proxy announce their port). Killed (SIGTERM, then SIGKILL) on destruction.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env,
             std::filesystem::path log)
      : log_(std::move(log)), what_(argv.empty() ? "" : argv[0]) {
    for (std::size_t i = 1; i < argv.size() && i < 4; ++i) what_ += " " + argv[i];
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      std::string kv(*e);
      if (!extra_env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
    }
    for (const auto& kv : extra_env) envs.push_back(kv.first + "=" + kv.second);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed for " + what_);
    if (pid_ == 0) {
      ::setpgid(0, 0);
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
  }
  ~Background() { stop(); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // The first match of re's group 1 in the log, waiting up to timeout.
  std::string wait_for(const std::string& re, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::regex pattern(re);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string text;
    while (std::chrono::steady_clock::now() < deadline) {
      text = read_log();
      std::smatch m;
      if (std::regex_search(text, m, pattern)) return m[1];
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(what_ + " exited before it was ready; its output:\n" + text);
      }
      ::usleep(50 * 1000);
    }
    throw std::runtime_error(what_ + " did not print /" + re + "/ within " + std::to_string(timeout.count()) +
                             " s; its output:\n" + text);
  }
  std::string read_log() const {
    try {
      return read_file(log_);
    } catch (...) {
      return {};
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      ::usleep(20 * 1000);
    }
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::filesystem::path log_;
  std::string what_;
  pid_t pid_ = -1;
};

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

// A loaded storage plugin as a Backend (the same adapter as Session's PluginBackend).
class PluginStorage final : public storage::Backend {
 public:
  PluginStorage(const std::string& so, const std::string& config_json)
      : instance_(open_library(so), boost::json::parse(config_json), services_, "test config") {
    t_ = instance_.interface<ember_storage_v1_t>(EMBER_STORAGE_V1);
    if (!t_) throw std::runtime_error(so + " offers no " EMBER_STORAGE_V1);
  }
  const ember_storage_v1_t& table() const { return *t_; }
  void* self() const { return instance_.self(); }
  std::string last_error() const { return instance_.last_error(); }

  std::unique_ptr<storage::Reader> open_read(const std::string& url, std::uint64_t off, std::uint64_t len) override {
    ember_file_t* f = nullptr;
    check(t_->open_read(self(), cstr(url), off, len, &f), "open", url);
    struct R final : storage::Reader {
      PluginStorage* b;
      ember_file_t* f;
      std::string url;
      ~R() override { b->t_->close(b->self(), f); }
      std::size_t read(void* buf, std::size_t cap) override {
        std::size_t got = 0;
        b->check(b->t_->read(b->self(), f, buf, cap, &got), "read", url);
        return got;
      }
    };
    auto r = std::make_unique<R>();
    r->b = this, r->f = f, r->url = url;
    return r;
  }
  std::unique_ptr<storage::Writer> open_write(const std::string& url) override {
    ember_file_t* f = nullptr;
    check(t_->open_write(self(), cstr(url), &f), "open for writing", url);
    struct W final : storage::Writer {
      PluginStorage* b;
      ember_file_t* f;
      std::string url;
      ~W() override { b->t_->close(b->self(), f); }
      void write(const void* d, std::size_t n) override { b->check(b->t_->write(b->self(), f, d, n), "write", url); }
      void commit() override { b->check(b->t_->commit(b->self(), f), "commit", url); }
    };
    auto w = std::make_unique<W>();
    w->b = this, w->f = f, w->url = url;
    return w;
  }
  std::optional<storage::Stat> stat(const std::string& url) override {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    ember_status_t rc = t_->stat(self(), cstr(url), &st);
    if (rc == EMBER_E_NOT_FOUND) return std::nullopt;
    check(rc, "stat", url);
    return storage::Stat{std::string(sv(st.url)), st.is_dir != 0, st.size, st.mtime_ns};
  }
  std::vector<storage::Stat> list(const std::string& prefix) override {
    std::vector<storage::Stat> out;
    check(t_->list(self(), cstr(prefix),
                   [](void* u, const ember_stat_t* s) -> int32_t {
                     static_cast<std::vector<storage::Stat>*>(u)->push_back(
                         {std::string(sv(s->url)), s->is_dir != 0, s->size, s->mtime_ns});
                     return 0;
                   },
                   &out),
          "list", prefix);
    return out;
  }
  bool remove(const std::string& url) override {
    ember_status_t rc = t_->remove(self(), cstr(url));
    if (rc == EMBER_E_NOT_FOUND) return false;
    check(rc, "remove", url);
    return true;
  }

  void check(ember_status_t rc, const char* what, const std::string& url) const {
    if (rc == EMBER_OK) return;
    throw RuntimeError("plugin s3: cannot " + std::string(what) + " " + url + ": " + last_error());
  }

 private:
  Services services_;
  PluginInstance instance_;
  const ember_storage_v1_t* t_ = nullptr;
};

// A UrlSpace with s3:// served by the built plugin (EMBER_S3_SO) configured with config_json.
struct S3Urls {
  std::shared_ptr<PluginStorage> backend;
  storage::UrlSpace urls;
  explicit S3Urls(const std::string& config_json)
      : backend(std::make_shared<PluginStorage>(require_env("EMBER_S3_SO"), config_json)) {
    urls.add("s3", backend);
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
