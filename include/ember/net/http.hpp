// A small blocking HTTP/1.1 client for plugins (S3, W&B): Boost.Beast over Boost.Asio, TLS with
// OpenSSL. Header-only; a user links OpenSSL (ssl, crypto) and Boost.URL (boost_url).
//
//   ember::http::Client c("https", "api.example.com", "443", {});
//   auto r = c.send({"GET", "/v1/thing", {{"Accept", "application/json"}}, ""});
//   if (r.status != 200) ...
//
// Contract:
// - One Client is one keep-alive connection to one host:port; it is not thread-safe (give each
//   worker thread its own Client, or guard it). The connection opens on the first send.
// - TLS is verified by default: the system CA store (or Options::ca_file), SNI, and the
//   certificate must match the host name (or IP address). verify_tls=false turns all of that off
//   (a caller should say so loudly: insecure_tls_warning()).
// - Options::timeout bounds each step (connect, TLS handshake, each write, each read); the
//   deadline (Options::deadline, or Request::deadline) bounds the whole exchange, so a server
//   that drips one byte per step cannot hold a request forever. Both throw Error with
//   timed_out() set; the message says which one ran out.
// - A buffered answer (send) is at most Options::max_body bytes, or Request::body_limit; a
//   streamed one (send_streaming) only Request::body_limit when set. A larger answer throws a
//   non-retryable Error before its body is read when it declares its length.
// - A network or TLS failure throws http::Error whose message names scheme://host:port and the
//   request's path — never its query (presigned URLs carry their signature there) nor userinfo.
//   retryable() says whether trying again could help. An HTTP error status is not an exception:
//   it is a Response with that status.
// - An idempotent request (GET, HEAD, PUT, DELETE, OPTIONS) sent on a reused connection that
//   fails before any byte of the answer arrived is sent once more on a fresh connection (the
//   server may have closed an idle connection). A POST never is: the server may have acted on it
//   (Request::idempotent = true declares one safe to repeat, e.g. a protocol with offsets). So
//   that this rarely matters, a reused connection the server has already closed (readable while
//   idle: EOF or a TLS close_notify) is replaced before the request is sent.
// - Host, Content-Length (for bodies and for PUT/POST) are added unless the request sets them.
// - display_url() renders any URL for messages; require_secure_transport() refuses credentials
//   over plain http to anything but loopback unless the caller's config allows it.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::http {

// A network, TLS or protocol failure (never an HTTP status). timed_out says whether a step ran
// past Options::timeout or the request past its deadline; retryable says whether the same
// request could succeed later (false for an answer over its size limit, a certificate that
// fails verification, a request refused before it was sent).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, bool timed_out = false, bool retryable = true)
      : std::runtime_error(what), timed_out_(timed_out), retryable_(retryable) {}
  bool timed_out() const { return timed_out_; }
  bool retryable() const { return retryable_; }

 private:
  bool timed_out_, retryable_;
};

struct Options {
  bool verify_tls = true;
  std::string ca_file;  // PEM bundle used instead of the system store when set
  std::chrono::milliseconds timeout{30000};  // per step
  std::chrono::milliseconds deadline{0};     // per request, connect to last byte; 0: none
  std::uint64_t max_body = 64ull << 20;      // buffered answers (send); 0: no limit
};

// body is borrowed: the bytes must stay alive until send returns. They are written from where
// they are, never copied (a multi-MiB upload part goes to the socket from the caller's buffer).
// body_limit and deadline, when non-zero, replace Options::max_body and Options::deadline for
// this request.
struct Request {
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
  std::uint64_t body_limit = 0;
  std::chrono::milliseconds deadline{0};
  std::optional<bool> idempotent{};  // unset: by method (GET, HEAD, PUT, DELETE, OPTIONS)
};

// The path of a request target without its query or fragment, for messages.
inline std::string_view target_path(std::string_view target) {
  return target.substr(0, std::min(target.find('?'), target.find('#')));
}

// A URL as messages may show it: scheme://host[:port]/path, without userinfo, query or fragment
// (presigned URLs carry their signature in the query: X-Amz-Signature, X-Goog-Signature; basic
// auth rides in userinfo). Text that does not parse as a URL is cut the same way by hand.
inline std::string display_url(std::string_view text) {
  auto r = boost::urls::parse_uri_reference(boost::core::string_view(text.data(), text.size()));
  if (r) {
    boost::urls::url_view u = *r;
    std::string out;
    if (u.has_scheme()) out += std::string(u.scheme()) + ":";
    if (u.has_authority()) {
      out += "//" + std::string(u.encoded_host_and_port());
    }
    out += std::string(u.encoded_path());
    if (u.has_query() || u.has_fragment()) out += "?...";
    return out;
  }
  std::string_view cut = target_path(text);
  std::string out(cut);
  // scheme://user:pass@host...: drop everything up to the last '@' of the authority.
  if (auto s = out.find("://"); s != std::string::npos) {
    auto end = out.find('/', s + 3);
    auto at = out.rfind('@', end == std::string::npos ? std::string::npos : end);
    if (at != std::string::npos && at > s) out.erase(s + 3, at - s - 2);
  }
  if (cut.size() < text.size()) out += "?...";
  return out;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first header with this name (case-insensitive), or "" when absent.
  std::string header(std::string_view name) const {
    for (const auto& h : headers)
      if (iequals(h.first, name)) return h.second;
    return {};
  }
};

// An absolute http(s) URL split for Client: target is path + query ("/" when empty), port is
// the explicit one or the scheme's default. Throws http::Error naming the URL (as display_url
// shows it) when it does not parse or is not http/https.
struct Url {
  std::string scheme, host, port, target;
  static Url parse(std::string_view text) {
    auto r = boost::urls::parse_uri(boost::core::string_view(text.data(), text.size()));
    if (!r) throw Error("invalid URL '" + display_url(text) + "': " + r.error().message(), false, false);
    boost::urls::url_view u = *r;
    Url out;
    out.scheme = std::string(u.scheme());
    std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (out.scheme != "http" && out.scheme != "https")
      throw Error("invalid URL '" + display_url(text) + "': scheme must be http or https", false, false);
    out.host = std::string(u.encoded_host());
    // IPv6 literals arrive bracketed in the authority; resolvers and TLS want them bare.
    if (out.host.size() > 1 && out.host.front() == '[' && out.host.back() == ']')
      out.host = out.host.substr(1, out.host.size() - 2);
    if (out.host.empty()) throw Error("invalid URL '" + display_url(text) + "': no host", false, false);
    out.port = u.has_port() && !u.port().empty() ? std::string(u.port())
                                                  : (out.scheme == "https" ? "443" : "80");
    out.target = std::string(u.encoded_path());
    if (out.target.empty()) out.target = "/";
    if (u.has_query()) out.target += "?" + std::string(u.encoded_query());
    return out;
  }
  // scheme://host[:port]/path, for messages (never the query).
  std::string display() const {
    bool default_port = (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return scheme + "://" + h + (default_port ? "" : ":" + port) + std::string(target_path(target));
  }
};

// Whether host (a name or an IP literal, IPv6 without brackets) is this machine: "localhost"
// (RFC 6761 reserves it), 127.0.0.0/8, ::1, or ::ffff:127.x.y.z. Decided without DNS.
inline bool is_loopback_host(std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!h.empty() && h.back() == '.') h.pop_back();
  // Not "*.localhost": RFC 6761 reserves those too, but resolvers may still ask DNS for them.
  if (h == "localhost") return true;
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(h, ec);
  if (ec) return false;
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

// Refuse to send credentials (an Authorization header, a signature, a token) in clear: plain
// http to a host other than loopback throws a non-retryable Error unless allow_insecure is set.
// setting names the config key that allows it, for the message ("s3 config key
// allow_insecure_http").
inline void require_secure_transport(const Url& u, bool allow_insecure, std::string_view setting) {
  if (u.scheme != "http" || allow_insecure || is_loopback_host(u.host)) return;
  throw Error("refusing to send credentials in clear text to " + u.display() +
                  ": plain http is only used with credentials for a loopback address; use https, or set " +
                  std::string(setting) + " to true to accept that anyone on the path can read them",
              false, false);
}

// The warning a caller logs when TLS verification is off for endpoint.
inline std::string insecure_tls_warning(std::string_view endpoint, std::string_view setting) {
  return "TLS certificate and host name verification is OFF for " + std::string(endpoint) + " (" +
         std::string(setting) + " is false): anyone on the network path can impersonate the server, read "
         "and change every request and answer; trust a self-signed server with a CA bundle instead";
}

class Client {
 public:
  Client(std::string scheme, std::string host, std::string port, Options options = {})
      : scheme_(std::move(scheme)),
        host_(std::move(host)),
        port_(std::move(port)),
        options_(std::move(options)),
        ssl_ctx_(boost::asio::ssl::context::tls_client) {
    if (scheme_ != "http" && scheme_ != "https")
      throw Error("http client for " + endpoint() + ": scheme must be http or https, not '" + scheme_ + "'");
    if (tls()) {
      ssl_ctx_.set_options(boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
                           boost::asio::ssl::context::no_sslv3);
      if (options_.verify_tls) {
        boost::system::error_code ec;
        if (!options_.ca_file.empty()) {
          ssl_ctx_.load_verify_file(options_.ca_file, ec);
          if (ec) throw Error("http client for " + endpoint() + ": cannot load CA bundle " + options_.ca_file + ": " + ec.message());
        } else {
          ssl_ctx_.set_default_verify_paths(ec);
          if (ec) throw Error("http client for " + endpoint() + ": cannot load the system CA store: " + ec.message());
        }
        ssl_ctx_.set_verify_mode(boost::asio::ssl::verify_peer);
      } else {
        ssl_ctx_.set_verify_mode(boost::asio::ssl::verify_none);
      }
    }
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { close(); }

  // "host:port", for messages.
  std::string endpoint() const {
    return (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" + port_;
  }
  const std::string& host() const { return host_; }
  const std::string& port() const { return port_; }
  const std::string& scheme() const { return scheme_; }

  // Send and read the whole answer into Response::body.
  Response send(const Request& req) {
    return exchange(req, nullptr);
  }

  // Send; the answer's body goes to on_body in pieces as it arrives (Response::body stays
  // empty). on_body may throw: the connection is dropped and the exception propagates.
  Response send_streaming(const Request& req, const std::function<void(const char*, std::size_t)>& on_body) {
    return exchange(req, &on_body);
  }

  // Drop the connection; the next send opens a new one.
  void close() {
    boost::system::error_code ec;
    if (tls_) {
      boost::beast::get_lowest_layer(*tls_).socket().close(ec);
      tls_.reset();
    }
    if (tcp_) {
      tcp_->socket().close(ec);
      tcp_.reset();
    }
    buffer_.clear();
    reused_ = false;
  }

 private:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;
  using OnBody = std::function<void(const char*, std::size_t)>;
  bool tls() const { return scheme_ == "https"; }

  // Run an async operation to completion on our private io_context. The handler only records
  // the error; tcp_stream's expiry turns a stalled step into error::timeout.
  template <class Start>
  error_code run(Start&& start) {
    error_code result = boost::asio::error::would_block;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  [[noreturn]] void fail(const std::string& step, const error_code& ec) {
    bool timed_out = ec == boost::beast::error::timeout;
    std::string why = ec.message();
    if (timed_out)
      why = deadline_armed_ ? "the whole request ran past its deadline of " + std::to_string(deadline_ms_.count()) + " ms"
                            : "timed out after " + std::to_string(options_.timeout.count()) + " ms";
    std::string msg = "http " + scheme_ + "://" + endpoint() + ": " + step + " failed: " + why;
    close();
    throw Error(msg, timed_out);
  }

  boost::beast::tcp_stream& lowest() { return tls_ ? boost::beast::get_lowest_layer(*tls_) : *tcp_; }

  // Arm the stream's timer for the next step: the step timeout, or what is left of the
  // request's deadline when that comes first (deadline_armed_ then names it in the message).
  void arm() {
    auto now = std::chrono::steady_clock::now();
    auto step_end = now + options_.timeout;
    deadline_armed_ = deadline_at_ <= step_end;
    lowest().expires_at(deadline_armed_ ? deadline_at_ : step_end);
  }

  void connect() {
    close();
    error_code ec;
    tcp::resolver resolver(ioc_);
    auto endpoints = resolver.resolve(host_, port_, ec);
    if (ec) fail("resolve", ec);
    if (tls()) {
      tls_.emplace(ioc_, ssl_ctx_);
    } else {
      tcp_.emplace(ioc_);
    }
    auto& low = lowest();
    arm();
    ec = run([&](auto h) { low.async_connect(endpoints, [h](error_code e, const tcp::endpoint&) mutable { h(e); }); });
    if (ec) fail("connect", ec);
    low.socket().set_option(tcp::no_delay(true), ec);
    if (tls()) {
      SSL* ssl = tls_->native_handle();
      error_code addr_ec;
      (void)boost::asio::ip::make_address(host_, addr_ec);
      // SNI only for names (RFC 6066 forbids IP literals); verification for both.
      if (addr_ec && !SSL_set_tlsext_host_name(ssl, host_.c_str()))
        fail("TLS SNI", error_code(static_cast<int>(::ERR_get_error()), boost::asio::error::get_ssl_category()));
      if (options_.verify_tls) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = addr_ec ? X509_VERIFY_PARAM_set1_host(param, host_.c_str(), host_.size())
                         : X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str());
        if (!ok) fail("TLS host verification setup", error_code(EINVAL, boost::system::generic_category()));
      }
      arm();
      ec = run([&](auto h) { tls_->async_handshake(boost::asio::ssl::stream_base::client, h); });
      if (ec == boost::beast::error::timeout) fail("TLS handshake", ec);
      if (ec) {
        std::string detail = ec.message();
        long vr = SSL_get_verify_result(ssl);
        bool bad_certificate = vr != X509_V_OK;
        if (bad_certificate) detail += " (certificate: " + std::string(X509_verify_cert_error_string(vr)) + ")";
        close();
        // A certificate that fails verification will fail the same way next time.
        throw Error("http " + scheme_ + "://" + endpoint() + ": TLS handshake failed: " + detail, false, !bad_certificate);
      }
    }
  }

  template <class F>
  error_code with_stream(F&& f) {
    if (tls_) return f(*tls_);
    return f(*tcp_);
  }

  Response exchange(const Request& req, const OnBody* on_body) {
    namespace bhttp = boost::beast::http;
    bhttp::request<bhttp::span_body<const char>> msg;
    msg.method_string(req.method);
    msg.target(req.target.empty() ? "/" : req.target);
    msg.version(11);
    bool has_host = false, has_length = false;
    for (const auto& h : req.headers) {
      msg.insert(h.first, h.second);
      if (iequals(h.first, "host")) has_host = true;
      if (iequals(h.first, "content-length")) has_length = true;
    }
    if (!has_host) msg.set(bhttp::field::host, default_host_header());
    msg.body() = boost::beast::span<const char>(req.body.data(), req.body.size());
    if (!has_length && (!req.body.empty() || req.method == "PUT" || req.method == "POST"))
      msg.content_length(req.body.size());
    msg.keep_alive(true);
    const bool head = req.method == "HEAD";
    // RFC 9110 9.2.2: only these may be repeated without asking the caller.
    const bool idempotent = req.idempotent.value_or(req.method == "GET" || head || req.method == "PUT" ||
                                                    req.method == "DELETE" || req.method == "OPTIONS");
    const std::uint64_t limit = req.body_limit ? req.body_limit : on_body ? 0 : options_.max_body;
    deadline_ms_ = req.deadline.count() > 0 ? req.deadline : options_.deadline;
    deadline_at_ = deadline_ms_.count() > 0 ? std::chrono::steady_clock::now() + deadline_ms_
                                            : std::chrono::steady_clock::time_point::max();
    bool range = false;
    for (const auto& h : req.headers) range = range || iequals(h.first, "range");
    Shown shown{req.method + " " + std::string(target_path(msg.target())), limit, range};

    for (int attempt = 0;; ++attempt) {
      if (connected() && reused_ && closed_by_peer()) close();
      if (!connected()) connect();
      const bool was_reused = reused_;
      bool got_bytes = false;
      try {
        return exchange_once(msg, head, on_body, got_bytes, shown);
      } catch (const Error& e) {
        // A keep-alive connection the server dropped while idle: one fresh try, for a request
        // the server cannot have acted on twice.
        if (attempt == 0 && was_reused && !got_bytes && idempotent && e.retryable()) continue;
        throw;
      }
    }
  }

  // What messages say about the request, and its answer's size limit (0: none).
  struct Shown {
    std::string what;  // "GET /path", never the query
    std::uint64_t limit;
    bool range;        // the request asked for a Range
  };

  [[noreturn]] void too_large(const Shown& shown, unsigned status) {
    std::string msg = "http " + scheme_ + "://" + endpoint() + ": the answer to " + shown.what + " (HTTP " +
                      std::to_string(status) + ") is larger than its limit of " + std::to_string(shown.limit) + " bytes";
    if (shown.range && status == 200) msg += ": the server ignored the Range header (HTTP 200, not 206 Partial Content)";
    close();
    throw Error(msg, false, false);
  }

  template <class Msg>
  Response exchange_once(Msg& msg, bool head, const OnBody* on_body, bool& got_bytes, const Shown& shown) {
    namespace bhttp = boost::beast::http;
    arm();
    error_code ec = with_stream([&](auto& s) { return run([&](auto h) { bhttp::async_write(s, msg, h); }); });
    if (ec) fail("send " + shown.what, ec);

    // Beast reads at most the buffer's free capacity per receive (and never under 512 bytes):
    // a buffer left at the size the first header needed turns a large body into ~512-byte
    // receives, one system call (and one timer update) each. 64 KiB is the most Beast reads at once.
    if (buffer_.capacity() < kReadBuffer) buffer_.reserve(kReadBuffer);
    Response out;
    if (!on_body) {
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(shown.limit ? shown.limit : std::numeric_limits<std::uint64_t>::max());
      parser.skip(head);
      arm();
      ec = with_stream([&](auto& s) { return run([&](auto h) { bhttp::async_read_header(s, buffer_, parser, h); }); });
      if (ec == bhttp::error::body_limit) too_large(shown, parser.get().result_int());
      if (ec) fail("read the answer header to " + shown.what, ec);
      got_bytes = true;
      while (!parser.is_done()) {
        arm();
        ec = with_stream([&](auto& s) { return run([&](auto h) { bhttp::async_read_some(s, buffer_, parser, h); }); });
        if (ec == bhttp::error::body_limit) too_large(shown, parser.get().result_int());
        if (ec) fail("read the answer body to " + shown.what, ec);
      }
      auto& res = parser.get();
      fill(out, res);
      out.body = std::move(res.body());
      finish(res.keep_alive());
      return out;
    }

    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.body_limit(shown.limit ? shown.limit : std::numeric_limits<std::uint64_t>::max());
    parser.skip(head);
    arm();
    ec = with_stream([&](auto& s) { return run([&](auto h) { bhttp::async_read_header(s, buffer_, parser, h); }); });
    if (ec == bhttp::error::body_limit) too_large(shown, parser.get().result_int());
    if (ec) fail("read the answer header to " + shown.what, ec);
    got_bytes = true;
    fill(out, parser.get());
    std::vector<char> chunk(1 << 16);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      arm();
      ec = with_stream([&](auto& s) { return run([&](auto h) { bhttp::async_read_some(s, buffer_, parser, h); }); });
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec == bhttp::error::body_limit) too_large(shown, parser.get().result_int());
      if (ec) fail("read the answer body to " + shown.what, ec);
      std::size_t n = chunk.size() - parser.get().body().size;
      if (n) {
        try {
          (*on_body)(chunk.data(), n);
        } catch (...) {
          close();  // the rest of the body is unread: the connection cannot be reused
          throw;
        }
      }
    }
    finish(parser.get().keep_alive());
    return out;
  }

  template <class Res>
  static void fill(Response& out, const Res& res) {
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }

  void finish(bool keep_alive) {
    if (keep_alive) {
      reused_ = true;
    } else {
      close();
    }
  }

  bool connected() const { return tls_.has_value() || tcp_.has_value(); }

  // An idle keep-alive connection has nothing to read: readable means the server closed it (or
  // sent something unasked), so it cannot carry the next request.
  bool closed_by_peer() {
    pollfd p{lowest().socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  std::string default_host_header() const {
    bool default_port = (tls() && port_ == "443") || (!tls() && port_ == "80");
    std::string h = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    return default_port ? h : h + ":" + port_;
  }

  static constexpr std::size_t kReadBuffer = 64 * 1024;
  std::string scheme_, host_, port_;
  Options options_;
  boost::asio::io_context ioc_{1};
  boost::asio::ssl::context ssl_ctx_;
  std::optional<boost::beast::tcp_stream> tcp_;
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
  boost::beast::flat_buffer buffer_;
  bool reused_ = false;  // a request/answer already went over this connection
  // The current request's deadline (time_point::max() when none) and its length for messages;
  // deadline_armed_: the timer last armed was the deadline, not a step timeout.
  std::chrono::steady_clock::time_point deadline_at_ = std::chrono::steady_clock::time_point::max();
  std::chrono::milliseconds deadline_ms_{0};
  bool deadline_armed_ = false;
};

}  // namespace ember::http
