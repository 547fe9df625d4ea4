// The gcs plugin's streaming reader.
#include "gcs_service.hpp"

#include <ember/net/prefetch.hpp>

#include <algorithm>

namespace ember::gcs {
namespace {

// Streaming read; see gcs.cpp's file comment.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)),
        chunks_(s_.settings().read_chunk_size, s_.settings().max_concurrency,
                [this](std::uint64_t first, std::uint64_t last) { return fetch(first, last); }) {
    if (loc_.key.empty()) throw plugin::Error("cannot read " + loc_.url() + ": no object name", EMBER_E_INVALID);
    http::Response r = s_.call({"objects.get", loc_.url(), "GET", s_.object_path(loc_), {}, "", {}});
    meta_ = meta_of(parse_object(r.body));
    const std::uint64_t end = length == UINT64_MAX || offset + length > meta_.size ? meta_.size : offset + length;
    whole_ = offset == 0 && end == meta_.size && !meta_.crc32c.empty();
    chunks_.start(offset, end);
  }

  std::size_t read(void* buf, std::size_t cap) override {
    std::size_t n = chunks_.read(buf, cap, [this](const std::string& chunk) {
      if (whole_) crc_ = s3::crc32c(chunk, crc_);
    });
    if (n == 0 && chunks_.done()) check_crc();
    return n;
  }

 private:
  void check_crc() {
    if (!whole_ || checked_) return;
    checked_ = true;
    std::string got = s3::crc32c_base64(crc_);
    if (got != meta_.crc32c)
      throw plugin::Error("gcs objects.get " + loc_.url() + ": crc32c mismatch: the object's is " + meta_.crc32c +
                              ", the bytes read have " + got + " (corrupted in transit; read it again)" + s_.context(),
                          EMBER_E_IO);
  }

  std::string fetch(std::uint64_t first, std::uint64_t last) {
    std::string target = s_.object_path(loc_) + "?alt=media";
    if (!meta_.generation.empty()) target += "&ifGenerationMatch=" + pct(meta_.generation);
    Service::Call c{"objects.get (media)", loc_.url(), "GET", target,
                    {{"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(last)}}, "", {}};
    c.body_limit = std::max<std::uint64_t>(last - first + 1, 64 * 1024);
    http::Response r = s_.call(c);
    const bool all = first == 0 && last + 1 == meta_.size;
    if (r.status != 206 && !(r.status == 200 && all))
      throw plugin::Error("gcs objects.get " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                              std::to_string(last) + " and got HTTP " + std::to_string(r.status) +
                              ", not 206 Partial Content" + s_.context(),
                          EMBER_E_IO);
    if (r.body.size() != last - first + 1)
      throw plugin::Error("gcs objects.get " + loc_.url() + ": asked for bytes " + std::to_string(first) + "-" +
                              std::to_string(last) + ", got " + std::to_string(r.body.size()) + s_.context(),
                          EMBER_E_IO);
    // x-goog-hash names the whole object's crc32c: another value is another object.
    std::string h = goog_hash_crc32c(r.header("x-goog-hash"));
    if (!h.empty() && !meta_.crc32c.empty() && h != meta_.crc32c)
      throw plugin::Error("gcs objects.get " + loc_.url() + ": the object changed while it was read (crc32c " +
                              meta_.crc32c + ", then " + h + ")" + s_.context(),
                          EMBER_E_IO);
    return std::move(r.body);
  }

  Service& s_;
  Location loc_;
  Meta meta_;
  std::uint32_t crc_ = 0;
  bool whole_ = false, checked_ = false;
  net::RangePrefetcher chunks_;  // last: its fetches read the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) {
  return std::make_unique<Reader>(s, std::move(loc), offset, length);
}

}  // namespace ember::gcs
