// The rows the training thread hands to the worker: metric rows as bytes in one buffer (a few
// appends per row and no allocation once it has grown; no JSON, no I/O on the training thread),
// media rows in a queue, each marked in the byte stream so the worker sees every row in the order
// it was logged. Not synchronised: the logger guards its RowBuffer with its mutex, and the worker
// swaps it for an empty one it decodes outside the lock (and whose capacity the training thread
// gets back next time: double buffering).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <ember/abi.h>
#include <string>
#include <string_view>
#include <utility>

#include "media.hpp"

namespace ember::wandb_plugin {

class RowBuffer {
 public:
  // One row's header: the trainer's step and epoch, the run time and wall time when it was logged;
  // count metrics follow, or it is a media row (media() is true, its items in take_media()).
  struct Head {
    std::int64_t step = 0, epoch = 0;
    double runtime = 0, unix_time = 0;
    std::uint32_t count = 0;
    bool media() const { return count == kMediaRow; }
  };

  // [train-thread] Metric names longer than 65535 bytes are cut there.
  void add_metrics(const Head& head, const ember_metric_t* metrics, std::size_t count) {
    put_head(head.step, head.epoch, head.runtime, head.unix_time, static_cast<std::uint32_t>(count));
    for (std::size_t i = 0; i < count; ++i) {
      auto len = static_cast<std::uint16_t>(std::min<std::size_t>(metrics[i].name.size, 65535));
      put(&len, sizeof len);
      put(metrics[i].name.data, len);
      put(&metrics[i].value, sizeof(double));
    }
  }
  void add_media(std::int64_t step, std::int64_t epoch, double runtime, double unix_time, MediaRow row) {
    put_head(step, epoch, runtime, unix_time, kMediaRow);
    media_.push_back(std::move(row));
  }

  // [worker] Empty the buffer, keeping its capacity.
  void clear() {
    bytes_.clear();
    media_.clear();
    read_ = 0;
  }
  void swap(RowBuffer& other) {
    bytes_.swap(other.bytes_);
    media_.swap(other.media_);
    std::swap(read_, other.read_);
  }

  // [worker] Decoding, in order: next() gives a row's head; then head.count times metric(), or
  // take_media() once for a media row.
  bool next(Head& h) {
    if (read_ >= bytes_.size()) return false;
    std::int64_t head[2];
    double times[2];
    get(head, sizeof head);
    get(times, sizeof times);
    get(&h.count, sizeof h.count);
    h.step = head[0], h.epoch = head[1], h.runtime = times[0], h.unix_time = times[1];
    return true;
  }
  std::pair<std::string_view, double> metric() {
    std::uint16_t len;
    double v;
    get(&len, sizeof len);
    std::string_view name(bytes_.data() + read_, len);
    read_ += len;
    get(&v, sizeof v);
    return {name, v};
  }
  MediaRow take_media() {
    MediaRow row = std::move(media_.front());
    media_.pop_front();
    return row;
  }

 private:
  static constexpr std::uint32_t kMediaRow = 0xFFFFFFFFu;  // the count that marks a media row

  void put(const void* p, std::size_t n) { bytes_.append(static_cast<const char*>(p), n); }
  void put_head(std::int64_t step, std::int64_t epoch, double runtime, double unix_time, std::uint32_t count) {
    std::int64_t head[2] = {step, epoch};
    double times[2] = {runtime, unix_time};
    put(head, sizeof head);
    put(times, sizeof times);
    put(&count, sizeof count);
  }
  void get(void* p, std::size_t n) {
    std::memcpy(p, bytes_.data() + read_, n);
    read_ += n;
  }

  std::string bytes_;
  std::deque<MediaRow> media_;  // one per media head in bytes_, in order
  std::size_t read_ = 0;        // decoding position
};

}  // namespace ember::wandb_plugin
