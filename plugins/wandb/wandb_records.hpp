// The offline transaction log (run-<id>.wandb): LevelDB-style 32 KiB blocks with CRC-32 IEEE
// (zlib), holding protobuf Records hand-encoded from the field numbers in wandb_internal.proto,
// and the conversions between history lines and the records' items. Header-only; needs Boost.JSON
// and zlib. Part of wandb_proto.hpp (W&B's data formats, no networking).
#pragma once

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

#include <ember/sdk/protobuf_wire.hpp>

#include "wandb_json.hpp"

namespace ember::wandb {

// protobuf wire format: ember::pb (ember/sdk/protobuf_wire.hpp), found from here as pb::.

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
