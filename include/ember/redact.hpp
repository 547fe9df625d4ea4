// Secrets out of what the host prints or sends: a resolved run config, `--set KEY=VALUE`
// overrides and a whole command line, with every value a schema marks secret
// (config::kSecretKeyword, i.e. `"writeOnly": true`) replaced by config::kRedacted ("***").
//
//   ember::PluginSchemas schemas = ember::plugin_schemas(catalog);
//   ember::redact_run_config(cfg, schemas);                      // `ember config`
//   auto args = ember::redact_argv(argv_without_program, schemas, cfg);  // run metadata
//
// The schemas are the run config's own (run_config.hpp) and each plugin's, found by the plugin id
// its reference names ({"plugin": "s3", "config": {...}} in plugins.storage, trainer.logger,
// trainer.callbacks, and model.plugin with model.config). A plugin config whose plugin is not in
// the schemas is replaced whole: what it holds is unknown, so it is treated as secret.
#pragma once

#include <ember/config.hpp>
#include <ember/loader.hpp>
#include <ember/run_config.hpp>
#include <ember/schemes.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember {

// Each plugin's config schema by plugin id; null for a plugin that declares none (it takes no
// config, so it has no secrets).
using PluginSchemas = std::map<std::string, boost::json::value, std::less<>>;

// The schemas of every plugin the catalog found. A schema that does not parse cannot occur (the
// loader refuses such a plugin: check_entry); it would be recorded as null.
inline PluginSchemas plugin_schemas(const Catalog& catalog) {
  PluginSchemas out;
  for (const auto& [id, lib] : catalog.plugins) {
    boost::json::value schema;
    const auto& e = lib->entry();
    if (e.config_schema.size) {
      try {
        schema = config::parse(sv(e.config_schema), lib->path() + " config_schema");
      } catch (const ConfigError&) {
      }
    }
    out.emplace(id, std::move(schema));
  }
  return out;
}

namespace detail {

// Redact the config of one plugin reference ({"plugin": id, "config": ...}); tolerant of a
// reference that is not well formed (an override not yet checked).
inline void redact_plugin_ref(boost::json::value& ref, const PluginSchemas& schemas) {
  if (!ref.is_object()) return;
  auto& o = ref.as_object();
  auto* c = o.if_contains("config");
  if (!c || c->is_null()) return;
  const auto* id = o.if_contains("plugin");
  auto it = id && id->is_string() ? schemas.find(std::string_view(id->as_string())) : schemas.end();
  if (it == schemas.end()) {
    if (!(c->is_object() && c->as_object().empty())) *c = config::kRedacted;
    return;
  }
  config::redact(*c, it->second);
}

inline boost::json::value* find_path(boost::json::value& root, std::string_view path) {
  boost::json::value* cur = &root;
  std::size_t start = 0;
  while (true) {
    auto dot = path.find('.', start);
    std::string_view key = path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    cur = cur->as_object().if_contains(key);
    if (!cur) return nullptr;
    if (dot == std::string_view::npos) return cur;
    start = dot + 1;
  }
}

}  // namespace detail

// Replace, in a run config (resolved or not), every secret value with config::kRedacted.
inline void redact_run_config(boost::json::value& cfg, const PluginSchemas& schemas) {
  static const boost::json::value run_schema = config::parse(run_config_schema(), "run config schema");
  config::redact(cfg, run_schema);
  if (!cfg.is_object()) return;
  auto& root = cfg.as_object();
  for (auto [section, key] : {std::pair{"plugins", "storage"}, std::pair{"trainer", "logger"},
                              std::pair{"trainer", "callbacks"}}) {
    auto* s = root.if_contains(section);
    if (!s || !s->is_object()) continue;
    auto* list = s->as_object().if_contains(key);
    if (!list || !list->is_array()) continue;
    for (auto& ref : list->as_array()) detail::redact_plugin_ref(ref, schemas);
  }
  // storage_options["KEY"] is a config of the plugin that provides KEY's scheme (known_provider:
  // s3, gcs, azure, webhdfs); an option set whose plugin is unknown here is replaced whole.
  if (auto* so = root.if_contains("storage_options"); so && so->is_object())
    for (auto& kv : so->as_object()) {
      std::string key(kv.key());
      std::string scheme = key.substr(0, key.find("://"));
      std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      boost::json::value ref = boost::json::object{{"plugin", std::string(known_provider(scheme))}, {"config", kv.value()}};
      detail::redact_plugin_ref(ref, schemas);
      kv.value() = ref.as_object().at("config");
    }
  // model.config belongs to the model plugin (model.plugin); without one named, it is unknown.
  if (auto* m = root.if_contains("model"); m && m->is_object()) detail::redact_plugin_ref(*m, schemas);
}

// One `--set KEY.PATH=VALUE` with the secret parts of VALUE replaced: "a.b=***" when the whole
// value is secret, "a.b=<JSON with the secrets replaced>" when some part of it is, unchanged when
// none is. `base` is the config the override applies to (the resolved run config), so that an
// override of model.config.X finds model.plugin; without it only the override itself is known.
// An override that does not apply (a malformed one) keeps its KEY.PATH only.
inline std::string redact_override(std::string_view assignment, const PluginSchemas& schemas,
                                   const boost::json::value& base = boost::json::object()) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) return std::string(assignment);
  const std::string_view path = assignment.substr(0, eq);
  boost::json::value tree = base.is_object() ? base : boost::json::object();
  try {
    config::apply_override(tree, assignment);
  } catch (const ConfigError&) {
    return std::string(path) + "=" + config::kRedacted;
  }
  const boost::json::value* set = detail::find_path(tree, path);
  if (!set) return std::string(path) + "=" + config::kRedacted;
  const boost::json::value value = *set;
  redact_run_config(tree, schemas);
  const boost::json::value* shown = detail::find_path(tree, path);
  if (!shown) return std::string(path) + "=" + config::kRedacted;
  if (*shown == value) return std::string(assignment);
  return std::string(path) + "=" + (shown->is_string() ? std::string(shown->as_string()) : boost::json::serialize(*shown));
}

inline std::vector<std::string> redact_overrides(const std::vector<std::string>& overrides, const PluginSchemas& schemas,
                                                 const boost::json::value& base = boost::json::object()) {
  std::vector<std::string> out;
  out.reserve(overrides.size());
  for (const auto& o : overrides) out.push_back(redact_override(o, schemas, base));
  return out;
}

// A command line (`ember fit --config run.json --set a=1 b=2 --set=c=3 ...`, with or without the
// program name) with every --set value redacted. `--set` takes all the words after it up to the
// next option, as the CLI parses it (host/main.cpp).
inline std::vector<std::string> redact_argv(const std::vector<std::string>& argv, const PluginSchemas& schemas,
                                            const boost::json::value& base = boost::json::object()) {
  std::vector<std::string> out;
  out.reserve(argv.size());
  bool in_set = false;
  for (const auto& a : argv) {
    const std::string_view arg = a;
    if (arg == "--set") {
      in_set = true;
      out.push_back(a);
    } else if (arg.rfind("--set=", 0) == 0) {
      in_set = false;
      out.push_back("--set=" + redact_override(arg.substr(6), schemas, base));
    } else if (!arg.empty() && arg[0] == '-') {
      in_set = false;
      out.push_back(a);
    } else {
      out.push_back(in_set ? redact_override(arg, schemas, base) : a);
    }
  }
  return out;
}

}  // namespace ember
