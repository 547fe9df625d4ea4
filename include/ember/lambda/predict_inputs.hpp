// The inputs of a `predict` event for `ember lambda` (samples/lambda/README.md), as one batch
// tensor [N, ...input_shape] of float32:
//   "inputs":            [[...], ...]   one nested JSON array of numbers per input (model inputs
//                                       as the model takes them: already normalised)
//   "images_png_base64": ["iVBOR...", ...]  PNG files, base64; decoded to 8-bit grey and
//                                       preprocessed as the idx reader does (/255, then
//                                       data.normalize's mean/std; data::pixels_to_inputs)
//   "tensor": {"dtype": "float32", "shape": [N, ...], "data_base64": "..."}  raw little-endian
// Each problem is a BadInput naming the key, the item and what was expected. Built without libpng
// (EMBER_NO_PNG, meson -Dpng=disabled), every "images_png_base64" item is a BadInput saying so.
#pragma once

#include <ember/data.hpp>
#include <ember/error.hpp>

#include <boost/json.hpp>
#ifndef EMBER_NO_PNG
#include <png.h>
#endif
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ember::lambda {

// A predict event the runtime cannot use; its message is the /error reply's errorMessage.
class BadInput : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

// RFC 4648 base64 (standard alphabet; '=' padding optional; no whitespace inside).
inline std::string base64_decode(std::string_view in, const std::string& what) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) throw BadInput(what + ": not base64 (length " + std::to_string(in.size()) + ")");
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    int v = val(in[i]);
    if (v < 0) throw BadInput(what + ": not base64 (character " + std::to_string(i) + ")");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// A PNG file as 8-bit grey [H, W] (colour is converted by libpng's simplified API).
inline torch::Tensor png_to_gray(const std::string& bytes, const std::string& what) {
#ifdef EMBER_NO_PNG
  (void)bytes;
  throw BadInput(what + ": PNG input is not built in (Ember was configured with -Dpng=disabled: no libpng)");
#else
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()))
    throw BadInput(what + ": not a PNG file (" + std::string(img.message) + ")");
  img.format = PNG_FORMAT_GRAY;
  if (static_cast<std::uint64_t>(img.width) * img.height > (1u << 24)) {
    png_image_free(&img);
    throw BadInput(what + ": PNG of " + std::to_string(img.width) + "x" + std::to_string(img.height) + " pixels is too large");
  }
  auto t = torch::empty({img.height, img.width}, torch::kUInt8);
  if (!png_image_finish_read(&img, nullptr, t.data_ptr(), 0, nullptr))
    throw BadInput(what + ": PNG does not decode (" + std::string(img.message) + ")");
  return t;
#endif
}

struct InputSpec {
  std::vector<std::int64_t> shape;  // one input, without the batch dimension; empty: any
  bool normalize = true;            // data.normalize: what images get after /255
  std::int64_t max_inputs = 1024;
};

inline std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

namespace detail {
inline void flatten(const boost::json::value& v, std::vector<float>& out, const std::string& where) {
  if (v.is_array()) {
    for (const auto& e : v.as_array()) flatten(e, out, where);
  } else if (v.is_number()) {
    out.push_back(static_cast<float>(v.to_number<double>()));
  } else {
    throw BadInput(where + ": expected numbers or arrays of numbers, found " + std::string(v.is_string() ? "a string" : v.is_null() ? "null" : v.is_bool() ? "a boolean" : "an object"));
  }
}

inline std::int64_t numel(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}
}  // namespace detail

// The batch an event's predict inputs make. Exactly one of the three keys must be present.
inline torch::Tensor predict_batch(const boost::json::object& ev, const InputSpec& spec) {
  const int given = ev.contains("inputs") + ev.contains("images_png_base64") + ev.contains("tensor");
  if (given != 1)
    throw BadInput("predict: expected exactly one of \"inputs\", \"images_png_base64\" or \"tensor\", found " + std::to_string(given));
  const std::int64_t per = spec.shape.empty() ? -1 : detail::numel(spec.shape);
  auto batched = [&](const std::vector<std::int64_t>& one) {
    std::vector<std::int64_t> s{-1};
    s.insert(s.end(), one.begin(), one.end());
    return s;
  };
  auto count_ok = [&](std::size_t n, const char* key) {
    if (n == 0) throw BadInput(std::string("predict: \"") + key + "\" is empty");
    if (static_cast<std::int64_t>(n) > spec.max_inputs)
      throw BadInput(std::string("predict: \"") + key + "\" has " + std::to_string(n) + " items; at most " +
                     std::to_string(spec.max_inputs) + " (lambda.max_predict_inputs)");
  };
  if (const auto* in = ev.if_contains("inputs")) {
    if (!in->is_array()) throw BadInput("predict: \"inputs\": expected an array with one array of numbers per input");
    const auto& arr = in->as_array();
    count_ok(arr.size(), "inputs");
    std::vector<float> flat;
    std::int64_t first = -1;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string where = "predict: inputs[" + std::to_string(i) + "]";
      const std::size_t before = flat.size();
      detail::flatten(arr[i], flat, where);
      const auto n = static_cast<std::int64_t>(flat.size() - before);
      if (per >= 0 && n != per)
        throw BadInput(where + " has " + std::to_string(n) + " values; expected " + std::to_string(per) +
                       " (lambda.input_shape " + shape_text(spec.shape) + ")");
      if (first >= 0 && n != first)
        throw BadInput(where + " has " + std::to_string(n) + " values; inputs[0] has " + std::to_string(first));
      first = n;
    }
    auto t = torch::from_blob(flat.data(), {static_cast<std::int64_t>(flat.size())}, torch::kFloat32).clone();
    return t.reshape(spec.shape.empty() ? std::vector<std::int64_t>{static_cast<std::int64_t>(arr.size()), first} : batched(spec.shape));
  }
  if (const auto* im = ev.if_contains("images_png_base64")) {
    if (!im->is_array()) throw BadInput("predict: \"images_png_base64\": expected an array of base64 strings");
    const auto& arr = im->as_array();
    count_ok(arr.size(), "images_png_base64");
    std::vector<torch::Tensor> rows;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string where = "predict: images_png_base64[" + std::to_string(i) + "]";
      if (!arr[i].is_string()) throw BadInput(where + ": expected a base64 string");
      torch::Tensor g = png_to_gray(base64_decode(arr[i].as_string(), where), where);
      if (per >= 0 && g.numel() != per)
        throw BadInput(where + " is " + std::to_string(g.size(1)) + "x" + std::to_string(g.size(0)) + " pixels (" +
                       std::to_string(g.numel()) + "); expected " + std::to_string(per) + " (lambda.input_shape " +
                       shape_text(spec.shape) + ")");
      if (!rows.empty() && g.numel() != rows[0].numel())
        throw BadInput(where + " has " + std::to_string(g.numel()) + " pixels; images_png_base64[0] has " + std::to_string(rows[0].numel()));
      rows.push_back(g.reshape({-1}));
    }
    auto x = data::pixels_to_inputs(torch::stack(rows), spec.normalize);
    return spec.shape.empty() ? x : x.reshape(batched(spec.shape));
  }
  const auto& tv = ev.at("tensor");
  if (!tv.is_object()) throw BadInput("predict: \"tensor\": expected {\"dtype\": \"float32\", \"shape\": [...], \"data_base64\": \"...\"}");
  const auto& t = tv.as_object();
  for (const auto& kv : t)
    if (kv.key() != "dtype" && kv.key() != "shape" && kv.key() != "data_base64")
      throw BadInput("predict: tensor." + std::string(kv.key()) + ": unknown key; expected dtype, shape, data_base64");
  const auto* dt = t.if_contains("dtype");
  if (dt && (!dt->is_string() || dt->as_string() != "float32"))
    throw BadInput("predict: tensor.dtype: only \"float32\" (little-endian) is taken");
  const auto* sh = t.if_contains("shape");
  if (!sh || !sh->is_array() || sh->as_array().empty())
    throw BadInput("predict: tensor.shape: expected [N, ...] (N inputs, then one input's shape)");
  std::vector<std::int64_t> shape;
  for (const auto& d : sh->as_array()) {
    if (!d.is_int64() || d.as_int64() < 1 || d.as_int64() > (1 << 24))
      throw BadInput("predict: tensor.shape: expected positive integers, found " + boost::json::serialize(d));
    shape.push_back(d.as_int64());
  }
  count_ok(static_cast<std::size_t>(shape[0]), "tensor");
  const std::vector<std::int64_t> one(shape.begin() + 1, shape.end());
  if (!spec.shape.empty() && detail::numel(one) != per)
    throw BadInput("predict: tensor.shape " + shape_text(shape) + ": one input is " + shape_text(one) + "; expected " +
                   shape_text(spec.shape) + " (lambda.input_shape)");
  const auto* data = t.if_contains("data_base64");
  if (!data || !data->is_string()) throw BadInput("predict: tensor.data_base64: expected a base64 string");
  std::string raw = base64_decode(data->as_string(), "predict: tensor.data_base64");
  const std::int64_t n = detail::numel(shape);
  if (static_cast<std::int64_t>(raw.size()) != n * 4)
    throw BadInput("predict: tensor.data_base64 holds " + std::to_string(raw.size()) + " bytes; shape " + shape_text(shape) +
                   " of float32 needs " + std::to_string(n * 4));
  auto x = torch::empty(shape, torch::kFloat32);
  std::memcpy(x.data_ptr(), raw.data(), raw.size());  // little-endian hosts (x86_64, arm64)
  return spec.shape.empty() ? x : x.reshape(batched(spec.shape));
}

}  // namespace ember::lambda
