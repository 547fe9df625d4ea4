// Azure Storage's Shared Key authorization (Blob service, version 2009-09-19 and later) and the
// connection-string format, written from Microsoft's "Authorize with Shared Key" and "Configure
// Azure Storage connection strings" pages. Header-only; OpenSSL for HMAC-SHA256 (through
// ember/net/digest.hpp); no network.
//
// The string to sign is the verb, eleven standard headers (Content-Length empty when 0, Date
// empty because x-ms-date is sent), the canonicalized x-ms-* headers (lower-case names, sorted,
// values trimmed) and the canonicalized resource: "/" + account + the encoded path as sent, then
// each query parameter as "\nname:value" (lower-case names, sorted, values decoded, repeated
// names' values sorted and joined with ','). The signature is base64(HMAC-SHA256(decoded key,
// string to sign)).
#pragma once

#include <ember/net/digest.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::azure {

using Params = std::vector<std::pair<std::string, std::string>>;

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

inline std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Percent-decoding of a query value (SAS tokens arrive encoded); '+' stays '+'.
inline std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The value of header name (case-insensitive) in headers, "" when absent.
inline std::string header_value(const Params& headers, std::string_view name) {
  for (const auto& h : headers)
    if (lower(h.first) == lower(name)) return h.second;
  return {};
}

struct SharedKeyInput {
  std::string method;        // "PUT"
  std::string account;       // the account the key belongs to
  std::string encoded_path;  // the request path as sent: "/devstoreaccount1/c/a%20b"
  Params query;              // decoded names and values, as given to the request
  Params headers;            // every header sent (x-ms-date, x-ms-version and the standard ones)
  std::uint64_t content_length = 0;
};

inline std::string string_to_sign(const SharedKeyInput& in) {
  auto h = [&](const char* name) { return header_value(in.headers, name); };
  std::string s = in.method + "\n";
  s += h("Content-Encoding") + "\n";
  s += h("Content-Language") + "\n";
  s += (in.content_length ? std::to_string(in.content_length) : std::string()) + "\n";
  s += h("Content-MD5") + "\n";
  s += h("Content-Type") + "\n";
  s += "\n";  // Date: x-ms-date is sent instead
  s += h("If-Modified-Since") + "\n";
  s += h("If-Match") + "\n";
  s += h("If-None-Match") + "\n";
  s += h("If-Unmodified-Since") + "\n";
  s += h("Range") + "\n";
  std::vector<std::pair<std::string, std::string>> ms;
  for (const auto& kv : in.headers) {
    std::string name = lower(kv.first);
    if (name.rfind("x-ms-", 0) == 0) ms.emplace_back(name, trim(kv.second));
  }
  std::sort(ms.begin(), ms.end());
  for (const auto& kv : ms) s += kv.first + ":" + kv.second + "\n";
  s += "/" + in.account + in.encoded_path;
  std::map<std::string, std::vector<std::string>> q;
  for (const auto& kv : in.query) q[lower(kv.first)].push_back(kv.second);
  for (auto& kv : q) {
    std::sort(kv.second.begin(), kv.second.end());
    s += "\n" + kv.first + ":";
    for (std::size_t i = 0; i < kv.second.size(); ++i) s += (i ? "," : "") + kv.second[i];
  }
  return s;
}

// The Authorization header's value: "SharedKey account:signature". key is the decoded key.
inline std::string shared_key_authorization(const SharedKeyInput& in, std::string_view key) {
  return "SharedKey " + in.account + ":" + net::base64(net::hmac_sha256(key, string_to_sign(in)));
}

// "Key=Value;Key=Value" (values may hold '=': base64 keys, SAS tokens). Names as written; empty
// segments ignored. nullopt names the first segment without '=' in *bad.
inline std::optional<std::map<std::string, std::string>> parse_connection_string(std::string_view text, std::string* bad) {
  std::map<std::string, std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(';', start);
    std::string_view seg = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    std::string t = trim(seg);
    if (!t.empty()) {
      auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0) {
        if (bad) *bad = t.substr(0, t.find('='));
        return std::nullopt;
      }
      out[trim(t.substr(0, eq))] = trim(t.substr(eq + 1));
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

// Azurite's well-known development account (Microsoft publishes it; it is no secret).
inline constexpr const char* kDevAccount = "devstoreaccount1";
inline constexpr const char* kDevKey =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
inline constexpr const char* kDevBlobEndpoint = "http://127.0.0.1:10000/devstoreaccount1";

}  // namespace ember::azure
