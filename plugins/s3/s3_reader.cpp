// The s3 plugin's streaming reader.
#include "s3_service.hpp"

#include <ember/net/prefetch.hpp>

#include <algorithm>

namespace ember::s3 {
namespace {

// Streaming read: a HEAD for the size and ETag, then ranged GETs of read_chunk_size, up to
// max_concurrency in flight, each pinned to that ETag (If-Match) so a replaced object is an
// error, not a mix of two versions. The HEAD first (rather than a first ranged GET) because
// servers disagree on ranges over empty objects (416 from AWS, a broken 206 from s3rver).
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)),
        chunks_(s_.settings().read_chunk_size, s_.settings().max_concurrency,
                [this](std::uint64_t first, std::uint64_t last) { return fetch(first, last); }) {
    http::Response h = s_.call({"HeadObject", &loc_, "HEAD", {}, {}, "", {301, 400, 403, 404, 405, 409, 412}});
    if (h.status >= 300) {
      // A HEAD answer has no body: ask again with a GET to report S3's code (NoSuchKey,
      // NoSuchBucket, AccessDenied...) and message.
      s_.call({"GetObject", &loc_, "GET", {}, {{"Range", "bytes=0-0"}}, "", {}});
      throw S3Error("S3 HeadObject " + loc_.url() + ": HTTP " + std::to_string(h.status) + s_.context(),
                    h.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
    }
    std::string len = h.header("Content-Length");
    std::uint64_t size = len.empty() ? 0 : std::stoull(len);
    etag_ = h.header("ETag");
    chunks_.start(offset, length == UINT64_MAX || offset + length > size ? size : offset + length);
  }

  std::size_t read(void* buf, std::size_t cap) override { return chunks_.read(buf, cap); }

 private:
  std::string fetch(std::uint64_t first, std::uint64_t last) {
    Params h{{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}};
    if (!etag_.empty()) h.emplace_back("If-Match", etag_);
    Service::Call c{"GetObject", &loc_, "GET", {}, h, "", {}};
    // The range itself; room for an error document when the answer is one.
    c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
    http::Response r = s_.call(std::move(c));
    // A server that ignores Range sends the whole object for every chunk: refused (the
    // body limit stops a large one before it is read), not sliced.
    if (r.status != 206)
      throw S3Error("S3 GetObject " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                        std::to_string(last) + " and got HTTP " + std::to_string(r.status) +
                        ", not 206 Partial Content: the server ignored the Range header" + s_.context(),
                    EMBER_E_IO);
    if (r.body.size() != last - first + 1)
      throw S3Error("S3 GetObject " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                        std::to_string(last) + ", got " + std::to_string(r.body.size()) + s_.context(),
                    EMBER_E_IO);
    return std::move(r.body);
  }

  Service& s_;
  Location loc_;
  std::string etag_;
  net::RangePrefetcher chunks_;  // last: its fetches read the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) {
  return std::make_unique<Reader>(s, std::move(loc), offset, length);
}

}  // namespace ember::s3
