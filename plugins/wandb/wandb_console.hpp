// Console capture for W&B's output.log: the process's stdout and stderr (file descriptors 1 and 2,
// so printf, std::cout, write(2) and child processes alike) are teed — everything still reaches
// the original terminal, file or pipe — and cut into lines for the wandb plugin's worker.
//
// How: each of fd 1 and 2 is pointed at a new pipe (a pseudo-terminal when the original is a
// terminal, so isatty(), line buffering and progress bars behave as before; its output
// post-processing is off and its window size is the terminal's), and a relay thread per stream
// reads it, writes every byte to the saved original at once, and queues complete lines with their
// time. A relay never waits for the worker (past the queue's byte limit lines are dropped and
// counted) nor for the other stream (a stalled stdout reader does not hold up stderr). stop()
// restores fds 1 and 2 and drains what is still in the pipes. One capture per process (the fds
// are process-wide).
//
// Also here: the line format W&B's clients send in file_stream "output.log"
// ("[ERROR ]YYYY-mm-ddTHH:MM:SS.ffffff text", UTC, ERROR for stderr; the Go core's format — the
// Python SDK 0.16 appended "\n" to each line) and OutputRawRecord for offline .wandb files.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "wandb_proto.hpp"

namespace ember::wandb {

// One captured line: the text without its line end, stderr or stdout, when its first byte came.
struct ConsoleLine {
  bool err = false;
  double time = 0;  // unix seconds
  std::string text;
};

// "2024-05-01T12:34:56.123456": UTC, microseconds, no zone suffix (as W&B's clients write it).
inline std::string iso_utc_micro(double unix_s) {
  auto whole = static_cast<std::time_t>(unix_s);
  if (static_cast<double>(whole) > unix_s) --whole;
  long micros = static_cast<long>((unix_s - static_cast<double>(whole)) * 1e6 + 0.5);
  if (micros >= 1000000) ++whole, micros -= 1000000;
  std::tm tm{};
  ::gmtime_r(&whole, &tm);
  char buf[96];  // room for any int the compiler cannot bound
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

// The file_stream "output.log" content line for a captured line.
inline std::string console_wire_line(const ConsoleLine& l) {
  std::string s = l.err ? "ERROR " : "";
  s += iso_utc_micro(l.time);
  s += ' ';
  s += l.text;
  return s;
}

// The text of a wire line (the run file output.log holds only the text), or the line itself when
// it has no timestamp prefix.
inline std::string_view console_text(std::string_view wire) {
  std::string_view s = wire;
  if (s.substr(0, 6) == "ERROR ") s.remove_prefix(6);
  if (s.size() >= 27 && s[4] == '-' && s[10] == 'T' && s[19] == '.' && s[26] == ' ') return s.substr(27);
  return wire;
}

// Valid UTF-8 (JSON needs it): invalid bytes become U+FFFD; at most max_bytes, cut on a character
// boundary.
inline std::string sanitize_utf8(std::string_view in, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(in.size(), max_bytes));
  std::size_t i = 0;
  while (i < in.size()) {
    auto c = static_cast<unsigned char>(in[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    if (ok && n > 1) {  // no overlong forms, surrogates or code points past U+10FFFF
      std::uint32_t cp = c & (0xFF >> (n + 1));
      for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(in[i + k]) & 0x3F);
      ok = (n == 2 && cp >= 0x80) || (n == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
           (n == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
    }
    std::string_view piece = ok ? in.substr(i, n) : std::string_view("\xEF\xBF\xBD", 3);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += ok ? n : 1;
  }
  return out;
}

// OutputRawRecord (Record field 13): output_type=1 (STDERR 0, STDOUT 1), timestamp=2
// (google.protobuf.Timestamp: seconds=1, nanos=2), line=3 (the text with its "\n").
inline std::string output_raw_record(const ConsoleLine& l) {
  std::string b, ts;
  pb::int_field(b, 1, l.err ? 0 : 1);
  auto secs = static_cast<std::int64_t>(l.time);
  pb::int_field(ts, 1, secs);
  pb::int_field(ts, 2, static_cast<std::int64_t>((l.time - static_cast<double>(secs)) * 1e9));
  pb::message_field(b, 2, ts);
  pb::bytes_field(b, 3, l.text + "\n", true);
  return record(kOutputRaw, b);
}

// The line of an OutputRawRecord body (a Decoded record of type kOutputRaw carries no fields):
// nullopt when the record is not one.
inline std::optional<ConsoleLine> decode_output_raw(std::string_view rec) {
  pb::Reader r(rec);
  while (r.next()) {
    if (r.field != kOutputRaw || r.wire != 2) continue;
    ConsoleLine l;
    l.err = true;  // STDERR is proto3's default 0: absent
    pb::Reader b(r.bytes);
    while (b.next()) {
      if (b.field == 1 && b.wire == 0) l.err = b.value == 0;
      if (b.field == 2 && b.wire == 2) {
        pb::Reader t(b.bytes);
        std::int64_t s = 0, ns = 0;
        while (t.next()) {
          if (t.field == 1 && t.wire == 0) s = static_cast<std::int64_t>(t.value);
          if (t.field == 2 && t.wire == 0) ns = static_cast<std::int64_t>(t.value);
        }
        l.time = static_cast<double>(s) + static_cast<double>(ns) / 1e9;
      }
      if (b.field == 3 && b.wire == 2) l.text = std::string(b.bytes);
    }
    while (!l.text.empty() && (l.text.back() == '\n' || l.text.back() == '\r')) l.text.pop_back();
    return l;
  }
  return std::nullopt;
}

class ConsoleCapture {
 public:
  struct Options {
    std::size_t max_queue_bytes = 256u << 20;  // lines held for the worker; past it, dropped
    std::size_t max_line_bytes = 4096;         // longer lines are cut (as W&B's Go core does)
  };

  // Redirects fds 1 and 2 (those that are open) and starts the relay; nullptr and the reason when
  // it cannot (another capture in this process, neither fd open, no pipe).
  static std::unique_ptr<ConsoleCapture> start(const Options& o, std::string& why) {
    if (active().exchange(true)) {
      why = "another wandb logger in this process captures the console already";
      return nullptr;
    }
    std::unique_ptr<ConsoleCapture> c(new ConsoleCapture(o));
    for (int fd : {1, 2})
      if (::fcntl(fd, F_GETFD) >= 0 && !c->install(fd, why)) {
        c->restore();
        return nullptr;  // the destructor clears active()
      }
    if (c->taps_.empty()) {
      why = "neither stdout nor stderr is open";
      return nullptr;
    }
    if (::pipe2(c->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
      why = std::string("pipe: ") + std::strerror(errno);
      c->restore();
      return nullptr;
    }
    for (Tap& t : c->taps_) c->threads_.emplace_back([p = c.get(), &t] { p->relay(t); });
    return c;
  }

  ~ConsoleCapture() {
    stop();
    for (Tap& t : taps_) {
      if (t.saved >= 0) ::close(t.saved);
      if (t.read >= 0) ::close(t.read);
    }
    for (int fd : wake_)
      if (fd >= 0) ::close(fd);
    active() = false;
  }
  ConsoleCapture(const ConsoleCapture&) = delete;
  ConsoleCapture& operator=(const ConsoleCapture&) = delete;

  // Puts fds 1 and 2 back, then lets the relays pass on what is still in the pipes and end: at
  // EOF, or once nothing came for 100 ms (a child process still holding the pipe), at most 2 s.
  // Idempotent; the lines are still there for take().
  void stop() {
    if (threads_.empty()) return;
    std::cout.flush();
    std::fflush(stdout);
    std::fflush(stderr);
    restore();
    char one = 1;
    (void)!::write(wake_[1], &one, 1);  // never read: it wakes every relay
    for (auto& th : threads_) th.join();
    threads_.clear();
  }

  // Moves the queued lines to the end of out.
  void take(std::vector<ConsoleLine>& out) {
    std::lock_guard<std::mutex> lk(mu_);
    if (out.empty()) {
      out.swap(lines_);
    } else {
      for (auto& l : lines_) out.push_back(std::move(l));
      lines_.clear();
    }
    queued_bytes_ = 0;
  }

  std::uint64_t dropped_lines() const { return dropped_.load(); }
  std::uint64_t captured_lines() const { return captured_.load(); }

 private:
  struct Tap {
    int target = -1;  // 1 or 2
    int saved = -1;   // the original, restored by stop()
    int read = -1;    // our end: the pipe's read end or the pseudo-terminal's master
    bool err = false, open = true, tee = true, pending_cr = false;
    std::string partial;
    double started = 0;
  };

  explicit ConsoleCapture(const Options& o) : o_(o) { taps_.reserve(2); }

  static std::atomic<bool>& active() {
    static std::atomic<bool> a{false};
    return a;
  }

  static double now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  // A pseudo-terminal pair like the terminal at fd: the app keeps seeing a terminal.
  static bool open_pty(int fd, int& master, int& slave) {
    master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return false;
    char name[128];
    if (::grantpt(master) != 0 || ::unlockpt(master) != 0 || ::ptsname_r(master, name, sizeof name) != 0 ||
        (slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
      ::close(master);
      return false;
    }
    termios t{};
    if (::tcgetattr(slave, &t) == 0) {
      t.c_oflag &= ~static_cast<tcflag_t>(OPOST);  // bytes pass unchanged; the real terminal adds \r
      ::tcsetattr(slave, TCSANOW, &t);
    }
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0) ::ioctl(slave, TIOCSWINSZ, &ws);
    return true;
  }

  bool install(int fd, std::string& why) {
    std::fflush(fd == 1 ? stdout : stderr);
    Tap t;
    t.target = fd;
    t.err = fd == 2;
    int w = -1;
    if (!(::isatty(fd) && open_pty(fd, t.read, w))) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) {
        why = std::string("pipe: ") + std::strerror(errno);
        return false;
      }
      t.read = p[0], w = p[1];
      ::fcntl(w, F_SETPIPE_SZ, 1 << 20);  // best effort: room for bursts while the relay is busy
    }
    t.saved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (t.saved < 0 || ::dup2(w, fd) < 0) {
      why = "cannot redirect fd " + std::to_string(fd) + ": " + std::strerror(errno);
      ::close(w);
      ::close(t.read);
      if (t.saved >= 0) ::close(t.saved);
      return false;
    }
    ::close(w);  // fd is now the only writer: restoring it ends the stream
    ::fcntl(t.read, F_SETFL, ::fcntl(t.read, F_GETFL) | O_NONBLOCK);
    taps_.push_back(std::move(t));
    return true;
  }

  void restore() {
    for (Tap& t : taps_)
      if (t.saved >= 0 && t.target >= 0) {
        ::dup2(t.saved, t.target);
        t.target = -1;
      }
  }

  void relay(Tap& t) {
    std::vector<char> buf(1 << 16);
    bool stopping = false;
    auto stop_deadline = std::chrono::steady_clock::now();
    while (t.open) {
      pollfd fds[2] = {{t.read, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      int timeout = -1;
      if (stopping) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(stop_deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;  // a writer that never stops (a child still running): leave it
        timeout = static_cast<int>(std::min<long long>(100, left.count()));
      }
      int rc = ::poll(fds, stopping ? 1 : 2, timeout);
      if (rc < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (rc == 0) break;  // stopping, and nothing came for 100 ms (or the 2 s are up)
      if (!stopping && fds[1].revents) {  // stop() has restored the fds
        stopping = true;
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      }
      if (!fds[0].revents) continue;
      for (int reads = 0; reads < 16; ++reads) {  // then back to poll: the stop deadline counts
        ssize_t got = ::read(t.read, buf.data(), buf.size());
        if (got > 0) {
          tee(t, buf.data(), static_cast<std::size_t>(got));
          feed(t, buf.data(), static_cast<std::size_t>(got));
          continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) break;
        t.open = false;  // EOF; EIO from a pseudo-terminal whose last writer closed
        break;
      }
    }
    if (!t.partial.empty()) emit(t);
  }

  // Everything goes to the original at once, as if there were no capture.
  static void tee(Tap& t, const char* p, std::size_t n) {
    while (t.tee && n > 0) {
      ssize_t w = ::write(t.saved, p, n);
      if (w > 0) {
        p += w, n -= static_cast<std::size_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && errno == EAGAIN) {  // the original was non-blocking: wait until it takes more
        pollfd f{t.saved, POLLOUT, 0};
        ::poll(&f, 1, -1);
      } else {
        t.tee = false;  // the original is gone (closed, EPIPE): keep capturing
      }
    }
  }

  // Lines as a terminal shows them: "\n" (or "\r\n") ends one; a lone "\r" starts it over, so a
  // progress bar redrawn in place leaves its last state.
  void feed(Tap& t, const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      char c = p[i];
      if (t.pending_cr) {
        t.pending_cr = false;
        if (c != '\n') t.partial.clear();
      }
      if (c == '\r') {
        t.pending_cr = true;
      } else if (c == '\n') {
        emit(t);
      } else {
        if (t.partial.empty()) t.started = now();
        if (t.partial.size() < o_.max_line_bytes + 4) t.partial += c;  // +4: a character cut at the limit
      }
    }
  }

  void emit(Tap& t) {
    ConsoleLine l{t.err, t.started ? t.started : now(), sanitize_utf8(t.partial, o_.max_line_bytes)};
    t.partial.clear();
    t.started = 0;
    ++captured_;
    std::size_t bytes = l.text.size() + sizeof(ConsoleLine);
    std::lock_guard<std::mutex> lk(mu_);
    if (queued_bytes_ + bytes > o_.max_queue_bytes) {
      ++dropped_;
      return;
    }
    queued_bytes_ += bytes;
    lines_.push_back(std::move(l));
  }

  Options o_;
  std::vector<Tap> taps_;  // fixed before the relays start; each relay owns its Tap
  int wake_[2] = {-1, -1};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<ConsoleLine> lines_;
  std::size_t queued_bytes_ = 0;
  std::atomic<std::uint64_t> dropped_{0}, captured_{0};
};

}  // namespace ember::wandb
