// Scanning plugin directories into a Catalog (usable libraries by id, and refusals with their
// reasons), and the default plugin directories. Part of ember/loader.hpp.
#pragma once

#include <ember/loader/library.hpp>

namespace ember {

// What a scan found: usable libraries by id, and the refusals with reasons.
struct Catalog {
  std::map<std::string, std::shared_ptr<PluginLibrary>> plugins;
  std::vector<std::string> refusals;  // "PATH: refused: REASON"
  std::vector<std::string> dirs;      // the directories scanned, in order

  void add(std::shared_ptr<PluginLibrary> lib) {
    auto [it, inserted] = plugins.emplace(lib->id(), lib);
    if (!inserted)
      refusals.push_back(lib->path() + ": refused: plugin id '" + lib->id() +
                         "' is already provided by " + it->second->path());
  }

  void scan(const std::filesystem::path& dir) {
    dirs.push_back(dir.string());
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      refusals.push_back(dir.string() + ": refused: not a directory");
      return;
    }
    if (std::string why = check_trusted(dir); !why.empty()) {
      refusals.push_back(dir.string() + ": refused: " + why);
      return;
    }
    std::vector<std::filesystem::path> files;
    auto collect = [&](const std::filesystem::path& d, bool descend, auto& self) -> void {
      std::error_code e;
      for (const auto& ent : std::filesystem::directory_iterator(d, e)) {
        if (ent.is_regular_file(e) && ent.path().extension() == ".so") {
          files.push_back(ent.path());
        } else if (descend && ent.is_directory(e)) {
          if (std::string why = check_trusted(ent.path()); !why.empty())
            refusals.push_back(ent.path().string() + ": refused: " + why);
          else
            self(ent.path(), false, self);
        }
      }
    };
    collect(dir, true, collect);
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      try {  // open_library checks the file and what lies on its way
        add(open_library(f));
      } catch (const std::exception& e) {
        refusals.push_back(e.what());
      }
    }
  }

  std::shared_ptr<PluginLibrary> find(const std::string& id) const {
    auto it = plugins.find(id);
    return it == plugins.end() ? nullptr : it->second;
  }

  // The plugin asked for by name, or a ConfigError naming it, why it is not usable and what is.
  std::shared_ptr<PluginLibrary> require(const std::string& id, const std::string& where) const {
    if (auto lib = find(id)) return lib;
    std::string msg = where + ": plugin '" + id + "' is not available";
    for (const auto& r : refusals)
      if (r.find("/" + id + ".so") != std::string::npos) msg += "\n  " + r;
    std::vector<std::string> ids;
    for (const auto& kv : plugins) ids.push_back(kv.first);
    if (auto n = config::nearest(id, ids); !n.empty()) msg += "\n  did you mean '" + n + "'?";
    msg += "\n  plugins found:";
    for (const auto& i : ids) msg += " " + i;
    if (ids.empty()) msg += " (none)";
    msg += "\n  searched:";
    for (const auto& d : dirs) msg += " " + d;
    throw ConfigError(msg);
  }
};

// The default plugin directories: $EMBER_PLUGIN_PATH (colon-separated), then next to the
// executable: ../plugins (the build tree) and ../lib/ember/plugins (an install).
inline std::vector<std::filesystem::path> env_plugin_dirs() {
  std::vector<std::filesystem::path> out;
  if (const char* env = std::getenv("EMBER_PLUGIN_PATH")) {
    std::string_view s(env);
    while (!s.empty()) {
      auto c = s.find(':');
      auto part = s.substr(0, c);
      if (!part.empty()) out.emplace_back(std::string(part));
      if (c == std::string_view::npos) break;
      s.remove_prefix(c + 1);
    }
  }
  return out;
}

#ifndef EMBER_INSTALLED_PLUGINS_REL
#define EMBER_INSTALLED_PLUGINS_REL "../lib/ember/plugins"
#endif

// The running program's file: /proc/self/exe, except when the kernel mapped no interpreter
// (AT_BASE is 0). Then either the program is static, and AT_EXECFN is the path it was executed
// by, or it was started through the dynamic loader as a command
// (`lib/ld-linux-x86-64.so.2 --library-path lib bin/ember`, as the Lambda package's bootstrap
// does): /proc/self/exe names the loader, and the loader has put the program's path in AT_EXECFN
// (glibc >= 2.33). That path may be relative to the working directory at start-up.
inline std::filesystem::path program_path(std::error_code& ec) {
  if (::getauxval(AT_BASE) == 0)
    if (const char* fn = reinterpret_cast<const char*>(::getauxval(AT_EXECFN)); fn && *fn)
      return std::filesystem::absolute(fn, ec);
  return std::filesystem::read_symlink("/proc/self/exe", ec);
}

inline std::vector<std::filesystem::path> default_plugin_dirs() {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  auto exe = program_path(ec);
  if (ec) return out;
  for (auto rel : {"../plugins", EMBER_INSTALLED_PLUGINS_REL}) {
    auto p = (exe.parent_path() / rel).lexically_normal();
    if (std::filesystem::is_directory(p, ec)) out.push_back(p);
  }
  return out;
}

}  // namespace ember
