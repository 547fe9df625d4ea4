// The spool: where the plugin keeps rows W&B has not acknowledged (one directory per run, through
// a Store: the host's URL space, or the local filesystem with private directories) and the names
// of its files. `ember wandb sync` reads it back (wandb_run_readers.hpp).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <ember/net/uri.hpp>

#include "wandb_safety.hpp"

namespace ember::wandb {

// Storage for the spool: the plugin backs it with the host's URL space, `ember wandb` with the
// local filesystem.
class Store {
 public:
  virtual ~Store() = default;
  virtual std::optional<std::string> read(const std::string& url) = 0;
  virtual void write(const std::string& url, std::string_view bytes) = 0;  // atomic
  virtual std::vector<std::string> list(const std::string& dir) = 0;      // entry names
  virtual void remove(const std::string& url) = 0;
};

// The spool on the local filesystem. Reads open regular files only and never follow a symlink
// (a spool directory may come from someone else: `ember wandb sync DIR`). A private store (the
// plugin's own spool) also creates its directories 0700 after checking that an existing one is
// ours and closed to others (ensure_private_dir), and its files 0600 (O_EXCL|O_NOFOLLOW, then an
// atomic rename).
class LocalStore final : public Store {
 public:
  explicit LocalStore(bool private_dirs) : private_(private_dirs) {}
  std::optional<std::string> read(const std::string& url) override {
    auto [dir, name] = split(url);
    return read_regular_file_under(dir, name, "spool file");
  }
  void write(const std::string& url, std::string_view bytes) override {
    auto [dir, name] = split(url);
    if (private_ && checked_.insert(dir).second) {
      auto [root, run] = split(dir);
      if (checked_.insert(root).second) ensure_private_dir(root);
      ensure_private_dir(dir);
    }
    std::string tmp = name + ".tmp-" + std::to_string(::getpid());
    Fd d = open_root_dir(dir);
    ::unlinkat(d.get(), tmp.c_str(), 0);
    {
      Fd f(::openat(d.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, private_ ? 0600 : 0644));
      if (f.get() < 0) throw std::runtime_error("cannot write " + dir + "/" + tmp + ": " + errno_text(errno));
      write_all(f.get(), bytes, dir + "/" + tmp);
    }
    if (::renameat(d.get(), tmp.c_str(), d.get(), name.c_str()) != 0)
      throw std::runtime_error("cannot rename " + dir + "/" + tmp + " to " + name + ": " + errno_text(errno));
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  void remove(const std::string& url) override { ::unlink(url.c_str()); }

 private:
  static std::pair<std::string, std::string> split(std::string url) {
    while (url.size() > 1 && url.back() == '/') url.pop_back();
    auto s = url.rfind('/');
    if (s == std::string::npos) return {".", url};
    return {s == 0 ? "/" : url.substr(0, s), url.substr(s + 1)};
  }
  bool private_;
  std::set<std::string> checked_;
};

using ember::net::join_url;  // dir + "/" + name, one slash between (ember/net/uri.hpp)

// Spool layout, one directory per run:  meta.json (RunMeta, base_url, config, pid),
// hist-<offset>.jsonl / events-<offset>.jsonl / output-<offset>.jsonl (console wire lines; one
// line each, zero-padded offsets: lexical order = offset order),
// summary.json, exit.json ({"exitcode": N}) once the run ended.
inline std::string spool_segment_name(const char* kind, std::int64_t offset) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%015lld.jsonl", kind, static_cast<long long>(offset));
  return buf;
}

// A media file (run file path "media/images/k_3_ab.png") spooled while W&B was away:
// "file-media%2Fimages%2Fk_3_ab.png" ('%' and '/' escaped), so the spool stays one flat directory.
inline std::string spool_file_name(std::string_view path) {
  std::string out = "file-";
  for (char c : path) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2F";
    else out += c;
  }
  return out;
}

// The run file path of a spooled file's name, or "" when name is not one.
inline std::string spooled_file_path(std::string_view name) {
  if (name.substr(0, 5) != "file-") return {};
  std::string out;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] == '%' && name.substr(i, 3) == "%2F") out += '/', i += 2;
    else if (name[i] == '%' && name.substr(i, 3) == "%25") out += '%', i += 2;
    else out += name[i];
  }
  return out;
}

inline std::map<std::int64_t, std::string> split_segment(std::int64_t first, const std::string& text) {
  std::map<std::int64_t, std::string> out;
  std::size_t p = 0;
  std::int64_t i = first;
  while (p < text.size()) {
    std::size_t q = text.find('\n', p);
    if (q == std::string::npos) q = text.size();
    if (q > p) out[i++] = text.substr(p, q - p);
    p = q + 1;
  }
  return out;
}

}  // namespace ember::wandb
