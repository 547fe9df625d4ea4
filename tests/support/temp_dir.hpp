// Test helpers: a temporary directory removed at scope exit, environment lookups that fail
// loudly, and small file helpers. Header-only; no Boost.Test dependency.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ember::test {

// The value of an environment variable meson sets for the test (tests/meson.build test_env),
// or an exception saying which one is missing.
inline std::string require_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string("environment variable ") + name +
                             " is not set; run the test through `meson test`");
  return v;
}

// A fresh directory under $TMPDIR (or /tmp) made with mkdtemp, mode 0700; removed with all its
// contents on destruction, after giving back the write permission a test may have taken away.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "ember-test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + tag + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
      throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    // Restore u+rwx everywhere first: a test may leave a directory 0555.
    ::chmod(path_.c_str(), 0700);
    for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out << bytes;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The names in a directory (not recursive), sorted.
inline std::vector<std::string> list_dir(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Make dir (mode 0755) holding a copy of each file (mode 0755), for a plugin-directory test.
inline void make_plugin_dir(const std::filesystem::path& dir,
                            const std::vector<std::filesystem::path>& files) {
  std::filesystem::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  for (const auto& f : files) {
    auto to = dir / f.filename();
    std::filesystem::copy_file(f, to, std::filesystem::copy_options::overwrite_existing);
    ::chmod(to.c_str(), 0755);
  }
}

inline void chmod_or_throw(const std::filesystem::path& p, mode_t mode) {
  if (::chmod(p.c_str(), mode) != 0)
    throw std::runtime_error("chmod " + p.string() + ": " + std::strerror(errno));
}

}  // namespace ember::test
