// What the wandb plugin and `ember wandb` refuse or hide, in one place (issue 10 items 2, 3, 5-8,
// 15): file names from servers and directories handed to us stay inside their root and never
// follow symlinks; the spool is a private per-user directory; argv values of secret-looking keys,
// URL query strings (pre-signed URLs) and control characters in URL path segments never leave.
// POSIX only (openat/O_NOFOLLOW), as the rest of Ember.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <ember/net/uri.hpp>

namespace ember::wandb {

// ---- relative paths under a root ---------------------------------------------------------------

// The segments of a relative path a remote party chose (a manifest entry, a files record), or an
// exception naming it: no absolute path, no "..", no empty or "." segment, no NUL or backslash,
// so the joined result can only name something below the root.
inline std::vector<std::string> safe_relative_path(std::string_view path, const std::string& what) {
  auto bad = [&](const std::string& why) {
    throw std::runtime_error(what + " '" + std::string(path) + "': " + why +
                             "; expected a relative path inside the directory (no leading '/', no '..')");
  };
  if (path.empty()) bad("empty path");
  if (path.front() == '/') bad("absolute path");
  for (char c : path)
    if (c == '\0' || c == '\\' || static_cast<unsigned char>(c) < 0x20) bad("control character or backslash");
  std::vector<std::string> segs;
  std::size_t p = 0;
  while (p <= path.size()) {
    std::size_t q = path.find('/', p);
    if (q == std::string_view::npos) q = path.size();
    std::string seg(path.substr(p, q - p));
    if (seg == "..") bad("'..' segment");
    if (seg.empty() || seg == ".") bad("empty or '.' segment");
    segs.push_back(std::move(seg));
    p = q + 1;
  }
  return segs;
}

// An fd closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(), fd_ = o.fd_, o.fd_ = -1;
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

inline std::string errno_text(int e) { return std::strerror(e); }

// Open the directory `segs[0]/…/segs[n-1]` below dirfd without following a symlink at any step
// (O_NOFOLLOW on each openat); create missing ones with `mode` when `create` is set, else a
// missing one gives an Fd of -1.
inline Fd open_dirs_below(int dirfd, const std::vector<std::string>& segs, std::size_t n, bool create, mode_t mode,
                          const std::string& shown) {
  Fd cur(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
  if (cur.get() < 0) throw std::runtime_error(shown + ": " + errno_text(errno));
  for (std::size_t i = 0; i < n; ++i) {
    if (create && ::mkdirat(cur.get(), segs[i].c_str(), mode) != 0 && errno != EEXIST)
      throw std::runtime_error("cannot create directory " + segs[i] + " of " + shown + ": " + errno_text(errno));
    Fd next(::openat(cur.get(), segs[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) {
      int e = errno;
      if (e == ENOENT && !create) return Fd();
      throw std::runtime_error(shown + ": '" + segs[i] + "' is " +
                               (e == ELOOP || e == ENOTDIR ? std::string("a symlink or not a directory; refused")
                                                           : errno_text(e)));
    }
    cur = std::move(next);
  }
  return cur;
}

inline Fd open_root_dir(const std::string& root) {
  Fd d(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() < 0) throw std::runtime_error("cannot open directory " + root + ": " + errno_text(errno));
  return d;
}

inline void write_all(int fd, std::string_view bytes, const std::string& shown) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("cannot write " + shown + ": " + errno_text(errno));
    off += static_cast<std::size_t>(n);
  }
}

// Write `bytes` to root/rel, where rel is a name a server chose: checked with safe_relative_path,
// intermediate directories created (0755) and entered without following symlinks, the file
// opened with O_NOFOLLOW (a planted symlink is refused, not written through). Returns the path.
inline std::string write_file_under(const std::string& root, std::string_view rel, std::string_view bytes,
                                    const std::string& what, mode_t mode = 0644) {
  std::vector<std::string> segs = safe_relative_path(rel, what);
  std::string shown = root + "/" + std::string(rel);
  // Belt and braces: the normalised join stays below root (the segment rules already ensure it).
  auto inside = std::filesystem::path(shown).lexically_normal().lexically_relative(std::filesystem::path(root).lexically_normal());
  if (inside.empty() || *inside.begin() == "..") throw std::runtime_error(what + " '" + std::string(rel) + "': outside " + root);
  Fd base = open_root_dir(root);
  Fd dir = open_dirs_below(base.get(), segs, segs.size() - 1, true, 0755, shown);
  Fd f(::openat(dir.get(), segs.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (f.get() < 0) {
    int e = errno;
    throw std::runtime_error("cannot write " + shown + ": " +
                             (e == ELOOP ? std::string("it is a symlink; refused") : errno_text(e)));
  }
  struct stat st {};
  if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode)) throw std::runtime_error("cannot write " + shown + ": not a regular file");
  write_all(f.get(), bytes, shown);
  return shown;
}

// The bytes of root/rel when it is a regular file reached without a symlink (rel as above);
// nullopt when it does not exist; an exception when it is a symlink, a directory, a device...
inline std::optional<std::string> read_regular_file_under(const std::string& root, std::string_view rel,
                                                          const std::string& what) {
  std::vector<std::string> segs = safe_relative_path(rel, what);
  std::string shown = root + "/" + std::string(rel);
  Fd base(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (base.get() < 0 && errno == ENOENT) return std::nullopt;
  if (base.get() < 0) throw std::runtime_error("cannot open directory " + root + ": " + errno_text(errno));
  Fd dir = open_dirs_below(base.get(), segs, segs.size() - 1, false, 0, shown);
  if (dir.get() < 0) return std::nullopt;
  // O_NONBLOCK: a FIFO planted under the name must not hang the open.
  Fd f(::openat(dir.get(), segs.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (f.get() < 0) {
    int e = errno;
    if (e == ENOENT) return std::nullopt;
    throw std::runtime_error(what + " " + shown + ": " + (e == ELOOP ? std::string("a symlink; refused") : errno_text(e)));
  }
  struct stat st {};
  if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw std::runtime_error(what + " " + shown + ": not a regular file; refused");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("cannot read " + shown + ": " + errno_text(errno));
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// ---- the private spool directory ---------------------------------------------------------------

// A directory only this user can use: created 0700 when missing; an existing one must be a real
// directory (not a symlink) owned by us with no group/other permission bits, or it is refused with
// what is wrong (another user could have planted it to read or inject runs).
inline void ensure_private_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno == ENOENT) {
    std::error_code ec;  // its parents are ordinary directories; only the spool itself is private
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    ::mkdir(path.c_str(), 0700);
  }
  if (::access(path.c_str(), F_OK) != 0)
    throw std::runtime_error("cannot create the spool directory " + path + ": " + errno_text(errno));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path + ": " + errno_text(errno));
  if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode))
    throw std::runtime_error("spool directory " + path + " is a symlink or not a directory; refused");
  if (st.st_uid != ::geteuid())
    throw std::runtime_error("spool directory " + path + " belongs to uid " + std::to_string(st.st_uid) + ", not to you (uid " +
                             std::to_string(::geteuid()) + "); refused");
  if ((st.st_mode & 077) != 0) {
    char m[8];
    std::snprintf(m, sizeof m, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    throw std::runtime_error("spool directory " + path + " has mode " + m +
                             "; expected 0700 (no group/other access); refused. Fix it with chmod 700 " + path);
  }
}

// True when path is a directory (not a symlink) owned by us and closed to group and others.
inline bool is_private_dir(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() && (st.st_mode & 077) == 0;
}

// The local path of a spool URL ("file://…" or a bare path), or "" for another scheme.
inline std::string local_path_of(const std::string& url) {
  if (url.rfind("file://", 0) == 0) return url.substr(7);
  if (url.find("://") != std::string::npos) return {};
  return url;
}

// ---- what must not leave -------------------------------------------------------------------------

// The text with the query of every URL or request target cut ("…/x?X-Goog-Signature=…" ->
// "…/x?..."): pre-signed upload URLs carry their signature there. A '?' counts when the token
// before it holds a '/' (a URL or a path), so ordinary questions in a message stay.
inline std::string strip_query_strings(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  auto stop = [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '"' || c == '<' || c == '>' || c == ')' ||
           c == ']' || c == '`';
  };
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '?' && i + 1 < text.size() && !stop(text[i + 1])) {
      std::size_t tok = out.size();
      while (tok > 0 && !stop(out[tok - 1])) --tok;
      if (out.find('/', tok) != std::string::npos) {
        out += "?...";
        ++i;
        while (i < text.size() && !stop(text[i])) ++i;
        continue;
      }
    }
    out += c;
    ++i;
  }
  return out;
}

// Whether a config key (its last dot-separated segment) names a secret: secret, key, token,
// password or credential anywhere in it, any case ("aws.secret_access_key", "API_KEY").
inline bool secret_key_name(std::string_view key) {
  while (!key.empty() && key.front() == '-') key.remove_prefix(1);
  if (auto dot = key.rfind('.'); dot != std::string_view::npos) key = key.substr(dot + 1);
  std::string k;
  for (char c : key) k += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* w : {"secret", "key", "token", "password", "passwd", "credential"})
    if (k.find(w) != std::string::npos) return true;
  return false;
}

// argv as W&B run metadata may show it: the value of every KEY=VALUE element whose key looks
// secret (`--set s3.secret_access_key=…`, `--set=…`, `AWS_SECRET=…`) and the element after an
// option named like a secret (`--api-key VALUE`) become "<redacted>".
inline std::vector<std::string> redact_argv(std::vector<std::string> argv) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    std::string& a = argv[i];
    std::string_view body(a);
    if (body.rfind("--set=", 0) == 0) body.remove_prefix(6);
    if (auto eq = body.find('='); eq != std::string_view::npos) {
      if (secret_key_name(body.substr(0, eq))) a = a.substr(0, a.size() - (body.size() - eq - 1)) + "<redacted>";
      continue;
    }
    if (a.rfind("--", 0) == 0 && a != "--set" && secret_key_name(a) && i + 1 < argv.size()) argv[++i] = "<redacted>";
  }
  return argv;
}

// One URL path segment percent-encoded (ember/net/uri.hpp: RFC 3986 unreserved characters kept,
// upper-case hex), so a name with spaces, '/', '?', CR or LF stays one segment of one request line.
inline std::string encode_path_segment(std::string_view s) { return net::uri_encode(s, /*encode_slash=*/true); }

inline bool has_control_chars(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Loopback by name or address: "localhost", 127.0.0.0/8, ::1 (brackets allowed).
inline bool is_loopback_host(std::string host) {
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

// Refuse to send the API key in clear: an http:// base URL is accepted only for a loopback host
// or when the user allowed it explicitly (`allow_insecure_http`, `--allow-insecure-http`).
inline void check_key_transport(const std::string& base_url, const std::string& host, bool allow_insecure,
                                const std::string& how_to_allow) {
  if (base_url.rfind("http://", 0) != 0 || allow_insecure || is_loopback_host(host)) return;
  throw std::invalid_argument("base URL " + strip_query_strings(base_url) +
                              " is plain http to a non-loopback host: the API key would travel in clear; use https, "
                              "or allow it explicitly with " + how_to_allow);
}

}  // namespace ember::wandb
