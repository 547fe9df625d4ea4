// Ember's own launcher: `ember fit --set trainer.devices=N` with no launcher environment starts N
// local ranks (this executable again, with torchrun's variables), relays their stderr prefixed
// with the rank, and reports the first rank that failed with its number and message. The others
// notice the failure in their next collective and exit with an error naming the rank; those still
// running after trainer.ddp_timeout_s are stopped. A first SIGINT/SIGTERM is passed on to every
// rank (each stops at its next batch boundary); a second one kills them.
#include "ddp.hpp"

#include <ember/ddp/env.hpp>
#include <ember/signals.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace ember::cli {

namespace {

std::atomic<int> g_signals{0};
std::atomic<int> g_last_signal{0};
void on_signal(int signo) {
  g_last_signal.store(signo);
  g_signals.fetch_add(1);
}

// A port free on 127.0.0.1 now (rank 0's TCPStore binds it a moment later, as torchrun's
// standalone mode does).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw RuntimeError(std::string("launcher: socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw RuntimeError(std::string("launcher: cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<std::string> own_argv() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') out.push_back(all.substr(start, i - start)), start = i + 1;
  if (out.empty()) throw RuntimeError("launcher: cannot read this process's arguments (/proc/self/cmdline)");
  return out;
}

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  int err_fd = -1;
  std::string partial;     // stderr bytes after the last newline
  std::string last_error;  // the last "ember: ..." line it printed
  bool running = true;
  int status = 0;
};

std::string describe(const Rank& r) {
  std::string s = "rank " + std::to_string(r.rank) + " (pid " + std::to_string(r.pid) + ") ";
  if (WIFSIGNALED(r.status)) s += "was killed by signal " + std::to_string(WTERMSIG(r.status)) + " (" + strsignal(WTERMSIG(r.status)) + ")";
  else s += "exited with status " + std::to_string(WEXITSTATUS(r.status));
  if (!r.last_error.empty()) s += ": " + r.last_error;
  return s;
}

void relay(Rank& r, const char* data, std::size_t n) {
  r.partial.append(data, n);
  std::size_t nl;
  while ((nl = r.partial.find('\n')) != std::string::npos) {
    std::string line = r.partial.substr(0, nl);
    r.partial.erase(0, nl + 1);
    if (line.rfind("ember: ", 0) == 0 && line.find("ember: also:") != 0) r.last_error = line.substr(7);
    std::string out = "[rank " + std::to_string(r.rank) + "] " + line + "\n";
    if (::write(2, out.data(), out.size()) < 0) {
      // stderr is gone; keep draining the pipe so the rank does not block
    }
  }
}

}  // namespace

int launch_local_ranks(int devices, double timeout_s) {
  const int port = free_port();
  const std::vector<std::string> args = own_argv();
  std::cerr << "ember: starting " << devices << " ranks on this machine (MASTER_ADDR=127.0.0.1 MASTER_PORT=" << port
            << ")\n";
  std::cerr.flush();
  std::cout.flush();
  struct sigaction sa {}, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  const pid_t launcher = ::getpid();

  std::vector<Rank> ranks(devices);
  for (int r = 0; r < devices; ++r) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw RuntimeError(std::string("launcher: pipe: ") + std::strerror(errno));
    ranks[r].rank = r;
    ranks[r].err_fd = p[0];
    pid_t pid = ::fork();
    if (pid < 0) throw RuntimeError(std::string("launcher: fork: ") + std::strerror(errno));
    if (pid == 0) {
      // The rank: its own process group (a terminal's Ctrl-C reaches the launcher, which passes
      // it on once), ended if the launcher dies, stderr into the launcher's relay.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(1);
      ::dup2(p[1], 2);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGINT, &dfl, nullptr);
      sigaction(SIGTERM, &dfl, nullptr);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(devices).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(devices).c_str(), 1);
      ::setenv("GROUP_RANK", "0", 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("EMBER_LAUNCHER", "ember", 1);
      ::setenv("OMP_NUM_THREADS", "1", 0);  // as torchrun with several ranks per machine
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::string msg = std::string("ember: launcher: cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno) + "\n";
      if (::write(2, msg.data(), msg.size()) < 0) {
      }
      ::_exit(127);
    }
    ::close(p[1]);
    ranks[r].pid = pid;
  }

  using clock = std::chrono::steady_clock;
  std::optional<clock::time_point> first_failure, term_sent, kill_sent;
  const Rank* failed = nullptr;
  int signals_seen = 0, interrupted = 0;
  const auto grace = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000) + 10000);
  auto alive = [&] {
    for (auto& r : ranks)
      if (r.running || r.err_fd >= 0) return true;
    return false;
  };
  auto signal_all = [&](int sig) {
    for (auto& r : ranks)
      if (r.running) ::kill(r.pid, sig);
  };
  while (alive()) {
    std::vector<pollfd> fds;
    for (auto& r : ranks)
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    if (!fds.empty()) ::poll(fds.data(), fds.size(), 100);
    else ::poll(nullptr, 0, 100);
    for (auto& f : fds) {
      if (!(f.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (auto& r : ranks) {
        if (r.err_fd != f.fd) continue;
        char buf[4096];
        ssize_t n = ::read(r.err_fd, buf, sizeof buf);
        if (n > 0) {
          relay(r, buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          if (!r.partial.empty()) relay(r, "\n", 1);
          ::close(r.err_fd);
          r.err_fd = -1;
        }
      }
    }
    for (auto& r : ranks) {
      if (!r.running) continue;
      int st = 0;
      if (::waitpid(r.pid, &st, WNOHANG) == r.pid) {
        r.running = false;
        r.status = st;
        const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!ok && !failed && !interrupted) {
          failed = &r;
          first_failure = clock::now();
        }
      }
    }
    if (int n = g_signals.load(); n > signals_seen) {
      signals_seen = n;
      if (!interrupted) {
        interrupted = g_last_signal.load();
        signal_all(interrupted);
      } else {
        signal_all(SIGKILL);
      }
    }
    // A failed rank: the others should fail in their next collective; past the timeout they are
    // stopped, then killed.
    if (first_failure && !term_sent && clock::now() - *first_failure > grace) {
      std::cerr << "ember: launcher: ranks still running " << std::chrono::duration_cast<std::chrono::seconds>(grace).count()
                << " s after " << describe(*failed) << "; stopping them\n";
      signal_all(SIGTERM);
      term_sent = clock::now();
    }
    if (term_sent && !kill_sent && clock::now() - *term_sent > std::chrono::seconds(5)) {
      signal_all(SIGKILL);
      kill_sent = clock::now();
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);

  if (interrupted) {
    std::cerr << "ember: interrupted: " << signal_name(interrupted) << " passed on to " << devices << " ranks\n";
    return 128 + interrupted;
  }
  if (failed) {
    std::cerr << "ember: " << describe(*failed) << "\n";
    for (auto& r : ranks)
      if (&r != failed && !(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)) std::cerr << "ember: also: " << describe(r) << "\n";
    return WIFEXITED(failed->status) && WEXITSTATUS(failed->status) != 0 ? WEXITSTATUS(failed->status) : 1;
  }
  return 0;
}

}  // namespace ember::cli
