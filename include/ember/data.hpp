// Built-in data: idx (MNIST family, gzipped or not), numeric CSV and saved tensors, read
// through the URL space and preloaded; a batch gathers its rows of a per-epoch permutation
// (zero-copy slices when not shuffled).
#pragma once

#include <ember/error.hpp>
#include <ember/module.hpp>
#include <ember/storage.hpp>

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace ember::data {

struct Dataset {
  torch::Tensor x;  // [N, ...] float32
  torch::Tensor y;  // [N] int64 (classes) or float32; undefined when unlabelled
  std::int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

inline std::string gunzip_if_needed(std::string bytes, const std::string& url) {
  if (bytes.size() < 2 || static_cast<unsigned char>(bytes[0]) != 0x1f ||
      static_cast<unsigned char>(bytes[1]) != 0x8b)
    return bytes;
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw RuntimeError(url + ": cannot start gunzip");
  // The output starts at the size gzip's trailer records (ISIZE, the last member's length mod
  // 2^32), capped at deflate's largest ratio (1032:1), and grows below when that is wrong (several
  // members, 4 GiB or more): not a guessed 4x buffer, zero-filled and mostly unused (Fashion-MNIST's
  // training images: 105 MB filled for 47 MB of data, ~20 ms).
  std::size_t size = bytes.size() * 4;
  if (bytes.size() >= 18) {
    const auto* t = reinterpret_cast<const unsigned char*>(bytes.data() + bytes.size() - 4);
    const std::uint64_t isize = t[0] | (std::uint32_t{t[1]} << 8) | (std::uint32_t{t[2]} << 16) | (std::uint32_t{t[3]} << 24);
    size = static_cast<std::size_t>(std::min<std::uint64_t>(isize + 1, std::uint64_t{bytes.size()} * 1032));
  }
  std::string out;
  out.resize(size);
  zs.next_in = reinterpret_cast<Bytef*>(bytes.data());
  zs.avail_in = static_cast<uInt>(bytes.size());
  int rc;
  do {
    if (zs.total_out >= out.size()) out.resize(out.size() * 2);
    zs.next_out = reinterpret_cast<Bytef*>(&out[zs.total_out]);
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_NO_FLUSH);
  } while (rc == Z_OK);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) throw RuntimeError(url + ": corrupt gzip data");
  return out;
}

inline std::uint32_t be32(const std::string& b, std::size_t off) {
  auto u = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(b[off + i])); };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}

// One idx file as a uint8 tensor of its declared shape (only the ubyte type is used by MNIST).
inline torch::Tensor read_idx_file(const storage::UrlSpace& urls, const std::string& url) {
  std::string b = gunzip_if_needed(urls.read_all(url), url);
  if (b.size() < 4 || b[0] != 0 || b[1] != 0)
    throw RuntimeError(url + ": not an idx file (expected magic 00 00 TT DD)");
  const unsigned type = static_cast<unsigned char>(b[2]), dims = static_cast<unsigned char>(b[3]);
  if (type != 0x08) throw RuntimeError(url + ": idx type " + std::to_string(type) + " unsupported (expected 0x08 ubyte)");
  if (dims == 0 || b.size() < 4 + 4 * dims) throw RuntimeError(url + ": truncated idx header");
  // The element count is the product of up to 255 32-bit sizes: checked, so a header whose
  // product wraps around to the body size is refused here rather than by libtorch (a
  // backtrace, not a message).
  const std::size_t off = 4 + 4 * dims;
  const std::uint64_t body = b.size() - off;
  std::vector<std::int64_t> shape;
  std::string declared;
  std::uint64_t count = 1;
  bool overflow = false;
  for (unsigned d = 0; d < dims; ++d) {
    const std::uint32_t n = be32(b, 4 + 4 * d);
    shape.push_back(n);
    declared += (d ? " x " : "") + std::to_string(n);
    if (__builtin_mul_overflow(count, std::uint64_t{n}, &count)) overflow = true;
  }
  if (overflow || count != body)
    throw RuntimeError(url + ": idx body has " + std::to_string(body) + " bytes, header says " +
                       (overflow ? declared + " (more than 2^64 elements)" : std::to_string(count)));
  if (count == 0) throw RuntimeError(url + ": idx file holds no data (" + declared + ")");
  auto t = torch::empty(shape, torch::kUInt8);
  std::memcpy(t.data_ptr(), b.data() + off, static_cast<std::size_t>(body));
  return t;
}

// 8-bit pixels [N, ...] -> float [N, H*W] scaled to [0,1], then standardised with
// Fashion-MNIST's mean and std when normalize: what the idx reader feeds a model, and what
// `ember lambda` does to a predict event's images.
inline torch::Tensor pixels_to_inputs(const torch::Tensor& pixels, bool normalize) {
  auto x = pixels.reshape({pixels.size(0), -1}).to(torch::kFloat32).div_(255.0);
  if (normalize) x.sub_(0.2860).div_(0.3530);
  return x;
}

// images + labels idx files -> x float [N, H*W] (scaled to [0,1], then standardised when
// normalize), y int64 [N].
inline Dataset read_idx(const storage::UrlSpace& urls, const std::vector<std::string>& files,
                        bool normalize) {
  if (files.empty() || files.size() > 2)
    throw ConfigError("data: idx expects [images] or [images, labels] URLs");
  Dataset d;
  auto images = read_idx_file(urls, files[0]);
  d.x = pixels_to_inputs(images, normalize);
  if (files.size() == 2) {
    d.y = read_idx_file(urls, files[1]).to(torch::kInt64).reshape({-1});
    if (d.y.size(0) != d.x.size(0))
      throw RuntimeError(files[1] + ": " + std::to_string(d.y.size(0)) + " labels for " +
                         std::to_string(d.x.size(0)) + " images in " + files[0]);
  }
  return d;
}

// One CSV field as a finite number. Blanks around it (and a CRLF line's \r) are allowed; any
// other trailing text is an error, so "1abc" is not read as 1.
inline double csv_number(const std::string& field, const std::string& where) {
  const char* s = field.c_str();
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  const char* rest = end;
  while (*rest == ' ' || *rest == '\t' || *rest == '\r') ++rest;
  std::string shown = field;
  while (!shown.empty() && shown.back() == '\r') shown.pop_back();
  if (end == s || *rest != '\0')
    throw RuntimeError(where + ": '" + shown + "' is not a number");
  if (!std::isfinite(v)) throw RuntimeError(where + ": '" + shown + "' is not a finite number");
  return v;
}

// Numeric CSV: every column a number; label_column (negative counts from the end) is y.
inline Dataset read_csv(const storage::UrlSpace& urls, const std::string& url, std::int64_t label_column,
                        bool has_header) {
  std::istringstream in(urls.read_all(url));
  std::string line;
  std::vector<float> values;
  std::vector<std::int64_t> labels;
  std::int64_t cols = -1, row = 0, line_no = 0;
  bool integral_labels = true;
  std::vector<double> raw_labels;
  while (std::getline(in, line)) {
    ++line_no;
    if (has_header && line_no == 1) continue;
    if (line.empty() || line == "\r") continue;
    std::vector<double> fields;
    std::size_t pos = 0;
    while (pos <= line.size()) {
      auto comma = line.find(',', pos);
      std::string f = line.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      fields.push_back(csv_number(f, url + ":" + std::to_string(line_no)));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (cols < 0) {
      cols = static_cast<std::int64_t>(fields.size());
      if (label_column < -cols || label_column >= cols)
        throw RuntimeError(url + ":" + std::to_string(line_no) + ": label_column " + std::to_string(label_column) +
                           " is out of range for " + std::to_string(cols) + " columns (expected " +
                           std::to_string(-cols) + " to " + std::to_string(cols - 1) + "; config key data.label_column)");
    }
    if (static_cast<std::int64_t>(fields.size()) != cols)
      throw RuntimeError(url + ":" + std::to_string(line_no) + ": " + std::to_string(fields.size()) +
                         " columns, expected " + std::to_string(cols));
    std::int64_t lc = label_column < 0 ? cols + label_column : label_column;
    for (std::int64_t c = 0; c < cols; ++c) {
      if (c == lc) {
        raw_labels.push_back(fields[c]);
        if (std::floor(fields[c]) != fields[c]) integral_labels = false;
      } else {
        values.push_back(static_cast<float>(fields[c]));
      }
    }
    ++row;
  }
  if (row == 0) throw RuntimeError(url + ": no data rows");
  Dataset d;
  d.x = torch::from_blob(values.data(), {row, cols - 1}, torch::kFloat32).clone();
  auto y = torch::from_blob(raw_labels.data(), {row}, torch::kFloat64).clone();
  d.y = integral_labels ? y.to(torch::kInt64) : y.to(torch::kFloat32);
  return d;
}

// Saved tensors: a pickle (torch::pickle_save / Python torch.save of a dict) with "x" and "y".
inline Dataset read_tensors(const storage::UrlSpace& urls, const std::string& url) {
  std::string b = urls.read_all(url);
  Dataset d;
  try {  // libtorch's messages carry a backtrace: keep the first line, name the file
    torch::IValue v = torch::pickle_load(std::vector<char>(b.begin(), b.end()));
    if (!v.isGenericDict()) throw RuntimeError(url + ": expected a dict with keys \"x\" and \"y\"");
    for (const auto& kv : v.toGenericDict()) {
      if (!kv.key().isString()) continue;
      if (kv.key().toStringRef() == "x") d.x = kv.value().toTensor();
      if (kv.key().toStringRef() == "y") d.y = kv.value().toTensor();
    }
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    throw RuntimeError(url + ": not a readable tensors file: " + why.substr(0, why.find('\n')));
  }
  if (!d.x.defined()) throw RuntimeError(url + ": no \"x\" tensor");
  return d;
}

// Batches of one dataset: a seeded permutation per epoch; a batch gathers its rows of it (without
// shuffling, a zero-copy slice). The rows are gathered per batch rather than the whole dataset
// permuted at the start of the epoch: the same values, but the first step does not wait for (nor
// the process hold) a second copy of the data (Fashion-MNIST's 54,000 training rows: 169 MB,
// about 100 ms before the first step).
class Loader {
 public:
  Loader() = default;
  Loader(Dataset d, std::int64_t batch_size, bool shuffle, std::uint64_t seed)
      : data_(std::move(d)), batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {}
  std::int64_t num_batches() const {
    const std::int64_t n = rows();
    return n == 0 ? 0 : (n + batch_size_ - 1) / batch_size_;
  }
  std::int64_t size() const { return data_.size(); }
  // The rows this loader yields per epoch: the dataset, or under set_shard this rank's share.
  std::int64_t rows() const { return world_ > 1 ? shard_rows_ : data_.size(); }

  // torch.utils.data.DistributedSampler: this rank reads rows rank, rank + world, ... of the
  // epoch's order (shuffled by seed + epoch, as set_epoch does), padded by repeating the order's
  // first rows so every rank has ceil(N / world) of them, or with drop_last cut to
  // floor(N / world). One epoch covers the data once across the ranks.
  void set_shard(int rank, int world, bool drop_last) {
    if (world <= 1) return;
    rank_ = rank;
    world_ = world;
    drop_last_ = drop_last;
    const std::int64_t n = data_.size();
    shard_rows_ = drop_last && n % world != 0 ? n / world : (n + world - 1) / world;
    if (!shuffle_) start_epoch(0);
  }

  // The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
  void start_epoch(std::int64_t epoch) {
    if (world_ > 1) return shard_epoch(epoch);
    if (!shuffle_ || data_.size() == 0) return;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + static_cast<std::uint64_t>(epoch));
    perm_ = torch::randperm(data_.size(), gen, torch::TensorOptions().dtype(torch::kInt64));
  }
  Batch batch(std::int64_t i) const {
    std::int64_t start = i * batch_size_;
    std::int64_t len = std::min(batch_size_, rows() - start);
    Batch b;
    if (perm_.defined()) {
      torch::NoGradGuard ng;
      auto rows = perm_.narrow(0, start, len);
      b.x = data_.x.index_select(0, rows);
      if (data_.y.defined()) b.y = data_.y.index_select(0, rows);
    } else {
      b.x = data_.x.narrow(0, start, len);
      if (data_.y.defined()) b.y = data_.y.narrow(0, start, len);
    }
    return b;
  }

 private:
  void shard_epoch(std::int64_t epoch) {
    const std::int64_t n = data_.size();
    if (n == 0) return;
    torch::Tensor order;
    if (shuffle_) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ + static_cast<std::uint64_t>(epoch));
      order = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
    } else {
      order = torch::arange(n, torch::kInt64);
    }
    const std::int64_t total = shard_rows_ * world_;
    if (total > n) {  // pad with the order's first rows, repeated if needed
      std::vector<torch::Tensor> parts{order};
      for (std::int64_t have = n; have < total; have += n) parts.push_back(order.narrow(0, 0, std::min(n, total - have)));
      order = torch::cat(parts);
    } else {
      order = order.narrow(0, 0, total);
    }
    perm_ = order.slice(0, rank_, total, world_).contiguous();
  }

  Dataset data_;
  torch::Tensor perm_;  // this epoch's order; undefined until a shuffled epoch starts
  int rank_ = 0, world_ = 1;
  bool drop_last_ = false;
  std::int64_t shard_rows_ = 0;
  std::int64_t batch_size_ = 1;
  bool shuffle_ = false;
  std::uint64_t seed_ = 0;
};

}  // namespace ember::data
