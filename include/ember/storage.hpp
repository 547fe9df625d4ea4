// The URL space: every path the host or a plugin reads or writes goes through here.
//
// file:// and bare paths, and memory:// are built in; other schemes come from storage plugins
// (ember.storage/1). Writes are atomic: a Writer publishes only on commit(); destroying an
// uncommitted Writer aborts it and leaves the previous object untouched. Directories exist
// implicitly: the file backend creates parents on the first write under them.
#pragma once

#include <ember/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace ember::storage {

struct Stat {
  std::string url;
  bool is_dir = false;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

class Reader {
 public:
  virtual ~Reader() = default;
  // Up to cap bytes; 0 at the end.
  virtual std::size_t read(void* buf, std::size_t cap) = 0;
};

class Writer {
 public:
  virtual ~Writer() = default;  // implementations abort when not committed
  virtual void write(const void* data, std::size_t size) = 0;
  virtual void commit() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  static constexpr std::uint64_t kToEnd = UINT64_MAX;
  virtual std::unique_ptr<Reader> open_read(const std::string& url, std::uint64_t offset,
                                            std::uint64_t length) = 0;
  virtual std::unique_ptr<Writer> open_write(const std::string& url) = 0;
  virtual std::optional<Stat> stat(const std::string& url) = 0;
  virtual std::vector<Stat> list(const std::string& prefix) = 0;
  virtual bool remove(const std::string& url) = 0;  // false when absent
};

// "s3" from "s3://b/k"; "file" for a bare path.
inline std::string scheme_of(std::string_view url) {
  auto p = url.find("://");
  if (p == std::string_view::npos || p == 0) return "file";
  for (char c : url.substr(0, p))
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'))
      return "file";
  std::string s(url.substr(0, p));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Join a directory URL and a relative name with exactly one '/'.
inline std::string join(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (out.empty()) return std::string(name);
  if (out.back() != '/') out += '/';
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  out += name;
  return out;
}

// The local filesystem path a file URL names.
inline std::filesystem::path local_path(std::string_view url) {
  if (url.substr(0, 7) == "file://") url.remove_prefix(7);
  return std::filesystem::path(std::string(url));
}

[[noreturn]] inline void io_fail(const std::string& what, const std::string& url, int err) {
  throw RuntimeError(what + " " + url + ": " + std::strerror(err));
}

class FileBackend final : public Backend {
 public:
  class FileReader final : public Reader {
   public:
    FileReader(int fd, std::uint64_t remaining, std::string url)
        : fd_(fd), remaining_(remaining), url_(std::move(url)) {}
    ~FileReader() override { ::close(fd_); }
    std::size_t read(void* buf, std::size_t cap) override {
      if (remaining_ == 0) return 0;
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(cap, remaining_));
      ssize_t n;
      do n = ::read(fd_, buf, want);
      while (n < 0 && errno == EINTR);
      if (n < 0) io_fail("cannot read", url_, errno);
      remaining_ -= static_cast<std::uint64_t>(n);
      return static_cast<std::size_t>(n);
    }

   private:
    int fd_;
    std::uint64_t remaining_;
    std::string url_;
  };

  // Writes to "<dir>/.<name>.tmp-<random>", then fsync + rename + fsync(dir) on commit.
  class FileWriter final : public Writer {
   public:
    FileWriter(std::filesystem::path final_path, std::string url)
        : final_(std::move(final_path)), url_(std::move(url)) {
      std::error_code ec;
      auto dir = final_.parent_path();
      if (!dir.empty()) std::filesystem::create_directories(dir, ec);
      if (ec) throw RuntimeError("cannot create directory " + dir.string() + " for " + url_ + ": " + ec.message());
      static std::atomic<unsigned> counter{0};
      std::random_device rd;
      tmp_ = final_;
      tmp_.replace_filename("." + final_.filename().string() + ".tmp-" +
                            std::to_string(::getpid()) + "-" + std::to_string(rd() ^ counter++));
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0) io_fail("cannot write", url_, errno);
    }
    ~FileWriter() override {
      if (fd_ >= 0) ::close(fd_);
      if (!committed_) ::unlink(tmp_.c_str());
    }
    void write(const void* data, std::size_t size) override {
      const char* p = static_cast<const char*>(data);
      while (size) {
        ssize_t n = ::write(fd_, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) io_fail("cannot write", url_, errno);
        p += n;
        size -= static_cast<std::size_t>(n);
      }
    }
    void commit() override {
      if (committed_) return;
      if (::fsync(fd_) != 0) io_fail("cannot sync", url_, errno);
      ::close(fd_);
      fd_ = -1;
      if (::rename(tmp_.c_str(), final_.c_str()) != 0) io_fail("cannot publish", url_, errno);
      committed_ = true;
      auto dir = final_.parent_path();
      int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) ::fsync(dfd), ::close(dfd);
    }

   private:
    std::filesystem::path final_, tmp_;
    std::string url_;
    int fd_ = -1;
    bool committed_ = false;
  };

  std::unique_ptr<Reader> open_read(const std::string& url, std::uint64_t offset,
                                    std::uint64_t length) override {
    auto path = local_path(url);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_fail("cannot open", url, errno);
    struct ::stat st;
    ::fstat(fd, &st);
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    offset = std::min(offset, size);
    if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
      int e = errno;
      ::close(fd);
      io_fail("cannot seek", url, e);
    }
    return std::make_unique<FileReader>(fd, std::min(length, size - offset), url);
  }
  std::unique_ptr<Writer> open_write(const std::string& url) override {
    return std::make_unique<FileWriter>(local_path(url), url);
  }
  std::optional<Stat> stat(const std::string& url) override {
    struct ::stat st;
    if (::stat(local_path(url).c_str(), &st) != 0) return std::nullopt;
    return Stat{url, S_ISDIR(st.st_mode), static_cast<std::uint64_t>(st.st_size),
                static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  }
  std::vector<Stat> list(const std::string& prefix) override {
    std::vector<Stat> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(local_path(prefix), ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind(".", 0) == 0 && name.find(".tmp-") != std::string::npos) continue;
      if (auto s = stat(join(prefix, name))) out.push_back(*s);
    }
    std::sort(out.begin(), out.end(), [](const Stat& a, const Stat& b) { return a.url < b.url; });
    return out;
  }
  bool remove(const std::string& url) override {
    if (::unlink(local_path(url).c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    io_fail("cannot remove", url, errno);
  }
};

// memory://name — process-local objects, for tests.
class MemoryBackend final : public Backend {
 public:
  std::unique_ptr<Reader> open_read(const std::string& url, std::uint64_t offset,
                                    std::uint64_t length) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(url);
    if (it == objects_.end()) throw RuntimeError("cannot open " + url + ": no such object");
    auto data = it->second;
    offset = std::min<std::uint64_t>(offset, data->size());
    length = std::min<std::uint64_t>(length, data->size() - offset);
    struct R final : Reader {
      std::shared_ptr<const std::string> d;
      std::size_t pos, end;
      std::size_t read(void* buf, std::size_t cap) override {
        std::size_t n = std::min(cap, end - pos);
        std::memcpy(buf, d->data() + pos, n);
        pos += n;
        return n;
      }
    };
    auto r = std::make_unique<R>();
    r->d = data;
    r->pos = static_cast<std::size_t>(offset);
    r->end = static_cast<std::size_t>(offset + length);
    return r;
  }
  std::unique_ptr<Writer> open_write(const std::string& url) override {
    struct W final : Writer {
      MemoryBackend* owner;
      std::string url, bytes;
      void write(const void* d, std::size_t n) override { bytes.append(static_cast<const char*>(d), n); }
      void commit() override {
        std::lock_guard<std::mutex> lock(owner->mu_);
        owner->objects_[url] = std::make_shared<const std::string>(std::move(bytes));
      }
    };
    auto w = std::make_unique<W>();
    w->owner = this;
    w->url = url;
    return w;
  }
  std::optional<Stat> stat(const std::string& url) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(url);
    if (it != objects_.end()) return Stat{url, false, it->second->size(), 0};
    std::string dir = url.back() == '/' ? url : url + "/";
    auto lb = objects_.lower_bound(dir);
    if (lb != objects_.end() && lb->first.rfind(dir, 0) == 0) return Stat{url, true, 0, 0};
    return std::nullopt;
  }
  std::vector<Stat> list(const std::string& prefix) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string dir = prefix.empty() || prefix.back() == '/' ? prefix : prefix + "/";
    std::vector<Stat> out;
    for (auto it = objects_.lower_bound(dir); it != objects_.end() && it->first.rfind(dir, 0) == 0; ++it) {
      std::string rest = it->first.substr(dir.size());
      auto slash = rest.find('/');
      if (slash == std::string::npos) {
        out.push_back(Stat{it->first, false, it->second->size(), 0});
      } else {
        std::string sub = dir + rest.substr(0, slash);
        if (out.empty() || out.back().url != sub) out.push_back(Stat{sub, true, 0, 0});
      }
    }
    return out;
  }
  bool remove(const std::string& url) override {
    std::lock_guard<std::mutex> lock(mu_);
    return objects_.erase(url) > 0;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const std::string>> objects_;
};

// Routes URLs to backends by scheme.
class UrlSpace {
 public:
  UrlSpace() {
    add("file", std::make_shared<FileBackend>());
    add("memory", std::make_shared<MemoryBackend>());
  }
  void add(const std::string& scheme, std::shared_ptr<Backend> backend) {
    backends_[scheme] = std::move(backend);
  }
  // Route every URL starting with prefix ("s3://bucket-a/", or "s3://" for a whole scheme; the
  // scheme compared case-insensitively) to backend; the longest matching prefix wins over the
  // scheme's backend (the run config's storage_options, include/ember/storage_options.hpp). A
  // prefix ending in '/' also matches the URL without it ("s3://bucket-a").
  void add_prefix(const std::string& prefix, std::shared_ptr<Backend> backend) {
    prefixes_[normalized(prefix)] = std::move(backend);
  }
  Backend& route(std::string_view url) const {
    if (auto* b = prefix_route(url)) return *b;
    std::string scheme = scheme_of(url);
    auto it = backends_.find(scheme);
    if (it == backends_.end()) {
      std::string known;
      for (const auto& s : schemes()) known += (known.empty() ? "" : ", ") + s + "://";
      throw RuntimeError("unknown URL scheme '" + scheme + "' in " + std::string(url) +
                         "; registered schemes: " + known);
    }
    return *it->second;
  }
  // Whether a prefix added by add_prefix serves url.
  bool has_prefix_route(std::string_view url) const { return prefix_route(url) != nullptr; }
  Backend* prefix_route(std::string_view url) const {
    if (!prefixes_.empty()) {
      const std::string u = normalized(url);
      const std::map<std::string, std::shared_ptr<Backend>>::value_type* best = nullptr;
      for (const auto& kv : prefixes_) {
        const std::string& p = kv.first;
        bool match = u.compare(0, p.size(), p) == 0 ||
                     (p.size() > 3 && p.back() == '/' && p.compare(p.size() - 3, 3, "://") != 0 &&
                      u.size() == p.size() - 1 && p.compare(0, u.size(), u) == 0);
        if (match && (!best || p.size() > best->first.size())) best = &kv;
      }
      if (best) return best->second.get();
    }
    return nullptr;
  }
  std::vector<std::string> schemes() const {
    std::vector<std::string> out;
    for (const auto& kv : backends_) out.push_back(kv.first);
    for (const auto& kv : prefixes_) {
      std::string s = kv.first.substr(0, kv.first.find("://"));
      if (kv.first.size() == s.size() + 3 && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
    return out;
  }

  std::string read_all(const std::string& url) const {
    auto r = route(url).open_read(url, 0, Backend::kToEnd);
    std::string out;
    char buf[1 << 16];
    while (std::size_t n = r->read(buf, sizeof buf)) out.append(buf, n);
    return out;
  }
  void put_atomic(const std::string& url, std::string_view bytes) const {
    auto w = route(url).open_write(url);
    w->write(bytes.data(), bytes.size());
    w->commit();
  }
  std::unique_ptr<Reader> open_read(const std::string& url, std::uint64_t offset = 0,
                                    std::uint64_t length = Backend::kToEnd) const {
    return route(url).open_read(url, offset, length);
  }
  std::unique_ptr<Writer> open_write(const std::string& url) const { return route(url).open_write(url); }
  std::optional<Stat> stat(const std::string& url) const { return route(url).stat(url); }
  std::vector<Stat> list(const std::string& prefix) const { return route(prefix).list(prefix); }
  bool remove(const std::string& url) const { return route(url).remove(url); }

 private:
  // The URL with its scheme lowercased (bare paths unchanged).
  static std::string normalized(std::string_view url) {
    std::string u(url);
    auto p = u.find("://");
    if (p != std::string::npos)
      for (std::size_t i = 0; i < p; ++i) u[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(u[i])));
    return u;
  }

  std::map<std::string, std::shared_ptr<Backend>> backends_;
  std::map<std::string, std::shared_ptr<Backend>> prefixes_;  // storage_options: prefix -> backend
};

}  // namespace ember::storage
