// The s3 plugin's config (kSchema in s3_service.hpp), read with the SDK's typed getters.
#include "s3_service.hpp"

#include <ember/net/store_settings.hpp>
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
  s.read_store_keys(cfg);  // ca_bundle, verify_tls, timeouts, retries, ... (net/store_settings.hpp)
  s.dot_segments = cfg.one_of("dot_segments", s.dot_segments, {"refuse", "allow"});
  s.checksum = cfg.one_of("checksum", "crc32c", {"crc32c", "md5"}) == "md5" ? Checksum::md5 : Checksum::crc32c;
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.max_concurrency = static_cast<std::size_t>(cfg.integer("max_concurrency", 4, 1, 64));
  s.part_size = static_cast<std::size_t>(cfg.integer("part_size", 16 * kMiB, 5 * kMiB, 5120 * kMiB));
  s.max_keys = static_cast<int>(cfg.integer("max_keys", s.max_keys, 1, 1000));
  return s;
}

}  // namespace ember::s3
