// The webhdfs plugin's config (kSchema in webhdfs_service.hpp), read with the SDK's typed getters.
#include "webhdfs_service.hpp"

#include <ember/net/digest.hpp>  // net::env
#include <ember/net/store_settings.hpp>
#include <ember/sdk/plugin_config.hpp>

#include <pwd.h>
#include <unistd.h>

namespace ember::webhdfs {

Settings Settings::from_json(std::string_view text) {
  plugin::Config cfg(text, "webhdfs");
  cfg.set_secret_keys({"delegation_token"});
  Settings s;
  s.user = cfg.string("user", s.user);
  s.delegation_token = cfg.string("delegation_token", s.delegation_token);
  s.hdfs_transport = cfg.one_of("hdfs_transport", s.hdfs_transport, {"http", "https"});
  s.overwrite = cfg.one_of("overwrite", s.overwrite, {"rename_overwrite", "delete_then_rename"});
  s.read_store_keys(cfg);  // ca_bundle, verify_tls, timeouts, retries, ... (net/store_settings.hpp)
  s.list_batch = cfg.boolean("list_batch", s.list_batch);
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.part_size = static_cast<std::size_t>(cfg.integer("part_size", 8 << 20, 65536, 1 << 30));
  if (const json::value* x = cfg.find("endpoints")) {
    if (!x->is_object())
      cfg.fail("endpoints", "expected an object of \"host:port\": \"http(s)://host:port\", got " + json::serialize(*x));
    for (const auto& kv : x->as_object()) {
      const std::string key = "endpoints." + std::string(kv.key());
      if (!kv.value().is_string()) cfg.fail(key, "expected a string URL, got " + json::serialize(kv.value()));
      std::string base(kv.value().as_string());
      try {
        http::Url::parse(base);
      } catch (const std::exception& e) {
        cfg.fail(key, e.what());
      }
      while (!base.empty() && base.back() == '/') base.pop_back();
      s.endpoints[std::string(kv.key())] = base;
    }
  }
  // As Hadoop's own clients: HADOOP_USER_NAME, else the login name.
  if (s.user.empty()) s.user = net::env("HADOOP_USER_NAME");
  if (s.user.empty()) {
    if (const passwd* pw = ::getpwuid(::geteuid())) s.user = pw->pw_name;
  }
  if (s.delegation_token.empty()) s.delegation_token = net::env("WEBHDFS_DELEGATION_TOKEN");
  return s;
}

}  // namespace ember::webhdfs
