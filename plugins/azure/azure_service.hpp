// The azure plugin's parts and what they share (see azure.cpp for the plugin as a whole): its
// settings (azure_settings.cpp), the Service that signs, sends and retries every request
// (azure_service.cpp) with its credentials and endpoint (azure_credentials.cpp), the streaming
// reader (azure_reader.cpp) and the block writer (azure_writer.cpp). Internal to the plugin.
#pragma once

#include "shared_key.hpp"

#include <ember/net/connection_pool.hpp>
#include <ember/net/http.hpp>
#include <ember/net/http_date.hpp>
#include <ember/net/retry.hpp>
#include <ember/net/store_settings.hpp>
#include <ember/net/uri.hpp>  // net::uri_encode: RFC 3986 unreserved characters kept, the rest %XX
#include <ember/net/xml.hpp>
#include <ember/sdk/plugin.hpp>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ember::azure {

constexpr std::uint64_t kMiB = 1024 * 1024;
// The Blob service computes a range's MD5 only for ranges up to this size.
constexpr std::uint64_t kRangeMd5Limit = 4 * kMiB;
constexpr int kMaxBlocks = 50000;
constexpr const char* kApiVersion = "2021-12-02";

inline constexpr const char* kSchema = R"({
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
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
    "block_size": {"type": "integer", "minimum": 65536, "maximum": 4194304000, "default": 8388608},
    "verify_md5": {"type": "boolean", "default": true},
    "block_checksum": {"type": "string", "enum": ["md5", "crc64"], "default": "md5"},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 5000},
  )"
    EMBER_NET_STORE_SCHEMA_KEYS(5, 100, 20000, 4194304) R"(
  }
})";

using net::env;

// The common store keys (ca_bundle, verify_tls, allow_insecure_http, read_chunk_size, max_attempts,
// retry_*, timeout_ms, request_deadline_ms) and their reading: net::StoreSettings.
struct Settings : net::StoreSettings {
  std::string account_name, account_key, sas_token, connection_string, tenant_id, client_id, client_secret,
      authority_host, endpoint_url, endpoint_suffix = "core.windows.net";
  bool anonymous = false, verify_md5 = true;
  bool block_crc64 = false;  // block_checksum "crc64": x-ms-content-crc64 instead of Content-MD5
  std::size_t max_concurrency = 4;
  std::size_t block_size = 8 * kMiB;
  int max_results = 5000;

  // The plugin's config (kSchema); throws std::invalid_argument
  // "azure: config key <key>: expected ..., got ..." (ember/sdk/plugin_config.hpp).
  static Settings from_json(std::string_view text);
  Settings() { read_chunk_size = 4 * kMiB; }  // the azure-storage-blob SDK's download chunk
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

Location parse_location(std::string_view url);

using net::parse_http_date_ns;
using net::parse_xml;  // an empty tree when the answer is not XML
using Tree = net::XmlTree;

// The first line of text (the service's messages carry "RequestId:...\nTime:..." after it).
std::string first_line(std::string text);

inline std::string md5_base64(std::string_view data) { return net::base64(net::md5(data)); }

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
  explicit Service(Settings s);

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
  http::Response call(Call c);

  std::string prefix(const Call& c) const {
    return "azure " + std::string(c.op) + " " + (c.shown_url.empty() ? c.loc->url() : c.shown_url);
  }
  std::string context() const {
    return " (endpoint " + endpoint_text() + ", account " + (cred_.account.empty() ? "(none)" : cred_.account) + ", " +
           cred_.describe() + ")";
  }

  // Any secret this service knows, replaced in text (a message that quotes a request must not
  // carry a key, a SAS signature or a token).
  std::string scrub(std::string text) const;

 private:
  struct Target {
    std::string scheme, host, port, base_path;
  };

  // The endpoint for loc: the configured one, or (for a URL naming another account, with a
  // bearer token or anonymous access) that account's Blob endpoint.
  Target target(const Location& loc, const Call& c) const;

  // "azure PutBlock az://c/b: AuthenticationFailed: Server failed to authenticate... (HTTP 403, ...)"
  std::string describe(const Call& c, const http::Response& res) const;

  // Credentials and endpoint (azure_credentials.cpp), first from the config (connection_string,
  // account_key, sas_token, client secret, in that order), then the same from the environment;
  // else anonymous.
  void resolve();
  void set_key(const std::string& text, const std::string& source);
  void set_sas(std::string sas, const std::string& source);
  // The client-credentials flow (Microsoft identity platform v2.0): POST the client id and
  // secret to {authority}/{tenant}/oauth2/v2.0/token for the scope https://storage.azure.com/.default;
  // cached until 5 minutes before it expires.
  std::string bearer_token(const Call& c);
  std::string scrub_locked(std::string text) const;  // scrub with token_mu_ held

  Settings s_;
  Credentials cred_;
  bool custom_endpoint_ = false;
  http::Url endpoint_;
  std::string base_path_;
  std::optional<net::ConnectionPool> pool_;
  mutable std::mutex token_mu_;  // guards token_, token_expiry_ and secrets_
  std::string token_;
  std::chrono::steady_clock::time_point token_expiry_{};
  std::vector<std::string> secrets_;
};

// Streaming read of bytes [offset, offset + length) of loc (azure_reader.cpp).
std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length);

// Atomic streaming write of loc (azure_writer.cpp).
std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc);

}  // namespace ember::azure
