// The gcs plugin's Service: one Cloud Storage endpoint, the connection pool, and the retry loop
// every request goes through (credentials and tokens: gcs_token.cpp). The JSON API's helpers.
#include "gcs_service.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>

namespace ember::gcs {

// "gs://bucket/key/with/anything" -> {gs, bucket, key}; the key is taken byte for byte.
Location parse_location(std::string_view url) {
  auto p = url.find("://");
  if (p == std::string_view::npos)
    throw plugin::Error("not a gs:// URL: " + std::string(url), EMBER_E_INVALID);
  Location loc;
  loc.scheme = std::string(url.substr(0, p));
  std::string_view rest = url.substr(p + 3);
  auto slash = rest.find('/');
  loc.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) loc.key = std::string(rest.substr(slash + 1));
  if (loc.bucket.empty())
    throw plugin::Error("no bucket in URL " + std::string(url) + " (expected " + loc.scheme + "://bucket/name)", EMBER_E_INVALID);
  return loc;
}

std::string query_string(const Params& q) {
  std::string out;
  for (const auto& kv : q) out += (out.empty() ? "" : "&") + pct(kv.first) + "=" + pct(kv.second);
  return out;
}

// RFC 3339 ("2024-05-01T12:00:00.123Z") to ns since the epoch; 0 when it does not parse.
std::int64_t parse_rfc3339_ns(const std::string& s) {
  std::tm tm{};
  const char* end = s.size() >= 19 ? strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) : nullptr;
  if (!end) return 0;
  std::int64_t ns = 0;
  if (*end == '.') {
    std::int64_t scale = 100000000;
    for (++end; std::isdigit(static_cast<unsigned char>(*end)); ++end, scale /= 10) ns += (*end - '0') * scale;
  }
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000000 + ns;
}

std::string json_str(const json::object& o, const char* k) {
  const auto* x = o.if_contains(k);
  return x && x->is_string() ? std::string(x->as_string()) : std::string();
}
std::uint64_t json_u64(const json::object& o, const char* k) {
  const auto* x = o.if_contains(k);
  if (!x) return 0;
  if (x->is_string()) {
    try {
      return std::stoull(std::string(x->as_string()));
    } catch (...) {
      return 0;
    }
  }
  return x->is_uint64() ? x->as_uint64() : x->is_int64() ? static_cast<std::uint64_t>(x->as_int64()) : 0;
}
json::object parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  return !ec && v.is_object() ? v.as_object() : json::object();
}

// crc32c=<base64> out of an x-goog-hash header ("crc32c=..,md5=.."); "" when absent.
std::string goog_hash_crc32c(const std::string& h) {
  std::size_t p = 0;
  while (p < h.size()) {
    auto e = h.find(',', p);
    std::string part = h.substr(p, e == std::string::npos ? std::string::npos : e - p);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.rfind("crc32c=", 0) == 0) return part.substr(7);
    if (e == std::string::npos) break;
    p = e + 1;
  }
  return "";
}

Meta meta_of(const json::object& o) {
  return Meta{json_u64(o, "size"), json_str(o, "generation"), json_str(o, "crc32c"), json_str(o, "updated")};
}

Service::Service(Settings s) : s_(std::move(s)) {
  std::string ep = s_.endpoint;
  if (ep.empty()) {
    emulator_ = env("STORAGE_EMULATOR_HOST");
    ep = emulator_;
    if (!ep.empty() && ep.find("://") == std::string::npos) ep = "http://" + ep;
  }
  if (ep.empty()) ep = "https://storage.googleapis.com";
  try {
    endpoint_ = http::Url::parse(ep);
  } catch (const std::exception& e) {
    throw std::runtime_error("gcs config: endpoint: " + std::string(e.what()));
  }
  base_ = endpoint_.target == "/" ? std::string() : std::string(http::target_path(endpoint_.target));
  if (!base_.empty() && base_.back() == '/') base_.pop_back();
  http::Options o;
  o.verify_tls = s_.verify_tls;
  o.ca_file = s_.ca_bundle;
  o.timeout = std::chrono::milliseconds(s_.timeout_ms);
  o.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
  o.max_body = kJsonAnswerLimit;
  // Idle connections kept per endpoint: one per chunk in flight, and two more.
  pool_.emplace(std::move(o), s_.max_concurrency + 2);
}

http::Response Service::call(const Call& c) {
  std::string last;
  bool refreshed = false;
  for (int attempt = 1;; ++attempt) {
    try {
      http::Response r = send_once(c);
      if ((r.status >= 200 && r.status < 300) || std::find(c.accept.begin(), c.accept.end(), r.status) != c.accept.end())
        return r;
      if (r.status == 401 && !refreshed && source_refreshable()) {
        // A token the server no longer takes (revoked, expired early): one fresh one.
        invalidate_token();
        refreshed = true;
        --attempt;
        continue;
      }
      last = describe(c, r);
      if (!retryable_status(r.status)) throw plugin::Error(last, r.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
    } catch (const http::Error& e) {
      last = prefix(c) + ": " + e.what() + context();
      if (!e.retryable()) throw plugin::Error(last, EMBER_E_IO);
    }
    if (s_.retry.exhausted(attempt)) throw plugin::Error(net::RetryPolicy::gave_up(last, attempt), EMBER_E_IO);
    s_.retry.backoff(attempt);
  }
}

http::Response Service::send_once(const Call& c) {
  std::string auth = authorization(c);
  http::Url u;
  if (c.target.rfind("http://", 0) == 0 || c.target.rfind("https://", 0) == 0) {
    u = http::Url::parse(c.target);
  } else {
    u = endpoint_;
    u.target = c.target;
  }
  if (!s_.user_project.empty() && c.target.find("userProject=") == std::string::npos)
    u.target += (u.target.find('?') == std::string::npos ? "?" : "&") + std::string("userProject=") + pct(s_.user_project);
  if (!auth.empty()) http::require_secure_transport(u, s_.allow_insecure_http, "the gcs config key allow_insecure_http");
  http::Request req;
  req.method = c.method;
  req.target = u.target;
  req.headers = c.headers;
  if (!auth.empty()) req.headers.emplace_back("Authorization", auth);
  req.headers.emplace_back("x-goog-api-client", "ember-gcs/1.0");
  req.body = c.body;
  req.body_limit = c.body_limit;
  req.idempotent = c.idempotent;
  net::ConnectionPool::Lease lease(*pool_, u);
  return lease->send(req);
}

std::string Service::context() {
  std::lock_guard<std::mutex> lock(cred_mu_);
  return " (endpoint " + endpoint_text() + (source_ ? ", credentials: " + source_->describe() : std::string()) + ")";
}

std::string Service::describe(const Call& c, const http::Response& r) {
  json::object o = parse_object(r.body);
  std::string reason, message;
  if (const auto* e = o.if_contains("error"); e && e->is_object()) {
    const auto& eo = e->as_object();
    message = json_str(eo, "message");
    if (const auto* errs = eo.if_contains("errors"); errs && errs->is_array() && !errs->as_array().empty() &&
                                                     errs->as_array()[0].is_object())
      reason = json_str(errs->as_array()[0].as_object(), "reason");
    if (reason.empty()) reason = json_str(eo, "status");
  }
  if (reason.empty()) {
    switch (r.status) {
      case 400: reason = "badRequest"; break;
      case 401: reason = "authError"; break;
      case 403: reason = "forbidden"; break;
      case 404: reason = "notFound"; break;
      case 410: reason = "gone"; break;
      case 412: reason = "conditionNotMet"; break;
      case 429: reason = "rateLimitExceeded"; break;
      case 503: reason = "backendError"; break;
      default: reason = "HTTP" + std::to_string(r.status);
    }
    if (message.empty() && !r.body.empty() && r.body.size() < 200 && r.body.find('\n') == std::string::npos &&
        r.body.front() != '<')
      message = r.body;
  }
  return scrub(prefix(c) + ": " + reason + (message.empty() ? "" : ": " + message) + " (HTTP " + std::to_string(r.status) +
               ", endpoint " + endpoint_text() + ", credentials: " + source_text() + ")");
}

std::string Service::scrub(std::string msg) {
  std::lock_guard<std::mutex> lock(cred_mu_);
  auto cut = [&](const std::string& secret) {
    if (secret.size() < 8) return;
    for (auto p = msg.find(secret); p != std::string::npos; p = msg.find(secret, p)) msg.replace(p, secret.size(), "***");
  };
  cut(token_);
  cut(s_.token);
  if (source_) {
    cut(source_->refresh_token);
    cut(source_->client_secret);
    cut(source_->token);
  }
  return msg;
}

std::string Service::source_text() {
  std::lock_guard<std::mutex> lock(cred_mu_);
  return source_ ? source_->describe() : "not resolved yet";
}

}  // namespace ember::gcs
