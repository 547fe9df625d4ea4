// log_table's arguments as a logger plugin receives them (abi/media.h: columns and rows as JSON
// text), parsed and checked once for every logger. Needs Boost.JSON; no libtorch.
#pragma once

#include <boost/json.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace ember::media {

struct Table {
  boost::json::array columns;  // column names (strings)
  boost::json::array rows;     // arrays of columns.size() values
};

// Throws std::invalid_argument "log_table 'KEY': …" naming what is wrong and what was expected.
inline Table parse_table(std::string_view key, std::string_view columns_json, std::string_view rows_json) {
  namespace json = boost::json;
  auto bad = [&](const std::string& what) {
    return std::invalid_argument("log_table '" + std::string(key) + "': " + what);
  };
  auto parse = [&](std::string_view text, const char* what) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) throw bad(std::string(what) + " is not valid JSON (" + ec.message() + ")");
    if (!v.is_array()) throw bad(std::string(what) + " is not a JSON array");
    return std::move(v.as_array());
  };
  Table t{parse(columns_json, "columns_json"), parse(rows_json, "rows_json")};
  if (t.columns.empty()) throw bad("no columns");
  for (const auto& c : t.columns)
    if (!c.is_string()) throw bad("columns_json holds " + json::serialize(c) + "; expected column names (strings)");
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const json::value& row = t.rows[r];
    if (!row.is_array() || row.as_array().size() != t.columns.size())
      throw bad("row " + std::to_string(r) + " is " +
                (row.is_array() ? std::to_string(row.as_array().size()) + " values" : json::serialize(row)) +
                "; expected an array of " + std::to_string(t.columns.size()) + " values, one per column");
  }
  return t;
}

}  // namespace ember::media
