// The gcs plugin's parts and what they share (see gcs.cpp for the plugin as a whole): its
// settings (gcs_settings.cpp), the Service that sends and retries every request (gcs_service.cpp)
// with its credentials and access tokens (gcs_token.cpp), the streaming reader (gcs_reader.cpp)
// and the resumable writer (gcs_writer.cpp). Internal to the plugin.
#pragma once

#include "checksum.hpp"
#include "gcs_auth.hpp"

#include <ember/net/connection_pool.hpp>
#include <ember/net/http.hpp>
#include <ember/net/retry.hpp>
#include <ember/net/store_settings.hpp>
#include <ember/net/uri.hpp>
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::gcs {

namespace json = boost::json;
using Params = std::vector<std::pair<std::string, std::string>>;
constexpr std::uint64_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr std::uint64_t kChunkQuantum = 256 * kKiB;  // resumable chunks are multiples of this
// google-auth refreshes a token this long before it expires (3 min 45 s).
constexpr std::int64_t kRefreshMarginS = 225;

inline constexpr const char* kSchema = R"({
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
    "chunk_size": {"type": "integer", "minimum": 262144, "maximum": 4294967296, "default": 16777216},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
  )"
    EMBER_NET_STORE_SCHEMA_KEYS(6, 500, 32000, 8388608) R"(
  }
})";

// The common store keys (ca_bundle, verify_tls, allow_insecure_http, read_chunk_size, max_attempts,
// retry_*, timeout_ms, request_deadline_ms) and their reading: net::StoreSettings.
struct Settings : net::StoreSettings {
  std::string endpoint, credentials_file, token, token_uri, scope = kDefaultScope, user_project;
  bool anonymous = false;
  std::uint64_t chunk_size = 16 * kMiB;
  std::size_t max_concurrency = 4;
  int metadata_timeout_ms = 1000;
  int max_results = 1000;

  // The plugin's config (kSchema); throws std::invalid_argument
  // "gcs: config key <key>: expected ..., got ..." (ember/sdk/plugin_config.hpp).
  static Settings from_json(std::string_view text);
  Settings() { retry = {6, 500, 32000}; }  // google-cloud-storage's: 6 attempts, 0.5 s to 32 s
};

struct Location {
  std::string scheme, bucket, key;
  std::string url() const { return scheme + "://" + bucket + "/" + key; }
};

// "gs://bucket/key/with/anything" -> {gs, bucket, key}; the key is taken byte for byte.
Location parse_location(std::string_view url);

// Percent-encode everything but RFC 3986's unreserved characters ('/' included: an object name
// is one path segment of the JSON API): the shared encoder (ember/net/uri.hpp).
inline std::string pct(std::string_view s) { return net::uri_encode(s, /*encode_slash=*/true); }

std::string query_string(const Params& q);

// RFC 3339 ("2024-05-01T12:00:00.123Z") to ns since the epoch; 0 when it does not parse.
std::int64_t parse_rfc3339_ns(const std::string& s);

// A string or number field of a JSON answer; "" or 0 when absent or of another type.
std::string json_str(const json::object& o, const char* k);
std::uint64_t json_u64(const json::object& o, const char* k);
// body as a JSON object; an empty one when it is not.
json::object parse_object(const std::string& body);

// crc32c=<base64> out of an x-goog-hash header ("crc32c=..,md5=.."); "" when absent.
std::string goog_hash_crc32c(const std::string& h);

// What the plugin reads of an object resource.
struct Meta {
  std::uint64_t size = 0;
  std::string generation, crc32c, updated;
};
Meta meta_of(const json::object& o);

// One Cloud Storage endpoint with its credentials, a keep-alive connection pool, retries.
// Thread-safe.
class Service {
 public:
  explicit Service(Settings s);

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
  http::Response call(const Call& c);

  // One attempt, no retry: the answer whatever its status; http::Error on network trouble.
  http::Response send_once(const Call& c);

  // The statuses worth another attempt: the shared ones and 408 Request Timeout.
  static bool retryable_status(int status) { return net::retryable_status(status, {408}); }

  std::string prefix(const Call& c) const { return "gcs " + std::string(c.op) + " " + c.shown; }
  std::string context();

  // The one line for an HTTP error answer: the JSON API's reason and message, the status, the
  // endpoint and which credentials were used — never a token.
  std::string describe(const Call& c, const http::Response& r);

  // Messages built from a server's words pass through here: any secret we hold becomes "***".
  std::string scrub(std::string msg);

  std::string source_text();

 private:
  // Credentials and access tokens (gcs_token.cpp).
  bool source_refreshable();
  void invalidate_token();
  // The Authorization header for a call ("" when anonymous), resolving the source and fetching
  // or refreshing the token as needed.
  std::string authorization(const Call& c);
  TokenSource resolve_source();
  // Whether a GCE metadata server answers at base (Google's libraries ping it the same way).
  bool metadata_answers(const std::string& base);
  // Fill token_ / token_expires_ from the source (cred_mu_ held). Retries transient failures.
  void fetch_token(std::int64_t now);

  Settings s_;
  std::string emulator_;  // STORAGE_EMULATOR_HOST when it chose the endpoint
  http::Url endpoint_;
  std::string base_;      // the endpoint's path prefix ("" for the root)
  std::optional<net::ConnectionPool> pool_;
  std::mutex cred_mu_;    // guards source_, token_, token_expires_
  std::optional<TokenSource> source_;
  std::string token_;
  std::int64_t token_expires_ = 0;
};

// Streaming read of bytes [offset, offset + length) of loc (gcs_reader.cpp).
std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length);

// Atomic streaming write of loc (gcs_writer.cpp).
std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc);

}  // namespace ember::gcs
