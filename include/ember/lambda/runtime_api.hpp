// The AWS Lambda Runtime API (version 2018-06-01) as a client: the loop a custom runtime runs.
//
//   GET  /2018-06-01/runtime/invocation/next            long poll; the event is the body, with
//        Lambda-Runtime-Aws-Request-Id, -Deadline-Ms (Unix ms), -Invoked-Function-Arn, -Trace-Id
//   POST /2018-06-01/runtime/invocation/{id}/response   the reply (any bytes; JSON here)
//   POST /2018-06-01/runtime/invocation/{id}/error      {"errorMessage","errorType","stackTrace"}
//        with header Lambda-Runtime-Function-Error-Type
//   POST /2018-06-01/runtime/init/error                 the same shape, before the first /next
//
// The API is plain HTTP/1.1 on a local address (AWS_LAMBDA_RUNTIME_API, "host:port"), so the
// client is a small blocking one over a POSIX socket: one keep-alive connection, Content-Length
// or chunked bodies, no TLS (nothing here links OpenSSL). Header-only; no libtorch.
#pragma once

#include <ember/error.hpp>

#include <boost/json.hpp>

#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::lambda {

// A request given up because the cancel predicate said so (a stop signal while waiting).
class Cancelled : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A blocking HTTP/1.1 client for one plain-http endpoint ("host:port"). Not thread-safe.
class PlainHttpClient {
 public:
  explicit PlainHttpClient(std::string endpoint) : endpoint_(std::move(endpoint)) {
    auto colon = endpoint_.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint_.size())
      throw ConfigError("AWS_LAMBDA_RUNTIME_API='" + endpoint_ + "': expected HOST:PORT");
    host_ = endpoint_.substr(0, colon);
    port_ = endpoint_.substr(colon + 1);
    if (host_.size() > 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
  }
  ~PlainHttpClient() { close(); }
  PlainHttpClient(const PlainHttpClient&) = delete;
  PlainHttpClient& operator=(const PlainHttpClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // Asked whenever a wait for the peer is interrupted by a signal (and once a second): true
  // gives the request up with Cancelled. A stop signal thus ends a /next long poll at once,
  // although StopOnSignals installs its handler with SA_RESTART (poll is never restarted).
  void set_cancel(std::function<bool()> cancel) { cancel_ = std::move(cancel); }

  // One request; a kept-alive connection the peer closed meanwhile is reopened once (nothing of
  // the request can have been acted on: the peer closed before reading it).
  HttpResponse request(const std::string& method, const std::string& target, std::string_view body = {},
                       const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + endpoint_ + "\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    if (method != "GET" || !body.empty()) req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n";
    req.append(body.data(), body.size());
    for (int attempt = 0;; ++attempt) {
      const bool reused = fd_ >= 0;
      if (!reused) open();
      bool got_any = false;
      try {
        send_all(req);
        return read_response(method, got_any);
      } catch (const Cancelled&) {
        close();
        throw;
      } catch (const RuntimeError&) {
        close();
        if (attempt > 0 || !reused || got_any) throw;
      }
    }
  }

 private:
  void open() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &res); rc != 0)
      throw RuntimeError("Runtime API " + endpoint_ + ": cannot resolve: " + ::gai_strerror(rc));
    int err = 0;
    for (addrinfo* a = res; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        err = errno;
        continue;
      }
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fd_ = fd;
        break;
      }
      err = errno;
      ::close(fd);
    }
    ::freeaddrinfo(res);
    if (fd_ < 0) throw RuntimeError("Runtime API " + endpoint_ + ": cannot connect: " + std::strerror(err));
    buf_.clear();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

  void send_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw RuntimeError("Runtime API " + endpoint_ + ": send: " + std::strerror(errno));
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // More bytes into buf_; false at end of stream.
  bool fill() {
    char tmp[65536];
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, cancel_ ? 1000 : -1);
      if (ready <= 0) {
        if (ready < 0 && errno != EINTR) throw RuntimeError("Runtime API " + endpoint_ + ": poll: " + std::strerror(errno));
        if (cancel_ && cancel_()) throw Cancelled("Runtime API " + endpoint_ + ": request given up (stop signal)");
        continue;
      }
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw RuntimeError("Runtime API " + endpoint_ + ": recv: " + std::strerror(errno));
      buf_.append(tmp, static_cast<std::size_t>(n));
      return n > 0;
    }
  }
  std::string take_line(bool& got_any) {
    std::size_t eol;
    while ((eol = buf_.find("\r\n")) == std::string::npos) {
      if (buf_.size() > (1u << 20)) throw RuntimeError("Runtime API " + endpoint_ + ": header line longer than 1 MiB");
      if (!fill()) throw RuntimeError("Runtime API " + endpoint_ + ": connection closed mid-response");
      got_any = true;
    }
    std::string line = buf_.substr(0, eol);
    buf_.erase(0, eol + 2);
    return line;
  }
  std::string take_bytes(std::size_t n) {
    while (buf_.size() < n)
      if (!fill()) throw RuntimeError("Runtime API " + endpoint_ + ": connection closed mid-body");
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  HttpResponse read_response(const std::string& method, bool& got_any) {
    got_any = !buf_.empty();
    HttpResponse r;
    std::string status = take_line(got_any);
    got_any = true;
    if (status.compare(0, 5, "HTTP/") != 0 || status.size() < 12)
      throw RuntimeError("Runtime API " + endpoint_ + ": not an HTTP status line: " + status.substr(0, 80));
    r.status = std::atoi(status.c_str() + 9);
    for (std::string line; !(line = take_line(got_any)).empty();) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      std::size_t v = colon + 1;
      while (v < line.size() && (line[v] == ' ' || line[v] == '\t')) ++v;
      std::size_t e = line.size();
      while (e > v && (line[e - 1] == ' ' || line[e - 1] == '\t')) --e;
      r.headers[name] = line.substr(v, e - v);
    }
    std::string te = r.header("transfer-encoding");
    std::transform(te.begin(), te.end(), te.begin(), [](unsigned char c) { return std::tolower(c); });
    if (method == "HEAD" || r.status == 204 || r.status == 304) {
    } else if (te.find("chunked") != std::string::npos) {
      for (;;) {
        std::string size_line = take_line(got_any);
        const std::size_t n = std::strtoull(size_line.c_str(), nullptr, 16);
        if (n == 0) {
          while (!take_line(got_any).empty()) {
          }
          break;
        }
        r.body += take_bytes(n);
        take_line(got_any);
      }
    } else if (auto cl = r.header("content-length"); !cl.empty()) {
      r.body = take_bytes(std::strtoull(cl.c_str(), nullptr, 10));
    } else {
      while (fill()) {
      }
      r.body = std::move(buf_);
      buf_.clear();
      close();
      return r;
    }
    std::string conn = r.header("connection");
    std::transform(conn.begin(), conn.end(), conn.begin(), [](unsigned char c) { return std::tolower(c); });
    if (conn == "close") close();
    return r;
  }

  std::string endpoint_, host_, port_;
  std::function<bool()> cancel_;
  int fd_ = -1;
  std::string buf_;  // bytes received past the last response
};

// One event from /invocation/next.
struct Invocation {
  std::string request_id;
  std::string body;
  std::int64_t deadline_ms = 0;  // Unix time in ms; 0: the header was absent
  std::string function_arn;
  std::string trace_id;
};

// What /error and /init/error carry. type goes in the body's errorType and in the header
// Lambda-Runtime-Function-Error-Type.
struct ErrorReply {
  std::string type;
  std::string message;
  std::vector<std::string> stack_trace;

  std::string json() const {
    boost::json::array trace;
    for (const auto& s : stack_trace) trace.emplace_back(s);
    return boost::json::serialize(boost::json::object{{"errorMessage", message}, {"errorType", type}, {"stackTrace", trace}});
  }
};

class RuntimeApi {
 public:
  explicit RuntimeApi(std::string endpoint) : http_(std::move(endpoint)) {}

  // Asked while next() waits (PlainHttpClient::set_cancel): the runtime gives up waiting for an
  // event on a stop signal. Replies are always waited for.
  void set_cancel(std::function<bool()> cancel) { cancel_ = std::move(cancel); }

  // Blocks until Lambda hands out the next event. Throws RuntimeError when the API fails (the
  // runtime then exits: Lambda restarts the environment).
  Invocation next() {
    struct Uncancel {
      PlainHttpClient& h;
      ~Uncancel() { h.set_cancel(nullptr); }
    } uncancel{http_};
    http_.set_cancel(cancel_);
    HttpResponse r = http_.request("GET", std::string(kPrefix) + "/runtime/invocation/next");
    if (r.status != 200)
      throw RuntimeError("Runtime API " + http_.endpoint() + ": /invocation/next answered " + std::to_string(r.status) +
                         ": " + r.body.substr(0, 300));
    Invocation inv;
    inv.request_id = r.header("lambda-runtime-aws-request-id");
    if (inv.request_id.empty())
      throw RuntimeError("Runtime API " + http_.endpoint() + ": /invocation/next without Lambda-Runtime-Aws-Request-Id");
    inv.body = std::move(r.body);
    inv.deadline_ms = std::strtoll(r.header("lambda-runtime-deadline-ms").c_str(), nullptr, 10);
    inv.function_arn = r.header("lambda-runtime-invoked-function-arn");
    inv.trace_id = r.header("lambda-runtime-trace-id");
    return inv;
  }

  void respond(const std::string& request_id, std::string_view body) {
    post("/runtime/invocation/" + request_id + "/response", body, {{"Content-Type", "application/json"}});
  }
  void error(const std::string& request_id, const ErrorReply& e) {
    post("/runtime/invocation/" + request_id + "/error", e.json(),
         {{"Content-Type", "application/json"}, {"Lambda-Runtime-Function-Error-Type", e.type}});
  }
  void init_error(const ErrorReply& e) {
    post("/runtime/init/error", e.json(),
         {{"Content-Type", "application/json"}, {"Lambda-Runtime-Function-Error-Type", e.type}});
  }

 private:
  static constexpr const char* kPrefix = "/2018-06-01";

  void post(const std::string& path, std::string_view body, const std::vector<std::pair<std::string, std::string>>& headers) {
    HttpResponse r = http_.request("POST", kPrefix + path, body, headers);
    // 202 Accepted; 413 (reply too large) and 400 are the API's refusals.
    if (r.status / 100 != 2)
      throw RuntimeError("Runtime API " + http_.endpoint() + ": POST " + path + " answered " + std::to_string(r.status) +
                         ": " + r.body.substr(0, 300));
  }

  PlainHttpClient http_;
  std::function<bool()> cancel_;
};

}  // namespace ember::lambda
