// csv_logger's CSV tables, and the rows it buffers until a flush: in the long layout formatted
// text, one row per value; in the wide layout one row per step, metric names as ids, laid out in
// the header (every name so far, sorted) when the rows are taken. See csv_logger.hpp.
#include <algorithm>
#include <charconv>
#include <ember/csv.hpp>

#include "csv_logger.hpp"

namespace ember::csv_logger_plugin {

namespace {

const char* stage_name(std::int32_t stage) {
  switch (stage) {
    case EMBER_STAGE_NONE:
      return "none";
    case EMBER_STAGE_FIT:
      return "fit";
    case EMBER_STAGE_VALIDATE:
      return "validate";
    case EMBER_STAGE_TEST:
      return "test";
    case EMBER_STAGE_PREDICT:
      return "predict";
    case EMBER_STAGE_SANITY_CHECK:
      return "sanity_check";
    default:
      return nullptr;
  }
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest text that parses back to the same double ("nan", "inf", "-inf" for non-finite,
// which Python's float() and pandas read).
void append_double(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

using ember::csv::append_field;
using ember::csv::record;
using ember::plugin::view;

std::string header_line(const Keys& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ',';
    append_field(out, keys[i]);
  }
  out += '\n';
  return out;
}

std::string relayout(std::string_view rows, const Keys& from, const Keys& to) {
  std::unordered_map<std::string_view, size_t> where;
  for (size_t i = 0; i < to.size(); ++i) where.emplace(to[i], i);
  std::vector<size_t> column(from.size());
  for (size_t i = 0; i < from.size(); ++i) column[i] = where.at(from[i]);
  std::string out;
  out.reserve(rows.size() + rows.size() / 8);
  std::vector<std::string> cells(to.size());
  for (size_t pos = 0; pos < rows.size();) {
    auto fields = record(rows, pos);
    for (auto& c : cells) c.clear();
    for (size_t i = 0; i < fields.size() && i < column.size(); ++i) cells[column[i]] = std::move(fields[i]);
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i) out += ',';
      append_field(out, cells[i]);
    }
    out += '\n';
  }
  return out;
}

void merge(Table& dst, Table src) {
  if (src.rows.empty()) return;
  if (dst.keys.empty() && dst.rows.empty()) {
    dst = std::move(src);
    return;
  }
  if (dst.keys != src.keys) {
    Keys u = dst.keys;
    for (auto& k : src.keys)
      if (std::find(u.begin(), u.end(), k) == u.end()) u.push_back(k);
    std::sort(u.begin(), u.end());
    if (dst.keys != u) dst.rows = relayout(dst.rows, dst.keys, u);
    if (src.keys != u) src.rows = relayout(src.rows, src.keys, u);
    dst.keys = std::move(u);
  }
  dst.rows += src.rows;
}

// --- buffering rows ----------------------------------------------------------------------------
void CsvLogger::add_long(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) {
  const char* stage = stage_name(ctx.stage);
  for (size_t i = 0; i < count; ++i) {
    append_int(pending_, ctx.step);
    pending_ += ',';
    append_int(pending_, ctx.epoch);
    pending_ += ',';
    if (stage)
      pending_ += stage;
    else
      append_int(pending_, ctx.stage);
    pending_ += ',';
    append_field(pending_, view(metrics[i].name));
    pending_ += ',';
    append_double(pending_, metrics[i].value);
    pending_ += '\n';
  }
}

// The id of a metric name.
std::uint32_t CsvLogger::intern(std::string_view name) {
  auto it = ids_.find(std::string(name));
  if (it != ids_.end()) return it->second;
  auto id = static_cast<std::uint32_t>(names_.size());
  names_.emplace_back(name);
  ids_.emplace(names_.back(), id);
  in_header_.push_back(false);
  return id;
}

// A name becomes a column when a row that holds it is finished (the header widens at the
// flush that writes that row).
void CsvLogger::add_column(std::uint32_t id) {
  if (in_header_[id]) return;
  in_header_[id] = true;
  columns_dirty_ = true;
}

void CsvLogger::add_wide(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) {
  // The trainer logs the same names in the same order step after step: check the cached id
  // of position i before hashing the name.
  if (call_ids_.size() < count) call_ids_.resize(count, UINT32_MAX);
  for (size_t i = 0; i < count; ++i) {
    std::string_view n = view(metrics[i].name);
    std::uint32_t& id = call_ids_[i];
    if (id == UINT32_MAX || names_[id] != n) id = intern(n);
  }
  bool fresh = !has_open_ || open_.step != ctx.step || open_.epoch != ctx.epoch;
  for (size_t i = 0; i < count && !fresh; ++i)
    for (const auto& [id, v] : open_.values)
      if (id == call_ids_[i]) fresh = true;  // a name twice at one step: a row each
  if (fresh) {
    close_open();
    open_.step = ctx.step;
    open_.epoch = ctx.epoch;
    has_open_ = true;
  }
  for (size_t i = 0; i < count; ++i) open_.values.emplace_back(call_ids_[i], metrics[i].value);
}

void CsvLogger::close_open() {
  if (!has_open_) return;
  for (const auto& [id, v] : open_.values) add_column(id);
  closed_.push_back(std::move(open_));
  open_ = Row{};
  has_open_ = false;
}

// The header of the wide layout: every name so far, sorted.
const Keys& CsvLogger::wide_keys() {
  if (columns_dirty_) {
    keys_.clear();
    for (size_t id = 0; id < names_.size(); ++id)
      if (in_header_[id]) keys_.push_back(names_[id]);
    std::sort(keys_.begin(), keys_.end());
    column_of_.assign(names_.size(), 0);
    for (size_t c = 0; c < keys_.size(); ++c) column_of_[ids_.at(keys_[c])] = c;
    columns_dirty_ = false;
  }
  return keys_;
}

// The rows to write now, laid out in their header, and the buffer emptied.
Table CsvLogger::take_rows() {
  if (!wide_) {
    Table t{kLongKeys, std::move(pending_)};
    pending_.clear();
    return t;
  }
  Table t{wide_keys(), {}};
  const size_t n = keys_.size(), epoch_col = column_of_[0], step_col = column_of_[1];
  std::vector<const double*> cell(n);
  for (const Row& r : closed_) {
    std::fill(cell.begin(), cell.end(), nullptr);
    for (const auto& [id, v] : r.values) cell[column_of_[id]] = &v;
    for (size_t c = 0; c < n; ++c) {
      if (c) t.rows += ',';
      if (c == step_col)
        append_int(t.rows, r.step);
      else if (c == epoch_col && !cell[c])
        append_int(t.rows, r.epoch);
      else if (cell[c])
        append_double(t.rows, *cell[c]);
    }
    t.rows += '\n';
  }
  closed_.clear();
  return t;
}

}  // namespace ember::csv_logger_plugin
