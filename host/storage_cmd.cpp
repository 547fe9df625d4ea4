// `ember storage`: look at and move what runs wrote, on any scheme (fsspec / `aws s3` habits).
//
//   ember storage ls [-r] URL...        one level (or every file under it, -r): size, time, URL
//   ember storage stat URL...           one JSON object per URL: url, type, size, mtime
//   ember storage cat URL...            the bytes, to stdout
//   ember storage cp [-r] SRC... DST    streamed, bounded memory, between any two schemes; DST
//                                       ending in '/' (or an existing directory) receives SRC's
//                                       name; -r copies every file under a directory SRC
//   ember storage rm [-r] URL...        a file; -r: everything under a directory, then it
//   options: --config RUN.json          its plugins.storage entries (and their configs) serve
//                                       their schemes, its storage_options their URL prefixes
//            --plugin-dir DIR           where plugins are found (repeatable; else as `ember fit`)
//
// file:// and bare paths are built in. A scheme no configured plugin serves is served by the
// plugin found that claims it (include/ember/schemes.hpp), loaded with its default config
// (credentials from the environment). Progress goes to stderr, only when it is a terminal. Exit codes as the rest of
// `ember`: 0 ok, 2 usage or config error, 1 when any URL failed (each failure is one line on
// stderr naming the command and the URL; the other URLs are still done).
#include "commands.hpp"

#include <ember/loader.hpp>
#include <ember/plugin_backend.hpp>
#include <ember/run_config.hpp>
#include <ember/schemes.hpp>
#include <ember/storage_options.hpp>
#include <ember/storage.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ember::cli {

namespace {

namespace json = boost::json;

int usage(const std::string& why = "") {
  if (!why.empty()) std::cerr << "ember storage: " << why << "\n";
  std::cerr << "usage: ember storage ls [-r] URL...\n"
               "       ember storage stat URL...\n"
               "       ember storage cat URL...\n"
               "       ember storage cp [-r] SRC... DST\n"
               "       ember storage rm [-r] URL...\n"
               "options: --config RUN.json (its plugins.storage), --plugin-dir DIR (repeatable)\n";
  return 2;
}

// The URL space of the command: file:// built in, plugins from the config, then any storage
// plugin found that claims a scheme still missing.
class Space {
 public:
  Space(const std::string& config_path, const std::vector<std::string>& plugin_dirs) : config_(config_path) {
    json::value cfg;
    if (!config_path.empty()) cfg = load_run_config(config_path, {});
    Options opt;
    opt.config = config_path;
    opt.plugin_dirs = plugin_dirs;
    catalog_ = scan_plugins(opt, cfg.is_object() ? &cfg : nullptr);  // the same search as `ember fit`
    owners_ = scheme_owners(catalog_);
    if (cfg.is_object())
      for (auto& ref : plugin_refs(cfg, "plugins", "storage")) {
        auto lib = catalog_.require(ref.id, config_path + ": " + ref.where + ".plugin");
        load(lib, ref.config, config_path + ": plugin " + ref.id + " at " + ref.where);
      }
    // Its storage_options: routed by URL prefix or scheme ahead of the above.
    if (cfg.is_object())
      apply_storage_options(storage_options(cfg, catalog_, config_path), catalog_, services_, urls(), instances_, config_path);
  }

  storage::UrlSpace& urls() { return services_.urls(); }

  // Make sure url's scheme is served: the plugin that claims it (include/ember/schemes.hpp),
  // loaded with its default config, as `ember fit` does for a config's URLs.
  void need(const std::string& url) {
    std::string scheme = storage::scheme_of(url);
    if (served(scheme) || tried_.count(scheme) || urls().has_prefix_route(url)) return;
    tried_.insert(scheme);
    if (auto it = owners_.owner.find(scheme); it != owners_.owner.end() && !loaded_ids_.count(it->second)) {
      load(catalog_.find(it->second), json::object(), "ember storage: plugin " + it->second + " (default config)");
      if (served(scheme)) return;
    }
    std::string known;
    for (const auto& s : urls().schemes()) known += (known.empty() ? "" : ", ") + s + "://";
    for (const auto& [s, id] : owners_.owner)
      if (!served(s)) known += (known.empty() ? "" : ", ") + s + "://";
    std::string hint;
    if (auto p = known_provider(scheme); !p.empty())
      hint = "; the '" + std::string(p) + "' storage plugin provides " + scheme + "://: put " + std::string(p) +
             ".so in a plugin directory";
    throw ConfigError("no storage plugin serves '" + scheme + "://' (in " + url + "); schemes available: " + known +
                      hint + "; plugin directories: " + dirs_text());
  }

 private:
  bool served(const std::string& scheme) {
    for (const auto& s : urls().schemes())
      if (s == scheme) return true;
    return false;
  }
  void load(const std::shared_ptr<PluginLibrary>& lib, const json::value& config, const std::string& where) {
    instances_.push_back(std::make_unique<PluginInstance>(lib, config, services_, where));
    auto& inst = *instances_.back();
    if (!inst.interface<ember_storage_v1_t>(EMBER_STORAGE_V1))
      throw ConfigError(where + ": plugin '" + lib->id() + "' offers no " EMBER_STORAGE_V1);
    loaded_ids_.insert(lib->id());
    register_storage(inst, urls());
  }
  std::string dirs_text() const {
    std::string out;
    for (const auto& d : catalog_.dirs) out += (out.empty() ? "" : ", ") + d;
    return out.empty() ? "(none)" : out;
  }

  std::string config_;
  Services services_;
  Catalog catalog_;
  SchemeOwners owners_;
  std::vector<std::unique_ptr<PluginInstance>> instances_;  // after services_: destroyed first
  std::set<std::string> loaded_ids_, tried_;
};

std::string time_text(std::int64_t ns) {
  if (ns <= 0) return "                   ";
  std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void print_entry(const storage::Stat& s) {
  char size[32];
  if (s.is_dir)
    std::snprintf(size, sizeof size, "%12s", "DIR");
  else
    std::snprintf(size, sizeof size, "%12llu", static_cast<unsigned long long>(s.size));
  std::cout << size << "  " << time_text(s.mtime_ns) << "  " << s.url << (s.is_dir ? "/" : "") << "\n";
}

std::string trim_slash(std::string url) {
  while (url.size() > 1 && url.back() == '/' && url.substr(url.size() - 3) != "://") url.pop_back();
  return url;
}

std::string base_name(const std::string& url) {
  std::string u = trim_slash(url);
  return u.substr(u.rfind('/') + 1);
}

// Every file under dir (recursively), with its path relative to dir.
void walk(storage::UrlSpace& urls, const std::string& dir, const std::string& rel,
          std::vector<std::pair<storage::Stat, std::string>>& out, std::vector<std::string>* dirs) {
  for (const auto& e : urls.list(dir)) {
    std::string name = base_name(e.url);
    std::string r = rel.empty() ? name : rel + "/" + name;
    if (e.is_dir) {
      walk(urls, e.url, r, out, dirs);
      if (dirs) dirs->push_back(e.url);
    } else {
      out.push_back({e, r});
    }
  }
}

// Copy bytes with a fixed buffer; the writer publishes only on commit.
class Progress {
 public:
  explicit Progress(bool on) : on_(on) {}
  void start(const std::string& what, std::uint64_t total) {
    what_ = what, total_ = total, done_ = 0, last_ = {};
  }
  void add(std::size_t n) {
    done_ += n;
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    show();
  }
  void finish() {
    if (!on_) return;
    show();
    std::cerr << "\n";
  }

 private:
  void show() {
    double mib = static_cast<double>(done_) / (1 << 20);
    if (total_)
      std::fprintf(stderr, "\r%s: %.1f / %.1f MiB (%3.0f%%)", what_.c_str(), mib, static_cast<double>(total_) / (1 << 20),
                   100.0 * static_cast<double>(done_) / static_cast<double>(total_));
    else
      std::fprintf(stderr, "\r%s: %.1f MiB", what_.c_str(), mib);
    std::fflush(stderr);
  }
  bool on_;
  std::string what_;
  std::uint64_t total_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point last_;
};

constexpr std::size_t kCopyBuffer = 1 << 20;

void copy_one(storage::UrlSpace& urls, const std::string& src, std::uint64_t size, const std::string& dst, Progress& progress) {
  auto r = urls.open_read(src);
  auto w = urls.open_write(dst);
  std::vector<char> buf(kCopyBuffer);
  progress.start(src + " -> " + dst, size);
  while (std::size_t n = r->read(buf.data(), buf.size())) {
    w->write(buf.data(), n);
    progress.add(n);
  }
  w->commit();
  progress.finish();
}

struct Args {
  std::string cmd, config;
  std::vector<std::string> plugin_dirs, urls;
  bool recursive = false;
};

}  // namespace

int run_storage(int argc, char** argv) {
  Args a;
  if (argc < 2) return usage();
  a.cmd = argv[1];
  if (a.cmd == "-h" || a.cmd == "--help") return usage(), 0;
  static const std::set<std::string> cmds{"ls", "stat", "cat", "cp", "rm"};
  if (!cmds.count(a.cmd)) return usage("unknown command '" + a.cmd + "'");
  bool options_done = false;
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (!options_done && s == "--") {
      options_done = true;
    } else if (!options_done && (s == "--config" || s == "-c" || s == "--plugin-dir")) {
      if (i + 1 >= argc) return usage(s + " needs a value");
      (s == "--plugin-dir" ? a.plugin_dirs.emplace_back() : a.config) = argv[++i];
    } else if (!options_done && (s == "-r" || s == "--recursive")) {
      if (a.cmd == "stat" || a.cmd == "cat") return usage(s + " is for ls, cp and rm");
      a.recursive = true;
    } else if (!options_done && s.size() > 1 && s[0] == '-') {
      return usage("unknown option '" + s + "'");
    } else {
      a.urls.push_back(s);
    }
  }
  if (a.urls.empty()) return usage(a.cmd + " needs a URL");
  if (a.cmd == "cp" && a.urls.size() < 2) return usage("cp needs a source and a destination");

  std::unique_ptr<Space> space;
  try {
    space = std::make_unique<Space>(a.config, a.plugin_dirs);
    for (const auto& u : a.urls) space->need(u);
  } catch (const ConfigError& e) {
    std::cerr << "ember storage: config error:\n" << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ember storage: " << e.what() << "\n";
    return 2;
  }
  auto& urls = space->urls();
  int rc = 0;
  auto failed = [&](const std::string& url, const std::string& why) {
    std::cerr << "ember storage " << a.cmd << ": " << url << ": " << why << "\n";
    rc = 1;
  };

  if (a.cmd == "cp") {
    std::string dst = a.urls.back();
    a.urls.pop_back();
    auto dst_stat = [&] {
      try {
        return urls.stat(dst);
      } catch (const std::exception&) {
        return std::optional<storage::Stat>();
      }
    }();
    const bool into_dir = a.urls.size() > 1 || a.recursive || (!dst.empty() && dst.back() == '/') ||
                          (dst_stat && dst_stat->is_dir);
    Progress progress(::isatty(2) == 1);
    for (const auto& src : a.urls) {
      try {
        auto st = urls.stat(src);
        if (!st) {
          failed(src, "no such file or directory");
          continue;
        }
        if (st->is_dir) {
          if (!a.recursive) {
            failed(src, "is a directory (use cp -r)");
            continue;
          }
          std::vector<std::pair<storage::Stat, std::string>> files;
          walk(urls, src, "", files, nullptr);
          const std::string target = (dst_stat && dst_stat->is_dir) || dst.back() == '/' ? storage::join(dst, base_name(src)) : dst;
          for (const auto& [f, rel] : files) {
            try {
              copy_one(urls, f.url, f.size, storage::join(target, rel), progress);
            } catch (const std::exception& e) {
              failed(f.url, e.what());
            }
          }
          continue;
        }
        copy_one(urls, src, st->size, into_dir ? storage::join(dst, base_name(src)) : dst, progress);
      } catch (const std::exception& e) {
        failed(src, e.what());
      }
    }
    return rc;
  }

  for (const auto& url : a.urls) {
    try {
      if (a.cmd == "cat") {
        auto r = urls.open_read(url);
        std::vector<char> buf(kCopyBuffer);
        while (std::size_t n = r->read(buf.data(), buf.size())) std::cout.write(buf.data(), static_cast<std::streamsize>(n));
        std::cout.flush();
        if (!std::cout) throw std::runtime_error("cannot write to stdout");
      } else if (a.cmd == "stat") {
        auto st = urls.stat(url);
        if (!st) {
          failed(url, "no such file or directory");
          continue;
        }
        json::object o{{"url", st->url}, {"type", st->is_dir ? "directory" : "file"}, {"size", st->size}};
        o["mtime"] = st->mtime_ns > 0 ? json::value(time_text(st->mtime_ns) + "Z") : json::value(nullptr);
        std::cout << json::serialize(o) << "\n";
      } else if (a.cmd == "ls") {
        auto st = urls.stat(url);
        if (!st) {
          failed(url, "no such file or directory");
          continue;
        }
        if (!st->is_dir) {
          print_entry(*st);
        } else if (a.recursive) {
          std::vector<std::pair<storage::Stat, std::string>> files;
          walk(urls, trim_slash(url), "", files, nullptr);
          for (const auto& f : files) print_entry(f.first);
        } else {
          for (const auto& e : urls.list(trim_slash(url))) print_entry(e);
        }
      } else if (a.cmd == "rm") {
        auto st = urls.stat(url);
        if (!st) {
          failed(url, "no such file or directory");
          continue;
        }
        if (!st->is_dir) {
          if (!urls.remove(url)) failed(url, "no such file or directory");
          continue;
        }
        if (!a.recursive) {
          failed(url, "is a directory (use rm -r)");
          continue;
        }
        std::vector<std::pair<storage::Stat, std::string>> files;
        std::vector<std::string> dirs;
        walk(urls, trim_slash(url), "", files, &dirs);
        for (const auto& f : files) urls.remove(f.first.url);
        dirs.push_back(trim_slash(url));
        // Directories last, deepest first: local ones are rmdir'ed; on stores where directories
        // are implicit (s3://) there is nothing left to remove.
        for (const auto& d : dirs) {
          if (storage::scheme_of(d) == "file") {
            std::error_code ec;
            std::filesystem::remove(storage::local_path(d), ec);
            if (ec) failed(d, "cannot remove directory: " + ec.message());
          } else {
            urls.remove(d);
          }
        }
      }
    } catch (const std::exception& e) {
      failed(url, e.what());
    }
  }
  return rc;
}

}  // namespace ember::cli
