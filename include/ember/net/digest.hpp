// Hashes, MACs and encodings the network plugins share: hex, SHA-256, HMAC-SHA256, MD5, base64
// (standard and URL-safe, both ways), CRC-32C, and env(). One copy for every plugin (s3, wandb,
// tensorboard, gcs, azure, webhdfs); header-only; OpenSSL for the cryptographic hashes (a user
// of this header links OpenSSL's libcrypto: the `ember-net` dependency says so).
//
// CRC-32C is written here because no packaged C library on the target systems provides it
// (zlib's crc32 is the other polynomial): the SSE4.2 crc32 instruction when the CPU has it
// (checked once with cpuid), else slicing-by-8 tables. Both give the value S3, GCS and TFRecord
// use: the Castagnoli polynomial, reflected (0x82F63B78), initial value and final xor 0xFFFFFFFF.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <nmmintrin.h>
#define EMBER_NET_CRC32C_SSE42 1
#endif

namespace ember::net {

// The value of an environment variable, "" when unset.
inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

inline std::string to_hex(const unsigned char* p, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}
inline std::string to_hex(std::string_view raw) {
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

// One-shot digest of data with an EVP algorithm; raw bytes.
inline std::string digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1)
    throw std::runtime_error("OpenSSL digest failed");
  return std::string(reinterpret_cast<char*>(out), len);
}

inline std::string sha256(std::string_view data) { return digest(EVP_sha256(), data); }
inline std::string sha256_hex(std::string_view data) { return to_hex(sha256(data)); }
inline std::string md5(std::string_view data) { return digest(EVP_md5(), data); }

// Raw HMAC-SHA256 of data under key.
inline std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    throw std::runtime_error("OpenSSL HMAC-SHA256 failed");
  return std::string(reinterpret_cast<char*>(out), len);
}

// Standard base64 (RFC 4648 section 4) with padding.
inline std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[0]),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// URL-safe base64 (RFC 4648 section 5) without padding, as JWTs use it.
inline std::string base64url(std::string_view raw) {
  std::string s = base64(raw);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

// Decodes standard or URL-safe base64, padded or not; nullopt on any character outside the
// alphabet, a misplaced '=', or a length no encoder produces. Whitespace is not accepted.
inline std::optional<std::string> base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::size_t pad = 0;
  while (!text.empty() && text.back() == '=' && pad < 2) text.remove_suffix(1), ++pad;
  if (pad && (text.size() + pad) % 4 != 0) return std::nullopt;
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, or the text was not produced by an encoder.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

namespace crc32c_detail {

constexpr std::uint32_t kPoly = 0x82F63B78u;  // Castagnoli, reflected

// table[k][b]: the CRC register after byte b followed by k zero bytes (slicing-by-8).
using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

inline const Tables& tables() {
  static const Tables t = [] {
    Tables x{};
    for (std::uint32_t b = 0; b < 256; ++b) {
      std::uint32_t c = b;
      for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
      x[0][b] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
      for (std::uint32_t b = 0; b < 256; ++b) x[k][b] = (x[k - 1][b] >> 8) ^ x[0][x[k - 1][b] & 0xff];
    return x;
  }();
  return t;
}

inline std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

// Continue the raw register crc (not inverted) over n bytes; portable.
inline std::uint32_t update_software(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  const Tables& t = tables();
  while (n >= 8) {
    std::uint32_t lo = crc ^ load_le32(p), hi = load_le32(p + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return crc;
}

#ifdef EMBER_NET_CRC32C_SSE42
inline bool cpu_has_sse42() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_SSE4_2) != 0;
  }();
  return has;
}

// The same with the SSE4.2 instruction; call only when cpu_has_sse42().
__attribute__((target("sse4.2"))) inline std::uint32_t update_sse42(std::uint32_t crc, const unsigned char* p,
                                                                   std::size_t n) {
#if defined(__x86_64__)
  std::uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    __builtin_memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
  }
  crc = static_cast<std::uint32_t>(c);
#endif
  for (; n >= 4; p += 4, n -= 4) {
    std::uint32_t w;
    __builtin_memcpy(&w, p, 4);
    crc = _mm_crc32_u32(crc, w);
  }
  while (n--) crc = _mm_crc32_u8(crc, *p++);
  return crc;
}
#endif

}  // namespace crc32c_detail

// Whether crc32c() uses the CPU instruction here (for the tests' and the README's sake).
inline bool crc32c_hardware() {
#ifdef EMBER_NET_CRC32C_SSE42
  return crc32c_detail::cpu_has_sse42();
#else
  return false;
#endif
}

// CRC-32C of data, continuing from a previous result crc (0 to start): crc32c(b, crc32c(a)) is
// crc32c(a + b).
inline std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#ifdef EMBER_NET_CRC32C_SSE42
  if (crc32c_detail::cpu_has_sse42()) return ~crc32c_detail::update_sse42(crc, p, data.size());
#endif
  return ~crc32c_detail::update_software(crc, p, data.size());
}

// base64 of the CRC's 4 bytes, most significant first: S3's x-amz-checksum-crc32c and GCS's
// x-goog-hash "crc32c=" value.
inline std::string crc32c_base64(std::uint32_t crc) {
  const char raw[4] = {static_cast<char>(crc >> 24), static_cast<char>(crc >> 16), static_cast<char>(crc >> 8),
                       static_cast<char>(crc)};
  return base64(std::string_view(raw, 4));
}

// CRC-64 as Azure Storage computes x-ms-content-crc64 (CRC-64/NVME: reflected polynomial
// 0x9A6C9329AC4BC9B5, init and xorout all ones; check value of "123456789": 0xAE8B14860A799888).
// Table-driven, one byte at a time. crc: a previous result, to continue over more data.
inline std::uint64_t crc64_nvme(std::string_view data, std::uint64_t crc = 0) {
  static const std::array<std::uint64_t, 256> table = [] {
    std::array<std::uint64_t, 256> t{};
    for (std::uint64_t i = 0; i < 256; ++i) {
      std::uint64_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x9A6C9329AC4BC9B5ull : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// The x-ms-content-crc64 header value: base64 of the CRC's 8 bytes, least significant first.
inline std::string crc64_base64(std::string_view data) {
  std::uint64_t c = crc64_nvme(data);
  char raw[8];
  for (int i = 0; i < 8; ++i) raw[i] = static_cast<char>((c >> (8 * i)) & 0xff);
  return base64(std::string_view(raw, 8));
}

}  // namespace ember::net
