// W&B's JSON text as its clients write it (history lines with NaN and Infinity as bare tokens,
// numbers in the shortest form that reads back the same) and the MD5/SHA-256/base64 digests of
// artifact manifests and media files. Header-only; needs Boost.JSON and OpenSSL (libcrypto).
// Part of wandb_proto.hpp (W&B's data formats, no networking).
#pragma once

#include <openssl/evp.h>

#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::wandb {

namespace json = boost::json;

// ---- JSON text as W&B's clients write it ------------------------------------------------------

inline void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of bytes that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

inline void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest round-trip text; NaN, Infinity, -Infinity as the bare tokens Python's json (and W&B's
// Go core) emit inside file_stream lines.
inline void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "Infinity" : "-Infinity";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

inline std::string number_text(double v) {
  std::string s;
  append_number(s, v);
  return s;
}

// Boost.JSON refuses the NaN/Infinity tokens; a non-finite double becomes that token's text as a
// string so that a summary or config stays representable. Lines use append_number instead.
inline json::value number_value(double v) {
  if (std::isfinite(v)) return json::value(v);
  return json::value(number_text(v));
}

// Parse a JSON line that may hold the bare NaN/Infinity/-Infinity tokens (W&B's history lines).
// The tokens outside strings are replaced by strings first; only for reading our own files.
inline json::value parse_line(std::string_view line) {
  std::string fixed;
  fixed.reserve(line.size() + 8);
  bool in_str = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_str) {
      fixed += c;
      if (c == '\\' && i + 1 < line.size()) fixed += line[++i];
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') {
      in_str = true;
      fixed += c;
      continue;
    }
    auto starts = [&](std::string_view tok) { return line.substr(i, tok.size()) == tok; };
    if (starts("NaN")) fixed += "\"NaN\"", i += 2;
    else if (starts("-Infinity")) fixed += "\"-Infinity\"", i += 8;
    else if (starts("Infinity")) fixed += "\"Infinity\"", i += 7;
    else fixed += c;
  }
  return json::parse(fixed);
}

// A JSON value serialised; a string "NaN"/"Infinity"/"-Infinity" produced by number_value goes
// back to the bare token so that lines re-emitted from a spool or .wandb file match the originals.
inline std::string line_text(const json::value& v) {
  std::string s = json::serialize(v);
  for (const char* tok : {"\"NaN\"", "\"Infinity\"", "\"-Infinity\""}) {
    std::string t(tok), bare = t.substr(1, t.size() - 2);
    for (std::size_t p = 0; (p = s.find(t, p)) != std::string::npos;) {
      s.replace(p, t.size(), bare);
      p += bare.size();
    }
  }
  return s;
}

// ---- digests ------------------------------------------------------------------------------------

inline std::array<unsigned char, 16> md5(std::string_view bytes) {
  std::array<unsigned char, 16> out{};
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out.data(), &n, EVP_md5(), nullptr) != 1 || n != 16)
    throw std::runtime_error("wandb: MD5 failed (OpenSSL EVP_Digest)");
  return out;
}

inline std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

inline std::string hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += digits[p[i] >> 4], out += digits[p[i] & 15];
  return out;
}

// Hex SHA-256: W&B's digest of media files (the "sha256" of image-file / table-file values).
inline std::string sha256_hex(std::string_view bytes) {
  unsigned char out[32];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out, &n, EVP_sha256(), nullptr) != 1 || n != 32)
    throw std::runtime_error("wandb: SHA-256 failed (OpenSSL EVP_Digest)");
  return hex(out, n);
}

// base64(std) of the raw MD5: W&B's file digest in manifests and CreateArtifactFiles.
inline std::string md5_b64(std::string_view bytes) {
  auto d = md5(bytes);
  return base64(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// The artifact digest: hex MD5 of "wandb-artifact-manifest-v1\n" + "path:b64digest\n" per entry,
// entries sorted by path (std::map keeps them sorted).
inline std::string manifest_digest(const std::map<std::string, std::string>& path_to_b64) {
  std::string text = "wandb-artifact-manifest-v1\n";
  for (const auto& [path, digest] : path_to_b64) text += path + ":" + digest + "\n";
  auto d = md5(text);
  return hex(d.data(), d.size());
}
}  // namespace ember::wandb
