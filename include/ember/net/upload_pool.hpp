// The writer side the storage plugins share: bytes fill one part buffer; each full part is sent
// by a job on a worker thread while the next fills, at most max_in_flight jobs at once, and a
// finished job's buffer is reused for a later part (no fresh pages to fault in and zero for every
// part). Memory stays at (max_in_flight + 1) x part_size.
//
// s3 (UploadPart) and azure (Put Block) run parts in parallel (max_in_flight = max_concurrency);
// gcs (resumable chunks) and webhdfs (CREATE then APPENDs) must send in order and use
// max_in_flight = 1: each job starts only after the previous one finished. What a part is, how it
// is numbered, checksummed and committed stays in the plugin. Header-only, standard library only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ember::net {

// Not thread-safe itself: one writer thread calls it; the jobs run on their own threads.
class UploadPool {
 public:
  // The job for one part: its bytes, borrowed until it returns (the buffer then goes back to the
  // pool, whether the job succeeded or threw).
  using Job = std::function<void(const std::string& part)>;

  UploadPool(std::size_t part_size, std::size_t max_in_flight)
      : part_size_(part_size), max_in_flight_(max_in_flight ? max_in_flight : 1) {}
  UploadPool(const UploadPool&) = delete;
  UploadPool& operator=(const UploadPool&) = delete;
  // Waits for every job (their failures are dropped: whoever destroys the pool has one to
  // report, or nothing to wait for). A job's owner drains before the job's captures die.
  ~UploadPool() { drain(); }

  std::size_t part_size() const { return part_size_; }
  std::size_t in_flight() const { return inflight_.size(); }

  // The part being filled.
  const std::string& filling() const { return buf_; }

  // Append up to part_size - filling().size() bytes of data; returns how many were taken. The
  // caller ships the part when it is full.
  std::size_t fill(const char* data, std::size_t n) {
    if (buf_.capacity() < part_size_) take_buffer();
    std::size_t take = std::min(n, part_size_ - buf_.size());
    buf_.append(data, take);
    return take;
  }
  bool full() const { return buf_.size() == part_size_; }

  // Wait until fewer than max_in_flight jobs run, oldest first. A job's failure is rethrown after
  // waiting for all the others (the caller then aborts the upload, or reports it).
  void wait_for_room() {
    while (inflight_.size() >= max_in_flight_) pop_oldest_or_drain();
  }

  // Hand the part being filled to job on a worker thread (after wait_for_room, which the caller
  // calls first when it has something to do on failure); filling() starts again empty.
  void ship(Job job) {
    wait_for_room();
    std::string part;
    part.swap(buf_);
    inflight_.push_back(std::async(std::launch::async, [this, job = std::move(job), b = std::move(part)]() mutable {
      // The buffer goes back to the pool however the job ends.
      struct Recycle {
        UploadPool& pool;
        std::string& b;
        ~Recycle() {
          std::lock_guard<std::mutex> lock(pool.mu_);
          pool.spare_.push_back(std::move(b));
        }
      } recycle{*this, b};
      job(b);
    }));
  }

  // Wait for every job in order; the first failure is rethrown, the later jobs left running
  // (drain() waits for them).
  void wait_all() {
    while (!inflight_.empty()) {
      auto f = std::move(inflight_.front());
      inflight_.pop_front();
      f.get();
    }
  }

  // Wait for every job, ignoring failures (the caller is aborting or has one to report).
  void drain() {
    for (auto& f : inflight_) {
      try {
        f.get();
      } catch (...) {
      }
    }
    inflight_.clear();
  }

  // Free every buffer (after commit: a committed writer may live on).
  void release_buffers() {
    buf_ = std::string();
    std::lock_guard<std::mutex> lock(mu_);
    spare_.clear();
  }

 private:
  void pop_oldest_or_drain() {
    auto f = std::move(inflight_.front());
    inflight_.pop_front();
    try {
      f.get();
    } catch (...) {
      drain();
      throw;
    }
  }

  // buf_ becomes an empty buffer of part_size_ capacity: a finished part's, else a new one.
  void take_buffer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!spare_.empty()) {
        buf_.swap(spare_.back());
        spare_.pop_back();
      }
    }
    buf_.clear();
    if (buf_.capacity() < part_size_) buf_.reserve(part_size_);
  }

  std::size_t part_size_, max_in_flight_;
  std::string buf_;
  std::deque<std::future<void>> inflight_;
  std::mutex mu_;                   // guards spare_, which finished jobs fill
  std::vector<std::string> spare_;  // buffers of finished parts, for the next ones
};

}  // namespace ember::net
