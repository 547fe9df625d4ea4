// RFC 4180 CSV fields for metrics.csv: csv_logger writes and re-lays them, `ember plot` reads
// them. Header-only, standard library only (plugins include it without the host).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ember::csv {

// The next record of text from pos (pos moves past its line end; a last record without one is
// accepted). Quoted fields may hold commas, doubled quotes and line breaks; CR is dropped.
inline std::vector<std::string> record(std::string_view text, size_t& pos) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  while (pos < text.size()) {
    char c = text[pos++];
    if (quoted) {
      if (c == '"' && pos < text.size() && text[pos] == '"')
        fields.back() += '"', ++pos;
      else if (c == '"')
        quoted = false;
      else
        fields.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      break;
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

// One field: quoted when it holds a comma, quote, CR or LF; quotes doubled.
inline void append_field(std::string& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(s);
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

}  // namespace ember::csv
