// The per-request integrity checksums the s3 plugin sends: CRC-32C (x-amz-checksum-crc32c, the
// default) or MD5 (Content-MD5), computed in the same pass over the body as the SHA-256 that
// SigV4 signs. Header-only, no network; OpenSSL for SHA-256 and MD5. CRC-32C is the shared one
// (include/ember/net/digest.hpp); S3 wants its 4 bytes big-endian, base64-encoded.
#pragma once

#include "sigv4.hpp"

#include <ember/net/digest.hpp>

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ember::s3 {

using net::crc32c;
using net::crc32c_base64;

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
