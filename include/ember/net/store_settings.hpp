// The config keys every object-store plugin (s3, gcs, azure, webhdfs) has, written once: their
// JSON Schema text with the plugin's defaults, their bounds, and how they are read. A plugin's
// Settings derives from StoreSettings, sets its own defaults in its constructor, puts
// EMBER_NET_STORE_SCHEMA_KEYS(...) among its schema's properties, and calls read_store_keys()
// from its from_json. A bound changed here changes for every store, in the schema the host checks
// and in the plugin's own reading alike.
//
//   ca_bundle            PEM file of extra trust anchors ("" = the system's)
//   verify_tls           TLS certificate and host name checks (on by default)
//   allow_insecure_http  plain http:// to a host other than loopback
//   read_chunk_size      bytes per ranged GET of a reader
//   max_attempts         attempts per request, the first included
//   retry_base_ms, retry_max_ms   backoff: uniform in [0, min(max, base * 2^n)] (net/retry.hpp)
//   timeout_ms           one socket operation (connect, a read, a write)
//   request_deadline_ms  one attempt of one request, connect to last byte (0 = none)
#pragma once

#include <ember/net/retry.hpp>
#include <ember/sdk/plugin_config.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

// The bounds, as macros so that the schema text below spells the same numbers.
#define EMBER_NET_STORE_MAX_ATTEMPTS_MAX 20
#define EMBER_NET_STORE_RETRY_MS_MAX 3600000
#define EMBER_NET_STORE_TIMEOUT_MS_MAX 86400000
#define EMBER_NET_STORE_READ_CHUNK_MIN 65536
#define EMBER_NET_STORE_READ_CHUNK_MAX 1073741824

#define EMBER_NET_STORE_STR2(x) #x
#define EMBER_NET_STORE_STR(x) EMBER_NET_STORE_STR2(x)

// The "properties" members of the common keys, with the plugin's defaults, as one string literal
// (no trailing comma): R"({"type": "object", "properties": {)" EMBER_NET_STORE_SCHEMA_KEYS(...) ...
#define EMBER_NET_STORE_SCHEMA_KEYS(MAX_ATTEMPTS, RETRY_BASE_MS, RETRY_MAX_MS, READ_CHUNK_SIZE)                      \
  "\"ca_bundle\": {\"type\": \"string\", \"default\": \"\"},\n"                                                        \
  "\"verify_tls\": {\"type\": \"boolean\", \"default\": true},\n"                                                      \
  "\"allow_insecure_http\": {\"type\": \"boolean\", \"default\": false},\n"                                            \
  "\"read_chunk_size\": {\"type\": \"integer\", \"minimum\": " EMBER_NET_STORE_STR(EMBER_NET_STORE_READ_CHUNK_MIN)     \
  ", \"maximum\": " EMBER_NET_STORE_STR(EMBER_NET_STORE_READ_CHUNK_MAX) ", \"default\": " #READ_CHUNK_SIZE "},\n"       \
  "\"max_attempts\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": "                                            \
  EMBER_NET_STORE_STR(EMBER_NET_STORE_MAX_ATTEMPTS_MAX) ", \"default\": " #MAX_ATTEMPTS "},\n"                          \
  "\"retry_base_ms\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": "                                           \
  EMBER_NET_STORE_STR(EMBER_NET_STORE_RETRY_MS_MAX) ", \"default\": " #RETRY_BASE_MS "},\n"                             \
  "\"retry_max_ms\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": "                                            \
  EMBER_NET_STORE_STR(EMBER_NET_STORE_RETRY_MS_MAX) ", \"default\": " #RETRY_MAX_MS "},\n"                              \
  "\"timeout_ms\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": "                                              \
  EMBER_NET_STORE_STR(EMBER_NET_STORE_TIMEOUT_MS_MAX) ", \"default\": 30000},\n"                                        \
  "\"request_deadline_ms\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": "                                     \
  EMBER_NET_STORE_STR(EMBER_NET_STORE_TIMEOUT_MS_MAX) ", \"default\": 600000}"

namespace ember::net {

struct StoreSettings {
  std::string ca_bundle;
  bool verify_tls = true, allow_insecure_http = false;
  std::size_t read_chunk_size = 8 * 1024 * 1024;
  RetryPolicy retry{5, 100, 20000};  // max_attempts, retry_base_ms, retry_max_ms
  int timeout_ms = 30000;
  std::int64_t request_deadline_ms = 600000;  // one attempt of one request, connect to last byte

  // The common keys' values over the defaults already set, within the bounds above; a bad one
  // throws std::invalid_argument "<plugin>: config key <key>: expected ..., got ..." (the host
  // checked the schema already: this is the plugin's own guard, for embedders that skip it).
  void read_store_keys(const plugin::Config& cfg) {
    ca_bundle = cfg.string("ca_bundle", ca_bundle);
    verify_tls = cfg.boolean("verify_tls", verify_tls);
    allow_insecure_http = cfg.boolean("allow_insecure_http", allow_insecure_http);
    read_chunk_size = static_cast<std::size_t>(cfg.integer("read_chunk_size", static_cast<std::int64_t>(read_chunk_size),
                                                           EMBER_NET_STORE_READ_CHUNK_MIN, EMBER_NET_STORE_READ_CHUNK_MAX));
    retry.max_attempts = static_cast<int>(cfg.integer("max_attempts", retry.max_attempts, 1, EMBER_NET_STORE_MAX_ATTEMPTS_MAX));
    retry.base_ms = static_cast<int>(cfg.integer("retry_base_ms", retry.base_ms, 1, EMBER_NET_STORE_RETRY_MS_MAX));
    retry.max_ms = static_cast<int>(cfg.integer("retry_max_ms", retry.max_ms, 1, EMBER_NET_STORE_RETRY_MS_MAX));
    timeout_ms = static_cast<int>(cfg.integer("timeout_ms", timeout_ms, 1, EMBER_NET_STORE_TIMEOUT_MS_MAX));
    request_deadline_ms = cfg.integer("request_deadline_ms", request_deadline_ms, 0, EMBER_NET_STORE_TIMEOUT_MS_MAX);
  }
};

}  // namespace ember::net
