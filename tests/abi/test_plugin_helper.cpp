// plugin.hpp, the C++ helper for writing a plugin as a class, driven through the C functions it
// exports (in-process, no dlopen): what a host sees of last_error when several threads fail at
// once on one instance, and the Storage base class, alone and adopted by the loader as a
// storage::Backend.
#define BOOST_TEST_MODULE plugin_helper
#include <boost/test/unit_test.hpp>

#include <ember/sdk/plugin.hpp>
#include <ember/plugin_backend.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
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

// ---------------------------------------------------------------------------------------------
// Storage: a class with five virtuals instead of nine hand-written C functions.
namespace {

// An in-memory object store with the ember.storage/1 contract: atomic commit, uncommitted writers
// abort, NOT_FOUND for what is absent. Counts aborted writers so a test can see the close.
class MemoryStorage : public ep::Plugin, public ep::Storage {
 public:
  static constexpr std::string_view kSchemes = "mem,memtest";
  MemoryStorage(const ember_host_t* host, std::string_view) : Plugin(host) {}

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(std::string(url));
    if (it == objects_.end()) throw ep::NotFound("no such object: " + std::string(url));
    const std::string& all = it->second;
    const std::size_t from = static_cast<std::size_t>(std::min<std::uint64_t>(offset, all.size()));
    return std::make_unique<Reader>(all.substr(from, static_cast<std::size_t>(std::min<std::uint64_t>(length, all.size() - from))));
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    if (url.find("/readonly/") != std::string_view::npos)
      throw ep::Error("the bucket is read-only: " + std::string(url), EMBER_E_UNSUPPORTED);
    return std::make_unique<Writer>(*this, std::string(url));
  }
  Entry stat(std::string_view url) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(std::string(url));
    if (it == objects_.end()) throw ep::NotFound("no such object: " + std::string(url));
    return {it->first, false, it->second.size(), 0};
  }
  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    std::vector<Entry> entries;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const std::string dir = std::string(prefix) + "/";
      for (const auto& [url, bytes] : objects_)
        if (url.compare(0, dir.size(), dir) == 0) entries.push_back({url, false, bytes.size(), 0});
    }
    for (const auto& e : entries)
      if (!fn(e)) break;
  }
  void remove(std::string_view url) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (objects_.erase(std::string(url)) == 0) throw ep::NotFound("no such object: " + std::string(url));
  }

  static std::atomic<int> aborted;

 private:
  struct Reader : File {
    explicit Reader(std::string b) : bytes(std::move(b)) {}
    std::size_t read(void* buf, std::size_t cap) override {
      const std::size_t n = std::min(cap, bytes.size() - pos);
      std::memcpy(buf, bytes.data() + pos, n);
      pos += n;
      return n;
    }
    std::string bytes;
    std::size_t pos = 0;
  };
  struct Writer : File {
    Writer(MemoryStorage& s, std::string u) : store(s), url(std::move(u)) {}
    ~Writer() override {
      if (!committed) aborted.fetch_add(1);
    }
    void write(const void* data, std::size_t size) override { buf.append(static_cast<const char*>(data), size); }
    void commit() override {
      std::lock_guard<std::mutex> lock(store.mu_);
      store.objects_[url] = buf;
      committed = true;
    }
    MemoryStorage& store;
    std::string url, buf;
    bool committed = false;
  };

  std::mutex mu_;
  std::map<std::string, std::string> objects_;
};
std::atomic<int> MemoryStorage::aborted{0};

}  // namespace

EMBER_PLUGIN(MemoryStorage, "memory_storage", "1.0.0", "in-memory storage for the helper's tests", "")

namespace {
using StorageExports = ep::detail::Exports<MemoryStorage>;

std::string c_error() {
  ember_str_t e = StorageExports::last_error(nullptr);
  return {e.data, e.size};
}

// A live instance created through the exported entry, as the host does.
struct StoragePlugin {
  StoragePlugin()
      : lib(std::make_shared<ember::PluginLibrary>("in-process/memory_storage.so", &ember_plugin_entry)),
        instance(lib, boost::json::value(), services, "test") {
    ember::register_storage(instance, urls);
  }
  ember::Services services;
  std::shared_ptr<ember::PluginLibrary> lib;
  ember::PluginInstance instance;
  ember::storage::UrlSpace urls;
};
}  // namespace

BOOST_AUTO_TEST_CASE(storage_class_offers_every_slot_and_is_adopted_by_the_loader) {
  const auto* t = static_cast<const ember_storage_v1_t*>(StorageExports::get_interface(nullptr, {EMBER_STORAGE_V1, sizeof(EMBER_STORAGE_V1) - 1}));
  BOOST_TEST_REQUIRE(t != nullptr);
  BOOST_TEST(t->struct_size == sizeof(ember_storage_v1_t));
  BOOST_TEST(std::string(ep::view(t->schemes)) == "mem,memtest");
  BOOST_TEST((t->open_read && t->read && t->open_write && t->write && t->commit && t->close && t->stat && t->list &&
              t->remove));
  StoragePlugin p;  // the loader checked every required slot
  BOOST_TEST(p.instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1) != nullptr);
  const auto schemes = p.urls.schemes();
  BOOST_TEST((std::find(schemes.begin(), schemes.end(), "mem") != schemes.end()));
  BOOST_TEST((std::find(schemes.begin(), schemes.end(), "memtest") != schemes.end()));
}

BOOST_AUTO_TEST_CASE(storage_class_round_trips_through_the_url_space) {
  StoragePlugin p;
  p.urls.put_atomic("mem://b/run/a.txt", "hello");
  p.urls.put_atomic("mem://b/run/b.txt", "world!");
  BOOST_TEST(p.urls.read_all("mem://b/run/a.txt") == "hello");
  auto r = p.urls.open_read("mem://b/run/b.txt", 2, 3);
  char buf[16];
  const std::size_t n = r->read(buf, sizeof buf);
  BOOST_TEST(std::string(buf, n) == "rld");
  auto st = p.urls.stat("mem://b/run/b.txt");
  BOOST_TEST_REQUIRE(st.has_value());
  BOOST_TEST(st->url == "mem://b/run/b.txt");
  BOOST_TEST(st->size == 6u);
  BOOST_TEST(!p.urls.stat("mem://b/run/none").has_value());  // NotFound became EMBER_E_NOT_FOUND
  const auto listed = p.urls.list("mem://b/run");
  BOOST_TEST_REQUIRE(listed.size() == 2u);
  BOOST_TEST(listed[0].url == "mem://b/run/a.txt");
  BOOST_TEST(listed[1].size == 6u);
  BOOST_TEST(p.urls.remove("mem://b/run/a.txt"));
  BOOST_TEST(!p.urls.remove("mem://b/run/a.txt"));
}

BOOST_AUTO_TEST_CASE(storage_class_errors_keep_their_status_and_message) {
  StoragePlugin p;
  const ember_storage_v1_t& t = *p.instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1);
  void* self = p.instance.self();
  ember_file_t* f = reinterpret_cast<ember_file_t*>(1);
  BOOST_TEST(t.open_read(self, {"mem://b/x", 9}, 0, UINT64_MAX, &f) == EMBER_E_NOT_FOUND);
  BOOST_TEST(f == nullptr);
  BOOST_TEST(c_error() == "no such object: mem://b/x");
  BOOST_TEST(t.open_write(self, {"mem://b/readonly/k", 18}, &f) == EMBER_E_UNSUPPORTED);
  BOOST_TEST(c_error() == "the bucket is read-only: mem://b/readonly/k");
  // A reader asked to write: EMBER_E_INVALID, not a crash.
  BOOST_TEST_REQUIRE(t.open_write(self, {"mem://b/k", 9}, &f) == EMBER_OK);
  BOOST_TEST(t.commit(self, f) == EMBER_OK);
  t.close(self, f);
  BOOST_TEST_REQUIRE(t.open_read(self, {"mem://b/k", 9}, 0, UINT64_MAX, &f) == EMBER_OK);
  BOOST_TEST(t.write(self, f, "x", 1) == EMBER_E_INVALID);
  BOOST_TEST(c_error() == "write: the file was opened for reading");
  t.close(self, f);
  BOOST_TEST(t.read(self, nullptr, nullptr, 0, nullptr) == EMBER_E_INVALID);
  // Through the URL space the plugin's words arrive with its id and the operation.
  try {
    p.urls.read_all("mem://b/missing");
    BOOST_FAIL("expected an error");
  } catch (const ember::RuntimeError& e) {
    BOOST_TEST(std::string(e.what()) == "memory_storage: open mem://b/missing failed: no such object: mem://b/missing");
  }
}

BOOST_AUTO_TEST_CASE(storage_class_writer_closed_without_commit_is_aborted) {
  StoragePlugin p;
  const int before = MemoryStorage::aborted.load();
  {
    auto w = p.urls.open_write("mem://b/partial");
    w->write("half", 4);
  }  // closed, never committed
  BOOST_TEST(MemoryStorage::aborted.load() == before + 1);
  BOOST_TEST(!p.urls.stat("mem://b/partial").has_value());
}
