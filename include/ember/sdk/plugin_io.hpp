// Small helpers for plugins that write through the host's URL space (abi/storage.h).
// Header-only; needs only ember/sdk/plugin.hpp (no libtorch).
#pragma once

#include <ember/net/uri.hpp>
#include <ember/sdk/plugin.hpp>

#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ember::plugin {

// The host's last_error as text, copied at once; "unknown error" when the host left it empty.
inline std::string host_error(const ember_host_t& host) {
  std::string s(view(host.last_error(host.ctx)));
  return s.empty() ? "unknown error" : s;
}

// dir + "/" + name, with exactly one slash between them: "s3://b/runs/" + "/v1" ->
// "s3://b/runs/v1". An empty side gives the other. The one copy is ember/net/uri.hpp's
// (header-only, standard library only).
using ember::net::join_url;

// Write bytes as the whole object at url: open_write, write, commit, close. The object appears
// at commit or not at all (the host creates directories; a writer closed uncommitted is
// aborted). On failure throws std::runtime_error "<who>: cannot write <url>: <host error>"
// (without "<who>: " when who is empty).
inline void write_object(const ember_host_t& host, std::string_view url, std::string_view bytes,
                         std::string_view who = {}) {
  auto error = [&](const std::string& why) {
    std::string msg = who.empty() ? std::string() : std::string(who) + ": ";
    return std::runtime_error(msg + "cannot write " + std::string(url) + ": " + why);
  };
  ember_file_t* f = nullptr;
  if (host.open_write(host.ctx, str(url), &f) != EMBER_OK) throw error(host_error(host));
  ember_status_t rc = host.write(host.ctx, f, bytes.data(), bytes.size());
  if (rc == EMBER_OK) rc = host.commit(host.ctx, f);
  std::string why = rc == EMBER_OK ? std::string() : host_error(host);
  host.close(host.ctx, f);
  if (rc != EMBER_OK) throw error(why);
}

// A bare path or file:// is the local filesystem (which can append in place); anything with a
// scheme of its own ("s3://", "memory://") goes through a storage backend.
inline bool is_local_url(std::string_view url) {
  if (url.substr(0, 7) == "file://") return true;
  auto p = url.find("://");
  if (p == std::string_view::npos || p == 0) return true;
  for (char c : url.substr(0, p))
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.')) return true;
  return false;
}

// The filesystem path of a local URL ("file:///a/b" -> "/a/b"; a bare path as it is).
inline std::string local_path(std::string_view url) {
  if (url.substr(0, 7) == "file://") url.remove_prefix(7);
  return std::string(url);
}

// The last path component of a URL ("s3://b/runs/version_3/" -> "version_3").
inline std::string_view url_basename(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  auto slash = url.rfind('/');
  return slash == std::string_view::npos ? url : url.substr(slash + 1);
}

// "version_17" -> 17; anything else -> nullopt.
inline std::optional<std::int64_t> version_number(std::string_view name) {
  constexpr std::string_view prefix = "version_";
  if (name.substr(0, prefix.size()) != prefix || name.size() == prefix.size()) return std::nullopt;
  std::int64_t n = 0;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr != last || n < 0) return std::nullopt;
  return n;
}

// The next free version_N under root, Lightning's _get_next_version: one more than the largest
// version_N directory listed (0 when root is empty or does not exist yet). Throws
// std::runtime_error "<who>: cannot list <root> …" when the listing fails.
inline std::int64_t next_version(const ember_host_t& host, const std::string& root, std::string_view who) {
  std::int64_t max = -1;
  ember_status_t rc = host.list(
      host.ctx, str(root),
      [](void* user, const ember_stat_t* e) -> int32_t {
        if (!e->is_dir) return 0;
        auto* m = static_cast<std::int64_t*>(user);
        if (auto n = version_number(url_basename(view(e->url))))
          if (*n > *m) *m = *n;
        return 0;
      },
      &max);
  if (rc != EMBER_OK && rc != EMBER_E_NOT_FOUND)
    throw std::runtime_error(std::string(who) + ": cannot list " + root + " to find the next version: " + host_error(host));
  return max + 1;
}

}  // namespace ember::plugin
