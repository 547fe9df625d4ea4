// azure: the "az://container/blob", "abfs://container@account.dfs.core.windows.net/path" and
// "abfss://" schemes (ember.storage/1, as adlfs maps them) over the Azure Blob REST API — Azure
// Storage, or Azurite and any other custom blob endpoint.
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified). Requests are authorized by Shared
// Key (shared_key.hpp), a SAS token, or an Entra ID bearer token from the client-credentials flow;
// see Credentials below for where each comes from. abfs URLs go to the account's Blob endpoint
// (the Blob API serves hierarchical-namespace accounts too). Blob names are taken literally from
// the URL: no percent-decoding, no normalisation.
//
// Writes stream: bytes fill one block buffer; each full block goes up with Put Block in the
// background (at most max_concurrency in flight, so memory is bounded by (max_concurrency + 1) x
// block_size). Nothing is visible until commit's Put Block List names the blocks (the atomic
// publish); a blob smaller than one block is one Put Blob at commit. Every Put Block and Put Blob
// carries Content-MD5, which the service verifies. Closing without commit leaves the uncommitted
// blocks to the service, which discards them (at the blob's next commit, or after a week); the
// previous blob is untouched either way.
// Reads stream: ranged Get Blobs of read_chunk_size, up to max_concurrency prefetched, each pinned
// to the blob's ETag (If-Match) and, for ranges up to 4 MiB, checked against the MD5 the service
// computes for the range (x-ms-range-get-content-md5). A read of a whole blob that has a
// Content-MD5 property is also checked against it.
#include "shared_key.hpp"

#include <ember/net/http.hpp>
#include <ember/net/uri.hpp>  // net::uri_encode: RFC 3986 unreserved characters kept, the rest %XX
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ember::azure {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
// The Blob service computes a range's MD5 only for ranges up to this size.
constexpr std::uint64_t kRangeMd5Limit = 4 * kMiB;
constexpr int kMaxBlocks = 50000;
constexpr const char* kApiVersion = "2021-12-02";

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "account_name": {"type": "string", "default": ""},
    "account_key": {"type": "string", "writeOnly": true, "default": ""},
    "sas_token": {"type": "string", "writeOnly": true, "default": ""},
    "connection_string": {"type": "string", "writeOnly": true, "default": ""},
    "tenant_id": {"type": "string", "default": ""},
    "client_id": {"type": "string", "default": ""},
    "client_secret": {"type": "string", "writeOnly": true, "default": ""},
    "authority_host": {"type": "string", "default": ""},
    "anonymous": {"type": "boolean", "default": false},
    "endpoint_url": {"type": "string", "default": ""},
    "endpoint_suffix": {"type": "string", "default": "core.windows.net"},
    "ca_bundle": {"type": "string", "default": ""},
    "verify_tls": {"type": "boolean", "default": true},
    "allow_insecure_http": {"type": "boolean", "default": false},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "block_size": {"type": "integer", "minimum": 65536, "maximum": 4194304000, "default": 8388608},
    "read_chunk_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 4194304},
    "verify_md5": {"type": "boolean", "default": true},
    "block_checksum": {"type": "string", "enum": ["md5", "crc64"], "default": "md5"},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
    "retry_base_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 100},
    "retry_max_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 20000},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 86400000, "default": 30000},
    "request_deadline_ms": {"type": "integer", "minimum": 0, "maximum": 86400000, "default": 600000},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 5000}
  }
})";

using net::env;

struct Settings {
  std::string account_name, account_key, sas_token, connection_string, tenant_id, client_id, client_secret,
      authority_host, endpoint_url, endpoint_suffix = "core.windows.net", ca_bundle;
  bool anonymous = false, verify_tls = true, allow_insecure_http = false, verify_md5 = true;
  bool block_crc64 = false;  // block_checksum "crc64": x-ms-content-crc64 instead of Content-MD5
  std::size_t max_concurrency = 4;
  std::size_t block_size = 8 * kMiB;
  std::size_t read_chunk_size = 4 * kMiB;
  int max_attempts = 5, retry_base_ms = 100, retry_max_ms = 20000, timeout_ms = 30000, max_results = 5000;
  std::int64_t request_deadline_ms = 600000;

  static Settings from_json(std::string_view text) {
    Settings s;
    boost::system::error_code ec;
    auto v = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) throw std::runtime_error("azure config: not a JSON object");
    const auto& o = v.as_object();
    auto str = [&](const char* k, std::string& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_string()) throw std::runtime_error(std::string("azure config: ") + k + ": expected a string");
        out = std::string(x->as_string());
      }
    };
    auto flag = [&](const char* k, bool& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_bool()) throw std::runtime_error(std::string("azure config: ") + k + ": expected true or false");
        out = x->as_bool();
      }
    };
    auto num = [&](const char* k, auto& out, std::int64_t lo, std::int64_t hi) {
      if (const auto* x = o.if_contains(k)) {
        std::int64_t n = x->is_int64() ? x->as_int64() : x->is_uint64() ? static_cast<std::int64_t>(x->as_uint64()) : lo - 1;
        if (n < lo || n > hi)
          throw std::runtime_error(std::string("azure config: ") + k + ": expected an integer from " + std::to_string(lo) +
                                   " to " + std::to_string(hi));
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
      }
    };
    static const std::set<std::string> known = {
        "account_name", "account_key", "sas_token", "connection_string", "tenant_id", "client_id", "client_secret",
        "authority_host", "anonymous", "endpoint_url", "endpoint_suffix", "ca_bundle", "verify_tls",
        "allow_insecure_http", "max_concurrency", "block_size", "read_chunk_size", "verify_md5", "block_checksum", "max_attempts",
        "retry_base_ms", "retry_max_ms", "timeout_ms", "request_deadline_ms", "max_results"};
    for (const auto& kv : o)
      if (!known.count(std::string(kv.key())))
        throw std::runtime_error("azure config: unknown key '" + std::string(kv.key()) + "'");
    str("account_name", s.account_name);
    str("account_key", s.account_key);
    str("sas_token", s.sas_token);
    str("connection_string", s.connection_string);
    str("tenant_id", s.tenant_id);
    str("client_id", s.client_id);
    str("client_secret", s.client_secret);
    str("authority_host", s.authority_host);
    str("endpoint_url", s.endpoint_url);
    str("endpoint_suffix", s.endpoint_suffix);
    str("ca_bundle", s.ca_bundle);
    flag("anonymous", s.anonymous);
    flag("verify_tls", s.verify_tls);
    flag("allow_insecure_http", s.allow_insecure_http);
    flag("verify_md5", s.verify_md5);
    if (const auto* v = o.if_contains("block_checksum")) {
      if (!v->is_string() || (v->as_string() != "md5" && v->as_string() != "crc64"))
        throw std::runtime_error("azure config: block_checksum: expected \"md5\" or \"crc64\"");
      s.block_crc64 = v->as_string() == "crc64";
    }
    num("max_concurrency", s.max_concurrency, 1, 64);
    num("block_size", s.block_size, 65536, 4000 * static_cast<std::int64_t>(kMiB));
    num("read_chunk_size", s.read_chunk_size, 65536, 1024 * static_cast<std::int64_t>(kMiB));
    num("max_attempts", s.max_attempts, 1, 20);
    num("retry_base_ms", s.retry_base_ms, 1, 3600000);
    num("retry_max_ms", s.retry_max_ms, 1, 3600000);
    num("timeout_ms", s.timeout_ms, 1, 86400000);
    num("request_deadline_ms", s.request_deadline_ms, 0, 86400000);
    num("max_results", s.max_results, 1, 5000);
    if (s.endpoint_suffix.empty()) s.endpoint_suffix = "core.windows.net";
    return s;
  }
};

// A failed operation; the message is the one line a user sees.
class AzureError : public plugin::Error {
 public:
  using plugin::Error::Error;
};

// Where a URL points: the container and blob, the account when the URL names one
// (abfs://container@account.dfs.core.windows.net/...), and the URL's text before the blob name,
// so listed entries keep the form the user wrote.
struct Location {
  std::string scheme, container, blob, account, base;
  std::string url() const { return base + blob; }
};

Location parse_location(std::string_view url) {
  auto p = url.find("://");
  if (p == std::string_view::npos) throw AzureError("not an az:// or abfs:// URL: " + std::string(url), EMBER_E_INVALID);
  Location loc;
  loc.scheme = lower(url.substr(0, p));
  if (loc.scheme == "adl")
    throw AzureError("adl:// (" + std::string(url) +
                         ") is Azure Data Lake Storage Gen1, which Microsoft retired in February 2024; the azure plugin "
                         "does not support it: use abfs://container@account.dfs.core.windows.net/path on a Gen2 account",
                     EMBER_E_INVALID);
  if (loc.scheme != "az" && loc.scheme != "abfs" && loc.scheme != "abfss")
    throw AzureError("not an az://, abfs:// or abfss:// URL: " + std::string(url), EMBER_E_INVALID);
  std::string_view rest = url.substr(p + 3);
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) loc.blob = std::string(rest.substr(slash + 1));
  auto at = authority.find('@');
  if (at != std::string_view::npos) {
    loc.container = std::string(authority.substr(0, at));
    std::string_view host = authority.substr(at + 1);
    loc.account = lower(host.substr(0, host.find('.')));
    if (loc.account.empty())
      throw AzureError("no account in URL " + std::string(url) + " (expected " + loc.scheme +
                           "://container@account.dfs.core.windows.net/path)",
                       EMBER_E_INVALID);
  } else {
    loc.container = std::string(authority);
  }
  if (loc.container.empty())
    throw AzureError("no container in URL " + std::string(url) + " (expected " + loc.scheme + "://container/path" +
                         (loc.scheme == "az" ? "" : " or " + loc.scheme + "://container@account.dfs.core.windows.net/path") + ")",
                     EMBER_E_INVALID);
  loc.base = std::string(url.substr(0, p + 3)) + std::string(authority) + "/";
  return loc;
}

std::string http_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::int64_t parse_http_date_ns(const std::string& s) {
  std::tm tm{};
  if (s.empty() || !strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000000;
}

using Tree = boost::property_tree::ptree;

// Parse an XML answer; an empty tree when it is not XML.
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

// The first line of text (the service's messages carry "RequestId:...\nTime:..." after it).
std::string first_line(std::string text) {
  auto nl = text.find_first_of("\r\n");
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

std::string md5_base64(std::string_view data) { return net::base64(net::md5(data)); }

// How requests are authorized, and where that came from (for messages; never the secret).
enum class AuthKind { shared_key, sas, bearer, anonymous };

struct Credentials {
  AuthKind kind = AuthKind::anonymous;
  std::string account, key, sas, tenant_id, client_id, client_secret;  // key: decoded
  std::string source;  // "AZURE_STORAGE_KEY", "the config key connection_string"...
  std::string describe() const {
    switch (kind) {
      case AuthKind::shared_key: return "Shared Key of account " + account + " from " + source;
      case AuthKind::sas: return "SAS token from " + source;
      case AuthKind::bearer: return "Entra ID token for client " + client_id + " from " + source;
      default: return "anonymous (" + source + ")";
    }
  }
};

// One account's Blob endpoint with its credentials, a keep-alive connection pool, signing and
// retries. Thread-safe.
class Service {
 public:
  explicit Service(Settings s) : s_(std::move(s)) {
    resolve();
    if (s_.ca_bundle.empty()) s_.ca_bundle = env("AZURE_CA_BUNDLE");
    http_.verify_tls = s_.verify_tls;
    http_.ca_file = s_.ca_bundle;
    http_.timeout = std::chrono::milliseconds(s_.timeout_ms);
    http_.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
    http_.max_body = kXmlAnswerLimit;
  }

  static constexpr std::uint64_t kXmlAnswerLimit = 16 * kMiB;

  const Settings& settings() const { return s_; }
  const Credentials& credentials() const { return cred_; }
  std::string endpoint_text() const { return endpoint_.display(); }
  bool tls() const { return endpoint_.scheme == "https"; }

  struct Call {
    const char* op;  // "PutBlock", for messages
    const Location* loc;
    std::string method;
    Params query;    // decoded; SAS parameters are added by call()
    Params headers;  // beyond x-ms-date/x-ms-version/Authorization: x-ms-range, Content-MD5...
    std::string_view body;
    std::vector<int> accept;           // non-2xx statuses handed back instead of thrown
    bool container_level = false;      // the container itself (List Blobs), not a blob
    std::string shown_url{};           // the URL messages name, when not loc's
    std::uint64_t body_limit = 0;      // the answer's size limit; 0: kXmlAnswerLimit
  };

  // Sign, send, retry; returns a 2xx answer or one listed in accept, else throws AzureError.
  http::Response call(Call c) {
    const Target t = target(*c.loc, c);
    std::string path = t.base_path + "/" + net::uri_encode(c.loc->container);
    if (!c.container_level) path += "/" + net::uri_encode(c.loc->blob, /*encode_slash=*/false);
    std::string query;
    for (const auto& kv : c.query) query += (query.empty() ? "" : "&") + net::uri_encode(kv.first) + "=" + net::uri_encode(kv.second);
    if (cred_.kind == AuthKind::sas) query += (query.empty() ? "" : "&") + cred_.sas;

    http::Request req;
    req.method = c.method;
    req.target = path + (query.empty() ? "" : "?" + query);
    req.body = c.body;
    req.body_limit = c.body_limit;

    std::string last;
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 1;; ++attempt) {
      Params headers = c.headers;
      headers.emplace_back("x-ms-date", http_date(std::time(nullptr)));
      headers.emplace_back("x-ms-version", kApiVersion);
      if (cred_.kind == AuthKind::shared_key) {
        SharedKeyInput in{c.method, cred_.account, path, c.query, headers, c.body.size()};
        headers.emplace_back("Authorization", shared_key_authorization(in, cred_.key));
      } else if (cred_.kind == AuthKind::bearer) {
        headers.emplace_back("Authorization", "Bearer " + bearer_token(c));
      }
      req.headers = std::move(headers);

      bool retry = false;
      try {
        Lease lease(*this, t);
        http::Response res = lease->send(req);
        if ((res.status >= 200 && res.status < 300) ||
            std::find(c.accept.begin(), c.accept.end(), res.status) != c.accept.end())
          return res;
        retry = res.status == 408 || res.status == 429 || res.status == 500 || res.status == 502 ||
                res.status == 503 || res.status == 504;
        last = describe(c, res);
        if (!retry) throw AzureError(last, res.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
      } catch (const http::Error& e) {
        // An answer over its limit or a certificate that fails verification fails the same way
        // next time: only network trouble is retried.
        retry = e.retryable();
        last = scrub(prefix(c) + ": " + e.what() + context());
        if (!retry) throw AzureError(last, EMBER_E_IO);
      }
      if (attempt >= s_.max_attempts)
        throw AzureError(last + (attempt > 1 ? " (gave up after " + std::to_string(attempt) + " attempts)" : ""), EMBER_E_IO);
      // Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^n)].
      double cap = std::min<double>(s_.retry_max_ms, static_cast<double>(s_.retry_base_ms) * double(1u << std::min(attempt, 20)));
      std::uniform_real_distribution<double> dist(0.0, cap);
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(dist(rng) * 1000)));
    }
  }

  std::string prefix(const Call& c) const {
    return "azure " + std::string(c.op) + " " + (c.shown_url.empty() ? c.loc->url() : c.shown_url);
  }
  std::string context() const {
    return " (endpoint " + endpoint_text() + ", account " + (cred_.account.empty() ? "(none)" : cred_.account) + ", " +
           cred_.describe() + ")";
  }

  // Any secret this service knows, replaced in text (a message that quotes a request must not
  // carry a key, a SAS signature or a token).
  std::string scrub(std::string text) const {
    std::vector<std::string> secrets;
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      secrets = secrets_;
    }
    for (const auto& sec : secrets) {
      if (sec.size() < 6) continue;
      for (auto p = text.find(sec); p != std::string::npos; p = text.find(sec, p)) text.replace(p, sec.size(), "***");
    }
    return text;
  }

 private:
  struct Target {
    std::string scheme, host, port, base_path;
  };

  // The endpoint for loc: the configured one, or (for a URL naming another account, with a
  // bearer token or anonymous access) that account's Blob endpoint.
  Target target(const Location& loc, const Call& c) const {
    if (loc.account.empty() || loc.account == cred_.account) {
      if (endpoint_.host.empty())
        throw AzureError(prefix(c) + ": no storage account: set AZURE_STORAGE_ACCOUNT (or the azure config key "
                                     "account_name, or a connection string), or name it in the URL as "
                                     "abfs://container@account.dfs.core.windows.net/path",
                         EMBER_E_INVALID);
      return {endpoint_.scheme, endpoint_.host, endpoint_.port, base_path_};
    }
    if (custom_endpoint_ || cred_.kind == AuthKind::shared_key || cred_.kind == AuthKind::sas)
      throw AzureError(prefix(c) + ": the URL names account " + loc.account + " but the configured " +
                           (custom_endpoint_ ? "endpoint " + endpoint_text() + " serves" : "credentials are for") +
                           " account " + cred_.account,
                       EMBER_E_INVALID);
    return {"https", loc.account + ".blob." + s_.endpoint_suffix, "443", ""};
  }

  // Credentials and endpoint, first from the config (connection_string, account_key, sas_token,
  // client secret, in that order), then the same from the environment; else anonymous.
  void resolve() {
    std::string conn_source;
    std::map<std::string, std::string> conn;
    std::string account = s_.account_name.empty() ? env("AZURE_STORAGE_ACCOUNT") : s_.account_name;
    auto from = [&](bool config) -> bool {
      std::string cs = config ? s_.connection_string : env("AZURE_STORAGE_CONNECTION_STRING");
      std::string where = config ? "the azure config key connection_string" : "AZURE_STORAGE_CONNECTION_STRING";
      if (!cs.empty()) {
        std::string bad;
        auto parsed = parse_connection_string(cs, &bad);
        if (!parsed)
          throw std::runtime_error("azure: " + where + ": expected Name=Value pairs separated by ';', found '" +
                                   bad.substr(0, 40) + "' without '='");
        conn = *parsed;
        conn_source = where;
        if (conn.count("UseDevelopmentStorage") && lower(conn["UseDevelopmentStorage"]) == "true") {
          conn.emplace("AccountName", kDevAccount);
          conn.emplace("AccountKey", kDevKey);
          conn.emplace("BlobEndpoint", kDevBlobEndpoint);
        }
        cred_.account = conn.count("AccountName") ? conn["AccountName"] : account;
        if (conn.count("AccountKey")) {
          set_key(conn["AccountKey"], where);
        } else if (conn.count("SharedAccessSignature")) {
          set_sas(conn["SharedAccessSignature"], where);
        } else {
          cred_.kind = AuthKind::anonymous;
          cred_.source = where + " has no AccountKey or SharedAccessSignature";
        }
        return true;
      }
      std::string key = config ? s_.account_key : env("AZURE_STORAGE_KEY");
      if (!key.empty()) {
        cred_.account = account;
        if (account.empty())
          throw std::runtime_error(std::string("azure: ") + (config ? "the config key account_key" : "AZURE_STORAGE_KEY") +
                                   " is set but no account: set AZURE_STORAGE_ACCOUNT or the azure config key account_name");
        set_key(key, config ? "the azure config key account_key" : "AZURE_STORAGE_KEY");
        return true;
      }
      std::string sas = config ? s_.sas_token : env("AZURE_STORAGE_SAS_TOKEN");
      if (!sas.empty()) {
        cred_.account = account;
        set_sas(sas, config ? "the azure config key sas_token" : "AZURE_STORAGE_SAS_TOKEN");
        return true;
      }
      std::string secret = config ? s_.client_secret : env("AZURE_CLIENT_SECRET");
      if (!secret.empty()) {
        cred_.account = account;
        cred_.kind = AuthKind::bearer;
        cred_.client_secret = secret;
        cred_.client_id = config ? s_.client_id : env("AZURE_CLIENT_ID");
        cred_.tenant_id = config ? s_.tenant_id : env("AZURE_TENANT_ID");
        cred_.source = config ? "the azure config keys tenant_id, client_id, client_secret"
                              : "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET";
        if (cred_.client_id.empty() || cred_.tenant_id.empty())
          throw std::runtime_error("azure: " + cred_.source + ": the client secret is set but " +
                                   (cred_.client_id.empty() ? "the client id" : "the tenant id") + " is not");
        secrets_.push_back(secret);
        return true;
      }
      return false;
    };
    if (s_.anonymous) {
      cred_.account = account;
      cred_.source = "the azure config key anonymous is true";
    } else if (!from(true) && !from(false)) {
      cred_.account = account;
      cred_.source = "no credentials found: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, "
                     "AZURE_STORAGE_SAS_TOKEN or AZURE_CLIENT_SECRET, or the azure config keys";
    }
    if (!s_.connection_string.empty() && conn_source.empty()) secrets_.push_back(s_.connection_string);

    // The endpoint: the config's, the connection string's BlobEndpoint, or the account's.
    std::string ep = s_.endpoint_url;
    std::string ep_source = "the azure config key endpoint_url";
    if (ep.empty() && conn.count("BlobEndpoint")) {
      ep = conn["BlobEndpoint"];
      ep_source = "BlobEndpoint in " + conn_source;
    }
    custom_endpoint_ = !ep.empty();
    if (ep.empty() && !cred_.account.empty()) {
      std::string proto = conn.count("DefaultEndpointsProtocol") ? lower(conn["DefaultEndpointsProtocol"]) : "https";
      std::string suffix = conn.count("EndpointSuffix") ? conn["EndpointSuffix"] : s_.endpoint_suffix;
      ep = proto + "://" + cred_.account + ".blob." + suffix;
      ep_source = "the account name";
    }
    if (ep.empty()) return;  // every call names its account in the URL, or fails saying so
    try {
      endpoint_ = http::Url::parse(ep);
      if (cred_.kind != AuthKind::anonymous)
        http::require_secure_transport(endpoint_, s_.allow_insecure_http, "the azure config key allow_insecure_http");
    } catch (const std::exception& e) {
      throw std::runtime_error("azure: " + ep_source + ": " + std::string(e.what()));
    }
    if (endpoint_.target.find('?') != std::string::npos)
      throw std::runtime_error("azure: " + ep_source + ": the endpoint has a query; put a SAS token in sas_token");
    base_path_ = endpoint_.target == "/" ? std::string() : endpoint_.target;
    if (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();
    // Azurite and other emulators on an IP address take the account as the first path segment.
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(endpoint_.host, ec);
    const bool ip_or_localhost = !ec || lower(endpoint_.host) == "localhost";
    if (base_path_.empty() && ip_or_localhost && !cred_.account.empty()) base_path_ = "/" + cred_.account;
    if (cred_.account.empty() && custom_endpoint_ && !base_path_.empty()) cred_.account = base_path_.substr(1, base_path_.find('/', 1) - 1);
  }

  void set_key(const std::string& text, const std::string& source) {
    auto raw = net::base64_decode(text);
    // Never the key in the message: its length only.
    if (!raw) throw std::runtime_error("azure: " + source + ": the account key is not base64 (" + std::to_string(text.size()) + " characters)");
    cred_.kind = AuthKind::shared_key;
    cred_.key = *raw;
    cred_.source = source;
    secrets_.push_back(text);
  }

  void set_sas(std::string sas, const std::string& source) {
    if (!sas.empty() && sas.front() == '?') sas.erase(0, 1);
    if (sas.find("sig=") == std::string::npos)
      throw std::runtime_error("azure: " + source + ": not a SAS token (no sig= parameter)");
    cred_.kind = AuthKind::sas;
    cred_.sas = sas;
    cred_.source = source;
    secrets_.push_back(sas);
    // The signature alone, as it may appear decoded or re-encoded in an answer.
    for (std::size_t p = 0; p < sas.size();) {
      auto end = sas.find('&', p);
      std::string kv = sas.substr(p, end == std::string::npos ? std::string::npos : end - p);
      if (kv.rfind("sig=", 0) == 0) {
        secrets_.push_back(kv.substr(4));
        secrets_.push_back(percent_decode(kv.substr(4)));
      }
      if (end == std::string::npos) break;
      p = end + 1;
    }
  }

  // The client-credentials flow (Microsoft identity platform v2.0): POST the client id and
  // secret to {authority}/{tenant}/oauth2/v2.0/token for the scope https://storage.azure.com/.default;
  // cached until 5 minutes before it expires.
  std::string bearer_token(const Call& c) {
    std::lock_guard<std::mutex> lock(token_mu_);
    auto now = std::chrono::steady_clock::now();
    if (!token_.empty() && now < token_expiry_) return token_;
    std::string authority = s_.authority_host.empty() ? env("AZURE_AUTHORITY_HOST") : s_.authority_host;
    if (authority.empty()) authority = "https://login.microsoftonline.com";
    while (!authority.empty() && authority.back() == '/') authority.pop_back();
    std::string where = "azure token " + authority + "/" + cred_.tenant_id + "/oauth2/v2.0/token for " + prefix(c);
    http::Url u;
    try {
      u = http::Url::parse(authority + "/" + net::uri_encode(cred_.tenant_id) + "/oauth2/v2.0/token");
      http::require_secure_transport(u, s_.allow_insecure_http, "the azure config key allow_insecure_http");
    } catch (const std::exception& e) {
      throw AzureError(where + ": " + e.what(), EMBER_E_INVALID);
    }
    std::string form = "grant_type=client_credentials&client_id=" + net::uri_encode(cred_.client_id) +
                       "&client_secret=" + net::uri_encode(cred_.client_secret) +
                       "&scope=" + net::uri_encode("https://storage.azure.com/.default");
    http::Request req{"POST", u.target, {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}}, form};
    req.idempotent = true;  // asking again for a token has no effect but another token
    std::string last;
    for (int attempt = 1;; ++attempt) {
      try {
        http::Client client(u.scheme, u.host, u.port, http_);
        http::Response r = client.send(req);
        boost::system::error_code ec;
        auto v = boost::json::parse(r.body, ec);
        const boost::json::object* o = !ec && v.is_object() ? &v.as_object() : nullptr;
        auto field = [&](const char* k) -> std::string {
          if (!o) return {};
          const auto* x = o->if_contains(k);
          return x && x->is_string() ? std::string(x->as_string()) : std::string();
        };
        if (r.status == 200 && !field("access_token").empty()) {
          token_ = field("access_token");
          secrets_.push_back(token_);
          std::int64_t expires = 3600;
          if (o)
            if (const auto* x = o->if_contains("expires_in"))
              expires = x->is_int64() ? x->as_int64() : x->is_string() ? std::atoll(x->as_string().c_str()) : 3600;
          token_expiry_ = now + std::chrono::seconds(std::max<std::int64_t>(expires - 300, 30));
          return token_;
        }
        last = where + ": HTTP " + std::to_string(r.status) +
               (field("error").empty() ? "" : ": " + field("error") + ": " + first_line(field("error_description"))) +
               " (client " + cred_.client_id + ", tenant " + cred_.tenant_id + ", from " + cred_.source + ")";
        if (!(r.status == 429 || r.status >= 500)) throw AzureError(scrub_locked(last), EMBER_E_IO);
      } catch (const http::Error& e) {
        last = where + ": " + e.what();
        if (!e.retryable()) throw AzureError(scrub_locked(last), EMBER_E_IO);
      }
      if (attempt >= s_.max_attempts) throw AzureError(scrub_locked(last) + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(s_.retry_max_ms, s_.retry_base_ms << std::min(attempt, 16))));
    }
  }

  std::string scrub_locked(std::string text) const {
    for (const auto& sec : secrets_) {
      if (sec.size() < 6) continue;
      for (auto p = text.find(sec); p != std::string::npos; p = text.find(sec, p)) text.replace(p, sec.size(), "***");
    }
    return text;
  }

  // "azure PutBlock az://c/b: AuthenticationFailed: Server failed to authenticate... (HTTP 403, ...)"
  std::string describe(const Call& c, const http::Response& res) const {
    Tree t = parse_xml(res.body);
    std::string code = res.header("x-ms-error-code");
    if (code.empty()) code = t.get<std::string>("Error.Code", "");
    std::string message = first_line(t.get<std::string>("Error.Message", ""));
    if (code.empty()) {
      switch (res.status) {
        case 403: code = "AuthorizationFailure"; break;
        case 404: code = c.container_level ? "ContainerNotFound" : "BlobNotFound"; break;
        default: code = "HTTP" + std::to_string(res.status);
      }
    }
    if (message.empty() && c.method == "HEAD") message = "(a HEAD answer has no error body)";
    std::string out = prefix(c) + ": " + code + (message.empty() ? "" : ": " + message) + " (HTTP " +
                      std::to_string(res.status) + ", container " + c.loc->container +
                      (c.container_level ? "" : ", blob " + c.loc->blob) + ", endpoint " + endpoint_text() +
                      ", account " + (cred_.account.empty() ? "(none)" : cred_.account) + ", " + cred_.describe();
    if (std::string id = res.header("x-ms-request-id"); !id.empty()) out += "; request id " + id;
    return scrub(out + ")");
  }

  // A pooled connection for one endpoint, returned to the pool at scope exit.
  class Lease {
   public:
    Lease(Service& s, const Target& t) : s_(s), key_(t.scheme + "://" + t.host + ":" + t.port) {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[key_];
      if (!idle.empty()) {
        client_ = std::move(idle.back());
        idle.pop_back();
      }
      if (!client_) client_ = std::make_unique<http::Client>(t.scheme, t.host, t.port, s_.http_);
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[key_];
      if (idle.size() <= 2 * s_.s_.max_concurrency + 1) idle.push_back(std::move(client_));
    }
    http::Client* operator->() { return client_.get(); }

   private:
    Service& s_;
    std::string key_;
    std::unique_ptr<http::Client> client_;
  };

  Settings s_;
  Credentials cred_;
  bool custom_endpoint_ = false;
  http::Url endpoint_;
  std::string base_path_;
  http::Options http_;
  std::mutex pool_mu_;
  std::map<std::string, std::vector<std::unique_ptr<http::Client>>> pool_;
  mutable std::mutex token_mu_;  // guards token_, token_expiry_ and secrets_
  std::string token_;
  std::chrono::steady_clock::time_point token_expiry_{};
  std::vector<std::string> secrets_;
};

// Streaming read; see the file comment. Get Blob Properties first, for the size, the ETag every
// range is pinned to, and the blob's Content-MD5.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) : s_(s), loc_(std::move(loc)), next_(offset) {
    if (loc_.blob.empty() || loc_.blob.back() == '/')
      throw AzureError("cannot read " + loc_.url() + ": not a blob name", EMBER_E_INVALID);
    chunk_ = s_.settings().read_chunk_size;
    http::Response h = s_.call({"GetBlobProperties", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = h.header("Content-Length");
    std::uint64_t size = len.empty() ? 0 : std::stoull(len);
    etag_ = h.header("ETag");
    end_ = length == UINT64_MAX || offset + length > size ? size : offset + length;
    if (s_.settings().verify_md5 && offset == 0 && end_ == size) {
      blob_md5_ = h.header("Content-MD5");
      if (!blob_md5_.empty()) {
        md5_.reset(EVP_MD_CTX_new());
        if (!md5_ || EVP_DigestInit_ex(md5_.get(), EVP_md5(), nullptr) != 1) throw std::runtime_error("azure: OpenSSL MD5 failed");
      }
    }
    fill_prefetch();
  }
  ~Reader() override {
    for (auto& f : pending_)
      if (f.valid()) f.wait();
  }

  std::size_t read(void* buf, std::size_t cap) override {
    while (pos_ == current_.size()) {
      if (pending_.empty()) {
        finish();
        return 0;
      }
      current_ = pending_.front().get();  // rethrows the chunk's failure
      pending_.pop_front();
      pos_ = 0;
      if (md5_) EVP_DigestUpdate(md5_.get(), current_.data(), current_.size());
      fill_prefetch();
    }
    std::size_t n = std::min(cap, current_.size() - pos_);
    std::memcpy(buf, current_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };

  void finish() {
    if (!md5_) return;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md5_.get(), d, &n);
    md5_.reset();
    std::string got = net::base64(std::string_view(reinterpret_cast<char*>(d), n));
    if (got != blob_md5_)
      throw AzureError("azure GetBlob " + loc_.url() + ": the blob's Content-MD5 is " + blob_md5_ +
                           " but the bytes read have MD5 " + got + s_.context(),
                       EMBER_E_IO);
  }

  void fill_prefetch() {
    while (next_ < end_ && pending_.size() < s_.settings().max_concurrency) {
      std::uint64_t first = next_, last = std::min(end_, next_ + chunk_) - 1;
      next_ = last + 1;
      pending_.push_back(std::async(std::launch::async, [this, first, last] {
        const std::string range = "bytes=" + std::to_string(first) + "-" + std::to_string(last);
        Params h{{"x-ms-range", range}};
        if (!etag_.empty()) h.emplace_back("If-Match", etag_);
        const bool want_md5 = s_.settings().verify_md5 && last - first + 1 <= kRangeMd5Limit;
        if (want_md5) h.emplace_back("x-ms-range-get-content-md5", "true");
        Service::Call c{"GetBlob", &loc_, "GET", {}, h, "", {}};
        c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
        http::Response r = s_.call(std::move(c));
        if (r.status != 206)
          throw AzureError("azure GetBlob " + loc_.url() + ": asked for " + range + " and got HTTP " +
                               std::to_string(r.status) + ", not 206 Partial Content" + s_.context(),
                           EMBER_E_IO);
        if (r.body.size() != last - first + 1)
          throw AzureError("azure GetBlob " + loc_.url() + ": asked for " + range + ", got " + std::to_string(r.body.size()) +
                               " bytes" + s_.context(),
                           EMBER_E_IO);
        if (want_md5) {
          std::string sent = r.header("Content-MD5");
          if (!sent.empty() && sent != md5_base64(r.body))
            throw AzureError("azure GetBlob " + loc_.url() + ": the MD5 of " + range + " is " + md5_base64(r.body) +
                                 " but the service sent Content-MD5 " + sent + " (corrupted in transit)" + s_.context(),
                             EMBER_E_IO);
        }
        return std::move(r.body);
      }));
    }
  }

  Service& s_;
  Location loc_;
  std::uint64_t next_, end_ = 0, chunk_ = 0;
  std::string etag_, current_, blob_md5_;
  std::size_t pos_ = 0;
  std::deque<std::future<std::string>> pending_;
  std::unique_ptr<EVP_MD_CTX, CtxFree> md5_;
};

// Atomic streaming write; see the file comment. A block's MD5 is computed on its own worker
// thread, so the writer's thread only copies bytes in; finished block buffers are reused, and at
// most max_concurrency + 1 of them exist at once.
class Writer final : public plugin::Storage::File {
 public:
  // The integrity header of a block (or a one-shot blob): Content-MD5, or with block_checksum
  // "crc64" x-ms-content-crc64 (Azure's CRC-64, include/ember/net/digest.hpp). The service
  // verifies either and refuses both at once.
  std::pair<std::string, std::string> checksum_header(std::string_view data) const {
    if (s_.settings().block_crc64) return {"x-ms-content-crc64", net::crc64_base64(data)};
    return {"Content-MD5", md5_base64(data)};
  }
  Writer(Service& s, Location loc) : s_(s), loc_(std::move(loc)) {
    if (loc_.blob.empty() || loc_.blob.back() == '/')
      throw AzureError("cannot write to " + loc_.url() + ": not a blob name", EMBER_E_INVALID);
    block_size_ = s_.settings().block_size;
    // Block ids: one length for every block of a blob (the service's rule), unique per upload so
    // two writers of one blob never commit each other's blocks: 16 random hex digits, then the
    // block number in 8 digits: 24 bytes, 32 base64 characters without padding.
    std::random_device rd;
    char nonce[17];
    std::snprintf(nonce, sizeof nonce, "%08x%08x", rd(), rd());
    nonce_ = nonce;
  }
  ~Writer() override { drain(); }

  void write(const void* data, std::size_t n) override {
    const char* p = static_cast<const char*>(data);
    if (committed_) throw AzureError("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw AzureError("cannot write to " + loc_.url() + ": an earlier block failed: " + failure_, EMBER_E_IO);
    while (n) {
      if (buf_.capacity() < block_size_) take_buffer();
      std::size_t take = std::min(n, block_size_ - buf_.size());
      buf_.append(p, take);
      p += take;
      n -= take;
      total_ += take;
      if (buf_.size() == block_size_) ship_block();
    }
  }

  void commit() override {
    if (committed_) return;
    if (failed_)
      throw AzureError("cannot commit " + loc_.url() + ": an earlier block failed (nothing was published): " + failure_,
                       EMBER_E_IO);
    try {
      if (ids_.empty()) {
        Service::Call c{"PutBlob", &loc_, "PUT", {},
                        {{"x-ms-blob-type", "BlockBlob"}, {"Content-Type", "application/octet-stream"},
                         checksum_header(buf_)},
                        buf_, {}};
        s_.call(std::move(c));
      } else {
        if (!buf_.empty()) ship_block();
        while (!inflight_.empty()) {
          auto f = std::move(inflight_.front());
          inflight_.pop_front();
          f.get();
        }
        std::string xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
        for (const auto& id : ids_) xml += "<Latest>" + id + "</Latest>";
        xml += "</BlockList>";
        s_.call({"PutBlockList", &loc_, "PUT", {{"comp", "blocklist"}},
                 {{"Content-Type", "application/xml"}, {"Content-MD5", md5_base64(xml)},
                  {"x-ms-blob-content-type", "application/octet-stream"}},
                 xml, {}});
      }
    } catch (const std::exception& e) {
      fail(e.what());
      drain();
      throw;
    }
    committed_ = true;
    release_buffers();
    verify_size();
  }

 private:
  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  // Wait for every block in flight, ignoring their failures (the caller has one to report).
  void drain() {
    for (auto& f : inflight_) {
      try {
        f.get();
      } catch (...) {
      }
    }
    inflight_.clear();
  }

  void take_buffer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!spare_.empty()) {
        buf_.swap(spare_.back());
        spare_.pop_back();
      }
    }
    buf_.clear();
    if (buf_.capacity() < block_size_) buf_.reserve(block_size_);
  }

  void release_buffers() {
    buf_ = std::string();
    std::lock_guard<std::mutex> lock(mu_);
    spare_.clear();
  }

  void ship_block() {
    if (ids_.size() >= static_cast<std::size_t>(kMaxBlocks)) {
      fail("more than 50000 blocks");
      throw AzureError("cannot write " + loc_.url() + ": a blob has at most " + std::to_string(kMaxBlocks) +
                           " blocks; raise the azure config key block_size (now " + std::to_string(block_size_) + ")",
                       EMBER_E_INVALID);
    }
    // Bounded memory: wait for the oldest block when max_concurrency are in flight.
    while (inflight_.size() >= s_.settings().max_concurrency) {
      auto f = std::move(inflight_.front());
      inflight_.pop_front();
      try {
        f.get();
      } catch (const std::exception& e) {
        fail(e.what());
        drain();
        throw;
      }
    }
    char number[16];
    std::snprintf(number, sizeof number, "%08zu", ids_.size());
    std::string id = net::base64(nonce_ + number);
    ids_.push_back(id);
    std::string body;
    body.swap(buf_);
    inflight_.push_back(std::async(std::launch::async, [this, id, b = std::move(body)]() mutable {
      struct Recycle {
        Writer& w;
        std::string& b;
        ~Recycle() {
          std::lock_guard<std::mutex> lock(w.mu_);
          w.spare_.push_back(std::move(b));
        }
      } recycle{*this, b};
      Service::Call c{"PutBlock", &loc_, "PUT", {{"comp", "block"}, {"blockid", id}}, {checksum_header(b)}, b, {}};
      s_.call(std::move(c));
    }));
  }

  void verify_size() {
    http::Response r = s_.call({"GetBlobProperties", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = r.header("Content-Length");
    if (!len.empty() && std::stoull(len) != total_)
      throw AzureError("azure " + loc_.url() + ": wrote " + std::to_string(total_) + " bytes but the stored blob has " + len +
                           s_.context(),
                       EMBER_E_IO);
  }

  Service& s_;
  Location loc_;
  std::size_t block_size_ = 0;
  std::string buf_, failure_, nonce_;
  std::uint64_t total_ = 0;
  bool committed_ = false, failed_ = false;
  std::vector<std::string> ids_;
  std::deque<std::future<void>> inflight_;
  std::mutex mu_;                   // guards spare_, which block workers fill
  std::vector<std::string> spare_;  // buffers of finished blocks, for the next ones
};

class AzurePlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "az,abfs,abfss,adl";

  AzurePlugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the azure config key verify_tls") +
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
    if (!loc.blob.empty() && loc.blob.back() != '/') {
      http::Response r = service_.call({"GetBlobProperties", &loc, "HEAD", {}, {}, "", {404}});
      if (r.status != 404) {
        std::string len = r.header("Content-Length");
        out.size = len.empty() ? 0 : std::stoull(len);
        out.mtime_ns = parse_http_date_ns(r.header("Last-Modified"));
        return out;
      }
    }
    // Not a blob: a "directory" when some blob's name starts with blob + "/".
    std::string dir = loc.blob.empty() || loc.blob.back() == '/' ? loc.blob : loc.blob + "/";
    Params q{{"restype", "container"}, {"comp", "list"}, {"prefix", dir}, {"maxresults", "1"}};
    Service::Call c{"ListBlobs", &loc, "GET", q, {}, "", {}, true, loc.base + dir};
    Tree t = parse_xml(service_.call(std::move(c)).body);
    bool any = false;
    if (auto blobs = t.get_child_optional("EnumerationResults.Blobs"))
      for (const auto& kv : *blobs) any = any || kv.first == "Blob" || kv.first == "BlobPrefix";
    if (!any && !dir.empty()) throw plugin::NotFound("no such blob or prefix: " + std::string(url));
    out.is_dir = true;
    return out;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.blob.empty() || loc.blob.back() == '/' ? loc.blob : loc.blob + "/";
    std::string marker;
    std::set<std::string> seen;  // markers already followed
    std::vector<Entry> entries;
    std::set<std::string> prefixes;
    for (;;) {
      Params q{{"restype", "container"}, {"comp", "list"}, {"prefix", dir}, {"delimiter", "/"},
               {"maxresults", std::to_string(service_.settings().max_results)}};
      if (!marker.empty()) q.emplace_back("marker", marker);
      Service::Call c{"ListBlobs", &loc, "GET", q, {}, "", {}, true, loc.base + dir};
      Tree t = parse_xml(service_.call(std::move(c)).body);
      auto res = t.get_child_optional("EnumerationResults");
      if (!res)
        throw AzureError("azure ListBlobs " + loc.base + dir + ": the answer is not an EnumerationResults" + service_.context(),
                         EMBER_E_IO);
      if (auto blobs = res->get_child_optional("Blobs")) {
        for (const auto& kv : *blobs) {
          std::string name = kv.second.get<std::string>("Name", "");
          if (kv.first == "Blob") {
            if (name == dir) continue;  // a "directory marker" blob, not an entry
            Entry e;
            e.url = loc.base + name;
            e.size = kv.second.get<std::uint64_t>("Properties.Content-Length", 0);
            e.mtime_ns = parse_http_date_ns(kv.second.get<std::string>("Properties.Last-Modified", ""));
            entries.push_back(std::move(e));
          } else if (kv.first == "BlobPrefix") {
            if (!name.empty() && name.back() == '/') name.pop_back();
            prefixes.insert(name);
            Entry e;
            e.url = loc.base + name;
            e.is_dir = true;
            entries.push_back(std::move(e));
          }
        }
      }
      marker = res->get<std::string>("NextMarker", "");
      if (marker.empty()) break;
      if (!seen.insert(marker).second)
        throw AzureError("azure ListBlobs " + loc.base + dir + ": the service repeated a marker; the listing would never end" +
                             service_.context(),
                         EMBER_E_IO);
    }
    // A hierarchical-namespace account lists a folder both as a zero-length blob and as a prefix.
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const Entry& e) {
                                   return !e.is_dir && e.size == 0 && prefixes.count(e.url.substr(loc.base.size()));
                                 }),
                  entries.end());
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.blob.empty() || loc.blob.back() == '/')
      throw AzureError("cannot remove " + std::string(url) + ": not a blob name", EMBER_E_INVALID);
    http::Response r = service_.call({"DeleteBlob", &loc, "DELETE", {}, {}, "", {404}});
    if (r.status == 404) {
      // A missing container is a 404 too, and an error of its own (not "the blob is absent").
      if (r.header("x-ms-error-code") == "ContainerNotFound")
        throw AzureError("azure DeleteBlob " + loc.url() + ": ContainerNotFound: the container " + loc.container +
                             " does not exist" + service_.context(),
                         EMBER_E_NOT_FOUND);
      throw plugin::NotFound("no such blob: " + loc.url());
    }
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::azure

EMBER_PLUGIN(ember::azure::AzurePlugin, "azure", "1.0.0",
             "az://, abfs://, abfss:// storage (Azure Blob Storage, Azurite): Shared Key, SAS, Entra ID; "
             "streaming block uploads, retries",
             ember::azure::kSchema)
