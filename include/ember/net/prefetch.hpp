// The reader side the storage plugins share: a byte range [begin, end) read as ranged requests of
// chunk bytes, up to depth of them in flight ahead of the caller, handed out in order. s3, gcs
// and azure prefetch max_concurrency chunks; webhdfs one. What a chunk request is (and what it
// checks) stays in the plugin's fetch function. Header-only, standard library only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <string>
#include <utility>

namespace ember::net {

// Not thread-safe itself: one reader thread calls it; fetches run on their own threads.
class RangePrefetcher {
 public:
  // fetch(first, last): the bytes first..last (inclusive), exactly; it may throw, and read()
  // rethrows that when the caller reaches the chunk.
  using Fetch = std::function<std::string(std::uint64_t first, std::uint64_t last)>;

  RangePrefetcher(std::uint64_t chunk, std::size_t depth, Fetch fetch)
      : chunk_(chunk ? chunk : 1), depth_(depth ? depth : 1), fetch_(std::move(fetch)) {}
  RangePrefetcher(const RangePrefetcher&) = delete;
  RangePrefetcher& operator=(const RangePrefetcher&) = delete;
  // Waits for the fetches still running: they use their owner's state. Declare the prefetcher
  // after whatever fetch reads, so it goes first.
  ~RangePrefetcher() {
    for (auto& f : pending_)
      if (f.valid()) f.wait();
  }

  // Start fetching [begin, end); call once, when everything fetch reads is set.
  void start(std::uint64_t begin, std::uint64_t end) {
    next_ = begin;
    end_ = end;
    fill();
  }

  // Copy up to cap bytes into buf; 0 at the end (then done() is true). on_chunk, when set, sees
  // every chunk once, in order, as read reaches it (a running checksum of what was delivered).
  std::size_t read(void* buf, std::size_t cap, const std::function<void(const std::string&)>& on_chunk = {}) {
    while (pos_ == current_.size()) {
      if (pending_.empty()) return 0;
      current_ = pending_.front().get();  // rethrows the chunk's failure
      pending_.pop_front();
      pos_ = 0;
      if (on_chunk) on_chunk(current_);
      fill();
    }
    std::size_t n = std::min(cap, current_.size() - pos_);
    std::memcpy(buf, current_.data() + pos_, n);
    pos_ += n;
    return n;
  }

  // Every byte of the range was handed out.
  bool done() const { return pending_.empty() && pos_ == current_.size(); }

 private:
  void fill() {
    while (next_ < end_ && pending_.size() < depth_) {
      std::uint64_t first = next_, last = std::min(end_, next_ + chunk_) - 1;
      next_ = last + 1;
      pending_.push_back(std::async(std::launch::async, [this, first, last] { return fetch_(first, last); }));
    }
  }

  std::uint64_t chunk_;
  std::size_t depth_;
  Fetch fetch_;
  std::uint64_t next_ = 0, end_ = 0;
  std::string current_;
  std::size_t pos_ = 0;
  std::deque<std::future<std::string>> pending_;
};

}  // namespace ember::net
