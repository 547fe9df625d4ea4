// The per-request integrity checksums the s3 plugin sends: CRC-32C (x-amz-checksum-crc32c, the
// default) or MD5 (Content-MD5), computed in the same pass over the body as the SHA-256 that
// SigV4 signs. Header-only, no network; OpenSSL for SHA-256 and MD5.
//
// CRC-32C is written here because no packaged C library on the target systems provides it
// (zlib's crc32 is the other polynomial): the SSE4.2 crc32 instruction when the CPU has it
// (checked once with cpuid), else slicing-by-8 tables. Both give S3's value: the Castagnoli
// polynomial, reflected (0x82F63B78), initial value and final xor 0xFFFFFFFF; S3 wants the
// 4 bytes big-endian, base64-encoded.
#pragma once

#include "sigv4.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <nmmintrin.h>
#define EMBER_S3_CRC32C_SSE42 1
#endif

namespace ember::s3 {
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

#ifdef EMBER_S3_CRC32C_SSE42
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

// Whether crc32c() uses the CPU instruction here (for the tests' and the README's sake).
inline bool hardware() {
#ifdef EMBER_S3_CRC32C_SSE42
  return cpu_has_sse42();
#else
  return false;
#endif
}

}  // namespace crc32c_detail

// CRC-32C of data, continuing from a previous result crc (0 to start): crc32c(b, crc32c(a)) is
// crc32c(a + b).
inline std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#ifdef EMBER_S3_CRC32C_SSE42
  if (crc32c_detail::cpu_has_sse42()) return ~crc32c_detail::update_sse42(crc, p, data.size());
#endif
  return ~crc32c_detail::update_software(crc, p, data.size());
}

// x-amz-checksum-crc32c's value: base64 of the CRC's 4 bytes, most significant first.
inline std::string crc32c_base64(std::uint32_t crc) {
  const char raw[4] = {static_cast<char>(crc >> 24), static_cast<char>(crc >> 16), static_cast<char>(crc >> 8),
                       static_cast<char>(crc)};
  return base64(std::string_view(raw, 4));
}

// Which checksum every PutObject and UploadPart carries.
enum class Checksum { crc32c, md5 };

// What one request body needs: the hex SHA-256 SigV4 signs (x-amz-content-sha256) and the
// integrity header, both from one pass over the body.
struct BodyDigests {
  std::string sha256_hex;
  std::string header_name;   // "x-amz-checksum-crc32c" or "Content-MD5"
  std::string header_value;  // base64
};

// BodyDigests built up piece by piece, as bytes arrive; reusable after finish().
class BodyHasher {
 public:
  explicit BodyHasher(Checksum algo) : algo_(algo), sha_(EVP_MD_CTX_new()), md5_(EVP_MD_CTX_new()) {
    if (!sha_ || !md5_) throw std::runtime_error("OpenSSL: out of memory for a digest context");
    reset();
  }

  void update(std::string_view s) {
    if (EVP_DigestUpdate(sha_.get(), s.data(), s.size()) != 1) throw std::runtime_error("OpenSSL SHA-256 failed");
    if (algo_ == Checksum::md5) {
      if (EVP_DigestUpdate(md5_.get(), s.data(), s.size()) != 1) throw std::runtime_error("OpenSSL MD5 failed");
    } else {
      crc_ = crc32c(s, crc_);
    }
  }

  // The digests of everything since the last finish (or construction); starts over.
  BodyDigests finish() {
    BodyDigests d;
    std::string raw = final_raw(sha_.get());
    d.sha256_hex = to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
    if (algo_ == Checksum::md5) {
      d.header_name = "Content-MD5";
      d.header_value = base64(final_raw(md5_.get()));
    } else {
      d.header_name = "x-amz-checksum-crc32c";
      d.header_value = crc32c_base64(crc_);
    }
    reset();
    return d;
  }

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };

  void reset() {
    if (EVP_DigestInit_ex(sha_.get(), EVP_sha256(), nullptr) != 1) throw std::runtime_error("OpenSSL SHA-256 init failed");
    if (algo_ == Checksum::md5 && EVP_DigestInit_ex(md5_.get(), EVP_md5(), nullptr) != 1)
      throw std::runtime_error("OpenSSL MD5 init failed");
    crc_ = 0;
  }

  static std::string final_raw(EVP_MD_CTX* c) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(c, out, &len) != 1) throw std::runtime_error("OpenSSL digest failed");
    return std::string(reinterpret_cast<char*>(out), len);
  }

  Checksum algo_;
  std::unique_ptr<EVP_MD_CTX, CtxFree> sha_, md5_;
  std::uint32_t crc_ = 0;
};

// The digests of a whole body, walked in slices small enough to stay in the core's cache
// between the two hashes.
inline BodyDigests body_digests(std::string_view body, Checksum algo) {
  constexpr std::size_t kSlice = 256 * 1024;
  BodyHasher h(algo);
  for (std::size_t off = 0; off < body.size(); off += kSlice) h.update(body.substr(off, kSlice));
  return h.finish();
}

}  // namespace ember::s3
