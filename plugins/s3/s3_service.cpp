// The s3 plugin's Service: one endpoint, its credentials, SigV4 signing, the connection pool and
// the retry loop every request goes through.
#include "s3_service.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>

namespace ember::s3 {

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

namespace {

std::string amz_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
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

}  // namespace

Service::Service(Settings s) : s_(std::move(s)) {
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
  http::Options o;
  o.verify_tls = s_.verify_tls;
  o.ca_file = s_.ca_bundle;
  o.timeout = std::chrono::milliseconds(s_.timeout_ms);
  o.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
  // S3's XML answers (lists of 1000 keys, errors) are far below this; object bytes are read
  // with a limit of their own (Call::body_limit).
  o.max_body = kXmlAnswerLimit;
  // Idle connections kept per host: one per part or chunk in flight, and two more.
  pool_.emplace(std::move(o), s_.max_concurrency + 2);
}


http::Response Service::call(Call c) {
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
      net::ConnectionPool::Lease lease(*pool_, endpoint_.scheme, host, endpoint_.port);
      http::Response res = lease->send(req);
      if ((res.status >= 200 && res.status < 300) ||
          std::find(c.accept.begin(), c.accept.end(), res.status) != c.accept.end())
        return res;
      Tree t = parse_xml(res.body);
      std::string code = t.get<std::string>("Error.Code", "");
      retry = net::retryable_status(res.status) || (res.status == 400 && code == "RequestTimeout");
      last = describe(c, res, t, cred);
      if (!retry) throw S3Error(last, res.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
    } catch (const http::Error& e) {
      // An answer over its limit or a certificate that fails verification fails the same way
      // next time: only network trouble is retried.
      retry = e.retryable();
      last = prefix(c) + ": " + e.what() + context();
      if (!retry) throw S3Error(last, EMBER_E_IO);
    }
    if (s_.retry.exhausted(attempt)) throw S3Error(net::RetryPolicy::gave_up(last, attempt), EMBER_E_IO);
    s_.retry.backoff(attempt);
  }
}

void Service::check_dot_segments(const Call& c) const {
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

SourcedCredentials Service::credentials(const Call& c) {
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

std::string Service::describe(const Call& c, const http::Response& res, const Tree& t, const SourcedCredentials& cred) const {
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

}  // namespace ember::s3
