// plugin.hpp, the C++ helper for writing a plugin as a class, driven through the C functions it
// exports (in-process, no dlopen): what a host sees of last_error when several threads fail at
// once on one instance.
#define BOOST_TEST_MODULE plugin_helper
#include <boost/test/unit_test.hpp>

#include <ember/plugin.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace ep = ember::plugin;

// A callbacks plugin whose on_train_start always fails with a message naming the batch index it
// was given, so each thread can tell its own message from another's.
std::string message_for(std::int64_t n) {
  return "failure number " + std::to_string(n) + " with a tail long enough to leave the small-string buffer";
}
class Failing : public ep::Plugin, public ep::Callbacks {
 public:
  Failing(const ember_host_t* host, std::string_view) : Plugin(host) {}
  void on_train_start(const ember_hook_args_t& a) override { throw std::runtime_error(message_for(a.batch_idx)); }
};
using FailingExports = ep::detail::Exports<Failing>;

// Threads wait here until all of them arrived (C++17 has no std::barrier).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const long gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  const int n_;
  int arrived_ = 0;
  long generation_ = 0;
};

ember_host_t null_host() {
  ember_host_t h{};
  h.struct_size = sizeof h;
  return h;
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_thread_reads_its_own_last_error_when_failing_at_once) {
  const ember_host_t host = null_host();
  void* self = nullptr;
  BOOST_TEST_REQUIRE(FailingExports::create(&host, {"{}", 2}, &self) == EMBER_OK);
  const ember_callbacks_v1_t* cb = FailingExports::callbacks();
  BOOST_TEST_REQUIRE(cb->on_train_start != nullptr);

  // Each round: every thread fails on the same instance, all wait until every failure is
  // recorded, then each reads last_error. The barrier makes the worst interleaving certain
  // instead of lucky: with one message per instance, all but the last writer read another's.
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  Barrier barrier(kThreads);
  std::atomic<int> wrong{0};
  std::atomic<int> bad_status{0};
  std::vector<std::string> first_wrong(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        ember_hook_args_t a{};
        a.struct_size = sizeof a;
        a.batch_idx = r * kThreads + t;
        if (cb->on_train_start(self, &a) != EMBER_E_FAILED) bad_status.fetch_add(1);
        barrier.wait();  // every thread has failed once more
        ember_str_t e = FailingExports::last_error(self);
        const std::string got(e.data, e.size);
        if (got != message_for(a.batch_idx) && wrong.fetch_add(1) == 0)
          first_wrong[t] = "wanted '" + message_for(a.batch_idx) + "', read '" + got + "'";
        barrier.wait();  // every thread has read before anyone fails again
      }
    });
  }
  for (auto& th : threads) th.join();
  FailingExports::destroy(self);
  BOOST_TEST(bad_status.load() == 0);
  std::string example;
  for (const auto& w : first_wrong)
    if (!w.empty()) example = w;
  BOOST_TEST(wrong.load() == 0, wrong.load() << " reads returned another thread's message, e.g. " << example);
}

BOOST_AUTO_TEST_CASE(create_failure_is_read_with_self_null_on_the_same_thread) {
  struct Throws : ep::Plugin {
    Throws(const ember_host_t* h, std::string_view) : Plugin(h) { throw std::runtime_error("no config for you"); }
  };
  const ember_host_t host = null_host();
  void* self = reinterpret_cast<void*>(1);
  BOOST_TEST(ep::detail::Exports<Throws>::create(&host, {"{}", 2}, &self) == EMBER_E_FAILED);
  BOOST_TEST(self == nullptr);
  ember_str_t e = ep::detail::Exports<Throws>::last_error(nullptr);
  BOOST_TEST(std::string(e.data, e.size) == "no config for you");
  // Another thread has its own (empty) message.
  std::string other = "unset";
  std::thread([&] {
    ember_str_t o = ep::detail::Exports<Throws>::last_error(nullptr);
    other.assign(o.data, o.size);
  }).join();
  BOOST_TEST(other == "");
}
