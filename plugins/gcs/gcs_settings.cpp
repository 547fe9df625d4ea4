// The gcs plugin's config (kSchema in gcs_service.hpp), read with the SDK's typed getters.
#include "gcs_service.hpp"

#include <ember/sdk/plugin_config.hpp>

namespace ember::gcs {

Settings Settings::from_json(std::string_view text) {
  plugin::Config cfg(text, "gcs");
  cfg.set_secret_keys({"token"});
  Settings s;
  s.endpoint = cfg.string("endpoint", s.endpoint);
  s.credentials_file = cfg.string("credentials_file", s.credentials_file);
  s.token = cfg.string("token", s.token);
  s.token_uri = cfg.string("token_uri", s.token_uri);
  s.scope = cfg.string("scope", s.scope);
  s.user_project = cfg.string("user_project", s.user_project);
  s.ca_bundle = cfg.string("ca_bundle", s.ca_bundle);
  s.anonymous = cfg.boolean("anonymous", s.anonymous);
  s.verify_tls = cfg.boolean("verify_tls", s.verify_tls);
  s.allow_insecure_http = cfg.boolean("allow_insecure_http", s.allow_insecure_http);
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.chunk_size = static_cast<std::uint64_t>(cfg.integer("chunk_size", 16 * kMiB, kChunkQuantum, 4096 * kMiB));
  s.read_chunk_size = static_cast<std::uint64_t>(cfg.integer("read_chunk_size", 8 * kMiB, 65536, 1024 * kMiB));
  s.max_concurrency = static_cast<std::size_t>(cfg.integer("max_concurrency", 4, 1, 64));
  s.retry.max_attempts = static_cast<int>(cfg.integer("max_attempts", s.retry.max_attempts, 1, 20));
  s.retry.base_ms = static_cast<int>(cfg.integer("retry_base_ms", s.retry.base_ms, 1, 3600000));
  s.retry.max_ms = static_cast<int>(cfg.integer("retry_max_ms", s.retry.max_ms, 1, 3600000));
  s.timeout_ms = static_cast<int>(cfg.integer("timeout_ms", s.timeout_ms, 1, 86400000));
  s.metadata_timeout_ms = static_cast<int>(cfg.integer("metadata_timeout_ms", s.metadata_timeout_ms, 1, 60000));
  s.request_deadline_ms = cfg.integer("request_deadline_ms", s.request_deadline_ms, 0, 86400000);
  s.max_results = static_cast<int>(cfg.integer("max_results", s.max_results, 1, 1000));
  if (s.chunk_size % kChunkQuantum != 0)
    cfg.fail("chunk_size", "expected a multiple of 262144 (256 KiB, the resumable upload granularity), got " +
                               std::to_string(s.chunk_size));
  if (s.anonymous && !s.token.empty()) cfg.fail("anonymous", "true excludes the config key token (set one of them)");
  return s;
}

}  // namespace ember::gcs
