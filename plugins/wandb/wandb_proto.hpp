// W&B's data formats, without any networking: history-line JSON as W&B's clients write it (NaN and
// Infinity as bare tokens), MD5/base64 digests of artifact manifests, define_metric encoding and
// the client-side summary, config wrapping and config.yaml, and the offline transaction log
// (run-<id>.wandb: LevelDB-style 32 KiB blocks, CRC-32 IEEE, protobuf Records hand-encoded from
// the field numbers in wandb_internal.proto). Shared by the wandb plugin and `ember wandb`.
// Header-only; needs Boost.JSON, OpenSSL (libcrypto) and zlib.
#pragma once

#include <openssl/evp.h>
#include <zlib.h>

#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::wandb {

namespace json = boost::json;

// ---- JSON text as W&B's clients write it ------------------------------------------------------

inline void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of bytes that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

inline void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest round-trip text; NaN, Infinity, -Infinity as the bare tokens Python's json (and W&B's
// Go core) emit inside file_stream lines.
inline void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "Infinity" : "-Infinity";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

inline std::string number_text(double v) {
  std::string s;
  append_number(s, v);
  return s;
}

// Boost.JSON refuses the NaN/Infinity tokens; a non-finite double becomes that token's text as a
// string so that a summary or config stays representable. Lines use append_number instead.
inline json::value number_value(double v) {
  if (std::isfinite(v)) return json::value(v);
  return json::value(number_text(v));
}

// Parse a JSON line that may hold the bare NaN/Infinity/-Infinity tokens (W&B's history lines).
// The tokens outside strings are replaced by strings first; only for reading our own files.
inline json::value parse_line(std::string_view line) {
  std::string fixed;
  fixed.reserve(line.size() + 8);
  bool in_str = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_str) {
      fixed += c;
      if (c == '\\' && i + 1 < line.size()) fixed += line[++i];
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') {
      in_str = true;
      fixed += c;
      continue;
    }
    auto starts = [&](std::string_view tok) { return line.substr(i, tok.size()) == tok; };
    if (starts("NaN")) fixed += "\"NaN\"", i += 2;
    else if (starts("-Infinity")) fixed += "\"-Infinity\"", i += 8;
    else if (starts("Infinity")) fixed += "\"Infinity\"", i += 7;
    else fixed += c;
  }
  return json::parse(fixed);
}

// A JSON value serialised; a string "NaN"/"Infinity"/"-Infinity" produced by number_value goes
// back to the bare token so that lines re-emitted from a spool or .wandb file match the originals.
inline std::string line_text(const json::value& v) {
  std::string s = json::serialize(v);
  for (const char* tok : {"\"NaN\"", "\"Infinity\"", "\"-Infinity\""}) {
    std::string t(tok), bare = t.substr(1, t.size() - 2);
    for (std::size_t p = 0; (p = s.find(t, p)) != std::string::npos;) {
      s.replace(p, t.size(), bare);
      p += bare.size();
    }
  }
  return s;
}

// ---- digests ------------------------------------------------------------------------------------

inline std::array<unsigned char, 16> md5(std::string_view bytes) {
  std::array<unsigned char, 16> out{};
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out.data(), &n, EVP_md5(), nullptr) != 1 || n != 16)
    throw std::runtime_error("wandb: MD5 failed (OpenSSL EVP_Digest)");
  return out;
}

inline std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

inline std::string hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += digits[p[i] >> 4], out += digits[p[i] & 15];
  return out;
}

// Hex SHA-256: W&B's digest of media files (the "sha256" of image-file / table-file values).
inline std::string sha256_hex(std::string_view bytes) {
  unsigned char out[32];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out, &n, EVP_sha256(), nullptr) != 1 || n != 32)
    throw std::runtime_error("wandb: SHA-256 failed (OpenSSL EVP_Digest)");
  return hex(out, n);
}

// base64(std) of the raw MD5: W&B's file digest in manifests and CreateArtifactFiles.
inline std::string md5_b64(std::string_view bytes) {
  auto d = md5(bytes);
  return base64(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// The artifact digest: hex MD5 of "wandb-artifact-manifest-v1\n" + "path:b64digest\n" per entry,
// entries sorted by path (std::map keeps them sorted).
inline std::string manifest_digest(const std::map<std::string, std::string>& path_to_b64) {
  std::string text = "wandb-artifact-manifest-v1\n";
  for (const auto& [path, digest] : path_to_b64) text += path + ":" + digest + "\n";
  auto d = md5(text);
  return hex(d.data(), d.size());
}

// ---- config, summary, define_metric -----------------------------------------------------------

// Every top-level key wrapped as W&B's Python client sends it: {"desc": null, "value": v}.
inline json::object wrap_config(const json::object& config) {
  json::object out;
  for (const auto& kv : config) out[kv.key()] = json::object{{"desc", nullptr}, {"value", kv.value()}};
  return out;
}

// YAML for config.yaml: "wandb_version: 1" then each wrapped key in block style; nested values
// in JSON flow style, which YAML 1.2 reads as the same data.
inline std::string config_yaml(const json::object& wrapped) {
  std::string out = "wandb_version: 1\n\n";
  for (const auto& kv : wrapped) {
    std::string key;
    append_json_string(key, kv.key());
    out += key + ":\n";
    if (kv.value().is_object()) {
      for (const auto& inner : kv.value().as_object())
        out += "  " + std::string(inner.key()) + ": " + json::serialize(inner.value()) + "\n";
    } else {
      out += "  value: " + json::serialize(kv.value()) + "\n";
    }
  }
  return out;
}

// One define_metric entry (MetricRecord fields: 1 name, 2 glob_name, 5 step_metric_index,
// 6 options {1 step_sync, 3 defined}, 7 summary {1 min 2 max 3 mean 4 best 5 last 6 none 7 copy},
// 8 goal {1 minimize 2 maximize}).
struct MetricDef {
  std::string name;           // exact name, or a prefix when glob
  bool glob = false;          // name ended in '*'
  std::string step_metric;    // "" for none
  bool step_sync = false, defined = true;
  bool s_min = false, s_max = false, s_mean = false, s_best = false, s_last = false, s_none = false,
       s_copy = false;
  int goal = 0;  // 0 unset, 1 minimize, 2 maximize
  bool has_summary() const { return s_min || s_max || s_mean || s_best || s_last || s_none; }
  bool matches(std::string_view key) const {
    return glob ? key.substr(0, name.size()) == name : key == name;
  }
};

// Parse the `define_metric` config value: {"name": {"summary": "max,last", "goal": "maximize",
// "step_metric": "...", "hidden": false}} or {"name": "max"}. Throws naming the key on bad input.
inline std::vector<MetricDef> parse_metric_defs(const json::value* v, const std::string& default_step) {
  std::vector<MetricDef> out;
  if (!v || v->is_null()) return out;
  if (!v->is_object()) throw std::invalid_argument("config key define_metric: expected an object of metric name -> options");
  for (const auto& kv : v->as_object()) {
    MetricDef d;
    std::string name(kv.key());
    if (!name.empty() && name.back() == '*') d.glob = true, name.pop_back();
    d.name = name;
    d.step_metric = default_step;
    std::string summary;
    const std::string where = "config key define_metric." + std::string(kv.key());
    if (kv.value().is_string()) {
      summary = std::string(kv.value().as_string());
    } else if (kv.value().is_object()) {
      const auto& o = kv.value().as_object();
      if (auto* s = o.if_contains("summary")) {
        if (!s->is_string()) throw std::invalid_argument(where + ".summary: expected a string such as \"max\" or \"min,last\"");
        summary = std::string(s->as_string());
      }
      if (auto* g = o.if_contains("goal"); g && !g->is_null()) {
        std::string goal = g->is_string() ? std::string(g->as_string()) : "";
        if (goal.substr(0, 3) == "min") d.goal = 1;
        else if (goal.substr(0, 3) == "max") d.goal = 2;
        else throw std::invalid_argument(where + ".goal: expected \"minimize\" or \"maximize\"");
      }
      if (auto* s = o.if_contains("step_metric"); s && !s->is_null()) {
        if (!s->is_string()) throw std::invalid_argument(where + ".step_metric: expected a metric name");
        d.step_metric = std::string(s->as_string());
      }
    } else {
      throw std::invalid_argument(where + ": expected a summary string or an options object");
    }
    std::size_t p = 0;
    while (p <= summary.size() && !summary.empty()) {
      std::size_t q = summary.find(',', p);
      std::string op = summary.substr(p, q == std::string::npos ? std::string::npos : q - p);
      while (!op.empty() && op.front() == ' ') op.erase(op.begin());
      while (!op.empty() && op.back() == ' ') op.pop_back();
      if (op == "min") d.s_min = true;
      else if (op == "max") d.s_max = true;
      else if (op == "mean") d.s_mean = true;
      else if (op == "best") d.s_best = true;
      else if (op == "last") d.s_last = true;
      else if (op == "none") d.s_none = true;
      else if (op == "copy") d.s_copy = true;
      else if (!op.empty())
        throw std::invalid_argument(where + ": unknown summary '" + op + "'; expected min, max, mean, best, last, none or copy");
      if (q == std::string::npos) break;
      p = q + 1;
    }
    if (d.s_best && d.goal == 0)
      throw std::invalid_argument(where + ": summary 'best' needs goal \"minimize\" or \"maximize\"");
    d.step_sync = !d.step_metric.empty();
    out.push_back(std::move(d));
  }
  return out;
}

// `_wandb.m`: Lightning's definitions first (trainer/global_step, then "*" stepped by it), then
// the user's, each as {field number: value} the way W&B's sender encodes MetricRecords.
inline json::array encode_metric_defs(const std::string& step_metric, const std::vector<MetricDef>& defs) {
  json::array m;
  m.push_back(json::object{{"1", step_metric}, {"6", json::array{3}}});
  const std::int64_t step_index = 1;  // 1-based index of step_metric in m
  m.push_back(json::object{{"2", "*"}, {"5", step_index}, {"6", json::array{1}}});
  for (const auto& d : defs) {
    json::object e;
    if (d.glob) e["2"] = d.name + "*";
    else e["1"] = d.name;
    if (!d.step_metric.empty()) {
      if (d.step_metric == step_metric) e["5"] = step_index;
      else e["4"] = d.step_metric;
    }
    json::array opts;
    if (d.step_sync) opts.push_back(1);
    if (d.defined) opts.push_back(3);
    e["6"] = opts;
    json::array sum;
    if (d.s_min) sum.push_back(1);
    if (d.s_max) sum.push_back(2);
    if (d.s_mean) sum.push_back(3);
    if (d.s_best) sum.push_back(4);
    if (d.s_last) sum.push_back(5);
    if (d.s_none) sum.push_back(6);
    if (d.s_copy) sum.push_back(7);
    if (!sum.empty()) e["7"] = sum;
    if (d.goal) e["8"] = d.goal;
    m.push_back(std::move(e));
  }
  return m;
}

// The consolidated summary, computed client-side as W&B's handler does: the last value of each
// key, or for a defined metric the requested aggregates (NaN skipped for the aggregates).
class Summary {
 public:
  explicit Summary(std::vector<MetricDef> defs = {}) : defs_(std::move(defs)) {}

  void update(const std::string& key, double v) {
    Entry& e = entries_[key];
    if (!e.resolved) {
      e.resolved = true;
      for (const auto& d : defs_)
        if (d.matches(key)) {
          e.def = &d;
          break;
        }
    }
    e.last = v;
    e.seen = true;
    if (std::isnan(v)) return;
    if (!e.any || v < e.min) e.min = v;
    if (!e.any || v > e.max) e.max = v;
    e.total += v;
    ++e.count;
    e.any = true;
  }
  // A non-metric value kept verbatim (e.g. "_wandb": {"runtime": N}).
  void set(const std::string& key, json::value v) { extra_[key] = std::move(v); }

  json::object to_json() const {
    json::object out;
    for (const auto& [key, e] : entries_) {
      const MetricDef* d = e.def;
      if (!d || !d->has_summary()) {
        out[key] = number_value(e.last);
        continue;
      }
      if (d->s_none) continue;
      json::object agg;
      if (d->s_min && e.any) agg["min"] = e.min;
      if (d->s_max && e.any) agg["max"] = e.max;
      if (d->s_mean && e.any) agg["mean"] = e.total / static_cast<double>(e.count);
      if (d->s_best && e.any) agg["best"] = d->goal == 2 ? e.max : e.min;
      if (d->s_last) agg["last"] = number_value(e.last);
      out[key] = std::move(agg);
    }
    for (const auto& kv : extra_) out[kv.first] = kv.second;
    return out;
  }

 private:
  struct Entry {
    bool resolved = false, seen = false, any = false;
    const MetricDef* def = nullptr;
    double last = 0, min = 0, max = 0, total = 0;
    std::int64_t count = 0;
  };
  std::vector<MetricDef> defs_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, json::value> extra_;
};

// ---- protobuf, by hand (proto3 wire format) ----------------------------------------------------

namespace pb {

inline void varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
inline void tag(std::string& out, int field, int wire) {
  varint(out, (static_cast<std::uint64_t>(field) << 3) | static_cast<std::uint64_t>(wire));
}
inline void int_field(std::string& out, int field, std::int64_t v) {
  if (v == 0) return;  // proto3: defaults are not written
  tag(out, field, 0);
  varint(out, static_cast<std::uint64_t>(v));
}
inline void bytes_field(std::string& out, int field, std::string_view v, bool even_empty = false) {
  if (v.empty() && !even_empty) return;
  tag(out, field, 2);
  varint(out, v.size());
  out.append(v);
}
inline void message_field(std::string& out, int field, std::string_view encoded) {
  bytes_field(out, field, encoded, true);
}

// Reads fields one at a time; throws on malformed input.
class Reader {
 public:
  explicit Reader(std::string_view data) : d_(data) {}
  bool next() {
    if (p_ >= d_.size()) return false;
    std::uint64_t key = read_varint();
    field = static_cast<int>(key >> 3);
    wire = static_cast<int>(key & 7);
    switch (wire) {
      case 0: value = read_varint(); break;
      case 1: skip(8); break;
      case 2: {
        std::uint64_t n = read_varint();
        if (n > d_.size() - p_) throw std::runtime_error("protobuf: truncated length-delimited field");
        bytes = d_.substr(p_, n);
        p_ += n;
        break;
      }
      case 5: skip(4); break;
      default: throw std::runtime_error("protobuf: unsupported wire type " + std::to_string(wire));
    }
    return true;
  }
  int field = 0, wire = 0;
  std::uint64_t value = 0;
  std::string_view bytes;

 private:
  std::uint64_t read_varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= d_.size()) throw std::runtime_error("protobuf: truncated varint");
      auto b = static_cast<unsigned char>(d_[p_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("protobuf: varint too long");
  }
  void skip(std::size_t n) {
    if (n > d_.size() - p_) throw std::runtime_error("protobuf: truncated fixed field");
    p_ += n;
  }
  std::string_view d_;
  std::size_t p_ = 0;
};

}  // namespace pb

// Record oneof field numbers (wandb_internal.proto).
enum RecordType : int {
  kHistory = 2, kSummary = 3, kOutput = 4, kConfig = 5, kFiles = 6, kStats = 7, kArtifact = 8,
  kTelemetry = 11, kMetric = 12, kOutputRaw = 13, kRun = 17, kExit = 18, kFinal = 20, kHeader = 21, kFooter = 22
};

using Items = std::vector<std::pair<std::string, std::string>>;  // key, value_json

// HistoryItem / SummaryItem / ConfigItem / StatsItem: key=1, value_json=16.
inline std::string encode_items(int field, const Items& items) {
  std::string out;
  for (const auto& [k, v] : items) {
    std::string item;
    pb::bytes_field(item, 1, k, true);
    pb::bytes_field(item, 16, v, true);
    pb::message_field(out, field, item);
  }
  return out;
}

inline std::string record(int type, std::string_view body, std::int64_t num = 0) {
  std::string out;
  pb::int_field(out, 1, num);
  pb::message_field(out, type, body);
  return out;
}

inline std::string history_record(const Items& items, std::int64_t step) {
  std::string h = encode_items(1, items);
  std::string st;
  pb::int_field(st, 1, step);
  pb::message_field(h, 2, st);
  return record(kHistory, h);
}

inline std::string summary_record(const Items& items) { return record(kSummary, encode_items(1, items)); }

inline std::string stats_record(const Items& items, std::int64_t unix_s) {
  std::string s, ts;
  pb::int_field(ts, 1, unix_s);
  pb::message_field(s, 2, ts);
  s += encode_items(3, items);
  return record(kStats, s);
}

struct RunInfo {
  std::string run_id, entity, project, group, job_type, display_name, notes, host;
  std::vector<std::string> tags;
  Items config;  // wrapped values as JSON text: key -> {"desc":null,"value":...}.value
  std::int64_t start_time_s = 0, starting_step = 0;
};

inline std::string run_record(const RunInfo& r) {
  std::string b;
  pb::bytes_field(b, 1, r.run_id);
  pb::bytes_field(b, 2, r.entity);
  pb::bytes_field(b, 3, r.project);
  if (!r.config.empty()) pb::message_field(b, 4, encode_items(1, r.config));
  pb::bytes_field(b, 6, r.group);
  pb::bytes_field(b, 7, r.job_type);
  pb::bytes_field(b, 8, r.display_name);
  pb::bytes_field(b, 9, r.notes);
  for (const auto& t : r.tags) pb::bytes_field(b, 10, t, true);
  pb::bytes_field(b, 13, r.host);
  pb::int_field(b, 14, r.starting_step);
  std::string ts;
  pb::int_field(ts, 1, r.start_time_s);
  pb::message_field(b, 17, ts);
  return record(kRun, b);
}

inline std::string exit_record(int exit_code, std::int64_t runtime_s) {
  std::string b;
  pb::int_field(b, 1, exit_code);
  pb::int_field(b, 2, runtime_s);
  return record(kExit, b);
}

inline std::string files_record(const std::vector<std::string>& paths, int policy) {
  std::string b;
  for (const auto& p : paths) {
    std::string item;
    pb::bytes_field(item, 1, p, true);
    pb::int_field(item, 2, policy);
    pb::message_field(b, 1, item);
  }
  return record(kFiles, b);
}

inline std::string empty_record(int type) { return record(type, ""); }

// A decoded Record: its type and the fields `ember wandb sync` uses.
struct Decoded {
  int type = 0;
  Items items;                       // history/summary/config/stats items (key, value_json)
  std::int64_t step = 0;             // history step.num
  RunInfo run;                       // run
  int exit_code = 0;                 // exit
  std::int64_t runtime = 0;          // exit
  std::vector<std::string> files;    // files
  std::int64_t timestamp_s = 0;      // stats: timestamp.seconds
};

inline Items decode_items(std::string_view body, int field) {
  Items out;
  pb::Reader r(body);
  while (r.next()) {
    if (r.field != field || r.wire != 2) continue;
    pb::Reader item(r.bytes);
    std::string k, v;
    while (item.next()) {
      if (item.field == 1 && item.wire == 2) k = std::string(item.bytes);
      else if (item.field == 16 && item.wire == 2) v = std::string(item.bytes);
    }
    out.emplace_back(std::move(k), std::move(v));
  }
  return out;
}

inline Decoded decode_record(std::string_view data) {
  Decoded d;
  pb::Reader r(data);
  while (r.next()) {
    if (r.wire != 2 || r.field == 16 || r.field == 19 || r.field == 200) continue;
    d.type = r.field;
    std::string_view body = r.bytes;
    switch (r.field) {
      case kHistory: {
        d.items = decode_items(body, 1);
        pb::Reader h(body);
        while (h.next())
          if (h.field == 2 && h.wire == 2) {
            pb::Reader s(h.bytes);
            while (s.next())
              if (s.field == 1 && s.wire == 0) d.step = static_cast<std::int64_t>(s.value);
          }
        break;
      }
      case kSummary:
      case kConfig: d.items = decode_items(body, 1); break;
      case kStats: {
        d.items = decode_items(body, 3);
        pb::Reader st(body);
        while (st.next())
          if (st.field == 2 && st.wire == 2) {
            pb::Reader t(st.bytes);
            while (t.next())
              if (t.field == 1 && t.wire == 0) d.timestamp_s = static_cast<std::int64_t>(t.value);
          }
        break;
      }
      case kExit: {
        pb::Reader e(body);
        while (e.next()) {
          if (e.field == 1 && e.wire == 0) d.exit_code = static_cast<int>(static_cast<std::int32_t>(e.value));
          if (e.field == 2 && e.wire == 0) d.runtime = static_cast<std::int64_t>(e.value);
        }
        break;
      }
      case kFiles: {
        pb::Reader f(body);
        while (f.next())
          if (f.field == 1 && f.wire == 2) {
            pb::Reader item(f.bytes);
            while (item.next())
              if (item.field == 1 && item.wire == 2) d.files.emplace_back(item.bytes);
          }
        break;
      }
      case kRun: {
        pb::Reader u(body);
        while (u.next()) {
          if (u.wire == 0) {
            if (u.field == 14) d.run.starting_step = static_cast<std::int64_t>(u.value);
            continue;
          }
          if (u.wire != 2) continue;
          std::string s(u.bytes);
          switch (u.field) {
            case 1: d.run.run_id = s; break;
            case 2: d.run.entity = s; break;
            case 3: d.run.project = s; break;
            case 4: d.run.config = decode_items(u.bytes, 1); break;
            case 6: d.run.group = s; break;
            case 7: d.run.job_type = s; break;
            case 8: d.run.display_name = s; break;
            case 9: d.run.notes = s; break;
            case 10: d.run.tags.push_back(s); break;
            case 13: d.run.host = s; break;
            case 17: {
              pb::Reader t(u.bytes);
              while (t.next())
                if (t.field == 1 && t.wire == 0) d.run.start_time_s = static_cast<std::int64_t>(t.value);
              break;
            }
            default: break;
          }
        }
        break;
      }
      default: break;
    }
  }
  return d;
}

// ---- the transaction log: run-<id>.wandb ---------------------------------------------------------

namespace txlog {

constexpr std::size_t kBlock = 32768;
constexpr std::size_t kChunkHeader = 7;
enum ChunkType : unsigned char { kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };

// ":W&B", magic 0xBEE1 little-endian, version 0.
inline std::string file_header() { return std::string(":W&B\xE1\xBE\x00", 7); }

inline std::uint32_t chunk_crc(unsigned char type, std::string_view data) {
  uLong c = crc32(0L, &type, 1);
  c = crc32(c, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()));
  return static_cast<std::uint32_t>(c);
}

// Frames records into chunks given the current file size `offset` (the header counts, so block 0
// holds it). Appends the bytes to write to `out` and advances offset.
inline void frame(std::string& out, std::uint64_t& offset, std::string_view rec) {
  bool first = true;
  do {
    std::size_t left = kBlock - static_cast<std::size_t>(offset % kBlock);
    if (left < kChunkHeader) {  // a tail too small for a chunk header is zero-padded
      out.append(left, '\0');
      offset += left;
      left = kBlock;
    }
    std::size_t avail = left - kChunkHeader;
    std::size_t n = std::min(avail, rec.size());
    bool last = n == rec.size();
    unsigned char type = first && last ? kFull : first ? kFirst : last ? kLast : kMiddle;
    std::string_view piece = rec.substr(0, n);
    std::uint32_t crc = chunk_crc(type, piece);
    char h[7] = {static_cast<char>(crc & 0xff), static_cast<char>((crc >> 8) & 0xff),
                 static_cast<char>((crc >> 16) & 0xff), static_cast<char>((crc >> 24) & 0xff),
                 static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff), static_cast<char>(type)};
    out.append(h, 7);
    out.append(piece);
    offset += kChunkHeader + n;
    rec.remove_prefix(n);
    first = false;
  } while (!rec.empty());
}

// All records of a .wandb file, each CRC-checked; throws naming the byte offset of a bad chunk.
inline std::vector<std::string> read_all(std::string_view file, const std::string& name) {
  if (file.size() < 7 || file.substr(0, 4) != ":W&B" || static_cast<unsigned char>(file[4]) != 0xE1 ||
      static_cast<unsigned char>(file[5]) != 0xBE)
    throw std::runtime_error(name + ": not a W&B transaction log (expected the 7-byte header \":W&B\" 0xBEE1)");
  if (file[6] != 0)
    throw std::runtime_error(name + ": transaction log version " + std::to_string(static_cast<int>(file[6])) +
                             ", expected 0");
  std::vector<std::string> out;
  std::string pending;
  bool in_record = false;
  std::size_t off = 7;
  while (off < file.size()) {
    std::size_t left = kBlock - off % kBlock;
    if (left < kChunkHeader) {
      off += left;
      continue;
    }
    if (file.size() - off < kChunkHeader) break;  // a torn tail: the writer died mid-chunk
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(file[off + i])); };
    std::uint32_t crc = b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24;
    std::size_t len = b(4) | b(5) << 8;
    auto type = static_cast<unsigned char>(file[off + 6]);
    if (type == 0 && len == 0 && crc == 0) {  // zero padding up to the block end
      off += left;
      continue;
    }
    if (len > left - kChunkHeader || off + kChunkHeader + len > file.size())
      throw std::runtime_error(name + ": chunk at byte " + std::to_string(off) + " runs past its block or the file");
    std::string_view data = file.substr(off + kChunkHeader, len);
    if (chunk_crc(type, data) != crc)
      throw std::runtime_error(name + ": CRC mismatch in the chunk at byte " + std::to_string(off));
    switch (type) {
      case kFull: out.emplace_back(data); in_record = false; break;
      case kFirst: pending.assign(data); in_record = true; break;
      case kMiddle:
      case kLast:
        if (!in_record)
          throw std::runtime_error(name + ": continuation chunk without a first chunk at byte " + std::to_string(off));
        pending.append(data);
        if (type == kLast) out.push_back(std::move(pending)), pending.clear(), in_record = false;
        break;
      default:
        throw std::runtime_error(name + ": unknown chunk type " + std::to_string(type) + " at byte " + std::to_string(off));
    }
    off += kChunkHeader + len;
  }
  return out;
}

}  // namespace txlog

// A history row's items for a .wandb HistoryRecord, from its JSON line: every top-level key with
// its value's JSON text (NaN etc. as the bare tokens).
inline Items items_of_line(std::string_view line) {
  Items out;
  json::value v = parse_line(line);
  if (!v.is_object()) return out;
  for (const auto& kv : v.as_object()) out.emplace_back(std::string(kv.key()), line_text(kv.value()));
  return out;
}

// The inverse: a JSON line from items (value_json texts are already JSON).
inline std::string line_of_items(const Items& items) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : items) {
    if (!first) out += ", ";
    first = false;
    append_json_string(out, k);
    out += ": ";
    out += v;
  }
  out += "}";
  return out;
}

}  // namespace ember::wandb
