// libFuzzer target: the built-in data readers for idx (gzipped or not) and numeric CSV, reading
// the input from memory:// as `data.format: idx|csv` would read a file. The first byte picks the
// reader and, for CSV, label_column (a signed byte: negative counts from the end) and whether
// there is a header line. A reader error is expected; a crash or sanitizer report is a finding.
#include <ember/data.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const ember::storage::UrlSpace urls;
  const std::uint8_t mode = data[0];
  const int label_column = static_cast<std::int8_t>(data[1]);
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  const std::string url = "memory://fuzz/input";
  try {
    urls.put_atomic(url, body);
    if (mode % 2 == 0) {
      (void)ember::data::read_idx_file(urls, url);
    } else {
      // The schema lets any integer through as label_column; a signed byte covers the columns
      // that exist and those that do not, on both sides.
      (void)ember::data::read_csv(urls, url, label_column, (mode & 2) != 0);
    }
  } catch (const std::exception&) {
  }
  return 0;
}
