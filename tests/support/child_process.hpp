// A child process a test signals while it runs (run_process.hpp waits for the end instead), and
// the named pipes it hands over through: for the SIGINT/SIGTERM tests of `ember`. Waiting is
// poll() on the pipe and on a pidfd of the child, with a long guard against hangs, never a sleep.
// POSIX + Linux (pidfd_open, 5.3).
#pragma once

#include "temp_dir.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace ember::test {

// A FIFO held open read-write by the test: the child's opens of it never block, and a byte the
// test writes waits in it until the child reads.
class Fifo {
 public:
  explicit Fifo(std::string path) : path_(std::move(path)) {
    if (::mkfifo(path_.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path_ + ": " + std::strerror(errno));
    fd_ = ::open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("open " + path_ + ": " + std::strerror(errno));
  }
  ~Fifo() { ::close(fd_); }
  Fifo(const Fifo&) = delete;
  Fifo& operator=(const Fifo&) = delete;
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  void put(char c) const {
    if (::write(fd_, &c, 1) != 1) throw std::runtime_error("write " + path_ + ": " + std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// argv[0] (a path) as a child with default SIGINT/SIGTERM dispositions and an empty signal mask
// (a runner that started the test with & ignores SIGINT, and the child would keep that), stdin
// /dev/null, stdout and stderr to files in dir. Killed with SIGKILL if still running at the end.
class Child {
 public:
  static constexpr int kGuardMs = 300000;  // against a hang only: nothing waits for time to pass

  Child(const std::vector<std::string>& argv, const std::filesystem::path& dir)
      : out_((dir / "child.stdout").string()), err_((dir / "child.stderr").string()) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {  // async-signal-safe calls only
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGINT, &dfl, nullptr);
      ::sigaction(SIGTERM, &dfl, nullptr);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      int in = ::open("/dev/null", O_RDONLY);
      int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || o < 0 || e < 0) ::_exit(126);
      ::dup2(in, 0), ::dup2(o, 1), ::dup2(e, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) throw std::runtime_error(std::string("pidfd_open: ") + std::strerror(errno));
  }
  ~Child() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(pidfd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signo) const {
    if (::kill(pid_, signo) != 0) throw std::runtime_error(std::string("kill: ") + std::strerror(errno));
  }

  // One line from fifo; throws (with what the child printed) if the child ends first.
  std::string read_line(const Fifo& fifo) {
    std::string line;
    while (line.empty() || line.back() != '\n') {
      pollfd p[2] = {{fifo.fd(), POLLIN, 0}, {pidfd_, POLLIN, 0}};
      const int ready = ::poll(p, 2, kGuardMs);
      if (ready == 0) throw std::runtime_error("nothing on " + fifo.path() + " for 300 s\n" + describe());
      if (ready < 0 && errno == EINTR) continue;
      if (p[0].revents & POLLIN) {
        char c;
        while (::read(fifo.fd(), &c, 1) == 1) line += c;
      } else if (p[1].revents & POLLIN) {
        wait();
        throw std::runtime_error("the child ended before writing to " + fifo.path() + "\n" + describe());
      }
    }
    return line;
  }

  // The wait status (SIGKILL first if the child is still running after the guard).
  int wait() {
    if (reaped_) return status_;
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, kGuardMs) <= 0) ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status_;
  }

  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }
  // Never throws: a child that has not opened its output files yet shows them as missing.
  std::string describe() const {
    auto text = [](const std::string& path) {
      try {
        return read_file(path);
      } catch (const std::exception&) {
        return std::string("(" + path + " not written yet)\n");
      }
    };
    std::string s = !reaped_               ? "running"
                    : WIFEXITED(status_)   ? "exit " + std::to_string(WEXITSTATUS(status_))
                    : WIFSIGNALED(status_) ? "killed by signal " + std::to_string(WTERMSIG(status_))
                                           : "status " + std::to_string(status_);
    return s + "\n--- stdout:\n" + text(out_) + "--- stderr:\n" + text(err_);
  }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

}  // namespace ember::test
