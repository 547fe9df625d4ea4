// The protobuf wire format (proto3), by hand: a writer of the few field kinds Ember's plugins emit
// (varint, fixed64, fixed32, length-delimited, packed doubles) and a reader that walks fields one
// at a time. One copy for everyone: the wandb plugin's transaction log (run-<id>.wandb records),
// the tensorboard plugin's event files, and `ember wandb`. No libprotobuf: the messages are few
// and written from their field numbers; the tests decode the output with an independent decoder.
// Header-only, standard library only.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ember::pb {

// Wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
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

// Fixed-width fields (wire types 1 and 5), little-endian as the wire format wants. Written even
// when zero: callers that need proto3's "defaults are not written" test first.
inline void put_le(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void fixed64_field(std::string& out, int field, double v) {
  tag(out, field, 1);
  std::uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_le(out, bits, 8);
}
inline void fixed32_field(std::string& out, int field, float v) {
  tag(out, field, 5);
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_le(out, bits, 4);
}
// repeated double [packed = true]: one length-delimited field of little-endian doubles.
inline void packed_doubles_field(std::string& out, int field, const std::vector<double>& vs) {
  tag(out, field, 2);
  varint(out, vs.size() * 8);
  for (double v : vs) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_le(out, bits, 8);
  }
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

}  // namespace ember::pb
