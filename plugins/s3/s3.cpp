// s3: the "s3://bucket/key" scheme (ember.storage/1) over S3's REST API — AWS, or any
// S3-compatible endpoint (MinIO, Ceph, GCS's XML API with HMAC keys, a local server).
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified); requests are signed with SigV4
// (sigv4.hpp) with the payload hash signed, never UNSIGNED-PAYLOAD. Keys are taken literally
// from the URL: no percent-decoding and no "..", "." or "//" normalisation, so every key
// round-trips and nothing written under a prefix lands outside it.
//
// Writes stream: bytes fill one part buffer; each full part is uploaded in the background
// (multipart upload, at most max_concurrency parts in flight, so memory is bounded by
// (max_concurrency + 1) x part_size); an object smaller than one part is one PutObject at commit.
// Every PutObject and UploadPart carries its checksum (x-amz-checksum-crc32c by default,
// Content-MD5 with checksum "md5"), which S3 verifies; commit completes the upload (listing
// each part's checksum) and checks the final size; closing without commit aborts it.
// Reads stream: ranged GETs of read_chunk_size, up to max_concurrency prefetched.
#include "aws_config.hpp"
#include "checksum.hpp"
#include "sigv4.hpp"

#include <ember/net/http.hpp>
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ember::s3 {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "endpoint_url": {"type": "string", "default": ""},
    "region": {"type": "string", "default": ""},
    "addressing_style": {"type": "string", "enum": ["auto", "path", "virtual"], "default": "auto"},
    "profile": {"type": "string", "default": ""},
    "access_key_id": {"type": "string", "default": ""},
    "secret_access_key": {"type": "string", "writeOnly": true, "default": ""},
    "session_token": {"type": "string", "writeOnly": true, "default": ""},
    "ca_bundle": {"type": "string", "default": ""},
    "verify_tls": {"type": "boolean", "default": true},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "part_size": {"type": "integer", "minimum": 5242880, "maximum": 5368709120, "default": 16777216},
    "read_chunk_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 8388608},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
    "retry_base_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 100},
    "retry_max_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 20000},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 86400000, "default": 30000},
    "max_keys": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
    "dot_segments": {"type": "string", "enum": ["refuse", "allow"], "default": "refuse"},
    "checksum": {"type": "string", "enum": ["crc32c", "md5"], "default": "crc32c"},
    "request_deadline_ms": {"type": "integer", "minimum": 0, "maximum": 86400000, "default": 600000},
    "allow_insecure_http": {"type": "boolean", "default": false}
  }
})";

struct Settings {
  std::string endpoint_url, region, addressing_style = "auto", profile, ca_bundle, dot_segments = "refuse";
  Checksum checksum = Checksum::crc32c;
  Credentials config_creds;
  bool verify_tls = true, allow_insecure_http = false;
  std::size_t max_concurrency = 4;
  std::size_t part_size = 16 * kMiB;
  std::size_t read_chunk_size = 8 * kMiB;
  int max_attempts = 5;
  int retry_base_ms = 100, retry_max_ms = 20000, timeout_ms = 30000;
  std::int64_t request_deadline_ms = 600000;  // one attempt of one request, connect to last byte
  int max_keys = 1000;

  static Settings from_json(std::string_view text) {
    Settings s;
    boost::system::error_code ec;
    auto v = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) throw std::runtime_error("s3 config: not a JSON object");
    const auto& o = v.as_object();
    auto str = [&](const char* k, std::string& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_string()) throw std::runtime_error(std::string("s3 config: ") + k + ": expected a string");
        out = std::string(x->as_string());
      }
    };
    auto num = [&](const char* k, auto& out, std::int64_t lo) {
      if (const auto* x = o.if_contains(k)) {
        std::int64_t n = x->is_int64() ? x->as_int64() : x->is_uint64() ? static_cast<std::int64_t>(x->as_uint64())
                                       : x->is_double() ? static_cast<std::int64_t>(x->as_double()) : lo - 1;
        if (n < lo) throw std::runtime_error(std::string("s3 config: ") + k + ": expected an integer >= " + std::to_string(lo));
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
      }
    };
    str("endpoint_url", s.endpoint_url);
    str("region", s.region);
    str("addressing_style", s.addressing_style);
    str("profile", s.profile);
    str("access_key_id", s.config_creds.access_key_id);
    str("secret_access_key", s.config_creds.secret_access_key);
    str("session_token", s.config_creds.session_token);
    str("ca_bundle", s.ca_bundle);
    str("dot_segments", s.dot_segments);
    std::string checksum = "crc32c";
    str("checksum", checksum);
    if (const auto* x = o.if_contains("verify_tls")) s.verify_tls = x->as_bool();
    if (const auto* x = o.if_contains("allow_insecure_http")) s.allow_insecure_http = x->as_bool();
    num("request_deadline_ms", s.request_deadline_ms, 0);
    num("max_concurrency", s.max_concurrency, 1);
    num("part_size", s.part_size, static_cast<std::int64_t>(5 * kMiB));
    num("read_chunk_size", s.read_chunk_size, 65536);
    num("max_attempts", s.max_attempts, 1);
    num("retry_base_ms", s.retry_base_ms, 1);
    num("retry_max_ms", s.retry_max_ms, 1);
    num("timeout_ms", s.timeout_ms, 1);
    num("max_keys", s.max_keys, 1);
    if (s.addressing_style != "auto" && s.addressing_style != "path" && s.addressing_style != "virtual")
      throw std::runtime_error("s3 config: addressing_style: expected auto, path or virtual, not '" + s.addressing_style + "'");
    if (s.dot_segments != "refuse" && s.dot_segments != "allow")
      throw std::runtime_error("s3 config: dot_segments: expected refuse or allow, not '" + s.dot_segments + "'");
    if (checksum != "crc32c" && checksum != "md5")
      throw std::runtime_error("s3 config: checksum: expected crc32c or md5, not '" + checksum + "'");
    s.checksum = checksum == "md5" ? Checksum::md5 : Checksum::crc32c;
    return s;
  }
};

// A failed S3 operation; the message is the one line a user sees.
// Every failure carries the ABI status the host gets (plugin.hpp's Error: the Storage helper
// turns it into the status and last_error).
using S3Error = plugin::Error;

struct Location {
  std::string bucket, key;
  std::string url() const { return "s3://" + bucket + "/" + key; }
};

// "s3://bucket/key/with/anything" -> {bucket, key}; the key is taken byte for byte.
Location parse_location(std::string_view url) {
  std::string_view rest = url;
  auto p = rest.find("://");
  if (p == std::string_view::npos) throw S3Error("not an s3:// URL: " + std::string(url), EMBER_E_INVALID);
  rest.remove_prefix(p + 3);
  auto slash = rest.find('/');
  Location loc;
  loc.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) loc.key = std::string(rest.substr(slash + 1));
  if (loc.bucket.empty()) throw S3Error("no bucket in URL " + std::string(url) + " (expected s3://bucket/key)", EMBER_E_INVALID);
  return loc;
}

std::string amz_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::int64_t parse_http_date_ns(const std::string& s) {
  std::tm tm{};
  if (s.empty() || !strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000000;
}

using Tree = boost::property_tree::ptree;

// Parse an XML answer; an empty tree when it is not XML (s3rver's HTML 404s, proxies).
Tree parse_xml(const std::string& body) {
  Tree t;
  if (body.empty()) return t;
  try {
    std::istringstream in(body);
    boost::property_tree::read_xml(in, t);
  } catch (const std::exception&) {
    return Tree();
  }
  return t;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

bool dns_compatible(const std::string& bucket, bool tls) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  for (char c : bucket)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' ||
          c == '.'))
      return false;
  // A dotted bucket name breaks the wildcard certificate of *.s3.amazonaws.com.
  if (tls && bucket.find('.') != std::string::npos) return false;
  return bucket.front() != '-' && bucket.back() != '-';
}

// One S3 endpoint with its credentials, a keep-alive connection pool per host, signing and
// retries. Thread-safe.
class Service {
 public:
  explicit Service(Settings s) : s_(std::move(s)) {
    profile_ = resolve_profile(s_.profile);
    region_ = resolve_region(s_.region, profile_);
    std::string ep = resolve_endpoint(s_.endpoint_url, profile_);
    custom_endpoint_ = !ep.empty();
    if (ep.empty()) ep = "https://s3." + region_ + ".amazonaws.com";
    try {
      endpoint_ = http::Url::parse(ep);
      // Every request is signed, and a session token travels as a header: never in clear
      // beyond this machine unless the config says so.
      http::require_secure_transport(endpoint_, s_.allow_insecure_http, "the s3 config key allow_insecure_http");
    } catch (const std::exception& e) {
      throw std::runtime_error("s3 config: endpoint_url: " + std::string(e.what()));
    }
    // Path-style for custom endpoints by default: a local server or MinIO has no wildcard DNS.
    path_style_ = s_.addressing_style == "path" || (s_.addressing_style == "auto" && custom_endpoint_);
    if (s_.ca_bundle.empty()) s_.ca_bundle = env("AWS_CA_BUNDLE");
    http_.verify_tls = s_.verify_tls;
    http_.ca_file = s_.ca_bundle;
    http_.timeout = std::chrono::milliseconds(s_.timeout_ms);
    http_.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
    // S3's XML answers (lists of 1000 keys, errors) are far below this; object bytes are read
    // with a limit of their own (Call::body_limit).
    http_.max_body = kXmlAnswerLimit;
  }

  static constexpr std::uint64_t kXmlAnswerLimit = 16 * kMiB;

  const Settings& settings() const { return s_; }
  std::string endpoint_text() const { return endpoint_.scheme + "://" + endpoint_.host + ":" + endpoint_.port; }
  bool tls() const { return endpoint_.scheme == "https"; }

  struct Call {
    const char* op;             // "GetObject", for messages
    const Location* loc;
    std::string method;
    Params query;
    Params headers;             // beyond host / x-amz-*: Range, Content-MD5, Content-Type...
    std::string_view body;      // borrowed until call returns
    std::vector<int> accept;    // non-2xx statuses handed back instead of thrown
    std::string shown_url{};    // the URL messages name, when not loc's (a listed prefix)
    std::string payload_hash{}; // hex SHA-256 of body when the caller already has it
    std::uint64_t body_limit = 0;  // the answer's size limit; 0: kXmlAnswerLimit
  };

  // Sign, send, retry; returns a 2xx answer or one listed in accept, else throws S3Error.
  http::Response call(Call c) {
    check_dot_segments(c);
    bool path_style = path_style_ || !dns_compatible(c.loc->bucket, endpoint_.scheme == "https");
    std::string host = path_style ? endpoint_.host : c.loc->bucket + "." + endpoint_.host;
    std::string base = endpoint_.target == "/" ? std::string() : endpoint_.target;
    if (!base.empty() && base.back() == '/') base.pop_back();
    std::string path = base + (path_style ? "/" + uri_encode(c.loc->bucket) : std::string());
    if (!c.loc->key.empty() || !path_style) path += "/" + uri_encode(c.loc->key, /*encode_slash=*/false);
    std::string query = canonical_query(c.query);
    std::string host_header = host;
    bool default_port = (endpoint_.scheme == "https" && endpoint_.port == "443") ||
                        (endpoint_.scheme == "http" && endpoint_.port == "80");
    if (!default_port) host_header += ":" + endpoint_.port;
    const std::string payload_hash = !c.payload_hash.empty() ? c.payload_hash
                                     : c.body.empty()         ? std::string(kEmptySha256)
                                                              : sha256_hex(c.body);

    http::Request req;
    req.method = c.method;
    req.target = path + (query.empty() ? "" : "?" + query);
    req.body = c.body;
    req.body_limit = c.body_limit;

    std::string last;
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 1;; ++attempt) {
      auto cred = credentials(c);
      Params headers = c.headers;
      headers.emplace_back("host", host_header);
      headers.emplace_back("x-amz-content-sha256", payload_hash);
      std::string date = amz_now();
      headers.emplace_back("x-amz-date", date);
      if (!cred.creds.session_token.empty()) headers.emplace_back("x-amz-security-token", cred.creds.session_token);
      SigningInput in{req.method, path, query, headers, payload_hash};
      headers.emplace_back("Authorization", sign(cred.creds, region_, "s3", date, in).authorization);
      req.headers = std::move(headers);

      bool retry = false;
      try {
        Lease lease(*this, host);
        http::Response res = lease->send(req);
        if ((res.status >= 200 && res.status < 300) ||
            std::find(c.accept.begin(), c.accept.end(), res.status) != c.accept.end())
          return res;
        Tree t = parse_xml(res.body);
        std::string code = t.get<std::string>("Error.Code", "");
        retry = res.status == 500 || res.status == 502 || res.status == 503 || res.status == 504 ||
                res.status == 429 || (res.status == 400 && code == "RequestTimeout");
        last = describe(c, res, t, cred);
        if (!retry) throw S3Error(last, res.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
      } catch (const http::Error& e) {
        // An answer over its limit or a certificate that fails verification fails the same way
        // next time: only network trouble is retried.
        retry = e.retryable();
        last = prefix(c) + ": " + e.what() + context();
        if (!retry) throw S3Error(last, EMBER_E_IO);
      }
      if (attempt >= s_.max_attempts)
        throw S3Error(last + (attempt > 1 ? " (gave up after " + std::to_string(attempt) + " attempts)" : ""), EMBER_E_IO);
      // Exponential backoff with full jitter (AWS's recommendation): uniform in [0, min(cap, base * 2^n)].
      double cap = std::min<double>(s_.retry_max_ms, static_cast<double>(s_.retry_base_ms) * double(1u << std::min(attempt, 20)));
      std::uniform_real_distribution<double> dist(0.0, cap);
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(dist(rng) * 1000)));
    }
  }

  // A key with a "." or ".." segment is legal in S3, but servers and proxies that normalise
  // paths (s3rver does) would store it under another key, possibly outside its prefix. Refused
  // unless dot_segments is "allow"; ".." inside a name ("a..b") is just a name.
  void check_dot_segments(const Call& c) const {
    if (s_.dot_segments == "allow") return;
    std::string_view k = c.loc->key;
    for (std::size_t start = 0; start <= k.size();) {
      auto end = k.find('/', start);
      std::string_view seg = k.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
      if (seg == "." || seg == "..")
        throw S3Error(prefix(c) + ": the key has a '" + std::string(seg) +
                          "' path segment, which servers that normalise paths would store under another key; "
                          "set the s3 config key dot_segments to \"allow\" to send it literally",
                      EMBER_E_INVALID);
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
  }

  std::string prefix(const Call& c) const {
    return "S3 " + std::string(c.op) + " " + (c.shown_url.empty() ? c.loc->url() : c.shown_url);
  }
  std::string context() const { return " (endpoint " + endpoint_text() + ", region " + region_ + ")"; }

 private:
  // A pooled connection for one host, returned to the pool at scope exit.
  class Lease {
   public:
    Lease(Service& s, const std::string& host) : s_(s), host_(host) {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[host_];
      if (!idle.empty()) {
        client_ = std::move(idle.back());
        idle.pop_back();
      }
      if (!client_) client_ = std::make_unique<http::Client>(s_.endpoint_.scheme, host_, s_.endpoint_.port, s_.http_);
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[host_];
      if (idle.size() <= s_.s_.max_concurrency + 1) idle.push_back(std::move(client_));
    }
    http::Client* operator->() { return client_.get(); }

   private:
    Service& s_;
    std::string host_;
    std::unique_ptr<http::Client> client_;
  };

  SourcedCredentials credentials(const Call& c) {
    std::lock_guard<std::mutex> lock(cred_mu_);
    std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    if (!creds_ || (creds_->expires_at >= 0 && now > creds_->expires_at - 300)) {
      try {
        creds_ = resolve_credentials(s_.config_creds, profile_);
      } catch (const std::exception& e) {
        throw S3Error(prefix(c) + ": " + e.what() + context(), EMBER_E_INVALID);
      }
    }
    return *creds_;
  }

  std::string describe(const Call& c, const http::Response& res, const Tree& t, const SourcedCredentials& cred) const {
    std::string code = t.get<std::string>("Error.Code", "");
    std::string message = t.get<std::string>("Error.Message", "");
    if (code.empty()) {
      // HEAD answers carry no body; name the status as S3 would.
      switch (res.status) {
        case 301: code = "PermanentRedirect"; break;
        case 400: code = "BadRequest"; break;
        case 403: code = "AccessDenied"; break;
        case 404: code = c.loc->key.empty() ? "NoSuchBucket" : "NotFound"; break;
        case 405: code = "MethodNotAllowed"; break;
        case 503: code = "SlowDown"; break;
        default: code = "HTTP" + std::to_string(res.status);
      }
      if (message.empty() && c.method == "HEAD") message = "(a HEAD answer has no error body)";
    }
    std::string out = prefix(c) + ": " + code + (message.empty() ? "" : ": " + message) + " (HTTP " +
                      std::to_string(res.status) + ", endpoint " + endpoint_text() + ", region " + region_;
    if (std::string br = res.header("x-amz-bucket-region"); !br.empty() && br != region_)
      out += "; the bucket is in region " + br;
    if (res.status == 403 || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
        code == "AuthorizationHeaderMalformed" || code == "ExpiredToken" || code == "InvalidToken")
      out += "; access key " + cred.creds.redacted_id() + " from " + cred.source;
    if (std::string id = res.header("x-amz-request-id"); !id.empty()) out += "; request id " + id;
    return out + ")";
  }

  Settings s_;
  std::string profile_, region_;
  bool custom_endpoint_ = false, path_style_ = false;
  http::Url endpoint_;
  http::Options http_;
  std::mutex pool_mu_;
  std::map<std::string, std::vector<std::unique_ptr<http::Client>>> pool_;
  std::mutex cred_mu_;
  std::optional<SourcedCredentials> creds_;
};

// Streaming read: a HEAD for the size and ETag, then ranged GETs of read_chunk_size, up to
// max_concurrency in flight, each pinned to that ETag (If-Match) so a replaced object is an
// error, not a mix of two versions. The HEAD first (rather than a first ranged GET) because
// servers disagree on ranges over empty objects (416 from AWS, a broken 206 from s3rver).
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)), next_(offset) {
    chunk_ = s_.settings().read_chunk_size;
    http::Response h = s_.call({"HeadObject", &loc_, "HEAD", {}, {}, "", {301, 400, 403, 404, 405, 409, 412}});
    if (h.status >= 300) {
      // A HEAD answer has no body: ask again with a GET to report S3's code (NoSuchKey,
      // NoSuchBucket, AccessDenied...) and message.
      s_.call({"GetObject", &loc_, "GET", {}, {{"Range", "bytes=0-0"}}, "", {}});
      throw S3Error("S3 HeadObject " + loc_.url() + ": HTTP " + std::to_string(h.status) + s_.context(),
                    h.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
    }
    std::string len = h.header("Content-Length");
    std::uint64_t size = len.empty() ? 0 : std::stoull(len);
    etag_ = h.header("ETag");
    end_ = length == UINT64_MAX || offset + length > size ? size : offset + length;
    fill_prefetch();
  }
  ~Reader() override {
    for (auto& f : pending_)
      if (f.valid()) f.wait();
  }

  std::size_t read(void* buf, std::size_t cap) override {
    while (pos_ == current_.size()) {
      if (pending_.empty()) return 0;
      current_ = pending_.front().get();  // rethrows the chunk's failure
      pending_.pop_front();
      pos_ = 0;
      fill_prefetch();
    }
    std::size_t n = std::min(cap, current_.size() - pos_);
    std::memcpy(buf, current_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  void fill_prefetch() {
    while (next_ < end_ && pending_.size() < s_.settings().max_concurrency) {
      std::uint64_t first = next_, last = std::min(end_, next_ + chunk_) - 1;
      next_ = last + 1;
      pending_.push_back(std::async(std::launch::async, [this, first, last] {
        Params h{{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}};
        if (!etag_.empty()) h.emplace_back("If-Match", etag_);
        Service::Call c{"GetObject", &loc_, "GET", {}, h, "", {}};
        // The range itself; room for an error document when the answer is one.
        c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
        http::Response r = s_.call(std::move(c));
        // A server that ignores Range sends the whole object for every chunk: refused (the
        // body limit stops a large one before it is read), not sliced.
        if (r.status != 206)
          throw S3Error("S3 GetObject " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                            std::to_string(last) + " and got HTTP " + std::to_string(r.status) +
                            ", not 206 Partial Content: the server ignored the Range header" + s_.context(),
                        EMBER_E_IO);
        if (r.body.size() != last - first + 1)
          throw S3Error("S3 GetObject " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                            std::to_string(last) + ", got " + std::to_string(r.body.size()) + s_.context(),
                        EMBER_E_IO);
        return std::move(r.body);
      }));
    }
  }

  Service& s_;
  Location loc_;
  std::uint64_t next_, end_, chunk_;
  std::string etag_, current_;
  std::size_t pos_ = 0;
  std::deque<std::future<std::string>> pending_;
};

// Atomic streaming write; see the file comment. Each part's checksum and signed SHA-256 are
// computed on the part's own worker thread, in one pass over its buffer, so the writer's
// thread only copies bytes in; finished part buffers are reused (no fresh pages to fault in
// and zero for every part), and at most max_concurrency + 1 of them exist at once.
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc) : s_(s), loc_(std::move(loc)) {
    if (loc_.key.empty()) throw S3Error("cannot write to " + loc_.url() + ": no object key", EMBER_E_INVALID);
    part_size_ = s_.settings().part_size;
  }
  ~Writer() override {
    drain();
    if (!committed_ && !upload_id_.empty()) abort();
  }

  void write(const void* data, std::size_t n) override {
    const char* p = static_cast<const char*>(data);
    if (committed_) throw S3Error("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw S3Error("cannot write to " + loc_.url() + ": an earlier part failed: " + failure_, EMBER_E_IO);
    while (n) {
      if (buf_.capacity() < part_size_) take_buffer();
      std::size_t take = std::min(n, part_size_ - buf_.size());
      buf_.append(p, take);
      p += take;
      n -= take;
      total_ += take;
      if (buf_.size() == part_size_) ship_part();
    }
  }

  void commit() override {
    if (committed_) return;
    // A part that failed (reported by an earlier write, and the upload aborted) leaves a gap:
    // never publish what is left, as a PutObject of the last buffer would.
    if (failed_)
      throw S3Error("cannot commit " + loc_.url() + ": an earlier part failed (the upload was aborted): " + failure_,
                    EMBER_E_IO);
    try {
      if (upload_id_.empty()) {
        BodyDigests d = body_digests(buf_, s_.settings().checksum);
        Service::Call c{"PutObject", &loc_, "PUT", {},
                        {{d.header_name, d.header_value}, {"Content-Type", "application/octet-stream"}}, buf_, {}};
        c.payload_hash = d.sha256_hex;
        check_echoed_checksum(s_.call(std::move(c)), d, "PutObject");
      } else {
        if (!buf_.empty()) ship_part();
        while (!inflight_.empty()) {
          auto f = std::move(inflight_.front());
          inflight_.pop_front();
          f.get();
        }
        complete();
      }
    } catch (const std::exception& e) {
      fail(e.what());
      drain();
      if (!upload_id_.empty()) abort();
      upload_id_.clear();
      throw;
    }
    committed_ = true;
    release_buffers();
    verify_size();
  }

 private:
  struct Part {
    std::string etag, checksum;  // checksum: the crc32c part checksum, for CompleteMultipartUpload
  };

  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  // Wait for every part in flight, ignoring their failures (the caller is aborting or has
  // already reported one).
  void drain() {
    for (auto& f : inflight_) {
      try {
        f.get();
      } catch (...) {
      }
    }
    inflight_.clear();
  }

  // buf_ becomes an empty buffer of part_size_ capacity: a finished part's, else a new one.
  void take_buffer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!spare_.empty()) {
        buf_.swap(spare_.back());
        spare_.pop_back();
      }
    }
    buf_.clear();
    if (buf_.capacity() < part_size_) buf_.reserve(part_size_);
  }

  void release_buffers() {
    buf_ = std::string();
    std::lock_guard<std::mutex> lock(mu_);
    spare_.clear();
  }

  // A server that verified the checksum may echo it; one that disagrees with ours is an error.
  void check_echoed_checksum(const http::Response& r, const BodyDigests& d, const std::string& what) const {
    if (d.header_name == "Content-MD5") return;
    std::string echoed = r.header(d.header_name);
    if (!echoed.empty() && echoed != d.header_value)
      throw S3Error("S3 " + what + " " + loc_.url() + ": the server's " + d.header_name + " is " + echoed +
                        ", the data's is " + d.header_value + s_.context(),
                    EMBER_E_IO);
  }

  void ship_part() {
    if (upload_id_.empty()) create();
    // Bounded memory: wait for the oldest part when max_concurrency are in flight.
    while (inflight_.size() >= s_.settings().max_concurrency) {
      auto f = std::move(inflight_.front());
      inflight_.pop_front();
      try {
        f.get();
      } catch (const std::exception& e) {
        fail(e.what());
        drain();
        abort();
        upload_id_.clear();
        throw;
      }
    }
    int number = next_part_++;
    std::string body;
    body.swap(buf_);
    inflight_.push_back(std::async(std::launch::async, [this, number, b = std::move(body)]() mutable {
      // The buffer goes back to the pool however the upload ends.
      struct Recycle {
        Writer& w;
        std::string& b;
        ~Recycle() {
          std::lock_guard<std::mutex> lock(w.mu_);
          w.spare_.push_back(std::move(b));
        }
      } recycle{*this, b};
      const std::string what = "UploadPart part " + std::to_string(number) + " of";
      BodyDigests d = body_digests(b, s_.settings().checksum);
      Service::Call c{"UploadPart", &loc_, "PUT",
                      {{"partNumber", std::to_string(number)}, {"uploadId", upload_id_}},
                      {{d.header_name, d.header_value}}, b, {}};
      c.payload_hash = d.sha256_hex;
      http::Response r = s_.call(std::move(c));
      check_echoed_checksum(r, d, what);
      std::string etag = r.header("ETag");
      if (etag.empty())
        throw S3Error("S3 UploadPart " + loc_.url() + " part " + std::to_string(number) + ": the answer has no ETag" + s_.context(), EMBER_E_IO);
      std::lock_guard<std::mutex> lock(mu_);
      parts_[number] = Part{etag, s_.settings().checksum == Checksum::crc32c ? d.header_value : std::string()};
    }));
  }

  void create() {
    Params h{{"Content-Type", "application/octet-stream"}};
    // Every part then carries x-amz-checksum-crc32c, and S3 checks each one.
    if (s_.settings().checksum == Checksum::crc32c) h.emplace_back("x-amz-checksum-algorithm", "CRC32C");
    http::Response r = s_.call({"CreateMultipartUpload", &loc_, "POST", {{"uploads", ""}}, h, "", {}});
    upload_id_ = parse_xml(r.body).get<std::string>("InitiateMultipartUploadResult.UploadId", "");
    if (upload_id_.empty())
      throw S3Error("S3 CreateMultipartUpload " + loc_.url() + ": the answer has no UploadId" + s_.context(), EMBER_E_IO);
  }

  void complete() {
    std::string xml = "<CompleteMultipartUpload>";
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& kv : parts_) {
        xml += "<Part><PartNumber>" + std::to_string(kv.first) + "</PartNumber><ETag>" + xml_escape(kv.second.etag) + "</ETag>";
        if (!kv.second.checksum.empty()) xml += "<ChecksumCRC32C>" + kv.second.checksum + "</ChecksumCRC32C>";
        xml += "</Part>";
      }
    }
    xml += "</CompleteMultipartUpload>";
    http::Response r = s_.call({"CompleteMultipartUpload", &loc_, "POST", {{"uploadId", upload_id_}}, {{"Content-Type", "application/xml"}}, xml, {}});
    // S3 may answer 200 and still fail: the error is then in the body.
    Tree t = parse_xml(r.body);
    if (t.get_child_optional("Error"))
      throw S3Error("S3 CompleteMultipartUpload " + loc_.url() + ": " + t.get<std::string>("Error.Code", "") + ": " +
                        t.get<std::string>("Error.Message", "") + s_.context(),
                    EMBER_E_IO);
  }

  // An uncommitted upload must not linger (its parts are billed). Servers without
  // AbortMultipartUpload (s3rver) answer 404/405/501: nothing more can be done.
  void abort() {
    if (upload_id_.empty()) return;
    try {
      s_.call({"AbortMultipartUpload", &loc_, "DELETE", {{"uploadId", upload_id_}}, {}, "", {404, 405, 501}});
    } catch (...) {
      // Best effort: the failure that led here is what the caller reports.
    }
    upload_id_.clear();
  }

  void verify_size() {
    http::Response r = s_.call({"HeadObject", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = r.header("Content-Length");
    if (!len.empty() && std::stoull(len) != total_)
      throw S3Error("S3 " + loc_.url() + ": wrote " + std::to_string(total_) + " bytes but the stored object has " + len +
                        s_.context(),
                    EMBER_E_IO);
  }

  Service& s_;
  Location loc_;
  std::size_t part_size_;
  std::string buf_, upload_id_, failure_;
  std::uint64_t total_ = 0;
  int next_part_ = 1;
  bool committed_ = false, failed_ = false;
  std::deque<std::future<void>> inflight_;
  std::mutex mu_;                  // guards parts_ and spare_, which part workers fill
  std::map<int, Part> parts_;
  std::vector<std::string> spare_;  // buffers of finished parts, for the next ones
};

class S3Plugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "s3";

  S3Plugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the s3 config key verify_tls") +
                              (service_.tls() ? "" : " (the endpoint is plain http; this applies to any https it is changed to)"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return std::make_unique<Reader>(service_, parse_location(url), offset, length);
  }

  std::unique_ptr<File> open_write(std::string_view url) override {
    return std::make_unique<Writer>(service_, parse_location(url));
  }

  Entry stat(std::string_view url) override {
    Location loc = parse_location(url);
    Entry out;
    out.url = std::string(url);
    if (!loc.key.empty() && loc.key.back() != '/') {
      http::Response r = service_.call({"HeadObject", &loc, "HEAD", {}, {}, "", {404}});
      if (r.status != 404) {
        std::string len = r.header("Content-Length");
        out.size = len.empty() ? 0 : std::stoull(len);
        out.mtime_ns = parse_http_date_ns(r.header("Last-Modified"));
        return out;
      }
    }
    // Not an object: a "directory" when some key starts with key + "/".
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    Location bucket{loc.bucket, ""};
    http::Response r = service_.call({"ListObjectsV2", &bucket, "GET",
                                      {{"list-type", "2"}, {"prefix", dir}, {"max-keys", "1"}}, {}, "", {},
                                      "s3://" + loc.bucket + "/" + dir});
    Tree t = parse_xml(r.body);
    auto* res = t.get_child_optional("ListBucketResult").get_ptr();
    bool any = false;
    if (res)
      for (const auto& kv : *res)
        if (kv.first == "Contents" || kv.first == "CommonPrefixes") any = true;
    if (!any && !dir.empty()) throw plugin::NotFound("no such object or prefix: " + out.url);
    out.is_dir = true;
    return out;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    Location bucket{loc.bucket, ""};
    std::string token;
    std::set<std::string> seen;  // continuation tokens already followed
    std::vector<Entry> entries;
    for (;;) {
      Params q{{"list-type", "2"}, {"prefix", dir}, {"delimiter", "/"},
               {"max-keys", std::to_string(service_.settings().max_keys)}};
      if (!token.empty()) q.emplace_back("continuation-token", token);
      http::Response r = service_.call({"ListObjectsV2", &bucket, "GET", q, {}, "", {}, "s3://" + loc.bucket + "/" + dir});
      Tree t = parse_xml(r.body);
      auto res = t.get_child_optional("ListBucketResult");
      if (!res)
        throw S3Error("S3 ListObjectsV2 s3://" + loc.bucket + "/" + dir + ": the answer is not a ListBucketResult" +
                          service_.context(),
                      EMBER_E_IO);
      for (const auto& kv : *res) {
        if (kv.first == "Contents") {
          std::string key = kv.second.get<std::string>("Key", "");
          if (key == dir) continue;  // a "directory marker" object, not an entry
          std::int64_t mtime = parse_iso8601(kv.second.get<std::string>("LastModified", "")) * 1000000000;
          entries.push_back({"s3://" + loc.bucket + "/" + key, false, kv.second.get<std::uint64_t>("Size", 0),
                             mtime > 0 ? mtime : 0});
        } else if (kv.first == "CommonPrefixes") {
          std::string pre = kv.second.get<std::string>("Prefix", "");
          if (!pre.empty() && pre.back() == '/') pre.pop_back();
          entries.push_back({"s3://" + loc.bucket + "/" + pre, true, 0, 0});
        }
      }
      bool truncated = res->get<std::string>("IsTruncated", "false") == "true";
      token = res->get<std::string>("NextContinuationToken", "");
      if (!truncated || token.empty()) break;
      // A server that hands back a token it gave before would keep this loop (and the list)
      // growing forever; botocore's paginator refuses it too.
      if (!seen.insert(token).second)
        throw S3Error("S3 ListObjectsV2 s3://" + loc.bucket + "/" + dir +
                          ": the server repeated a continuation token; the listing would never end" + service_.context(),
                      EMBER_E_IO);
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.key.empty()) throw S3Error("cannot remove " + std::string(url) + ": no object key", EMBER_E_INVALID);
    // DeleteObject answers 204 for an absent key too; the ABI wants NOT_FOUND then.
    http::Response h = service_.call({"HeadObject", &loc, "HEAD", {}, {}, "", {404}});
    if (h.status == 404) throw plugin::NotFound("no such object: " + loc.url());
    service_.call({"DeleteObject", &loc, "DELETE", {}, {}, "", {}});
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::s3

EMBER_PLUGIN(ember::s3::S3Plugin, "s3", "1.0.0",
             "s3:// storage (AWS S3 and S3-compatible endpoints): SigV4, streaming multipart, retries",
             ember::s3::kSchema)
