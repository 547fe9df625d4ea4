// Per-URL storage options, as fsspec's `storage_options`: the run config's top-level
// `storage_options` maps a scheme ("s3") or a URL prefix ("s3://bucket-a/") to a config object of
// the storage plugin that serves that scheme (its own schema: endpoint, credentials, part size,
// concurrency...). Each object is that plugin's whole config for those URLs (it is not merged with
// a plugins.storage entry).
//
//   {"storage_options": {"s3": {"region": "eu-west-1"},
//                        "s3://bucket-a/": {"endpoint_url": "http://127.0.0.1:9000", "part_size": 8388608}}}
//
// The host makes one plugin instance per distinct (plugin, option set) and routes each URL to the
// longest matching prefix, else the scheme entry, else the plugins.storage entry or the plugin
// loaded by scheme with its default config (storage::UrlSpace::add_prefix). The plugin of a key's
// scheme is the plugins.storage entry that claims it, else the plugin found that claims it
// (include/ember/schemes.hpp). Each object is checked against that plugin's schema when the config
// is loaded (`ember config`, before `ember fit` builds anything), the errors naming
// `storage_options["s3://bucket-a/"].part_size`; a key whose scheme no plugin claims, or a
// built-in scheme (file://, memory://, which take no options), is refused naming the key.
#pragma once

#include <ember/config.hpp>
#include <ember/error.hpp>
#include <ember/loader.hpp>
#include <ember/plugin_backend.hpp>
#include <ember/run_config.hpp>
#include <ember/schemes.hpp>
#include <ember/storage.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ember {

// One checked entry of storage_options.
struct StorageOption {
  std::string key;        // as written: "s3" or "s3://bucket-a/"
  std::string where;      // storage_options["KEY"]
  std::string prefix;     // what it routes: "s3://" for a scheme entry, else the key (scheme lowercased)
  std::string scheme;     // "s3"
  std::string plugin_id;  // the plugin whose config it is
  boost::json::value config;  // checked against the plugin's schema, defaults filled
};

inline std::string storage_option_where(const std::string& key) {
  return "storage_options[" + boost::json::serialize(boost::json::value(key)) + "]";
}

// The scheme a storage_options key names ("s3" for "s3" and "s3://bucket/"), lowercased; empty
// when the key is neither a scheme nor a URL prefix.
inline std::string storage_option_scheme(const std::string& key) {
  auto p = key.find("://");
  std::string s = key.substr(0, p);
  if (s.empty()) return {};
  for (char& c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.')) return {};
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// The plugin id serving each scheme for a config: plugins.storage entries first (explicit config
// wins), then the catalog's claims.
inline std::map<std::string, std::string> storage_scheme_plugins(const boost::json::value& cfg, const Catalog& catalog) {
  std::map<std::string, std::string> out;
  for (const auto& ref : plugin_refs(cfg, "plugins", "storage"))
    if (auto lib = catalog.find(ref.id))
      for (auto& s : claimed_schemes(*lib)) out.emplace(s, ref.id);
  for (const auto& [s, id] : scheme_owners(catalog).owner) out.emplace(s, id);
  return out;
}

// Check cfg's storage_options against the plugins' schemas; throws one ConfigError listing every
// problem ("SOURCE: storage_options["KEY"].FIELD: ...").
inline std::vector<StorageOption> storage_options(const boost::json::value& cfg, const Catalog& catalog,
                                                  const std::string& source) {
  std::vector<StorageOption> out;
  const auto* so = cfg.is_object() ? cfg.as_object().if_contains("storage_options") : nullptr;
  if (!so || !so->is_object() || so->as_object().empty()) return out;
  const auto plugins = storage_scheme_plugins(cfg, catalog);
  std::string errors;
  auto fail = [&](const std::string& m) { errors += (errors.empty() ? "" : "\n") + m; };
  for (const auto& kv : so->as_object()) {
    StorageOption o;
    o.key = std::string(kv.key());
    o.where = storage_option_where(o.key);
    o.scheme = storage_option_scheme(o.key);
    const bool is_prefix = o.key.find("://") != std::string::npos;
    if (o.scheme.empty()) {
      fail(source + ": " + o.where + ": expected a URL scheme (\"s3\") or a URL prefix (\"s3://bucket/\")");
      continue;
    }
    if (builtin_scheme(o.scheme)) {
      fail(source + ": " + o.where + ": " + o.scheme + ":// is served by the host itself and takes no storage options");
      continue;
    }
    auto it = plugins.find(o.scheme);
    if (it == plugins.end()) {
      std::string msg = source + ": " + o.where + ": no storage plugin claims the scheme '" + o.scheme + "://'; available:";
      for (const auto& [s, id] : plugins) msg += " " + s + "://";
      if (plugins.empty()) msg += " (none)";
      if (auto p = known_provider(o.scheme); !p.empty())
        msg += "; the '" + std::string(p) + "' storage plugin provides " + o.scheme + "://: put " + std::string(p) +
               ".so in a plugin directory";
      fail(msg);
      continue;
    }
    o.plugin_id = it->second;
    o.prefix = is_prefix ? o.scheme + o.key.substr(o.key.find("://")) : o.scheme + "://";
    o.config = kv.value();
    try {
      auto lib = catalog.require(o.plugin_id, source + ": " + o.where);
      const auto& e = lib->entry();
      if (e.config_schema.size) {
        auto schema = config::parse(sv(e.config_schema), lib->path() + " config_schema");
        config::check(o.config, schema, source + ": plugin " + o.plugin_id, o.where, /*fill_defaults=*/true);
      } else if (!o.config.is_object() || !o.config.as_object().empty()) {
        throw ConfigError(source + ": " + o.where + ": plugin '" + o.plugin_id + "' takes no config keys");
      }
    } catch (const ConfigError& e) {
      fail(e.what());
      continue;
    }
    out.push_back(std::move(o));
  }
  if (!errors.empty()) throw ConfigError(errors);
  return out;
}

// Create one plugin instance per distinct (plugin, option set) into `keep` and route each
// option's prefix to it in `urls`.
inline void apply_storage_options(const std::vector<StorageOption>& options, const Catalog& catalog, Services& services,
                                  storage::UrlSpace& urls, std::vector<std::unique_ptr<PluginInstance>>& keep,
                                  const std::string& source) {
  std::map<std::string, std::shared_ptr<storage::Backend>> by_config;  // "id\nconfig" -> backend
  for (const auto& o : options) {
    std::string k = o.plugin_id + "\n" + boost::json::serialize(o.config);
    auto it = by_config.find(k);
    if (it == by_config.end()) {
      auto lib = catalog.require(o.plugin_id, source + ": " + o.where);
      keep.push_back(std::make_unique<PluginInstance>(lib, o.config, services, source + ": plugin " + o.plugin_id + " at " + o.where));
      auto* st = keep.back()->interface<ember_storage_v1_t>(EMBER_STORAGE_V1);
      if (!st) throw ConfigError(source + ": " + o.where + ": plugin '" + o.plugin_id + "' offers no " EMBER_STORAGE_V1);
      it = by_config.emplace(k, std::make_shared<PluginBackend>(*keep.back(), *st)).first;
    }
    urls.add_prefix(o.prefix, it->second);
  }
}

}  // namespace ember
