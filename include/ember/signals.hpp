// Stopping a run cleanly on SIGINT / SIGTERM (preemption, Ctrl-C, a Lambda shutdown).
//
// The library never installs signal handlers by itself: an application that embeds Ember may own
// its signals. It opts in with a StopOnSignals guard around its runs (the `ember` CLI does), or
// calls Trainer::request_interrupt from a handler or thread of its own.
//
// What a stop signal does (Lightning 2.x's SIGTERM path, at every batch boundary):
//   first SIGINT or SIGTERM: the handler records it (and says so on stderr); the trainer notices
//     at the next batch boundary (after the batch's on_train_batch_end and its logged row), sets
//     should_stop and raises Interrupted, which takes the failure path: every on_exception,
//     loggers finalized with "interrupted" (rows flushed, spools written), teardown; then the
//     stack unwinds, so a storage writer that was never committed aborts its upload.
//   second SIGINT or SIGTERM: the default action (the process ends at once, no cleanup).
#pragma once

#include <ember/error.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <string>

namespace ember {

// Raised by the trainer at a batch boundary once a stop signal is pending. The `ember` CLI exits
// with exit_status() (128 + the signal number, as a shell reports a process a signal ended).
class Interrupted : public RuntimeError {
 public:
  Interrupted(int signo, const std::string& what) : RuntimeError(what), signo_(signo) {}
  int signal_number() const noexcept { return signo_; }
  int exit_status() const noexcept { return 128 + signo_; }

 private:
  int signo_;
};

inline std::string signal_name(int signo) {
  switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    default: return "signal " + std::to_string(signo);
  }
}

namespace detail {
// Touched from a signal handler: lock-free atomics only, constant-initialised (no dynamic
// initialisation a handler could race with).
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "a signal handler needs lock-free atomics");
inline std::atomic<int> caught_stop_signal{0};
inline std::atomic<bool> stop_sigint_installed{false};
inline std::atomic<bool> stop_sigterm_installed{false};

inline void set_default_action(int signo) noexcept {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(signo, &dfl, nullptr);
}

// Async-signal-safe: an atomic store, write(2) and sigaction (POSIX lists both), errno kept.
// The first signal is recorded and announced at once (a batch or a validation run may take a
// while); both handlers then give way to the default action, so the next SIGINT or SIGTERM ends
// the process even while the cleanup is blocked.
inline void stop_signal_handler(int signo) noexcept {
  const int saved_errno = errno;
  int none = 0;
  if (caught_stop_signal.compare_exchange_strong(none, signo)) {
    static const char kInt[] = "\nember: SIGINT received: stopping after this batch (again: stop at once)\n";
    static const char kTerm[] = "\nember: SIGTERM received: stopping after this batch (again: stop at once)\n";
    const char* msg = signo == SIGINT ? kInt : kTerm;
    const std::size_t len = signo == SIGINT ? sizeof kInt - 1 : sizeof kTerm - 1;
    if (::write(2, msg, len) < 0) {
      // nothing to do: stderr is gone, the stop still happens
    }
  }
  if (stop_sigint_installed.load()) set_default_action(SIGINT);
  if (stop_sigterm_installed.load()) set_default_action(SIGTERM);
  errno = saved_errno;
}
}  // namespace detail

// The first SIGINT/SIGTERM caught while a StopOnSignals guard was alive, or 0.
inline int caught_stop_signal() noexcept { return detail::caught_stop_signal.load(std::memory_order_relaxed); }

// Installs the stop handler for SIGINT and SIGTERM for its lifetime and restores the previous
// dispositions after. A signal ignored when the guard is made stays ignored (a job started with
// `&` by a non-interactive shell ignores SIGINT; Python keeps that too). SA_RESTART: a worker
// thread blocked in read/write resumes rather than failing with EINTR. One guard at a time: a
// second one while the first lives changes nothing.
class StopOnSignals {
 public:
  StopOnSignals() {
    if (active_count().fetch_add(1) != 0) return;
    owner_ = true;
    detail::caught_stop_signal.store(0);
    install(SIGINT, saved_int_, detail::stop_sigint_installed);
    install(SIGTERM, saved_term_, detail::stop_sigterm_installed);
  }
  ~StopOnSignals() {
    if (owner_) {
      restore(SIGINT, saved_int_, detail::stop_sigint_installed);
      restore(SIGTERM, saved_term_, detail::stop_sigterm_installed);
      detail::caught_stop_signal.store(0);
    }
    active_count().fetch_sub(1);
  }
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;

 private:
  static std::atomic<int>& active_count() {
    static std::atomic<int> n{0};
    return n;
  }
  static void install(int signo, struct sigaction& saved, std::atomic<bool>& installed) {
    if (sigaction(signo, nullptr, &saved) != 0 || saved.sa_handler == SIG_IGN) return;
    struct sigaction sa {};
    sa.sa_handler = &detail::stop_signal_handler;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    installed.store(true);
    if (sigaction(signo, &sa, nullptr) != 0) installed.store(false);
  }
  static void restore(int signo, const struct sigaction& saved, std::atomic<bool>& installed) {
    if (!installed.load()) return;
    installed.store(false);
    sigaction(signo, &saved, nullptr);
  }

  bool owner_ = false;
  struct sigaction saved_int_ {};
  struct sigaction saved_term_ {};
};

}  // namespace ember
