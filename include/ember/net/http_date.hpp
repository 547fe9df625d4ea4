// HTTP dates (RFC 9110 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"): the Date and x-ms-date a
// request sends, the Last-Modified an answer carries. Header-only, standard library and POSIX
// (gmtime_r, strptime, timegm).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace ember::net {

// t as an IMF-fixdate.
inline std::string format_http_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// An IMF-fixdate to ns since the epoch; 0 when it does not parse.
inline std::int64_t parse_http_date_ns(const std::string& s) {
  std::tm tm{};
  if (s.empty() || !strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000000;
}

}  // namespace ember::net
