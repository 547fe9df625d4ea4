// The azure plugin's streaming reader.
#include "azure_service.hpp"

#include <ember/net/prefetch.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>

namespace ember::azure {
namespace {

// Streaming read; see azure.cpp's file comment. Get Blob Properties first, for the size, the ETag
// every range is pinned to, and the blob's Content-MD5.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)),
        chunks_(s_.settings().read_chunk_size, s_.settings().max_concurrency,
                [this](std::uint64_t first, std::uint64_t last) { return fetch(first, last); }) {
    if (loc_.blob.empty() || loc_.blob.back() == '/')
      throw AzureError("cannot read " + loc_.url() + ": not a blob name", EMBER_E_INVALID);
    http::Response h = s_.call({"GetBlobProperties", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = h.header("Content-Length");
    std::uint64_t size = len.empty() ? 0 : std::stoull(len);
    etag_ = h.header("ETag");
    const std::uint64_t end = length == UINT64_MAX || offset + length > size ? size : offset + length;
    if (s_.settings().verify_md5 && offset == 0 && end == size) {
      blob_md5_ = h.header("Content-MD5");
      if (!blob_md5_.empty()) {
        md5_.reset(EVP_MD_CTX_new());
        if (!md5_ || EVP_DigestInit_ex(md5_.get(), EVP_md5(), nullptr) != 1) throw std::runtime_error("azure: OpenSSL MD5 failed");
      }
    }
    chunks_.start(offset, end);
  }

  std::size_t read(void* buf, std::size_t cap) override {
    std::size_t n = chunks_.read(buf, cap, [this](const std::string& chunk) {
      if (md5_) EVP_DigestUpdate(md5_.get(), chunk.data(), chunk.size());
    });
    if (n == 0 && chunks_.done()) finish();
    return n;
  }

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };

  void finish() {
    if (!md5_) return;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md5_.get(), d, &n);
    md5_.reset();
    std::string got = net::base64(std::string_view(reinterpret_cast<char*>(d), n));
    if (got != blob_md5_)
      throw AzureError("azure GetBlob " + loc_.url() + ": the blob's Content-MD5 is " + blob_md5_ +
                           " but the bytes read have MD5 " + got + s_.context(),
                       EMBER_E_IO);
  }

  std::string fetch(std::uint64_t first, std::uint64_t last) {
    const std::string range = "bytes=" + std::to_string(first) + "-" + std::to_string(last);
    Params h{{"x-ms-range", range}};
    if (!etag_.empty()) h.emplace_back("If-Match", etag_);
    const bool want_md5 = s_.settings().verify_md5 && last - first + 1 <= kRangeMd5Limit;
    if (want_md5) h.emplace_back("x-ms-range-get-content-md5", "true");
    Service::Call c{"GetBlob", &loc_, "GET", {}, h, "", {}};
    c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
    http::Response r = s_.call(std::move(c));
    if (r.status != 206)
      throw AzureError("azure GetBlob " + loc_.url() + ": asked for " + range + " and got HTTP " +
                           std::to_string(r.status) + ", not 206 Partial Content" + s_.context(),
                       EMBER_E_IO);
    if (r.body.size() != last - first + 1)
      throw AzureError("azure GetBlob " + loc_.url() + ": asked for " + range + ", got " + std::to_string(r.body.size()) +
                           " bytes" + s_.context(),
                       EMBER_E_IO);
    if (want_md5) {
      std::string sent = r.header("Content-MD5");
      if (!sent.empty() && sent != md5_base64(r.body))
        throw AzureError("azure GetBlob " + loc_.url() + ": the MD5 of " + range + " is " + md5_base64(r.body) +
                             " but the service sent Content-MD5 " + sent + " (corrupted in transit)" + s_.context(),
                         EMBER_E_IO);
    }
    return std::move(r.body);
  }

  Service& s_;
  Location loc_;
  std::string etag_, blob_md5_;
  std::unique_ptr<EVP_MD_CTX, CtxFree> md5_;
  net::RangePrefetcher chunks_;  // last: its fetches read the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) {
  return std::make_unique<Reader>(s, std::move(loc), offset, length);
}

}  // namespace ember::azure
