// The s3 plugin's config (kSchema in s3_service.hpp), read with the SDK's typed getters.
#include "s3_service.hpp"

#include <ember/sdk/plugin_config.hpp>

namespace ember::s3 {

Settings Settings::from_json(std::string_view text) {
  plugin::Config cfg(text, "s3");
  cfg.set_secret_keys({"secret_access_key", "session_token"});
  Settings s;
  s.endpoint_url = cfg.string("endpoint_url", s.endpoint_url);
  s.region = cfg.string("region", s.region);
  s.addressing_style = cfg.one_of("addressing_style", s.addressing_style, {"auto", "path", "virtual"});
  s.profile = cfg.string("profile", s.profile);
  s.config_creds.access_key_id = cfg.string("access_key_id", s.config_creds.access_key_id);
  s.config_creds.secret_access_key = cfg.string("secret_access_key", s.config_creds.secret_access_key);
  s.config_creds.session_token = cfg.string("session_token", s.config_creds.session_token);
  s.ca_bundle = cfg.string("ca_bundle", s.ca_bundle);
  s.dot_segments = cfg.one_of("dot_segments", s.dot_segments, {"refuse", "allow"});
  s.checksum = cfg.one_of("checksum", "crc32c", {"crc32c", "md5"}) == "md5" ? Checksum::md5 : Checksum::crc32c;
  s.verify_tls = cfg.boolean("verify_tls", s.verify_tls);
  s.allow_insecure_http = cfg.boolean("allow_insecure_http", s.allow_insecure_http);
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.request_deadline_ms = cfg.integer("request_deadline_ms", s.request_deadline_ms, 0, 86400000);
  s.max_concurrency = static_cast<std::size_t>(cfg.integer("max_concurrency", 4, 1, 64));
  s.part_size = static_cast<std::size_t>(cfg.integer("part_size", 16 * kMiB, 5 * kMiB, 5120 * kMiB));
  s.read_chunk_size = static_cast<std::size_t>(cfg.integer("read_chunk_size", 8 * kMiB, 65536, 1024 * kMiB));
  s.retry.max_attempts = static_cast<int>(cfg.integer("max_attempts", s.retry.max_attempts, 1, 20));
  s.retry.base_ms = static_cast<int>(cfg.integer("retry_base_ms", s.retry.base_ms, 1, 3600000));
  s.retry.max_ms = static_cast<int>(cfg.integer("retry_max_ms", s.retry.max_ms, 1, 3600000));
  s.timeout_ms = static_cast<int>(cfg.integer("timeout_ms", s.timeout_ms, 1, 86400000));
  s.max_keys = static_cast<int>(cfg.integer("max_keys", s.max_keys, 1, 1000));
  return s;
}

}  // namespace ember::s3
