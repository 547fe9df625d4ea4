// The retry rules the storage plugins (s3, gcs, azure, webhdfs) share: how many attempts, how
// long to wait between them, and which HTTP statuses are worth another attempt. Each plugin keeps
// its own loop (what it signs, how it names a failure, what else it retries: S3's 400
// RequestTimeout, GCS's and Azure's 408, WebHDFS's StandbyException) and asks this header the
// common questions. Header-only, standard library only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <thread>

namespace ember::net {

// max_attempts counts the first try; the wait before attempt n + 1 is exponential backoff with
// full jitter (AWS's recommendation, what Google's and Azure's SDKs do): uniform in
// [0, min(max_ms, base_ms * 2^n)].
struct RetryPolicy {
  int max_attempts = 5;
  int base_ms = 100;
  int max_ms = 20000;

  // Whether attempt (1 for the first) was the last one allowed.
  bool exhausted(int attempt) const { return attempt >= max_attempts; }

  // The longest wait after attempt n, in ms: min(max_ms, base_ms * 2^n), n capped at 20.
  double cap_ms(int attempt) const {
    return std::min<double>(max_ms, static_cast<double>(base_ms) * double(1u << std::min(std::max(attempt, 0), 20)));
  }

  // The jittered wait after attempt n: uniform in [0, cap_ms(n)].
  std::chrono::microseconds delay(int attempt) const {
    // One generator per thread: part uploads and prefetches retry concurrently without a lock.
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> dist(0.0, cap_ms(attempt));
    return std::chrono::microseconds(static_cast<std::int64_t>(dist(rng) * 1000));
  }

  // Sleep before the attempt after `attempt`.
  void backoff(int attempt) const { std::this_thread::sleep_for(delay(attempt)); }

  // The last failure's message, saying how many attempts it took when there was more than one:
  // "... (gave up after 3 attempts)".
  static std::string gave_up(const std::string& last, int attempts) {
    return last + (attempts > 1 ? " (gave up after " + std::to_string(attempts) + " attempts)" : "");
  }
};

// The statuses every store here retries: 429 Too Many Requests and the transient 5xx (500
// Internal Server Error, 502 Bad Gateway, 503 Service Unavailable / SlowDown, 504 Gateway
// Timeout). A store that retries more names them in also (GCS and Azure: 408).
inline bool retryable_status(int status, std::initializer_list<int> also = {}) {
  if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504) return true;
  return std::find(also.begin(), also.end(), status) != also.end();
}

}  // namespace ember::net
