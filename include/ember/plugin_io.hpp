// Small helpers for plugins that write through the host's URL space (abi/storage.h).
// Header-only; needs only ember/plugin.hpp (no libtorch).
#pragma once

#include <ember/plugin.hpp>

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
// "s3://b/runs/v1". An empty side gives the other.
inline std::string join_url(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (out.empty()) return std::string(name);
  if (name.empty()) return out;
  if (out.back() != '/') out += '/';
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  out += name;
  return out;
}

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

}  // namespace ember::plugin
