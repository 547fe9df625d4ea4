// The s3 plugin's parts and what they share (see s3.cpp for the plugin as a whole): its settings
// (s3_settings.cpp), the Service that signs, sends and retries every request (s3_service.cpp),
// the streaming reader (s3_reader.cpp) and the multipart writer (s3_writer.cpp). Internal to
// the plugin: every part is built into s3.so (and the fuzz target that compiles the plugin in).
#pragma once

#include "aws_config.hpp"
#include "checksum.hpp"
#include "sigv4.hpp"

#include <ember/net/connection_pool.hpp>
#include <ember/net/http.hpp>
#include <ember/net/http_date.hpp>
#include <ember/net/retry.hpp>
#include <ember/net/store_settings.hpp>
#include <ember/net/xml.hpp>
#include <ember/sdk/plugin.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ember::s3 {

constexpr std::uint64_t kMiB = 1024 * 1024;

inline constexpr const char* kSchema = R"({
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
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "part_size": {"type": "integer", "minimum": 5242880, "maximum": 5368709120, "default": 16777216},
    "max_keys": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
    "dot_segments": {"type": "string", "enum": ["refuse", "allow"], "default": "refuse"},
    "checksum": {"type": "string", "enum": ["crc32c", "md5"], "default": "crc32c"},
  )"
    EMBER_NET_STORE_SCHEMA_KEYS(5, 100, 20000, 8388608) R"(
  }
})";

// The common store keys (ca_bundle, verify_tls, allow_insecure_http, read_chunk_size, max_attempts,
// retry_*, timeout_ms, request_deadline_ms) and their reading: net::StoreSettings.
struct Settings : net::StoreSettings {
  std::string endpoint_url, region, addressing_style = "auto", profile, dot_segments = "refuse";
  Checksum checksum = Checksum::crc32c;
  Credentials config_creds;
  std::size_t max_concurrency = 4;
  std::size_t part_size = 16 * kMiB;
  int max_keys = 1000;

  // The plugin's config (kSchema); throws std::invalid_argument
  // "s3: config key <key>: expected ..., got ..." (ember/sdk/plugin_config.hpp).
  static Settings from_json(std::string_view text);
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
Location parse_location(std::string_view url);

using net::parse_http_date_ns;
using net::parse_xml;  // an empty tree when the answer is not XML (s3rver's HTML 404s, proxies)
using net::xml_escape;
using Tree = net::XmlTree;

// One S3 endpoint with its credentials, a keep-alive connection pool per host, signing and
// retries. Thread-safe.
class Service {
 public:
  explicit Service(Settings s);

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
  http::Response call(Call c);

  // A key with a "." or ".." segment is legal in S3, but servers and proxies that normalise
  // paths (s3rver does) would store it under another key, possibly outside its prefix. Refused
  // unless dot_segments is "allow"; ".." inside a name ("a..b") is just a name.
  void check_dot_segments(const Call& c) const;

  std::string prefix(const Call& c) const {
    return "S3 " + std::string(c.op) + " " + (c.shown_url.empty() ? c.loc->url() : c.shown_url);
  }
  std::string context() const { return " (endpoint " + endpoint_text() + ", region " + region_ + ")"; }

 private:
  SourcedCredentials credentials(const Call& c);
  std::string describe(const Call& c, const http::Response& res, const Tree& t, const SourcedCredentials& cred) const;

  Settings s_;
  std::string profile_, region_;
  bool custom_endpoint_ = false, path_style_ = false;
  http::Url endpoint_;
  std::optional<net::ConnectionPool> pool_;
  std::mutex cred_mu_;
  std::optional<SourcedCredentials> creds_;
};

// Streaming read of bytes [offset, offset + length) of loc (s3_reader.cpp).
std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length);

// Atomic streaming write of loc (s3_writer.cpp).
std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc);

}  // namespace ember::s3
