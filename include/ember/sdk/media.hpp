// Helpers for "ember.media/1" (abi/media.h), shared by the host and logger plugins; no libtorch.
//
// One definition of what an image tensor may be (check_image, used by the host before it calls
// any logger and by plugins on what they receive, so both say the same thing about a bad one),
// its conversion to packed 8-bit pixels, and W&B's / torch.histc's histogram of a tensor.
#pragma once

#include <ember/abi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ember::media {

// What log_image accepts, for messages.
inline constexpr const char* kImageShapes =
    "HW, CHW or HWC with C = 1, 3 or 4 (CHW when the first dimension is 1, 3 or 4), dtype uint8 "
    "(0..255) or float32/float64 (0..1), H and W in 1..65500, on the CPU, compact";

// The largest side W&B (PIL) and PNG readers take.
inline constexpr std::int64_t kMaxImageSide = 65500;

// An image tensor's reading: height, width, channels, and where each dimension is.
struct ImageLayout {
  std::int64_t height = 0, width = 0, channels = 0;
  bool chw = false;    // channels first
  bool is_float = false;
  int float_bits = 0;  // 32 or 64 when is_float
};

inline std::string shape_text(const DLTensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

inline std::string dtype_text(DLDataType d) {
  // DLPack 0.6 (Debian's) has no bool code; torch's bool travels as code 6 in later versions.
  const char* kind = d.code == kDLInt ? "int" : d.code == kDLUInt ? "uint" : d.code == kDLFloat ? "float"
                     : d.code == kDLBfloat ? "bfloat" : d.code == kDLComplex ? "complex" : d.code == 6 ? "bool" : "opaque";
  std::string s = kind + std::to_string(d.bits);
  if (d.lanes != 1) s += "x" + std::to_string(d.lanes);
  return s;
}

// True when t's strides are NULL or those of a compact row-major tensor.
inline bool is_compact(const DLTensor& t) {
  if (!t.strides) return true;
  std::int64_t expect = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

inline std::int64_t numel(const DLTensor& t) {
  std::int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

// Check one image tensor of log_image(key, ...) at index; throws std::invalid_argument naming
// the key, the index, what the tensor is and what was expected.
inline ImageLayout check_image(const DLTensor& t, std::string_view key, std::size_t index) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(index) + " " + what +
                                "; expected " + kImageShapes);
  };
  ImageLayout l;
  if (t.device.device_type != kDLCPU) bad("is not on the CPU (DLPack device type " + std::to_string(t.device.device_type) + ")");
  if (t.dtype.lanes != 1) bad("has dtype " + dtype_text(t.dtype));
  if (t.dtype.code == kDLUInt && t.dtype.bits == 8) {
  } else if (t.dtype.code == kDLFloat && (t.dtype.bits == 32 || t.dtype.bits == 64)) {
    l.is_float = true;
    l.float_bits = t.dtype.bits;
  } else {
    bad("has dtype " + dtype_text(t.dtype));
  }
  if (t.ndim == 2) {
    l.height = t.shape[0], l.width = t.shape[1], l.channels = 1;
  } else if (t.ndim == 3) {
    auto is_c = [](std::int64_t c) { return c == 1 || c == 3 || c == 4; };
    // Channels first is torch's layout (and what wandb.Image assumes of a torch tensor).
    if (is_c(t.shape[0])) {
      l.channels = t.shape[0], l.height = t.shape[1], l.width = t.shape[2], l.chw = true;
    } else if (is_c(t.shape[2])) {
      l.height = t.shape[0], l.width = t.shape[1], l.channels = t.shape[2];
    } else {
      bad("has shape " + shape_text(t) + " (no dimension of 1, 3 or 4 channels first or last)");
    }
  } else {
    bad("has shape " + shape_text(t) + " (" + std::to_string(t.ndim) + " dimensions)");
  }
  if (l.height < 1 || l.width < 1 || l.height > kMaxImageSide || l.width > kMaxImageSide)
    bad("has shape " + shape_text(t) + " (height " + std::to_string(l.height) + ", width " + std::to_string(l.width) + ")");
  if (!t.data) bad("has no data (NULL)");
  if (!is_compact(t)) bad("is not compact (strided)");
  return l;
}

// The image as packed 8-bit rows, height x width x channels (HWC): uint8 copied, floats clamped
// to [0, 1], scaled by 255 and rounded.
inline std::vector<std::uint8_t> to_pixels(const DLTensor& t, const ImageLayout& l) {
  const std::int64_t h = l.height, w = l.width, c = l.channels, plane = h * w;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(plane * c));
  const char* base = static_cast<const char*>(t.data) + t.byte_offset;
  auto from_float = [](double v) -> std::uint8_t {
    if (!(v > 0)) return 0;  // NaN and negatives
    if (v >= 1) return 255;
    return static_cast<std::uint8_t>(std::lround(v * 255.0));
  };
  auto at = [&](std::int64_t src) -> std::uint8_t {
    if (!l.is_float) return reinterpret_cast<const std::uint8_t*>(base)[src];
    if (l.float_bits == 32) {
      float f;
      std::memcpy(&f, base + src * 4, 4);
      return from_float(f);
    }
    double d;
    std::memcpy(&d, base + src * 8, 8);
    return from_float(d);
  };
  if (!l.chw && !l.is_float) {
    std::memcpy(out.data(), base, out.size());
    return out;
  }
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      for (std::int64_t k = 0; k < c; ++k) {
        std::int64_t src = l.chw ? k * plane + y * w + x : (y * w + x) * c + k;
        out[static_cast<std::size_t>((y * w + x) * c + k)] = at(src);
      }
  return out;
}

// A histogram as W&B's wandb.Histogram / torch.histc make it: counts of num_bins equal bins
// between the smallest and largest finite value (the largest counts in the last bin) and the
// num_bins + 1 edges. Non-finite values are left out; equal min and max widen to [v-1, v+1] as
// torch.histc does. `finite` is the number of values counted (0: nothing to log).
struct Histogram {
  std::vector<std::int64_t> counts;
  std::vector<double> edges;
  std::int64_t finite = 0;
};

namespace detail {

// Two passes over typed values (range, then counts): no per-element dtype dispatch.
template <class T>
void fill(Histogram& h, const T* p, std::int64_t n, std::int32_t num_bins) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = static_cast<double>(p[i]);
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v), hi = std::max(hi, v);
    ++h.finite;
  }
  if (h.finite == 0) return;
  if (lo == hi) lo -= 1, hi += 1;
  h.counts.assign(static_cast<std::size_t>(num_bins), 0);
  const double scale = num_bins / (hi - lo);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = static_cast<double>(p[i]);
    if (!std::isfinite(v)) continue;
    auto b = static_cast<std::int64_t>((v - lo) * scale);
    ++h.counts[static_cast<std::size_t>(std::clamp<std::int64_t>(b, 0, num_bins - 1))];
  }
  h.edges.resize(static_cast<std::size_t>(num_bins) + 1);
  for (std::int32_t i = 0; i < num_bins; ++i) h.edges[static_cast<std::size_t>(i)] = lo + (hi - lo) * i / num_bins;
  h.edges.back() = hi;
}

}  // namespace detail

inline constexpr const char* kHistogramDtypes = "float32, float64 or a signed/unsigned integer of 8..64 bits";

inline Histogram histogram(const DLTensor& t, std::int32_t num_bins, std::string_view key) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument("log_histogram '" + std::string(key) + "': " + what);
  };
  if (num_bins < 1 || num_bins > EMBER_MEDIA_MAX_BINS)
    bad("num_bins " + std::to_string(num_bins) + " is outside 1.." + std::to_string(EMBER_MEDIA_MAX_BINS));
  if (t.device.device_type != kDLCPU) bad("values are not on the CPU");
  const DLDataType d = t.dtype;
  const bool ok = d.lanes == 1 && ((d.code == kDLFloat && (d.bits == 32 || d.bits == 64)) ||
                                   ((d.code == kDLInt || d.code == kDLUInt) &&
                                    (d.bits == 8 || d.bits == 16 || d.bits == 32 || d.bits == 64)));
  if (!ok) bad("values have dtype " + dtype_text(d) + "; expected " + kHistogramDtypes);
  if (!is_compact(t)) bad("values are not compact (strided)");
  const std::int64_t n = numel(t);
  if (n > 0 && !t.data) bad("values have no data (NULL)");
  const void* base = static_cast<const char*>(t.data) + t.byte_offset;
  Histogram h;
  switch (d.code * 100 + d.bits) {
    case kDLFloat * 100 + 32: detail::fill(h, static_cast<const float*>(base), n, num_bins); break;
    case kDLFloat * 100 + 64: detail::fill(h, static_cast<const double*>(base), n, num_bins); break;
    case kDLInt * 100 + 8: detail::fill(h, static_cast<const std::int8_t*>(base), n, num_bins); break;
    case kDLInt * 100 + 16: detail::fill(h, static_cast<const std::int16_t*>(base), n, num_bins); break;
    case kDLInt * 100 + 32: detail::fill(h, static_cast<const std::int32_t*>(base), n, num_bins); break;
    case kDLInt * 100 + 64: detail::fill(h, static_cast<const std::int64_t*>(base), n, num_bins); break;
    case kDLUInt * 100 + 8: detail::fill(h, static_cast<const std::uint8_t*>(base), n, num_bins); break;
    case kDLUInt * 100 + 16: detail::fill(h, static_cast<const std::uint16_t*>(base), n, num_bins); break;
    case kDLUInt * 100 + 32: detail::fill(h, static_cast<const std::uint32_t*>(base), n, num_bins); break;
    default: detail::fill(h, static_cast<const std::uint64_t*>(base), n, num_bins); break;
  }
  return h;
}

}  // namespace ember::media
