// Reading and writing through a storage::UrlSpace the way the object-store suites
// (tests/plugins/{s3,gcs}) check a backend: reads in an odd buffer size, writes in pieces of a
// chosen size, and listings as URLs (directories with a trailing '/').
#pragma once

#include <ember/storage.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace ember::test {

inline std::string read_range(ember::storage::UrlSpace& urls, const std::string& url, std::uint64_t off,
                              std::uint64_t len) {
  auto r = urls.open_read(url, off, len);
  std::string out;
  char buf[7919];  // an odd size: reads never line up with chunks
  while (std::size_t n = r->read(buf, sizeof buf)) out.append(buf, n);
  return out;
}

inline void write_in_pieces(ember::storage::UrlSpace& urls, const std::string& url, const std::string& bytes,
                            std::size_t piece) {
  auto w = urls.open_write(url);
  for (std::size_t i = 0; i < bytes.size(); i += piece) w->write(bytes.data() + i, std::min(piece, bytes.size() - i));
  w->commit();
}

inline std::vector<std::string> urls_of(const std::vector<ember::storage::Stat>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) out.push_back(s.url + (s.is_dir ? "/" : ""));
  return out;
}

}  // namespace ember::test
