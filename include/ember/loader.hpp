// Finding, checking and instantiating plugins.
//
// A plugin directory is scanned for *.so (and one level of sub-directories, the build tree's
// layout). A loaded .so is code, so the directory, each file, every directory on their way from
// / and every symlink followed must be owned by root or by us and not writable by group or others
// (check_trusted says exactly; sticky directories such as /tmp may lie on the way). Each library
// is opened with Boost.DLL, its entry read and checked (ABI major, minor, struct size, required
// functions) before any of its functions is called — but dlopen has run the library's
// constructors by then: the entry checks refuse broken or foreign plugins, not hostile ones; the
// directory rules are what keeps untrusted code out. Interface tables are copied into host-side
// structs and their required slots checked before the instance is used. Libraries stay loaded
// while any instance of theirs lives (shared ownership).
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

// What the host offers plugins; the trainer overrides the parts it owns.
class Services {
 public:
  virtual ~Services() = default;
  virtual void log(const std::string& plugin_id, int level, std::string_view message) {
    static const char* const names[] = {"debug", "info", "warning", "error"};
    const char* lvl = (level >= 0 && level <= 3) ? names[level] : "info";
    std::cerr << "[" << plugin_id << "] " << lvl << ": " << message << "\n";
  }
  virtual void fill_state(ember_trainer_state_t& out) {
    out.stage = EMBER_STAGE_NONE;
    out.max_epochs = out.max_steps = out.num_training_batches = out.num_val_batches = -1;
  }
  virtual std::optional<double> metric(std::string_view) { return std::nullopt; }
  virtual void for_each_metric(const std::function<bool(std::string_view, double)>&) {}
  virtual void for_each_progress_metric(const std::function<bool(std::string_view, double)>&) {}
  virtual void request_stop(const std::string& plugin_id, std::string_view reason) {
    log(plugin_id, EMBER_LOG_INFO, "asked to stop: " + std::string(reason));
  }
  virtual storage::UrlSpace& urls() { return urls_; }
  virtual void save_checkpoint(const std::string& url, bool /*weights_only*/) {
    throw RuntimeError("cannot save checkpoint " + url + ": no trainer is running");
  }
  // Data parallel (host table since 1.1): one process unless the trainer runs under ddp.
  virtual RankInfo rank_info() { return {}; }
  virtual void barrier() {}
  virtual void broadcast(void* /*data*/, std::size_t /*size*/, int /*root*/) {}
  virtual void all_reduce(double* /*values*/, std::size_t /*n*/, ReduceOp /*op*/) {}

 private:
  storage::UrlSpace urls_;
};

namespace detail {

// The per-instance host table and its context.
struct HostBinding {
  ember_host_t table{};
  std::string plugin_id;
  Services* services = nullptr;
  static thread_local std::string last_error;

  struct File {
    std::unique_ptr<storage::Reader> reader;
    std::unique_ptr<storage::Writer> writer;
  };

  static HostBinding& of(void* ctx) { return *static_cast<HostBinding*>(ctx); }

  template <class F>
  static ember_status_t guard(F&& f) noexcept {
    try {
      return f();
    } catch (const std::exception& e) {
      last_error = e.what();
    } catch (...) {
      last_error = "unknown error";
    }
    return EMBER_E_IO;
  }

  HostBinding(std::string id, Services* s) : plugin_id(std::move(id)), services(s) {
    table.struct_size = sizeof(ember_host_t);
    table.abi_major = EMBER_ABI_MAJOR;
    table.abi_minor = EMBER_ABI_MINOR;
    table.ctx = this;
    table.host_version = cstr(kVersion);
    table.log = [](void* c, int32_t level, ember_str_t m) {
      try {
        of(c).services->log(of(c).plugin_id, level, sv(m));
      } catch (...) {
      }
    };
    table.get_state = [](void* c, ember_trainer_state_t* out) -> ember_status_t {
      if (!out || out->struct_size < offsetof(ember_trainer_state_t, default_root_dir)) {
        last_error = "get_state: out->struct_size is too small";
        return EMBER_E_INVALID;
      }
      return guard([&] {
        ember_trainer_state_t full{};
        full.struct_size = sizeof full;
        full.num_test_batches = full.num_predict_batches = -1;
        of(c).services->fill_state(full);
        std::size_t n = std::min<std::size_t>(out->struct_size, sizeof full);
        uint32_t keep = out->struct_size;
        std::memcpy(out, &full, n);
        out->struct_size = keep;
        return EMBER_OK;
      });
    };
    table.get_metric = [](void* c, ember_str_t name, double* out) -> ember_status_t {
      return guard([&] {
        auto v = of(c).services->metric(sv(name));
        if (!v) {
          last_error = "metric '" + std::string(sv(name)) + "' has not been logged";
          return EMBER_E_NOT_FOUND;
        }
        *out = *v;
        return EMBER_OK;
      });
    };
    table.list_metrics = [](void* c, ember_metric_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        of(c).services->for_each_metric(
            [&](std::string_view n, double v) { return fn(user, cstr(n), v) == 0; });
        return EMBER_OK;
      });
    };
    table.list_progress_metrics = [](void* c, ember_metric_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        of(c).services->for_each_progress_metric(
            [&](std::string_view n, double v) { return fn(user, cstr(n), v) == 0; });
        return EMBER_OK;
      });
    };
    table.request_stop = [](void* c, ember_str_t reason) {
      try {
        of(c).services->request_stop(of(c).plugin_id, sv(reason));
      } catch (...) {
      }
    };
    table.open_read = [](void* c, ember_str_t url, uint64_t off, uint64_t len,
                         ember_file_t** out) -> ember_status_t {
      return guard([&] {
        auto f = std::make_unique<File>();
        f->reader = of(c).services->urls().open_read(std::string(sv(url)), off, len);
        *out = reinterpret_cast<ember_file_t*>(f.release());
        return EMBER_OK;
      });
    };
    table.read = [](void*, ember_file_t* file, void* buf, size_t cap, size_t* got) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->reader) throw RuntimeError("read: the file was opened for writing");
        *got = f->reader->read(buf, cap);
        return EMBER_OK;
      });
    };
    table.open_write = [](void* c, ember_str_t url, ember_file_t** out) -> ember_status_t {
      return guard([&] {
        auto f = std::make_unique<File>();
        f->writer = of(c).services->urls().open_write(std::string(sv(url)));
        *out = reinterpret_cast<ember_file_t*>(f.release());
        return EMBER_OK;
      });
    };
    table.write = [](void*, ember_file_t* file, const void* data, size_t size) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->writer) throw RuntimeError("write: the file was opened for reading");
        f->writer->write(data, size);
        return EMBER_OK;
      });
    };
    table.commit = [](void*, ember_file_t* file) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->writer) throw RuntimeError("commit: the file was opened for reading");
        f->writer->commit();
        return EMBER_OK;
      });
    };
    table.close = [](void*, ember_file_t* file) {
      try {
        delete reinterpret_cast<File*>(file);
      } catch (...) {
      }
    };
    table.stat = [](void* c, ember_str_t url, ember_stat_t* out) -> ember_status_t {
      return guard([&] {
        auto s = of(c).services->urls().stat(std::string(sv(url)));
        if (!s) {
          last_error = "no such object: " + std::string(sv(url));
          return EMBER_E_NOT_FOUND;
        }
        thread_local std::string url_copy;
        url_copy = s->url;
        out->is_dir = s->is_dir;
        out->size = s->size;
        out->mtime_ns = s->mtime_ns;
        out->url = cstr(url_copy);
        return EMBER_OK;
      });
    };
    table.list = [](void* c, ember_str_t prefix, ember_list_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        for (const auto& s : of(c).services->urls().list(std::string(sv(prefix)))) {
          ember_stat_t st{};
          st.struct_size = sizeof st;
          st.is_dir = s.is_dir;
          st.size = s.size;
          st.mtime_ns = s.mtime_ns;
          st.url = cstr(s.url);
          if (fn(user, &st) != 0) break;
        }
        return EMBER_OK;
      });
    };
    table.remove = [](void* c, ember_str_t url) -> ember_status_t {
      return guard([&] {
        if (of(c).services->urls().remove(std::string(sv(url)))) return EMBER_OK;
        last_error = "no such object: " + std::string(sv(url));
        return EMBER_E_NOT_FOUND;
      });
    };
    table.last_error = [](void*) -> ember_str_t { return cstr(last_error); };
    table.save_checkpoint = [](void* c, ember_str_t url, int32_t weights_only) -> ember_status_t {
      return guard([&] {
        of(c).services->save_checkpoint(std::string(sv(url)), weights_only != 0);
        return EMBER_OK;
      });
    };
    const RankInfo ri = s ? s->rank_info() : RankInfo{};
    table.global_rank = ri.global_rank;
    table.local_rank = ri.local_rank;
    table.world_size = ri.world_size;
    table.barrier = [](void* c) -> ember_status_t {
      return guard([&] {
        of(c).services->barrier();
        return EMBER_OK;
      });
    };
    table.broadcast = [](void* c, void* data, size_t size, int32_t root) -> ember_status_t {
      return guard([&] {
        const int world = of(c).services->rank_info().world_size;
        if (root < 0 || root >= world) {
          last_error = "broadcast: root " + std::to_string(root) + " is outside world size " + std::to_string(world);
          return EMBER_E_INVALID;
        }
        if (size && !data) {
          last_error = "broadcast: data is null";
          return EMBER_E_INVALID;
        }
        of(c).services->broadcast(data, size, root);
        return EMBER_OK;
      });
    };
    table.all_reduce = [](void* c, double* values, size_t count, int32_t op) -> ember_status_t {
      return guard([&] {
        if (op < EMBER_REDUCE_SUM || op > EMBER_REDUCE_MIN) {
          last_error = "all_reduce: op " + std::to_string(op) + " is not an ember_reduce_op_t";
          return EMBER_E_INVALID;
        }
        if (count && !values) {
          last_error = "all_reduce: values is null";
          return EMBER_E_INVALID;
        }
        static const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min};
        of(c).services->all_reduce(values, count, ops[op]);
        return EMBER_OK;
      });
    };
  }
};
inline thread_local std::string HostBinding::last_error;

}  // namespace detail

// --- Interface tables, adopted one way ----------------------------------------------------------
// Every table a plugin hands over is copied into a full-size host-side struct: a slot the plugin's
// struct_size does not wholly cover stays null (an older plugin lacks the newer slots; a slot cut
// in half is not half-read), and a table whose required slot is null is refused, naming the
// plugin, the interface and the slot, before the host calls anything in it. "Required" is the
// contract block's "Required: yes" in abi/*.h.

struct SlotSpec {
  const char* name;
  std::size_t offset;
  std::size_t size;
  bool required;
  bool is_str;  // an ember_str_t: "present" means non-empty
};

template <class Table>
struct InterfaceSpec {};  // specialised with id and slots for each table the host adopts

#define EMBER_SLOT_(T, field, req) \
  SlotSpec { #field, offsetof(T, field), sizeof(T::field), req, std::is_same_v<decltype(T::field), ember_str_t> }

template <>
struct InterfaceSpec<ember_callbacks_v1_t> {
  static constexpr const char* id = EMBER_CALLBACKS_V1;
  static constexpr SlotSpec slots[] = {
#define EMBER_HOOK(name, since, doc) EMBER_SLOT_(ember_callbacks_v1_t, name, false),
#include <ember/abi/hooks.def>
  };
};
template <>
struct InterfaceSpec<ember_logger_v1_t> {
  static constexpr const char* id = EMBER_LOGGER_V1;
  static constexpr SlotSpec slots[] = {
      EMBER_SLOT_(ember_logger_v1_t, log_hyperparams, false), EMBER_SLOT_(ember_logger_v1_t, log_metrics, true),
      EMBER_SLOT_(ember_logger_v1_t, after_save_checkpoint, false), EMBER_SLOT_(ember_logger_v1_t, save, false),
      EMBER_SLOT_(ember_logger_v1_t, finalize, false)};
};
template <>
struct InterfaceSpec<ember_state_v1_t> {
  static constexpr const char* id = EMBER_STATE_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_state_v1_t, state_dict, true),
                                       EMBER_SLOT_(ember_state_v1_t, load_state_dict, true)};
};
template <>
struct InterfaceSpec<ember_storage_v1_t> {
  static constexpr const char* id = EMBER_STORAGE_V1;
  static constexpr SlotSpec slots[] = {
      EMBER_SLOT_(ember_storage_v1_t, schemes, true),    EMBER_SLOT_(ember_storage_v1_t, open_read, true),
      EMBER_SLOT_(ember_storage_v1_t, read, true),       EMBER_SLOT_(ember_storage_v1_t, open_write, true),
      EMBER_SLOT_(ember_storage_v1_t, write, true),      EMBER_SLOT_(ember_storage_v1_t, commit, true),
      EMBER_SLOT_(ember_storage_v1_t, close, true),      EMBER_SLOT_(ember_storage_v1_t, stat, true),
      EMBER_SLOT_(ember_storage_v1_t, list, true),       EMBER_SLOT_(ember_storage_v1_t, remove, true)};
};
template <>
struct InterfaceSpec<ember_media_v1_t> {
  static constexpr const char* id = EMBER_MEDIA_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_media_v1_t, log_image, false),
                                       EMBER_SLOT_(ember_media_v1_t, log_table, false),
                                       EMBER_SLOT_(ember_media_v1_t, log_histogram, false)};
};
template <>
struct InterfaceSpec<ember_checkpoints_v1_t> {
  static constexpr const char* id = EMBER_CHECKPOINTS_V1;
  static constexpr SlotSpec slots[] = {EMBER_SLOT_(ember_checkpoints_v1_t, resolve, true)};
};
#undef EMBER_SLOT_

template <class Table, class = void>
struct is_adopted : std::false_type {};
template <class Table>
struct is_adopted<Table, std::void_t<decltype(InterfaceSpec<Table>::id)>> : std::true_type {};

// Copy the table get_interface returned into out (full size, struct_size set to the host's).
// Returns why it cannot be used, or empty.
template <class Table>
std::string adopt_table(const void* raw, Table& out) {
  using Spec = InterfaceSpec<Table>;
  const auto* src = static_cast<const unsigned char*>(raw);
  std::uint32_t size = 0;
  std::memcpy(&size, src, sizeof size);
  std::memset(&out, 0, sizeof out);
  const std::size_t header = Spec::slots[0].offset;  // struct_size and its padding
  if (size < header)
    return "struct_size is " + std::to_string(size) + " bytes, smaller than the table's own " +
           std::to_string(header) + "-byte header";
  auto* dst = reinterpret_cast<unsigned char*>(&out);
  for (const SlotSpec& slot : Spec::slots) {
    const bool inside = slot.offset + slot.size <= size;
    if (inside) std::memcpy(dst + slot.offset, src + slot.offset, slot.size);
    if (!slot.required) continue;
    bool present = false;
    if (slot.is_str) {
      ember_str_t str;
      std::memcpy(&str, dst + slot.offset, sizeof str);
      present = str.data && str.size;
    } else {
      for (std::size_t i = 0; i < slot.size && !present; ++i) present = dst[slot.offset + i] != 0;
    }
    if (present) continue;
    if (!inside)
      return std::string("required slot '") + slot.name + "' lies outside the table: struct_size is " +
             std::to_string(size) + " bytes, the slot ends at byte " + std::to_string(slot.offset + slot.size);
    return std::string("required slot '") + slot.name + "' is " + (slot.is_str ? "empty" : "null");
  }
  out.struct_size = sizeof out;
  return {};
}

// One live plugin instance. Destroyed before its library is released.
class PluginInstance {
 public:
  // config is checked against the plugin's schema (defaults filled) before create runs.
  // `where` names the config location for messages (e.g. "run.json: trainer.logger[0]").
  PluginInstance(std::shared_ptr<PluginLibrary> lib, boost::json::value config, Services& services,
                 const std::string& where)
      : lib_(std::move(lib)), binding_(std::make_unique<detail::HostBinding>(lib_->id(), &services)) {
    const auto& e = lib_->entry();
    if (config.is_null()) config = boost::json::object();
    if (e.config_schema.size) {
      auto schema = config::parse(sv(e.config_schema), lib_->path() + " config_schema");
      config::check(config, schema, where, "config", /*fill_defaults=*/true);
    } else if (!config.is_object() || !config.as_object().empty()) {
      throw ConfigError(where + ": config: plugin '" + lib_->id() + "' takes no config keys");
    }
    config_ = boost::json::serialize(config);
    void* self = nullptr;
    ember_status_t rc = e.create(&binding_->table, cstr(config_), &self);
    if (rc != EMBER_OK || !self) {
      if (rc == EMBER_OK) rc = EMBER_E_FAILED;  // "succeeded" without an instance
      throw RuntimeError(plugin_failure(lib_->id(), "create", e.last_error, nullptr, rc) + " (plugin file " +
                         lib_->path() + ")");
    }
    self_ = self;
    // Adopt every interface now, before the host calls into any of them: a broken table refuses
    // the plugin here, once, instead of crashing the run at the first call of a null slot.
    std::string why = adopt<ember_callbacks_v1_t>();
    if (why.empty()) why = adopt<ember_logger_v1_t>();
    if (why.empty()) why = adopt<ember_state_v1_t>();
    if (why.empty()) why = adopt<ember_storage_v1_t>();
    if (why.empty()) why = adopt<ember_media_v1_t>();
    if (why.empty()) why = adopt<ember_checkpoints_v1_t>();
    if (!why.empty()) {
      e.destroy(self_);
      self_ = nullptr;
      throw RuntimeError("plugin " + lib_->id() + " (" + lib_->path() + "): refused: " + why);
    }
  }
  ~PluginInstance() {
    if (self_) lib_->entry().destroy(self_);
  }
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const std::string& id() const { return binding_->plugin_id; }
  const PluginLibrary& library() const { return *lib_; }
  void* self() const { return self_; }
  const std::string& config_json() const { return config_; }

  // The interface table, or null. For the interfaces the host knows (callbacks, logger, state,
  // storage, media) this is the host-side copy made at creation: full size, required slots
  // present, optional slots null when absent. Other tables (a model's) are the plugin's own;
  // those smaller than their size field and one slot are refused.
  template <class Table>
  const Table* interface(std::string_view interface_id) const {
    if constexpr (is_adopted<Table>::value) {
      if (interface_id == InterfaceSpec<Table>::id) {
        const auto& t = std::get<std::optional<Table>>(tables_);
        return t ? &*t : nullptr;
      }
    }
    const void* t = lib_->entry().get_interface(self_, cstr(interface_id));
    if (!t) return nullptr;
    auto* table = static_cast<const Table*>(t);
    if (table->struct_size < 2 * sizeof(void*))  // the size field, padded, and one slot
      throw RuntimeError("plugin " + id() + ": interface " + std::string(interface_id) +
                         " table is too small (" + std::to_string(table->struct_size) + " bytes)");
    return table;
  }

  std::string last_error() const { return std::string(sv(lib_->entry().last_error(self_))); }
  // "ID: WHAT failed: MESSAGE" for a failed call on this instance (registry.hpp's plugin_failure).
  std::string failure(std::string_view what, ember_status_t rc) const {
    return plugin_failure(id(), what, lib_->entry().last_error, self_, rc);
  }

  // Put this instance's hooks in the registry (if it offers callbacks).
  void register_hooks(HookRegistry& registry) const {
    if (auto* cb = interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1)) {
      auto owner = registry.add_owner(id(), lib_->entry().last_error, self_);
      registry.add_table(owner, *cb, self_);
    }
  }

 private:
  template <class Table>
  std::string adopt() {
    const char* iid = InterfaceSpec<Table>::id;
    const void* raw = lib_->entry().get_interface(self_, cstr(iid));
    if (!raw) return {};
    Table table;
    if (std::string why = adopt_table(raw, table); !why.empty()) return std::string("interface ") + iid + ": " + why;
    std::get<std::optional<Table>>(tables_) = table;
    return {};
  }

  std::shared_ptr<PluginLibrary> lib_;  // declared first: released last
  std::unique_ptr<detail::HostBinding> binding_;
  std::string config_;
  void* self_ = nullptr;
  std::tuple<std::optional<ember_callbacks_v1_t>, std::optional<ember_logger_v1_t>, std::optional<ember_state_v1_t>,
             std::optional<ember_storage_v1_t>, std::optional<ember_media_v1_t>,
             std::optional<ember_checkpoints_v1_t>>
      tables_;  // adopted at creation
};

}  // namespace ember
