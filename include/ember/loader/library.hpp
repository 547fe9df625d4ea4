// Opening and checking one plugin library: the ABI version rule, the entry checks, the trust
// rules for the files and directories code is loaded from, and PluginLibrary (the loaded .so with
// its checked entry). Part of ember/loader.hpp, which says the rules in full.
#pragma once

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif

#include <ember/abi.h>
#include <ember/config.hpp>
#include <ember/distributed.hpp>
#include <ember/error.hpp>
#include <ember/registry.hpp>
#include <ember/storage.hpp>
#include <ember/version.hpp>

#include <boost/dll/shared_library.hpp>
#include <pwd.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace ember {

inline std::string_view sv(ember_str_t s) { return {s.data ? s.data : "", s.data ? s.size : 0}; }
inline ember_str_t cstr(std::string_view s) { return {s.data(), s.size()}; }

// The smallest entry a 1.x host accepts: everything through last_error.
constexpr std::size_t kEntryMinSize =
    offsetof(ember_plugin_entry_t, last_error) + sizeof(ember_plugin_entry_t::last_error);

// The one version rule: same major, and the host's minor at least the plugin's.
// Returns an empty string when compatible, else the reason.
inline std::string check_abi_version(std::uint32_t plugin_major, std::uint32_t plugin_minor) {
  if (plugin_major != EMBER_ABI_MAJOR)
    return "plugin ABI " + std::to_string(plugin_major) + "." + std::to_string(plugin_minor) +
           " has another major than the host's ABI " + std::to_string(EMBER_ABI_MAJOR) + "." +
           std::to_string(EMBER_ABI_MINOR);
  if (plugin_minor > EMBER_ABI_MINOR)
    return "plugin ABI " + std::to_string(plugin_major) + "." + std::to_string(plugin_minor) +
           " is newer than the host's ABI " + std::to_string(EMBER_ABI_MAJOR) + "." +
           std::to_string(EMBER_ABI_MINOR);
  return {};
}

inline bool valid_plugin_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

// Checks an entry table read from a library (or built in-process for tests). Empty if good.
inline std::string check_entry(const ember_plugin_entry_t& e) {
  if (std::string why = check_abi_version(e.abi_major, e.abi_minor); !why.empty()) return why;
  if (e.struct_size < kEntryMinSize)
    return "entry struct is " + std::to_string(e.struct_size) + " bytes, smaller than the " +
           std::to_string(kEntryMinSize) + " bytes ABI " + std::to_string(EMBER_ABI_MAJOR) +
           ".0 requires";
  if (!valid_plugin_id(sv(e.id)))
    return "plugin id '" + std::string(sv(e.id)) + "' is not [a-z0-9_]{1,64}";
  const char* missing = !e.create ? "create"
                        : !e.destroy ? "destroy"
                        : !e.get_interface ? "get_interface"
                        : !e.last_error ? "last_error"
                                        : nullptr;
  if (missing) return std::string("required entry function '") + missing + "' is null";
  if (e.config_schema.size) {
    try {
      auto schema = config::parse(sv(e.config_schema), "config_schema");
      if (!schema.is_object()) return "config_schema is not a JSON object";
    } catch (const ConfigError& err) {
      return std::string("config_schema is not valid JSON: ") + err.what();
    }
  }
  return {};
}

namespace detail {

inline std::string user_name(uid_t uid) {
  struct ::passwd pw;
  struct ::passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
    return std::string(found->pw_name) + " (uid " + std::to_string(uid) + ")";
  return "uid " + std::to_string(uid);
}

inline std::string user_login(uid_t uid) {
  struct ::passwd pw;
  struct ::passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found) return found->pw_name;
  return std::to_string(uid);
}

// Why one node on the way to a plugin may not be trusted, or empty. on_the_way: a directory
// passed through (not the file or the scanned directory itself), where a sticky bit is enough.
inline std::string trust_problem(const std::filesystem::path& p, const struct ::stat& st, bool on_the_way,
                                 uid_t me) {
  const char* what = S_ISDIR(st.st_mode) ? "directory" : S_ISLNK(st.st_mode) ? "symlink" : "file";
  if (st.st_uid != 0 && st.st_uid != me)
    return std::string(what) + " " + p.string() + " is owned by " + user_name(st.st_uid) + ", not by you (" +
           user_name(me) + ") or root; whoever owns it can change the code you load, so refusing it. Fix with: chown " +
           user_login(me) + " " + p.string() + " (or chown root)";
  if (S_ISLNK(st.st_mode)) return {};  // a link's own mode means nothing; its directory is checked
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    if (on_the_way && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX)) return {};  // /tmp
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string(what) + " " + p.string() + " is writable by group or others (mode " + mode +
           (on_the_way ? ", on the way to the plugin" : "") + "); a plugin is code, so refusing it. Fix with: chmod go-w " +
           p.string();
  }
  return {};
}

}  // namespace detail

// Why path may not be trusted to hold plugin code, or empty; *resolved gets the path with every
// symlink resolved (load that one: it is what was checked).
//
// The path is walked from / one component at a time with lstat, the way the kernel resolves it:
// every directory passed through, every symlink followed (its target walked the same way) and the
// final file or directory must be owned by root or by the user running Ember (effective uid), and
// must not be writable by group or others — else someone else could swap the code between this
// check and dlopen, or after. One exception: a directory on the way that others can write but
// that is sticky (/tmp, mode 1777) is accepted, because there nobody else can rename or remove an
// entry we own; so a plugin directory we own under /tmp is fine, while the sticky directory itself
// is never a plugin directory (anyone could add a .so to it). me: the user to trust besides root.
inline std::string check_trusted(const std::filesystem::path& path, std::filesystem::path* resolved = nullptr,
                                 uid_t me = ::geteuid()) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  if (ec) return "cannot resolve " + path.string() + ": " + ec.message();
  std::vector<std::string> todo;  // components still to walk, the next one last
  auto push = [&](const fs::path& p) {
    std::vector<std::string> parts;
    for (const auto& c : p.relative_path())
      if (!c.empty() && c != ".") parts.push_back(c.string());
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push(abs);
  fs::path cur = "/";
  struct ::stat st;
  if (::lstat("/", &st) != 0) return std::string("cannot lstat /: ") + std::strerror(errno);
  if (std::string why = detail::trust_problem(cur, st, !todo.empty(), me); !why.empty()) return why;
  int links = 0;
  while (!todo.empty()) {
    const std::string c = todo.back();
    todo.pop_back();
    if (c == "..") {
      cur = cur.parent_path();  // already checked on the way down
      continue;
    }
    const fs::path next = cur / c;
    if (::lstat(next.c_str(), &st) != 0) return "cannot lstat " + next.string() + ": " + std::strerror(errno);
    if (S_ISLNK(st.st_mode)) {
      if (std::string why = detail::trust_problem(next, st, true, me); !why.empty()) return why;
      if (++links > 40) return "too many symlinks resolving " + path.string();
      const fs::path target = fs::read_symlink(next, ec);
      if (ec) return "cannot read symlink " + next.string() + ": " + ec.message();
      if (target.is_absolute()) cur = "/";
      push(target);
      continue;
    }
    const bool last = todo.empty();
    if (!last && !S_ISDIR(st.st_mode)) return next.string() + " is not a directory";
    if (std::string why = detail::trust_problem(next, st, !last, me); !why.empty()) return why;
    cur = next;
  }
  if (resolved) *resolved = cur;
  return {};
}

// A loaded library and its checked entry. Also constructible from an in-process entry.
class PluginLibrary {
 public:
  PluginLibrary(std::string path, const ember_plugin_entry_t* entry,
                std::shared_ptr<boost::dll::shared_library> lib = nullptr)
      : path_(std::move(path)), entry_(entry), lib_(std::move(lib)) {}
  const std::string& path() const { return path_; }
  const ember_plugin_entry_t& entry() const { return *entry_; }
  std::string id() const { return std::string(sv(entry_->id)); }
  std::string version() const { return std::string(sv(entry_->version)); }
  std::string description() const { return std::string(sv(entry_->description)); }
  std::string abi() const {
    return std::to_string(entry_->abi_major) + "." + std::to_string(entry_->abi_minor);
  }
  // The interfaces the plugin offers, of those this host knows (asked with self NULL).
  std::vector<std::string> interfaces() const {
    std::vector<std::string> out;
    for (const char* i : {EMBER_CALLBACKS_V1, EMBER_LOGGER_V1, EMBER_MEDIA_V1, EMBER_STORAGE_V1,
                          EMBER_STATE_V1, EMBER_CHECKPOINTS_V1, "ember.model/1"})
      if (entry_->get_interface(nullptr, cstr(i))) out.emplace_back(i);
    return out;
  }

 private:
  std::string path_;
  const ember_plugin_entry_t* entry_;
  std::shared_ptr<boost::dll::shared_library> lib_;  // keeps the code mapped
};

// Open one .so and check it. Throws RuntimeError with the path and the reason on refusal.
// The file's ownership and mode (and those of every directory and symlink on its way) are
// checked first, then the resolved path is loaded. The limit: dlopen runs the library's
// constructors (and those of the libraries it needs) before the entry can be read, so a library
// in a trusted place runs some code even when its entry is then refused. Only the directory
// rules keep untrusted code out; the entry checks keep out wrong or broken plugins.
inline std::shared_ptr<PluginLibrary> open_library(const std::filesystem::path& path) {
  std::filesystem::path real;
  if (std::string why = check_trusted(path, &real); !why.empty())
    throw RuntimeError(path.string() + ": refused: " + why);
  std::error_code fec;
  if (!std::filesystem::is_regular_file(real, fec))
    throw RuntimeError(path.string() + ": refused: " + real.string() + " is not a regular file");
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::system::error_code ec;
  lib->load(real, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) throw RuntimeError(path.string() + ": refused: cannot load: " + ec.message());
  if (!lib->has(EMBER_ENTRY_SYMBOL))
    throw RuntimeError(path.string() + ": refused: no '" EMBER_ENTRY_SYMBOL
                       "' symbol (not an Ember plugin, or built without exporting it)");
  const auto& entry = lib->get<const ember_plugin_entry_t>(EMBER_ENTRY_SYMBOL);
  if (std::string why = check_entry(entry); !why.empty())
    throw RuntimeError(path.string() + ": refused: " + why);
  return std::make_shared<PluginLibrary>(path.string(), &entry, std::move(lib));
}

}  // namespace ember
