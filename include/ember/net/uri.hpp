// URL pieces every network plugin builds: percent-encoding (RFC 3986: the unreserved characters
// ALPHA DIGIT - . _ ~ kept, every other byte %XX with upper-case hex, as S3's SigV4 canonical
// form, GCS's JSON API, Azure Blob, WebHDFS and W&B's paths want) and the join of a directory URL
// and a name. One copy for s3, gcs, azure, webhdfs, wandb and the SDK's plugin_io.hpp.
// Header-only, standard library only.
#pragma once

#include <string>
#include <string_view>

namespace ember::net {

// Percent-encode s. encode_slash=false keeps '/' (a path of several segments); true encodes it
// (one segment, or a query key or value).
inline std::string uri_encode(std::string_view s, bool encode_slash = true) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (c == '/' && !encode_slash)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
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

}  // namespace ember::net
