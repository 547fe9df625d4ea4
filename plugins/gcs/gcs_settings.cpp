// The gcs plugin's config (kSchema in gcs_service.hpp), read with the SDK's typed getters.
#include "gcs_service.hpp"

#include <ember/net/store_settings.hpp>
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
  s.read_store_keys(cfg);  // ca_bundle, verify_tls, timeouts, retries, ... (net/store_settings.hpp)
  s.anonymous = cfg.boolean("anonymous", s.anonymous);
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.chunk_size = static_cast<std::uint64_t>(cfg.integer("chunk_size", 16 * kMiB, kChunkQuantum, 4096 * kMiB));
  s.max_concurrency = static_cast<std::size_t>(cfg.integer("max_concurrency", 4, 1, 64));
  s.metadata_timeout_ms = static_cast<int>(cfg.integer("metadata_timeout_ms", s.metadata_timeout_ms, 1, 60000));
  s.max_results = static_cast<int>(cfg.integer("max_results", s.max_results, 1, 1000));
  if (s.chunk_size % kChunkQuantum != 0)
    cfg.fail("chunk_size", "expected a multiple of 262144 (256 KiB, the resumable upload granularity), got " +
                               std::to_string(s.chunk_size));
  if (s.anonymous && !s.token.empty()) cfg.fail("anonymous", "true excludes the config key token (set one of them)");
  return s;
}

}  // namespace ember::gcs
