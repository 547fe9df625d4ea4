// A tiny HTTP/1.1 server on 127.0.0.1 for the http client's tests, where the point is to behave
// badly on purpose (drip bytes, ignore Range, close mid-request): each accepted connection runs
// the test's handler on its own thread with the socket and the connection's index. Helpers read
// one request and write raw bytes. Stopping shuts the listening socket and every connection down
// and joins their threads.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ember::test {

struct RawRequest {
  std::string method, target, head;  // head: the request line and headers
  std::string body;
};

class LoopbackServer {
 public:
  using Handler = std::function<void(int fd, int connection)>;

  explicit LoopbackServer(Handler h) : handler_(std::move(h)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error(std::string("bind/listen: ") + std::strerror(errno));
    port_ = ntohs(a.sin_port);
    accepter_ = std::thread([this] { accept_loop(); });
  }
  ~LoopbackServer() { stop(); }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  std::string port() const { return std::to_string(port_); }
  int connections() const { return accepted_.load(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    if (accepter_.joinable()) accepter_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }

  // One request from fd: nullopt when the peer closed (or an error) before a whole one arrived.
  // Bytes after it stay in carry (pipelining is not used by the client, but be exact).
  static std::optional<RawRequest> read_request(int fd, std::string& carry) {
    std::string& buf = carry;
    std::size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos)
      if (!fill(fd, buf)) return std::nullopt;
    RawRequest r;
    r.head = buf.substr(0, end);
    buf.erase(0, end + 4);
    auto sp1 = r.head.find(' '), sp2 = r.head.find(' ', sp1 + 1);
    r.method = r.head.substr(0, sp1);
    r.target = r.head.substr(sp1 + 1, sp2 - sp1 - 1);
    std::size_t length = 0;
    std::string lower = r.head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto p = lower.find("\r\ncontent-length:"); p != std::string::npos)
      length = std::stoul(lower.substr(p + 17));
    while (buf.size() < length)
      if (!fill(fd, buf)) return std::nullopt;
    r.body = buf.substr(0, length);
    buf.erase(0, length);
    return r;
  }
  // Write all of data; false once the peer is gone.
  static bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  static bool answer(int fd, int status, std::string_view body, const std::string& extra_headers = "") {
    return write_all(fd, "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
                             "\r\n" + extra_headers + "\r\n") &&
           write_all(fd, body);
  }

 private:
  static bool fill(int fd, std::string& buf) {
    char tmp[65536];
    for (;;) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
  }

  void accept_loop() {
    for (int i = 0;; ++i) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR) continue;
        return;  // shut down
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) {
        ::close(c);
        return;
      }
      ++accepted_;
      conns_.push_back(c);
      threads_.emplace_back([this, c, i] {
        try {
          handler_(c, i);
        } catch (...) {
        }
        ::shutdown(c, SHUT_RDWR);
      });
    }
  }

  Handler handler_;
  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<int> accepted_{0};
  std::thread accepter_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
};

}  // namespace ember::test
