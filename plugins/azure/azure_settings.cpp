// The azure plugin's config (kSchema in azure_service.hpp), read with the SDK's typed getters.
#include "azure_service.hpp"

#include <ember/net/store_settings.hpp>
#include <ember/sdk/plugin_config.hpp>

#include <set>

namespace ember::azure {

Settings Settings::from_json(std::string_view text) {
  plugin::Config cfg(text, "azure");
  cfg.set_secret_keys({"account_key", "sas_token", "connection_string", "client_secret"});
  static const std::set<std::string> known = {
      "account_name", "account_key", "sas_token", "connection_string", "tenant_id", "client_id", "client_secret",
      "authority_host", "anonymous", "endpoint_url", "endpoint_suffix", "ca_bundle", "verify_tls",
      "allow_insecure_http", "max_concurrency", "block_size", "read_chunk_size", "verify_md5", "block_checksum", "max_attempts",
      "retry_base_ms", "retry_max_ms", "timeout_ms", "request_deadline_ms", "max_results"};
  for (const auto& kv : cfg.object())
    if (!known.count(std::string(kv.key()))) cfg.fail(std::string(kv.key()), "unknown key (plugins/azure/README.md lists the keys)");
  Settings s;
  s.account_name = cfg.string("account_name", s.account_name);
  s.account_key = cfg.string("account_key", s.account_key);
  s.sas_token = cfg.string("sas_token", s.sas_token);
  s.connection_string = cfg.string("connection_string", s.connection_string);
  s.tenant_id = cfg.string("tenant_id", s.tenant_id);
  s.client_id = cfg.string("client_id", s.client_id);
  s.client_secret = cfg.string("client_secret", s.client_secret);
  s.authority_host = cfg.string("authority_host", s.authority_host);
  s.endpoint_url = cfg.string("endpoint_url", s.endpoint_url);
  s.endpoint_suffix = cfg.string("endpoint_suffix", s.endpoint_suffix);
  s.read_store_keys(cfg);  // ca_bundle, verify_tls, timeouts, retries, ... (net/store_settings.hpp)
  s.anonymous = cfg.boolean("anonymous", s.anonymous);
  s.verify_md5 = cfg.boolean("verify_md5", s.verify_md5);
  s.block_crc64 = cfg.one_of("block_checksum", "md5", {"md5", "crc64"}) == "crc64";
  s.max_concurrency = static_cast<std::size_t>(cfg.integer("max_concurrency", 4, 1, 64));
  s.block_size = static_cast<std::size_t>(cfg.integer("block_size", 8 * kMiB, 65536, 4000 * kMiB));
  s.max_results = static_cast<int>(cfg.integer("max_results", s.max_results, 1, 5000));
  if (s.endpoint_suffix.empty()) s.endpoint_suffix = "core.windows.net";
  return s;
}

}  // namespace ember::azure
