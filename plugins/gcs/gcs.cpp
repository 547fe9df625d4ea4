// gcs: the "gs://bucket/key" and "gcs://bucket/key" schemes (ember.storage/1) over the Cloud
// Storage JSON API (https://storage.googleapis.com/storage/v1), or an emulator
// (STORAGE_EMULATOR_HOST, as Google's client libraries read it).
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified). Credentials: gcs_auth.hpp (the order
// is in the README). Object names are taken literally from the URL and percent-encoded whole
// (a '/' in a name is %2F in the path), so every name round-trips.
//
// Writes stream and publish atomically: bytes fill one chunk buffer of chunk_size (a multiple of
// 256 KiB); an object smaller than one chunk is one multipart upload (metadata with its crc32c +
// media) at commit; a larger one opens a resumable upload session on the first full chunk, sends
// each chunk with Content-Range in the background while the next fills (one in flight, so memory
// is about 2 x chunk_size), and the final chunk, carrying the total size and X-Goog-Hash crc32c,
// at commit — the object exists under its name only then. A chunk that fails (5xx, 429, a reset)
// is retried after asking the session how much it holds (Content-Range: bytes */*, 308 with a
// Range). Closing without commit cancels the session (DELETE): the previous object stays.
// Reads: the object's metadata (size, generation, crc32c), then ranged media GETs of
// read_chunk_size pinned to that generation (ifGenerationMatch), up to max_concurrency
// prefetched; a whole-object read checks the crc32c of what it delivered at the end.
#include "checksum.hpp"
#include "gcs_auth.hpp"

#include <ember/net/http.hpp>
#include <ember/net/uri.hpp>
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ember::gcs {
namespace {

namespace json = boost::json;
using Params = std::vector<std::pair<std::string, std::string>>;
constexpr std::uint64_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr std::uint64_t kChunkQuantum = 256 * kKiB;  // resumable chunks are multiples of this
// google-auth refreshes a token this long before it expires (3 min 45 s).
constexpr std::int64_t kRefreshMarginS = 225;

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "endpoint": {"type": "string", "default": ""},
    "credentials_file": {"type": "string", "default": ""},
    "token": {"type": "string", "writeOnly": true, "default": ""},
    "anonymous": {"type": "boolean", "default": false},
    "token_uri": {"type": "string", "default": ""},
    "scope": {"type": "string", "default": "https://www.googleapis.com/auth/devstorage.read_write"},
    "metadata_timeout_ms": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 1000},
    "user_project": {"type": "string", "default": ""},
    "ca_bundle": {"type": "string", "default": ""},
    "verify_tls": {"type": "boolean", "default": true},
    "allow_insecure_http": {"type": "boolean", "default": false},
    "chunk_size": {"type": "integer", "minimum": 262144, "maximum": 4294967296, "default": 16777216},
    "read_chunk_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 8388608},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 6},
    "retry_base_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 500},
    "retry_max_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 32000},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 86400000, "default": 30000},
    "request_deadline_ms": {"type": "integer", "minimum": 0, "maximum": 86400000, "default": 600000},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}
  }
})";

struct Settings {
  std::string endpoint, credentials_file, token, token_uri, scope = kDefaultScope, user_project, ca_bundle;
  bool anonymous = false, verify_tls = true, allow_insecure_http = false;
  std::uint64_t chunk_size = 16 * kMiB, read_chunk_size = 8 * kMiB;
  std::size_t max_concurrency = 4;
  int max_attempts = 6, retry_base_ms = 500, retry_max_ms = 32000, timeout_ms = 30000, metadata_timeout_ms = 1000;
  std::int64_t request_deadline_ms = 600000;
  int max_results = 1000;

  static Settings from_json(std::string_view text) {
    Settings s;
    boost::system::error_code ec;
    auto v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) throw std::runtime_error("gcs config: not a JSON object");
    const auto& o = v.as_object();
    auto str = [&](const char* k, std::string& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_string()) throw std::runtime_error(std::string("gcs config: ") + k + ": expected a string");
        out = std::string(x->as_string());
      }
    };
    auto flag = [&](const char* k, bool& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_bool()) throw std::runtime_error(std::string("gcs config: ") + k + ": expected true or false");
        out = x->as_bool();
      }
    };
    auto num = [&](const char* k, auto& out, std::int64_t lo) {
      if (const auto* x = o.if_contains(k)) {
        std::int64_t n = x->is_int64() ? x->as_int64() : x->is_uint64() ? static_cast<std::int64_t>(x->as_uint64()) : lo - 1;
        if (n < lo) throw std::runtime_error(std::string("gcs config: ") + k + ": expected an integer >= " + std::to_string(lo));
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
      }
    };
    str("endpoint", s.endpoint);
    str("credentials_file", s.credentials_file);
    str("token", s.token);
    str("token_uri", s.token_uri);
    str("scope", s.scope);
    str("user_project", s.user_project);
    str("ca_bundle", s.ca_bundle);
    flag("anonymous", s.anonymous);
    flag("verify_tls", s.verify_tls);
    flag("allow_insecure_http", s.allow_insecure_http);
    num("chunk_size", s.chunk_size, static_cast<std::int64_t>(kChunkQuantum));
    num("read_chunk_size", s.read_chunk_size, 65536);
    num("max_concurrency", s.max_concurrency, 1);
    num("max_attempts", s.max_attempts, 1);
    num("retry_base_ms", s.retry_base_ms, 1);
    num("retry_max_ms", s.retry_max_ms, 1);
    num("timeout_ms", s.timeout_ms, 1);
    num("metadata_timeout_ms", s.metadata_timeout_ms, 1);
    num("request_deadline_ms", s.request_deadline_ms, 0);
    num("max_results", s.max_results, 1);
    if (s.chunk_size % kChunkQuantum != 0)
      throw std::runtime_error("gcs config: chunk_size: expected a multiple of 262144 (256 KiB, the resumable upload "
                               "granularity), not " + std::to_string(s.chunk_size));
    if (s.anonymous && !s.token.empty())
      throw std::runtime_error("gcs config: anonymous and token exclude each other");
    return s;
  }
};

struct Location {
  std::string scheme, bucket, key;
  std::string url() const { return scheme + "://" + bucket + "/" + key; }
};

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

// Percent-encode everything but RFC 3986's unreserved characters ('/' included: an object name
// is one path segment of the JSON API): the shared encoder (ember/net/uri.hpp).
std::string pct(std::string_view s) { return net::uri_encode(s, /*encode_slash=*/true); }

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

// One Cloud Storage endpoint with its credentials, a keep-alive connection pool, retries.
// Thread-safe.
class Service {
 public:
  explicit Service(Settings s) : s_(std::move(s)) {
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
    http_.verify_tls = s_.verify_tls;
    http_.ca_file = s_.ca_bundle;
    http_.timeout = std::chrono::milliseconds(s_.timeout_ms);
    http_.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
    http_.max_body = kJsonAnswerLimit;
  }

  static constexpr std::uint64_t kJsonAnswerLimit = 16 * kMiB;

  const Settings& settings() const { return s_; }
  std::string endpoint_text() const { return endpoint_.scheme + "://" + endpoint_.host + ":" + endpoint_.port; }
  bool tls() const { return endpoint_.scheme == "https"; }

  std::string object_path(const Location& l) const { return base_ + "/storage/v1/b/" + pct(l.bucket) + "/o/" + pct(l.key); }
  std::string bucket_path(const Location& l) const { return base_ + "/storage/v1/b/" + pct(l.bucket) + "/o"; }
  std::string upload_path(const Location& l) const { return base_ + "/upload/storage/v1/b/" + pct(l.bucket) + "/o"; }

  struct Call {
    const char* op;            // "objects.get", for messages
    std::string shown;         // the URL messages name (gs://bucket/key)
    std::string method;
    std::string target;        // path?query on the endpoint, or an absolute URL (a session URI)
    Params headers;
    std::string_view body;     // borrowed until call returns
    std::vector<int> accept;   // non-2xx statuses handed back instead of thrown
    std::uint64_t body_limit = 0;
    bool idempotent = true;    // a whole-object upload is safe to repeat; the caller says otherwise
  };

  // Send with retries (408, 429, 5xx, network trouble; one fresh token after a 401); returns a
  // 2xx answer or one listed in accept, else throws plugin::Error naming the call.
  http::Response call(const Call& c) {
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
      if (attempt >= s_.max_attempts)
        throw plugin::Error(last + (attempt > 1 ? " (gave up after " + std::to_string(attempt) + " attempts)" : ""), EMBER_E_IO);
      backoff(attempt);
    }
  }

  // One attempt, no retry: the answer whatever its status; http::Error on network trouble.
  http::Response send_once(const Call& c) {
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
    Lease lease(*this, u);
    return lease->send(req);
  }

  static bool retryable_status(int status) {
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
  }

  // Exponential backoff with full jitter: uniform in [0, min(max, base * 2^n)].
  void backoff(int attempt) {
    double cap = std::min<double>(s_.retry_max_ms, static_cast<double>(s_.retry_base_ms) * double(1u << std::min(attempt, 20)));
    double ms;
    {
      std::lock_guard<std::mutex> lock(rng_mu_);
      ms = std::uniform_real_distribution<double>(0.0, cap)(rng_);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000)));
  }

  std::string prefix(const Call& c) const { return "gcs " + std::string(c.op) + " " + c.shown; }
  std::string context() {
    std::lock_guard<std::mutex> lock(cred_mu_);
    return " (endpoint " + endpoint_text() + (source_ ? ", credentials: " + source_->describe() : std::string()) + ")";
  }

  // The one line for an HTTP error answer: the JSON API's reason and message, the status, the
  // endpoint and which credentials were used — never a token.
  std::string describe(const Call& c, const http::Response& r) {
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

  // Messages built from a server's words pass through here: any secret we hold becomes "***".
  std::string scrub(std::string msg) {
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

  std::string source_text() {
    std::lock_guard<std::mutex> lock(cred_mu_);
    return source_ ? source_->describe() : "not resolved yet";
  }

 private:
  // A pooled connection for one scheme://host:port, back in the pool at scope exit.
  class Lease {
   public:
    Lease(Service& s, const http::Url& u) : s_(s), key_(u.scheme + "://" + u.host + ":" + u.port) {
      {
        std::lock_guard<std::mutex> lock(s_.pool_mu_);
        auto& idle = s_.pool_[key_];
        if (!idle.empty()) {
          client_ = std::move(idle.back());
          idle.pop_back();
        }
      }
      if (!client_) client_ = std::make_unique<http::Client>(u.scheme, u.host, u.port, s_.http_);
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[key_];
      if (idle.size() <= s_.s_.max_concurrency + 1) idle.push_back(std::move(client_));
    }
    http::Client* operator->() { return client_.get(); }

   private:
    Service& s_;
    std::string key_;
    std::unique_ptr<http::Client> client_;
  };

  bool source_refreshable() {
    std::lock_guard<std::mutex> lock(cred_mu_);
    return source_ && source_->refreshable();
  }
  void invalidate_token() {
    std::lock_guard<std::mutex> lock(cred_mu_);
    token_.clear();
    token_expires_ = 0;
  }

  // The Authorization header for a call ("" when anonymous), resolving the source and fetching
  // or refreshing the token as needed.
  std::string authorization(const Call& c) {
    std::lock_guard<std::mutex> lock(cred_mu_);
    try {
      if (!source_) source_ = resolve_source();
      switch (source_->kind) {
        case TokenSource::Kind::anonymous: return "";
        case TokenSource::Kind::token: return "Bearer " + source_->token;
        default: break;
      }
      std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
      if (token_.empty() || now + kRefreshMarginS >= token_expires_) fetch_token(now);
      return "Bearer " + token_;
    } catch (const plugin::Error& e) {
      throw plugin::Error(prefix(c) + ": " + e.what(), e.status());
    } catch (const std::exception& e) {
      throw plugin::Error(prefix(c) + ": " + e.what(), EMBER_E_INVALID);
    }
  }

  TokenSource resolve_source() {
    TokenSource t;
    if (!s_.token.empty()) {
      t.kind = TokenSource::Kind::token;
      t.token = s_.token;
      t.where = "the gcs config key token";
      return t;
    }
    if (s_.anonymous) {
      t.where = "the gcs config key anonymous";
      return t;
    }
    if (!s_.credentials_file.empty())
      return read_credentials_file(s_.credentials_file, "credentials_file " + s_.credentials_file, s_.token_uri);
    if (!emulator_.empty()) {
      // Google's clients talk to an emulator without credentials.
      t.where = "STORAGE_EMULATOR_HOST is set; set credentials_file or token to send credentials";
      return t;
    }
    if (std::string p = env("GOOGLE_APPLICATION_CREDENTIALS"); !p.empty())
      return read_credentials_file(p, "GOOGLE_APPLICATION_CREDENTIALS " + p, s_.token_uri);
    if (std::string p = gcloud_adc_path(); !p.empty()) return read_credentials_file(p, p, s_.token_uri);
    std::string host = env("GCE_METADATA_HOST");
    bool explicit_host = !host.empty();
    if (host.empty()) host = "169.254.169.254";
    t.metadata_base = "http://" + host;
    t.kind = TokenSource::Kind::metadata;
    t.where = explicit_host ? "GCE_METADATA_HOST" : "the metadata server";
    if (explicit_host || metadata_answers(t.metadata_base)) return t;
    TokenSource none;
    none.where = "no credentials found: GOOGLE_APPLICATION_CREDENTIALS is unset, there is no "
                 "gcloud application_default_credentials.json and no metadata server answered";
    return none;
  }

  // Whether a GCE metadata server answers at base (Google's libraries ping it the same way).
  bool metadata_answers(const std::string& base) {
    try {
      http::Url u = http::Url::parse(base + "/");
      http::Options o = http_;
      o.timeout = std::chrono::milliseconds(s_.metadata_timeout_ms);
      o.deadline = std::chrono::milliseconds(s_.metadata_timeout_ms);
      http::Client c(u.scheme, u.host, u.port, o);
      auto r = c.send({"GET", "/", {{"Metadata-Flavor", "Google"}}, ""});
      return r.header("Metadata-Flavor") == "Google";
    } catch (...) {
      return false;
    }
  }

  // Fill token_ / token_expires_ from the source (cred_mu_ held). Retries transient failures.
  void fetch_token(std::int64_t now) {
    const TokenSource& t = *source_;
    std::string url, body, what;
    Params headers;
    std::string method = "POST";
    if (t.kind == TokenSource::Kind::metadata) {
      url = t.metadata_base + "/computeMetadata/v1/instance/service-accounts/default/token";
      method = "GET";
      headers.emplace_back("Metadata-Flavor", "Google");
      what = "the metadata server " + t.metadata_base;
    } else {
      url = t.token_uri;
      headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      if (t.kind == TokenSource::Kind::service_account) {
        body = "grant_type=" + pct("urn:ietf:params:oauth:grant-type:jwt-bearer") + "&assertion=" + pct(t.jwt(s_.scope, now));
      } else {
        body = "grant_type=refresh_token&client_id=" + pct(t.client_id) + "&client_secret=" + pct(t.client_secret) +
               "&refresh_token=" + pct(t.refresh_token);
      }
      what = http::display_url(url);
    }
    const std::string who = t.describe();
    http::Url u;
    try {
      u = http::Url::parse(url);
      http::require_secure_transport(u, s_.allow_insecure_http, "the gcs config key allow_insecure_http");
    } catch (const std::exception& e) {
      throw plugin::Error("cannot get an access token for " + who + ": " + e.what(), EMBER_E_INVALID);
    }
    std::string last;
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      try {
        http::Options o = http_;
        http::Client c(u.scheme, u.host, u.port, o);
        http::Request req{method, u.target, headers, body};
        req.idempotent = true;  // a token request has no effect to repeat
        http::Response r = c.send(req);
        json::object o2 = parse_object(r.body);
        if (r.status == 200) {
          std::string tok = json_str(o2, "access_token");
          if (tok.empty()) throw plugin::Error("cannot get an access token for " + who + " from " + what + ": the answer has no access_token", EMBER_E_IO);
          token_ = tok;
          std::uint64_t expires_in = json_u64(o2, "expires_in");
          token_expires_ = static_cast<std::int64_t>(std::time(nullptr)) + static_cast<std::int64_t>(expires_in ? expires_in : 3600);
          return;
        }
        std::string code = json_str(o2, "error"), desc = json_str(o2, "error_description");
        if (code.empty()) code = "HTTP" + std::to_string(r.status);
        last = "cannot get an access token for " + who + " from " + what + ": " + code + (desc.empty() ? "" : ": " + desc) +
               " (HTTP " + std::to_string(r.status) + ")";
        retry = retryable_status(r.status);
      } catch (const http::Error& e) {
        last = "cannot get an access token for " + who + " from " + what + ": " + e.what();
        retry = e.retryable();
      }
      // The server's words may quote what we sent: never let a secret through.
      for (const std::string* secret : {&t.client_secret, &t.refresh_token})
        if (secret->size() >= 8)
          for (auto p = last.find(*secret); p != std::string::npos; p = last.find(*secret, p)) last.replace(p, secret->size(), "***");
      if (auto p = last.find("eyJ"); p != std::string::npos) last = last.substr(0, p) + "***";
      if (!retry) throw plugin::Error(last, r_status_invalid(last));
      if (attempt >= s_.max_attempts) throw plugin::Error(last + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
      backoff(attempt);
    }
  }
  static ember_status_t r_status_invalid(const std::string&) { return EMBER_E_IO; }

  Settings s_;
  std::string emulator_;  // STORAGE_EMULATOR_HOST when it chose the endpoint
  http::Url endpoint_;
  std::string base_;      // the endpoint's path prefix ("" for the root)
  http::Options http_;
  std::mutex pool_mu_;
  std::map<std::string, std::vector<std::unique_ptr<http::Client>>> pool_;
  std::mutex cred_mu_;    // guards source_, token_, token_expires_
  std::optional<TokenSource> source_;
  std::string token_;
  std::int64_t token_expires_ = 0;
  std::mutex rng_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
};

struct Meta {
  std::uint64_t size = 0;
  std::string generation, crc32c, updated;
};

Meta meta_of(const json::object& o) {
  return Meta{json_u64(o, "size"), json_str(o, "generation"), json_str(o, "crc32c"), json_str(o, "updated")};
}

// Streaming read; see the file comment.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)), next_(offset) {
    if (loc_.key.empty()) throw plugin::Error("cannot read " + loc_.url() + ": no object name", EMBER_E_INVALID);
    chunk_ = s_.settings().read_chunk_size;
    http::Response r = s_.call({"objects.get", loc_.url(), "GET", s_.object_path(loc_), {}, "", {}});
    meta_ = meta_of(parse_object(r.body));
    end_ = length == UINT64_MAX || offset + length > meta_.size ? meta_.size : offset + length;
    whole_ = offset == 0 && end_ == meta_.size && !meta_.crc32c.empty();
    fill_prefetch();
  }
  ~Reader() override {
    for (auto& f : pending_)
      if (f.valid()) f.wait();
  }

  std::size_t read(void* buf, std::size_t cap) override {
    while (pos_ == current_.size()) {
      if (pending_.empty()) {
        check_crc();
        return 0;
      }
      current_ = pending_.front().get();  // rethrows the chunk's failure
      pending_.pop_front();
      pos_ = 0;
      if (whole_) crc_ = s3::crc32c(current_, crc_);
      fill_prefetch();
    }
    std::size_t n = std::min(cap, current_.size() - pos_);
    std::memcpy(buf, current_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  void check_crc() {
    if (!whole_ || checked_) return;
    checked_ = true;
    std::string got = s3::crc32c_base64(crc_);
    if (got != meta_.crc32c)
      throw plugin::Error("gcs objects.get " + loc_.url() + ": crc32c mismatch: the object's is " + meta_.crc32c +
                              ", the bytes read have " + got + " (corrupted in transit; read it again)" + s_.context(),
                          EMBER_E_IO);
  }

  void fill_prefetch() {
    while (next_ < end_ && pending_.size() < s_.settings().max_concurrency) {
      std::uint64_t first = next_, last = std::min(end_, next_ + chunk_) - 1;
      next_ = last + 1;
      pending_.push_back(std::async(std::launch::async, [this, first, last] {
        std::string target = s_.object_path(loc_) + "?alt=media";
        if (!meta_.generation.empty()) target += "&ifGenerationMatch=" + pct(meta_.generation);
        Service::Call c{"objects.get (media)", loc_.url(), "GET", target,
                        {{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}}, "", {}};
        c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
        http::Response r = s_.call(c);
        const bool all = first == 0 && last + 1 == meta_.size;
        if (r.status != 206 && !(r.status == 200 && all))
          throw plugin::Error("gcs objects.get " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                                  std::to_string(last) + " and got HTTP " + std::to_string(r.status) +
                                  ", not 206 Partial Content" + s_.context(),
                              EMBER_E_IO);
        if (r.body.size() != last - first + 1)
          throw plugin::Error("gcs objects.get " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                                  std::to_string(last) + ", got " + std::to_string(r.body.size()) + s_.context(),
                              EMBER_E_IO);
        // x-goog-hash names the whole object's crc32c: another value is another object.
        std::string h = goog_hash_crc32c(r.header("x-goog-hash"));
        if (!h.empty() && !meta_.crc32c.empty() && h != meta_.crc32c)
          throw plugin::Error("gcs objects.get " + loc_.url() + ": the object changed while it was read (crc32c " +
                                  meta_.crc32c + ", then " + h + ")" + s_.context(),
                              EMBER_E_IO);
        return std::move(r.body);
      }));
    }
  }

  Service& s_;
  Location loc_;
  Meta meta_;
  std::uint64_t next_, end_ = 0, chunk_;
  std::string current_;
  std::size_t pos_ = 0;
  std::uint32_t crc_ = 0;
  bool whole_ = false, checked_ = false;
  std::deque<std::future<std::string>> pending_;
};

// Atomic streaming write; see the file comment.
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc) : s_(s), loc_(std::move(loc)) {
    if (loc_.key.empty()) throw plugin::Error("cannot write to " + loc_.url() + ": no object name", EMBER_E_INVALID);
    chunk_ = s_.settings().chunk_size;
  }
  ~Writer() override {
    if (inflight_.valid()) inflight_.wait();
    if (!committed_ && !session_.empty()) cancel();
  }

  void write(const void* data, std::size_t n) override {
    if (committed_) throw plugin::Error("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw plugin::Error("cannot write to " + loc_.url() + ": an earlier chunk failed: " + failure_, EMBER_E_IO);
    const char* p = static_cast<const char*>(data);
    while (n) {
      if (buf_.capacity() < chunk_) buf_.reserve(chunk_);
      std::size_t take = std::min<std::size_t>(n, chunk_ - buf_.size());
      buf_.append(p, take);
      p += take;
      n -= take;
      if (buf_.size() == chunk_) ship();
    }
  }

  void commit() override {
    if (committed_) return;
    if (failed_)
      throw plugin::Error("cannot commit " + loc_.url() + ": an earlier chunk failed (the upload was cancelled): " + failure_, EMBER_E_IO);
    try {
      json::object obj;
      if (session_.empty()) {
        obj = multipart();
      } else {
        wait_inflight();
        crc_ = s3::crc32c(buf_, crc_);
        obj = send_chunk(buf_, sent_, true);
        sent_ += buf_.size();
      }
      verify(obj);
    } catch (const std::exception& e) {
      fail(e.what());
      throw;
    }
    committed_ = true;
    buf_ = std::string();
    spare_ = std::string();
  }

 private:
  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  void wait_inflight() {
    if (!inflight_.valid()) return;
    auto f = std::move(inflight_);
    f.get();
  }

  // A full chunk goes to the session in the background; the writer fills the other buffer.
  void ship() {
    try {
      if (session_.empty()) open_session();
      wait_inflight();
    } catch (const std::exception& e) {
      fail(e.what());
      throw;
    }
    std::swap(buf_, spare_);
    buf_.clear();
    std::uint64_t offset = sent_;
    sent_ += spare_.size();
    inflight_ = std::async(std::launch::async, [this, offset] {
      crc_ = s3::crc32c(spare_, crc_);  // in order: one chunk in flight at a time
      send_chunk(spare_, offset, false);
    });
  }

  std::string shown() const { return loc_.url(); }

  void open_session() {
    json::object meta{{"name", loc_.key}, {"contentType", "application/octet-stream"}};
    std::string body = json::serialize(meta);
    Service::Call c{"objects.insert (resumable)", shown(), "POST",
                    s_.upload_path(loc_) + "?uploadType=resumable&name=" + pct(loc_.key),
                    {{"Content-Type", "application/json; charset=UTF-8"}, {"X-Upload-Content-Type", "application/octet-stream"}},
                    body, {}};
    http::Response r = s_.call(c);
    session_ = r.header("Location");
    if (session_.empty())
      throw plugin::Error("gcs objects.insert (resumable) " + shown() + ": the answer has no Location (session URI)" + s_.context(), EMBER_E_IO);
    if (session_.front() == '/') session_ = s_.endpoint_text() + session_;
  }

  // The bytes the session holds, from a 308's Range ("bytes=0-N"); 0 when it has none.
  static std::uint64_t persisted(const http::Response& r) {
    std::string range = r.header("Range");
    auto dash = range.rfind('-');
    if (range.empty() || dash == std::string::npos) return 0;
    return std::stoull(range.substr(dash + 1)) + 1;
  }

  // Send data (the object's bytes from offset) to the session; final: the last chunk, with the
  // total and the object's crc32c. Resumes after failures from what the session reports it
  // holds. Returns the object resource after the final chunk.
  json::object send_chunk(const std::string& data, std::uint64_t offset, bool final) {
    const std::uint64_t end = offset + data.size();
    std::uint64_t done = offset;
    std::string last;
    int attempt = 0;
    bool query = false;  // ask the session what it holds before sending more
    for (;;) {
      Service::Call c{final ? "objects.insert (final chunk)" : "objects.insert (chunk)", shown(), "PUT", session_, {}, "", {}};
      if (query) {
        c.headers.emplace_back("Content-Range", final ? "bytes */" + std::to_string(end) : std::string("bytes */*"));
      } else {
        c.body = std::string_view(data).substr(done - offset);
        std::string range = done == end ? "bytes */" : "bytes " + std::to_string(done) + "-" + std::to_string(end - 1) + "/";
        c.headers.emplace_back("Content-Range", range + (final ? std::to_string(end) : "*"));
        c.headers.emplace_back("Content-Type", "application/octet-stream");
        if (final) c.headers.emplace_back("X-Goog-Hash", "crc32c=" + s3::crc32c_base64(crc_));
      }
      bool transient = false;
      try {
        http::Response r = s_.send_once(c);
        if (r.status == 200 || r.status == 201) {
          if (!final)
            throw plugin::Error("gcs " + std::string(c.op) + " " + shown() + ": the session finished the object at " +
                                    std::to_string(done) + " bytes before its last chunk" + s_.context(),
                                EMBER_E_IO);
          return parse_object(r.body);
        }
        if (r.status == 308) {
          std::uint64_t held = persisted(r);
          if (held < offset || held > end)
            throw plugin::Error("gcs " + std::string(c.op) + " " + shown() + ": the session holds " + std::to_string(held) +
                                    " bytes, outside this chunk's " + std::to_string(offset) + "-" + std::to_string(end) + s_.context(),
                                EMBER_E_IO);
          bool progress = held > done || query;
          done = held;
          query = false;
          if (!final && done == end) return {};
          if (progress) continue;  // the rest of the chunk, at once
          last = "gcs " + std::string(c.op) + " " + shown() + ": the session kept " + std::to_string(held) + " of " +
                 std::to_string(end) + " bytes" + s_.context();
          transient = true;
        } else if (Service::retryable_status(r.status)) {
          last = s_.describe(c, r);
          transient = true;
        } else {
          // 404/410: the session expired or was cancelled; 4xx: refused (a crc32c mismatch is 400).
          throw plugin::Error(s_.describe(c, r), EMBER_E_IO);
        }
      } catch (const http::Error& e) {
        last = s_.prefix(c) + ": " + e.what() + s_.context();
        if (!e.retryable()) throw plugin::Error(last, EMBER_E_IO);
        transient = true;
      }
      if (transient) {
        if (++attempt >= s_.settings().max_attempts)
          throw plugin::Error(last + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
        s_.backoff(attempt);
        query = true;
      }
    }
  }

  // An object under one chunk: one multipart/related upload (metadata with its crc32c, then the
  // bytes); GCS refuses it (400) when the bytes do not match the crc32c.
  json::object multipart() {
    crc_ = s3::crc32c(buf_, crc_);
    const std::string crc = s3::crc32c_base64(crc_);
    json::object meta{{"name", loc_.key}, {"contentType", "application/octet-stream"}, {"crc32c", crc}};
    std::string boundary = "ember_gcs_" + std::to_string(std::random_device{}()) + std::to_string(buf_.size());
    std::string body = "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + json::serialize(meta) +
                       "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n";
    body.reserve(body.size() + buf_.size() + boundary.size() + 8);
    body += buf_;
    body += "\r\n--" + boundary + "--\r\n";
    Service::Call c{"objects.insert (multipart)", shown(), "POST", s_.upload_path(loc_) + "?uploadType=multipart",
                    {{"Content-Type", "multipart/related; boundary=" + boundary}, {"X-Goog-Hash", "crc32c=" + crc}},
                    body, {}};
    c.idempotent = true;  // the whole object each time: repeating it stores the same bytes
    sent_ = buf_.size();
    return parse_object(s_.call(c).body);
  }

  // The stored object must have what we sent.
  void verify(const json::object& obj) {
    Meta m = meta_of(obj);
    std::string want = s3::crc32c_base64(crc_);
    if (obj.if_contains("size") && m.size != sent_)
      throw plugin::Error("gcs " + shown() + ": wrote " + std::to_string(sent_) + " bytes but the stored object has " +
                              std::to_string(m.size) + s_.context(),
                          EMBER_E_IO);
    if (!m.crc32c.empty() && m.crc32c != want)
      throw plugin::Error("gcs " + shown() + ": the stored object's crc32c is " + m.crc32c + ", the data's is " + want + s_.context(),
                          EMBER_E_IO);
  }

  // Cancel the session (DELETE answers 499): nothing is published. Best effort.
  void cancel() {
    try {
      Service::Call c{"objects.insert (cancel)", shown(), "DELETE", session_, {}, "", {404, 410, 499}};
      s_.send_once(c);
    } catch (...) {
    }
    session_.clear();
  }

  Service& s_;
  Location loc_;
  std::uint64_t chunk_ = 0, sent_ = 0;  // sent_: bytes handed to uploads so far
  std::string buf_, spare_, session_, failure_;
  std::uint32_t crc_ = 0;
  bool committed_ = false, failed_ = false;
  std::future<void> inflight_;
};

class GcsPlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "gs,gcs";

  GcsPlugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the gcs config key verify_tls"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return std::make_unique<Reader>(service_, parse_location(url), offset, length);
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    return std::make_unique<Writer>(service_, parse_location(url));
  }

  Entry stat(std::string_view url) override {
    Location loc = parse_location(url);
    Entry e;
    e.url = std::string(url);
    if (!loc.key.empty() && loc.key.back() != '/') {
      http::Response r = service_.call({"objects.get", loc.url(), "GET", service_.object_path(loc), {}, "", {404}});
      if (r.status != 404) {
        Meta m = meta_of(parse_object(r.body));
        e.size = m.size;
        e.mtime_ns = parse_rfc3339_ns(m.updated);
        return e;
      }
    }
    // Not an object: a "directory" when some name starts with key + "/" (the bucket root is one).
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    std::string target = service_.bucket_path(loc) + "?" + query_string({{"prefix", dir}, {"maxResults", "1"}});
    http::Response r = service_.call({"objects.list", loc.scheme + "://" + loc.bucket + "/" + dir, "GET", target, {}, "", {}});
    json::object o = parse_object(r.body);
    bool any = (o.if_contains("items") && o["items"].is_array() && !o["items"].as_array().empty()) ||
               (o.if_contains("prefixes") && o["prefixes"].is_array() && !o["prefixes"].as_array().empty());
    if (!any && !dir.empty()) throw plugin::NotFound("no such object or prefix: " + std::string(url));
    e.is_dir = true;
    return e;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    const std::string root = loc.scheme + "://" + loc.bucket + "/";
    std::vector<Entry> entries;
    std::string token;
    std::set<std::string> seen;
    for (;;) {
      Params q{{"prefix", dir}, {"delimiter", "/"}, {"maxResults", std::to_string(service_.settings().max_results)}};
      if (!token.empty()) q.emplace_back("pageToken", token);
      http::Response r = service_.call({"objects.list", root + dir, "GET", service_.bucket_path(loc) + "?" + query_string(q), {}, "", {}});
      json::object o = parse_object(r.body);
      if (const auto* items = o.if_contains("items"); items && items->is_array())
        for (const auto& it : items->as_array()) {
          if (!it.is_object()) continue;
          const auto& io = it.as_object();
          std::string name = json_str(io, "name");
          if (name == dir) continue;  // a "directory marker" object, not an entry
          Meta m = meta_of(io);
          entries.push_back({root + name, false, m.size, parse_rfc3339_ns(m.updated)});
        }
      if (const auto* pre = o.if_contains("prefixes"); pre && pre->is_array())
        for (const auto& p : pre->as_array()) {
          if (!p.is_string()) continue;
          std::string name(p.as_string());
          if (!name.empty() && name.back() == '/') name.pop_back();
          entries.push_back({root + name, true, 0, 0});
        }
      token = json_str(o, "nextPageToken");
      if (token.empty()) break;
      if (!seen.insert(token).second)
        throw plugin::Error("gcs objects.list " + root + dir + ": the server repeated a pageToken; the listing would never end" +
                                service_.context(),
                            EMBER_E_IO);
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.key.empty()) throw plugin::Error("cannot remove " + std::string(url) + ": no object name", EMBER_E_INVALID);
    http::Response r = service_.call({"objects.delete", loc.url(), "DELETE", service_.object_path(loc), {}, "", {404}});
    if (r.status == 404) throw plugin::NotFound("no such object: " + loc.url());
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::gcs

EMBER_PLUGIN(ember::gcs::GcsPlugin, "gcs", "1.0.0",
             "gs:// and gcs:// storage (Google Cloud Storage JSON API): resumable chunked uploads, crc32c, "
             "service account / gcloud / metadata credentials, retries",
             ember::gcs::kSchema)
