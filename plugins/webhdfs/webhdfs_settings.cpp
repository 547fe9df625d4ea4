// The webhdfs plugin's config (kSchema in webhdfs_service.hpp), read with the SDK's typed getters.
#include "webhdfs_service.hpp"

#include <ember/net/digest.hpp>  // net::env
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
  s.ca_bundle = cfg.string("ca_bundle", s.ca_bundle);
  s.list_batch = cfg.boolean("list_batch", s.list_batch);
  s.verify_tls = cfg.boolean("verify_tls", s.verify_tls);
  s.allow_insecure_http = cfg.boolean("allow_insecure_http", s.allow_insecure_http);
  // The bounds are the schema's: the host checked them already; this is the plugin's own guard.
  s.part_size = static_cast<std::size_t>(cfg.integer("part_size", 8 << 20, 65536, 1 << 30));
  s.read_chunk_size = static_cast<std::size_t>(cfg.integer("read_chunk_size", 8 << 20, 65536, 1 << 30));
  s.retry.max_attempts = static_cast<int>(cfg.integer("max_attempts", s.retry.max_attempts, 1, 20));
  s.retry.base_ms = static_cast<int>(cfg.integer("retry_base_ms", s.retry.base_ms, 1, 3600000));
  s.retry.max_ms = static_cast<int>(cfg.integer("retry_max_ms", s.retry.max_ms, 1, 3600000));
  s.timeout_ms = static_cast<int>(cfg.integer("timeout_ms", s.timeout_ms, 1, 86400000));
  s.request_deadline_ms = cfg.integer("request_deadline_ms", s.request_deadline_ms, 0, 86400000);
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
