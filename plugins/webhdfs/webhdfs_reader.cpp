// The webhdfs plugin's streaming reader.
#include "webhdfs_service.hpp"

#include <ember/net/prefetch.hpp>

#include <algorithm>

namespace ember::webhdfs {
namespace {

// Ranged streaming read; see webhdfs.cpp's file comment: the next chunk is fetched while one is
// consumed.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length)
      : s_(s), loc_(std::move(loc)),
        chunks_(s_.settings().read_chunk_size, 1,
                [this](std::uint64_t first, std::uint64_t last) { return fetch(first, last - first + 1); }) {
    auto fs = file_status(s_, loc_, nullptr);
    auto e = to_entry(fs, loc_.url);
    if (e.is_dir) throw Error("webhdfs OPEN " + loc_.url + ": is a directory", EMBER_E_INVALID);
    const std::uint64_t begin = std::min(offset, e.size);
    chunks_.start(begin, length == UINT64_MAX || length > e.size - begin ? e.size : begin + length);
  }

  std::size_t read(void* buf, std::size_t cap) override { return chunks_.read(buf, cap); }

 private:
  std::string fetch(std::uint64_t first, std::uint64_t len) {
    Call c{"OPEN", &loc_, "GET", {{"offset", std::to_string(first)}, {"length", std::to_string(len)}}};
    c.body_limit = std::max<std::uint64_t>(len, 64 * 1024);
    http::Response r = s_.call(c);
    if (r.body.size() != len)
      throw Error("webhdfs OPEN " + loc_.url + ": asked for " + std::to_string(len) + " bytes at offset " +
                      std::to_string(first) + ", got " + std::to_string(r.body.size()) +
                      " (the file changed while it was read?)" + s_.context(c),
                  EMBER_E_IO);
    return std::move(r.body);
  }

  Service& s_;
  Location loc_;
  net::RangePrefetcher chunks_;  // last: its fetches read the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) {
  return std::make_unique<Reader>(s, std::move(loc), offset, length);
}

}  // namespace ember::webhdfs
