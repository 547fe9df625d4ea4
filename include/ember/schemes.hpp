// Which storage plugin serves which URL scheme, and the schemes a run config uses: so that
// `default_root_dir: "gs://bucket/run"` works with the gcs plugin in a plugin directory and no
// `plugins.storage` entry (as fsspec finds gcsfs by protocol), and so that a scheme nothing
// serves is refused when the config is loaded, before anything trains.
//
// A storage plugin names its schemes in its ember.storage/1 table, which the host reads without
// creating the plugin (get_interface with self NULL). Two plugins claiming one scheme: the first
// in plugin-directory order serves it; `ember plugins` reports the other.
#pragma once

#include <ember/error.hpp>
#include <ember/loader.hpp>
#include <ember/run_config.hpp>
#include <ember/storage.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember {

// Schemes the host serves itself.
inline bool builtin_scheme(std::string_view s) { return s == "file" || s == "memory"; }

// The plugin that would provide a scheme if it were installed (for the message when none is).
inline std::string_view known_provider(std::string_view scheme) {
  static const std::pair<std::string_view, std::string_view> known[] = {
      {"s3", "s3"},        {"s3a", "s3"},          {"gs", "gcs"},         {"gcs", "gcs"},
      {"az", "azure"},     {"abfs", "azure"},      {"abfss", "azure"},    {"adl", "azure"},
      {"hdfs", "webhdfs"}, {"webhdfs", "webhdfs"}, {"swebhdfs", "webhdfs"}, {"wandb", "wandb"}};
  for (const auto& [s, p] : known)
    if (s == scheme) return p;
  return {};
}

// The schemes a plugin's ember.storage/1 table claims ("s3,s3a" -> {"s3", "s3a"}); none if it
// offers no storage.
inline std::vector<std::string> claimed_schemes(const PluginLibrary& lib) {
  std::vector<std::string> out;
  const auto* t = static_cast<const ember_storage_v1_t*>(lib.entry().get_interface(nullptr, cstr(EMBER_STORAGE_V1)));
  if (!t || t->struct_size < offsetof(ember_storage_v1_t, schemes) + sizeof(ember_str_t)) return out;
  std::string_view all = sv(t->schemes);
  while (!all.empty()) {
    std::size_t comma = all.find(',');
    std::string_view one = all.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (!one.empty()) out.emplace_back(one);
    if (comma == std::string_view::npos) break;
    all.remove_prefix(comma + 1);
  }
  return out;
}

// Every scheme a plugin in the catalog claims, with the plugin that serves it (the first in
// plugin-directory order), and one note per claim that lost.
struct SchemeOwners {
  std::map<std::string, std::string> owner;  // scheme -> plugin id
  std::vector<std::string> conflicts;        // "scheme 'gs': PATH (id) also claims it; ID (PATH) serves it"
};

inline SchemeOwners scheme_owners(const Catalog& catalog) {
  // Plugin-directory order: the index of the scanned directory a plugin's file lies in, then
  // the file name (the order Catalog::scan loads them in).
  std::vector<std::pair<std::size_t, std::shared_ptr<PluginLibrary>>> libs;
  for (const auto& [id, lib] : catalog.plugins) {
    std::size_t rank = catalog.dirs.size();
    for (std::size_t i = 0; i < catalog.dirs.size(); ++i) {
      const std::string& d = catalog.dirs[i];
      if (lib->path().compare(0, d.size(), d) == 0 && lib->path().size() > d.size() && lib->path()[d.size()] == '/') {
        rank = i;
        break;
      }
    }
    libs.emplace_back(rank, lib);
  }
  std::stable_sort(libs.begin(), libs.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->path() < b.second->path();
  });
  SchemeOwners out;
  for (const auto& [rank, lib] : libs) {
    for (const auto& s : claimed_schemes(*lib)) {
      if (builtin_scheme(s)) {
        out.conflicts.push_back("scheme '" + s + "': " + lib->path() + " (" + lib->id() +
                                ") claims it; the host serves it itself");
        continue;
      }
      auto [it, inserted] = out.owner.emplace(s, lib->id());
      if (!inserted && it->second != lib->id())
        out.conflicts.push_back("scheme '" + s + "': " + lib->path() + " (" + lib->id() + ") also claims it; " +
                                it->second + " (" + catalog.plugins.at(it->second)->path() + ") serves it");
    }
  }
  return out;
}

// The URL-valued strings of a config: every string "scheme://..." whose scheme is not http(s),
// ws(s) (endpoints a plugin talks to, not places Ember stores files), with its key path.
inline void collect_storage_urls(const boost::json::value& v, const std::string& path,
                                 std::vector<std::pair<std::string, std::string>>& out) {
  if (v.is_object()) {
    for (const auto& kv : v.as_object())
      collect_storage_urls(kv.value(), path.empty() ? std::string(kv.key()) : path + "." + std::string(kv.key()), out);
  } else if (v.is_array()) {
    const auto& a = v.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) collect_storage_urls(a[i], path + "[" + std::to_string(i) + "]", out);
  } else if (v.is_string()) {
    std::string_view s = v.as_string();
    std::size_t colon = s.find("://");
    if (colon == std::string_view::npos || colon == 0) return;
    std::string_view scheme = s.substr(0, colon);
    for (char c : scheme)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
        return;
    if (scheme == "http" || scheme == "https" || scheme == "ws" || scheme == "wss") return;
    out.emplace_back(path, std::string(s));
  }
}

// The storage plugins a run needs but does not configure: for each scheme its URLs use (the
// config's, and extra_urls such as a --ckpt-path) that neither the host nor a configured plugin
// serves, the plugin in the catalog that claims it, in first-use order. Throws ConfigError for a
// scheme nothing serves, naming the key, the scheme, the schemes available and the plugin that
// would provide it.
inline std::vector<std::string> auto_storage_plugins(const boost::json::value& cfg, const Catalog& catalog,
                                                     const std::string& source,
                                                     const std::vector<std::pair<std::string, std::string>>& extra_urls = {}) {
  std::vector<std::pair<std::string, std::string>> urls;
  collect_storage_urls(cfg, "", urls);
  urls.insert(urls.end(), extra_urls.begin(), extra_urls.end());
  const SchemeOwners owners = scheme_owners(catalog);
  // Schemes served by plugins the config names (any section: a logger may offer storage too).
  std::vector<std::string> served{"file", "memory"};
  for (const auto& ref : all_plugin_refs(cfg))
    if (auto lib = catalog.find(ref.id))
      for (auto& s : claimed_schemes(*lib)) served.push_back(s);
  // Schemes a storage_options scheme entry ("s3") configures: served by that entry's instance.
  if (const auto* so = cfg.is_object() ? cfg.as_object().if_contains("storage_options") : nullptr; so && so->is_object())
    for (const auto& kv : so->as_object()) {
      std::string k(kv.key());
      if (k.find("://") != std::string::npos) continue;
      std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      served.push_back(k);
    }
  std::vector<std::string> out;
  std::string errors;
  for (const auto& [key, url] : urls) {
    std::string scheme = storage::scheme_of(url);
    if (std::find(served.begin(), served.end(), scheme) != served.end()) continue;
    if (auto it = owners.owner.find(scheme); it != owners.owner.end()) {
      if (std::find(out.begin(), out.end(), it->second) == out.end()) out.push_back(it->second);
      continue;
    }
    std::string msg = source + ": " + key + ": unknown URL scheme '" + scheme + "://'; available:";
    for (const auto& s : served)
      if (builtin_scheme(s)) msg += " " + s + "://";
    for (const auto& [s, id] : owners.owner) msg += " " + s + "://";
    if (auto p = known_provider(scheme); !p.empty())
      msg += "; the '" + std::string(p) + "' storage plugin provides " + scheme + "://: put " + std::string(p) +
             ".so in a plugin directory";
    if (errors.find(msg) == std::string::npos) errors += (errors.empty() ? "" : "\n") + msg;
  }
  if (!errors.empty()) throw ConfigError(errors);
  return out;
}

}  // namespace ember
