// csv_logger: the built .so driven in-process through the host table.
#define BOOST_TEST_MODULE csv_logger
#include <sys/stat.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "plugin_fixture.hpp"
#include "run_process.hpp"

namespace fs = std::filesystem;
using ember::test::FakeTrainer;
using ember::test::LoadedPlugin;
using ember::test::TempDir;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_CSV_LOGGER_SO");
  return l;
}

struct Metric {
  std::string name;
  double value;
};

// A csv_logger instance with helpers that fail the test with the plugin's message.
class Csv {
 public:
  Csv(FakeTrainer& t, const std::string& config) : p_(lib(), config, t) {}

  void log(std::int64_t step, std::int64_t epoch, ember_stage_t stage,
           const std::vector<Metric>& ms) {
    std::vector<ember_metric_t> raw;
    for (const auto& m : ms) raw.push_back({ember::cstr(m.name), m.value});
    ember_log_context_t ctx{sizeof(ember_log_context_t), stage, step, epoch};
    p_.check(p_.logger().log_metrics(p_.self(), &ctx, raw.data(), raw.size()), "log_metrics");
  }
  void hparams(const std::string& json) {
    p_.check(p_.logger().log_hyperparams(p_.self(), ember::cstr(json)), "log_hyperparams");
  }
  ember_status_t finalize_status(const char* status = "success") {
    return p_.logger().finalize(p_.self(), ember::cstr(status));
  }
  void finalize(const char* status = "success") { p_.check(finalize_status(status), "finalize"); }
  void save() { p_.check(p_.logger().save(p_.self()), "save"); }
  LoadedPlugin& plugin() { return p_; }

 private:
  LoadedPlugin p_;
};

// RFC 4180: fields separated by commas, quoted fields may hold commas, quotes ("") and newlines.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"')
        field += '"', ++i;
      else if (c == '"')
        quoted = false;
      else
        field += c;
    } else if (c == '"') {
      quoted = true, any = true;
    } else if (c == ',') {
      row.push_back(field), field.clear(), any = true;
    } else if (c == '\n') {
      row.push_back(field), field.clear();
      rows.push_back(row), row.clear();
      any = false;
    } else {
      field += c, any = true;
    }
  }
  BOOST_REQUIRE_MESSAGE(!quoted, "unterminated quoted field");
  BOOST_REQUIRE_MESSAGE(!any, "last row has no newline");
  return rows;
}

const std::vector<std::string> kHeader = {"step", "epoch", "stage", "name", "value"};

// Rows of metrics.csv (without the header), checking the header.
std::vector<std::vector<std::string>> rows_of(const std::string& text) {
  auto rows = parse_csv(text);
  BOOST_REQUIRE(!rows.empty());
  BOOST_REQUIRE(rows[0] == kHeader);
  rows.erase(rows.begin());
  return rows;
}

bool same_double(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// An object store over process memory for the tests of csv_logger's background worker: counts
// every call and the commits per URL (waking waiters on each), can hold commits at a gate (the
// worker then sits in a rewrite), and can fail commits. Every wait is for an event, bounded by
// a deadline.
class ObjectStore : public ember::storage::Backend {
 public:
  ember::storage::MemoryBackend mem;
  std::atomic<int> calls{0};  // reads, writes, stats, lists, removes

  std::unique_ptr<ember::storage::Reader> open_read(const std::string& u, std::uint64_t o,
                                                    std::uint64_t l) override {
    ++calls;
    return mem.open_read(u, o, l);
  }
  std::unique_ptr<ember::storage::Writer> open_write(const std::string& u) override {
    ++calls;
    struct W final : ember::storage::Writer {
      ObjectStore* store;
      std::string url;
      std::unique_ptr<ember::storage::Writer> inner;
      void write(const void* d, std::size_t n) override { inner->write(d, n); }
      void commit() override {
        store->before_commit(url);
        inner->commit();
        store->after_commit(url);
      }
    };
    auto w = std::make_unique<W>();
    w->store = this;
    w->url = u;
    w->inner = mem.open_write(u);
    return w;
  }
  std::optional<ember::storage::Stat> stat(const std::string& u) override {
    ++calls;
    return mem.stat(u);
  }
  std::vector<ember::storage::Stat> list(const std::string& p) override {
    ++calls;
    return mem.list(p);
  }
  bool remove(const std::string& u) override {
    ++calls;
    return mem.remove(u);
  }

  // Commits of URLs ending in suffix wait at the gate until open() (or 30 s, noted).
  void close_gate(const std::string& suffix) {
    std::lock_guard<std::mutex> lock(mu_);
    gate_ = suffix;
  }
  void open_gate() {
    std::lock_guard<std::mutex> lock(mu_);
    gate_.reset();
    cv_.notify_all();
  }
  // The next n commits of URLs ending in suffix throw (-1: all of them).
  void fail_commits(const std::string& suffix, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_suffix_ = suffix;
    fail_left_ = n;
  }
  int commits(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu_);
    return commits_[url];
  }
  int failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }
  bool gate_timed_out() {
    std::lock_guard<std::mutex> lock(mu_);
    return gate_timed_out_;
  }
  // Wait until pred() (called with the lock held) holds; false after 30 s.
  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return pred(*this); });
  }
  // For wait(): the number of commits waiting at the gate, and counters without locking.
  int at_gate_locked() const { return at_gate_; }
  int failed_locked() const { return failed_; }
  int commits_locked(const std::string& url) const {
    auto it = commits_.find(url);
    return it == commits_.end() ? 0 : it->second;
  }

 private:
  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  void before_commit(const std::string& url) {
    std::unique_lock<std::mutex> lock(mu_);
    if (gate_ && ends_with(url, *gate_)) {
      ++at_gate_;
      cv_.notify_all();
      if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !gate_; })) gate_timed_out_ = true;
      --at_gate_;
    }
    if (fail_left_ != 0 && ends_with(url, fail_suffix_)) {
      if (fail_left_ > 0) --fail_left_;
      ++failed_;
      cv_.notify_all();
      throw ember::RuntimeError("cannot commit " + url + ": injected failure");
    }
  }
  void after_commit(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu_);
    ++commits_[url];
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::string> gate_;
  bool gate_timed_out_ = false;
  int at_gate_ = 0;
  std::string fail_suffix_;
  int fail_left_ = 0, failed_ = 0;
  std::map<std::string, int> commits_;
};

// A config in the long layout (most cases below are about when and how rows reach storage,
// which the two layouts share; the wide layout has its own cases at the end).
std::string config(const std::string& save_dir, const std::string& more = "") {
  std::string c = "{\"format\": \"long\", \"save_dir\": \"" + save_dir + "\"";
  if (!more.empty()) c += ", " + more;
  return c + "}";
}

ino_t inode_of(const fs::path& p) {
  struct stat st;
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_ino;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rows_are_exact_and_parse_back_in_long_format) {
  TempDir tmp("csv");
  FakeTrainer t;
  const double third = 1.0 / 3.0, tiny = -2.5e-300, nan = std::nan(""),
               inf = std::numeric_limits<double>::infinity();
  {
    Csv csv(t, config(tmp.path().string(), "\"flush_every_seconds\": 0"));
    csv.log(0, 0, EMBER_STAGE_FIT, {{"train_loss", 0.1}, {"lr", 1e-3}});
    csv.log(1, 0, EMBER_STAGE_FIT, {{"train_loss", third}, {"odd,\"name\"", tiny}});
    csv.log(1, 0, EMBER_STAGE_VALIDATE,
            {{"val_loss", nan}, {"val_acc", inf}, {"line\nbreak", -inf}});
    csv.log(2, 1, EMBER_STAGE_TEST, {{"test_acc", 0.875}});
    csv.finalize();
  }
  auto rows = rows_of(ember::test::read_file(tmp / "lightning_logs/version_0/metrics.csv"));
  struct Want {
    const char *step, *epoch, *stage, *name;
    double value;
  } want[] = {
      {"0", "0", "fit", "train_loss", 0.1},        {"0", "0", "fit", "lr", 1e-3},
      {"1", "0", "fit", "train_loss", third},      {"1", "0", "fit", "odd,\"name\"", tiny},
      {"1", "0", "validate", "val_loss", nan},     {"1", "0", "validate", "val_acc", inf},
      {"1", "0", "validate", "line\nbreak", -inf}, {"2", "1", "test", "test_acc", 0.875},
  };
  BOOST_REQUIRE_EQUAL(rows.size(), std::size(want));
  for (size_t i = 0; i < rows.size(); ++i) {
    BOOST_TEST_CONTEXT("row " << i) {
      BOOST_REQUIRE_EQUAL(rows[i].size(), 5u);
      BOOST_TEST(rows[i][0] == want[i].step);
      BOOST_TEST(rows[i][1] == want[i].epoch);
      BOOST_TEST(rows[i][2] == want[i].stage);
      BOOST_TEST(rows[i][3] == want[i].name);
      BOOST_TEST(same_double(std::strtod(rows[i][4].c_str(), nullptr), want[i].value),
                 rows[i][4] << " does not read back as the logged value");
    }
  }
}

BOOST_AUTO_TEST_CASE(log_metrics_does_no_io_before_flush_logs_every_n_steps) {
  FakeTrainer t;
  auto backend = std::make_shared<ObjectStore>();
  t.urls().add("count", backend);
  Csv csv(t, config("count://runs", "\"flush_logs_every_n_steps\": 5, \"flush_every_seconds\": 0"));
  csv.hparams(R"({"lr": 0.1})");
  for (int step = 0; step < 4; ++step) csv.log(step, 0, EMBER_STAGE_FIT, {{"loss", step * 1.0}});
  BOOST_TEST(backend->calls.load() == 0, "no storage call before the first flush is due");
  csv.log(4, 0, EMBER_STAGE_FIT, {{"loss", 4.0}});
  // The rewrite runs on csv_logger's worker: wait for it to land.
  const std::string url = "count://runs/lightning_logs/version_0/metrics.csv";
  BOOST_REQUIRE(backend->wait([&](ObjectStore& s) { return s.commits_locked(url) == 1; }));
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 5u);
  BOOST_TEST(t.urls().stat("count://runs/lightning_logs/version_0/hparams.yaml").has_value());

  // The next flush is due 5 steps after the last one.
  int after_first = backend->calls.load();
  for (int step = 5; step < 9; ++step) csv.log(step, 0, EMBER_STAGE_FIT, {{"loss", 0.0}});
  BOOST_TEST(backend->calls.load() == after_first);
  csv.log(9, 0, EMBER_STAGE_FIT, {{"loss", 0.0}});
  BOOST_REQUIRE(backend->wait([&](ObjectStore& s) { return s.commits_locked(url) == 2; }));
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 10u);
  csv.finalize();
}

BOOST_AUTO_TEST_CASE(nothing_is_written_locally_before_the_first_flush) {
  TempDir tmp("csv");
  FakeTrainer t;
  Csv csv(t, config(tmp.path().string(),
                    "\"flush_logs_every_n_steps\": 3, \"flush_every_seconds\": 0"));
  csv.hparams(R"({"lr": 0.1})");
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  csv.log(1, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(ember::test::list_dir(tmp.path()).empty(), "no directory or file before a flush");
  csv.log(2, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(rows_of(ember::test::read_file(tmp / "lightning_logs/version_0/metrics.csv")).size() ==
             3u);
  csv.finalize();
}

BOOST_AUTO_TEST_CASE(a_new_metric_mid_run_only_appends_to_the_local_file) {
  TempDir tmp("csv");
  FakeTrainer t;
  Csv csv(t, config(tmp.path().string(),
                    "\"flush_logs_every_n_steps\": 1, \"flush_every_seconds\": 0"));
  const fs::path file = tmp / "lightning_logs/version_0/metrics.csv";
  csv.log(0, 0, EMBER_STAGE_FIT, {{"a", 1.0}});
  std::string before = ember::test::read_file(file);
  const ino_t inode = inode_of(file);
  const std::vector<std::vector<Metric>> steps = {
      {{"a", 2.0}, {"b", 20.0}},  // b is new
      {{"c", 300.0}},             // c is new, a and b absent
      {{"a", 4.0}, {"d", 4e4}},
  };
  std::int64_t step = 1;
  for (const auto& ms : steps) {
    csv.log(step++, 0, EMBER_STAGE_FIT, ms);
    std::string now = ember::test::read_file(file);
    BOOST_TEST(inode_of(file) == inode, "the file was replaced, not appended to");
    BOOST_TEST(now.size() > before.size());
    BOOST_TEST(now.compare(0, before.size(), before) == 0, "earlier bytes changed");
    before = now;
  }
  csv.finalize();
  BOOST_TEST(inode_of(file) == inode);
  auto rows = rows_of(ember::test::read_file(file));
  BOOST_REQUIRE_EQUAL(rows.size(), 6u);
  BOOST_TEST(rows[2][3] == "b");
  BOOST_TEST(rows[3][3] == "c");
}

BOOST_AUTO_TEST_CASE(version_is_the_next_free_version_n) {
  TempDir tmp("csv");
  FakeTrainer t;
  fs::create_directories(tmp / "lightning_logs/version_0");
  fs::create_directories(tmp / "lightning_logs/version_3");
  fs::create_directories(tmp / "lightning_logs/version_x");
  fs::create_directories(tmp / "lightning_logs/version_");
  ember::test::write_file(tmp / "lightning_logs/version_9", "a file, not a version directory");
  for (int expect : {4, 5}) {
    Csv csv(t, config(tmp.path().string()));
    csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
    csv.finalize();
    BOOST_TEST(
        fs::exists(tmp / ("lightning_logs/version_" + std::to_string(expect)) / "metrics.csv"));
  }
}

BOOST_AUTO_TEST_CASE(object_store_gets_every_row_in_each_atomic_rewrite) {
  FakeTrainer t;
  auto store = std::make_shared<ObjectStore>();
  t.urls().add("obj", store);
  const std::string url = "obj://runs/lightning_logs/version_0/metrics.csv";
  {
    Csv csv(t, config("obj://runs", "\"flush_logs_every_n_steps\": 2, \"flush_every_seconds\": 0"));
    csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 0.5}});
    BOOST_TEST(!t.urls().stat(url).has_value());
    csv.log(1, 0, EMBER_STAGE_FIT, {{"loss", 0.25}});
    BOOST_REQUIRE(store->wait([&](ObjectStore& s) { return s.commits_locked(url) == 1; }));
    auto first = rows_of(t.urls().read_all(url));
    BOOST_REQUIRE_EQUAL(first.size(), 2u);
    csv.log(2, 0, EMBER_STAGE_FIT, {{"loss", 0.125}, {"new_key", 7.0}});
    csv.log(3, 0, EMBER_STAGE_FIT, {{"loss", 0.0625}});
    BOOST_REQUIRE(store->wait([&](ObjectStore& s) { return s.commits_locked(url) == 2; }));
    auto second = rows_of(t.urls().read_all(url));
    BOOST_REQUIRE_EQUAL(second.size(), 5u);
    BOOST_TEST(
        (std::vector<std::vector<std::string>>(second.begin(), second.begin() + 2) == first));
    BOOST_TEST(second[3][3] == "new_key");
    csv.finalize();
  }
  Csv next(t, config("obj://runs"));
  next.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  next.finalize();
  BOOST_TEST(t.urls().stat("obj://runs/lightning_logs/version_1/metrics.csv").has_value());
}

BOOST_AUTO_TEST_CASE(object_store_rewrites_at_most_every_flush_every_seconds) {
  FakeTrainer t;
  auto store = std::make_shared<ObjectStore>();
  t.urls().add("obj", store);
  const std::string url = "obj://slow/lightning_logs/version_0/metrics.csv";
  Csv csv(t, config("obj://slow", "\"flush_logs_every_n_steps\": 1, \"flush_every_seconds\": 3600"));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_REQUIRE(store->wait([&](ObjectStore& s) { return s.commits_locked(url) == 1; }));
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 1u, "the first due flush is not delayed");
  for (int step = 1; step < 4; ++step) csv.log(step, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  csv.finalize();  // joins the worker: every rewrite it was given is done
  BOOST_TEST(store->commits(url) == 2, "rewrites are throttled: the first and finalize's");
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 4u, "finalize writes everything");
}

BOOST_AUTO_TEST_CASE(rows_older_than_flush_every_seconds_are_flushed) {
  TempDir tmp("csv");
  FakeTrainer t;
  Csv csv(t, config(tmp.path().string(),
                    "\"flush_logs_every_n_steps\": 1000, \"flush_every_seconds\": 0.05"));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(ember::test::list_dir(tmp.path()).empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  csv.log(1, 0, EMBER_STAGE_FIT, {{"loss", 2.0}});
  BOOST_TEST(rows_of(ember::test::read_file(tmp / "lightning_logs/version_0/metrics.csv")).size() ==
             2u);
  csv.finalize();
}

BOOST_AUTO_TEST_CASE(hparams_yaml_is_merged_and_written_at_the_first_flush) {
  TempDir tmp("csv");
  FakeTrainer t;
  Csv csv(t, config(tmp.path().string()));
  csv.hparams(R"({"lr": 0.1, "layers": [64, 32]})");
  csv.hparams(R"({"batch_size": 32, "lr": 0.05})");
  BOOST_TEST(ember::test::list_dir(tmp.path()).empty());
  csv.finalize();
  BOOST_TEST(ember::test::read_file(tmp / "lightning_logs/version_0/hparams.yaml") ==
             "lr: 0.05\nlayers:\n  - 64\n  - 32\nbatch_size: 32\n");
  BOOST_TEST(!fs::exists(tmp / "lightning_logs/version_0/hparams.json"));

  BOOST_TEST(csv.plugin().logger().log_hyperparams(csv.plugin().self(), ember::cstr("[1, 2]")) !=
             EMBER_OK);
  BOOST_TEST(csv.plugin().last_error().find("csv_logger") != std::string::npos);
  BOOST_TEST(csv.plugin().last_error().find("JSON object") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(save_dir_defaults_to_default_root_dir_and_name_and_version_are_used) {
  TempDir tmp("csv");
  FakeTrainer t;
  t.root_dir = tmp.path().string();
  {
    Csv csv(t, R"({"name": "exp", "version": 7})");
    csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
    csv.finalize();
  }
  BOOST_TEST(fs::exists(tmp / "exp/version_7/metrics.csv"));
  {
    Csv csv(t, R"({"name": "", "version": "run_a"})");
    csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
    csv.finalize();
  }
  BOOST_TEST(fs::exists(tmp / "run_a/metrics.csv"));
  BOOST_TEST(std::any_of(t.lines.begin(), t.lines.end(), [&](const std::string& l) {
    return l.find((tmp / "run_a/metrics.csv").string()) != std::string::npos;
  }));
}

BOOST_AUTO_TEST_CASE(an_existing_version_of_ours_is_continued) {
  TempDir tmp("csv");
  FakeTrainer t;
  for (double v : {1.0, 2.0}) {
    Csv csv(t, config(tmp.path().string(), "\"version\": \"resumed\""));
    csv.log(static_cast<std::int64_t>(v), 0, EMBER_STAGE_FIT, {{"loss", v}});
    csv.finalize();
  }
  auto rows = rows_of(ember::test::read_file(tmp / "lightning_logs/resumed/metrics.csv"));
  BOOST_REQUIRE_EQUAL(rows.size(), 2u);
  BOOST_TEST(rows[1][4] == "2");
}

BOOST_AUTO_TEST_CASE(a_foreign_metrics_file_is_refused_naming_the_url) {
  TempDir tmp("csv");
  FakeTrainer t;
  fs::create_directories(tmp / "lightning_logs/old");
  ember::test::write_file(tmp / "lightning_logs/old/metrics.csv", "epoch,loss\n0,1.5\n");
  Csv csv(t, config(tmp.path().string(), "\"version\": \"old\""));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(csv.finalize_status() != EMBER_OK);
  std::string err = csv.plugin().last_error();
  BOOST_TEST(err.find("csv_logger") != std::string::npos, err);
  BOOST_TEST(err.find((tmp / "lightning_logs/old/metrics.csv").string()) != std::string::npos, err);
  BOOST_TEST(ember::test::read_file(tmp / "lightning_logs/old/metrics.csv") ==
             "epoch,loss\n0,1.5\n");
}

BOOST_AUTO_TEST_CASE(a_storage_failure_names_the_plugin_and_the_url) {
  FakeTrainer t;
  Csv csv(t, config("nosuch://bucket/runs"));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(csv.finalize_status() != EMBER_OK);
  std::string err = csv.plugin().last_error();
  BOOST_TEST(err.find("csv_logger") != std::string::npos, err);
  BOOST_TEST(err.find("nosuch://bucket/runs/lightning_logs") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(an_unknown_config_key_is_refused_with_a_suggestion) {
  FakeTrainer t;
  try {
    Csv csv(t, R"({"flush_every_n_steps": 10})");
    BOOST_FAIL("an unknown key was accepted");
  } catch (const ember::ConfigError& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("flush_every_n_steps") != std::string::npos, msg);
    BOOST_TEST(msg.find("flush_logs_every_n_steps") != std::string::npos, msg);
  }
}

// --- the object-store worker (DESIGN, ABI rule 7: hooks do not block on the network) ----------

// A trainer whose obj:// is an ObjectStore, and a csv_logger there that flushes at every step.
struct ObjectStoreRun {
  FakeTrainer t;
  std::shared_ptr<ObjectStore> store = std::make_shared<ObjectStore>();
  const std::string url = "obj://runs/lightning_logs/version_0/metrics.csv";
  std::optional<Csv> csv;
  ObjectStoreRun() {
    t.urls().add("obj", store);
    csv.emplace(t, config("obj://runs", "\"flush_logs_every_n_steps\": 1, \"flush_every_seconds\": 0"));
  }
};

BOOST_FIXTURE_TEST_CASE(an_object_store_flush_returns_while_its_rewrite_is_still_in_progress, ObjectStoreRun) {
  store->close_gate("metrics.csv");
  csv->log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});  // due: returns with the rewrite held at the gate
  BOOST_TEST(store->commits(url) == 0);
  BOOST_REQUIRE(store->wait([](ObjectStore& s) { return s.at_gate_locked() == 1; }));
  csv->log(1, 0, EMBER_STAGE_FIT, {{"loss", 0.5}});  // due too, while the worker is busy
  store->open_gate();
  csv->finalize();
  BOOST_TEST(!store->gate_timed_out(), "log_metrics waited for the rewrite");
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(flushes_during_a_slow_rewrite_coalesce_and_finalize_writes_every_row, ObjectStoreRun) {
  store->close_gate("metrics.csv");
  csv->log(0, 0, EMBER_STAGE_FIT, {{"loss", 0.0}});
  BOOST_REQUIRE(store->wait([](ObjectStore& s) { return s.at_gate_locked() == 1; }));
  for (int step = 1; step < 10; ++step) csv->log(step, 0, EMBER_STAGE_FIT, {{"loss", step * 1.0}});
  store->open_gate();
  csv->finalize();
  // Nine due flushes behind a busy worker are one pending rewrite, not nine.
  BOOST_TEST(store->commits(url) == 2);
  auto rows = rows_of(t.urls().read_all(url));
  BOOST_REQUIRE_EQUAL(rows.size(), 10u);
  for (int step = 0; step < 10; ++step) BOOST_TEST(rows[step][0] == std::to_string(step));
}

BOOST_FIXTURE_TEST_CASE(a_failed_rewrite_keeps_its_rows_for_the_next_one_and_warns_naming_the_url, ObjectStoreRun) {
  store->fail_commits("metrics.csv", 1);
  csv->log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_REQUIRE(store->wait([](ObjectStore& s) { return s.failed_locked() == 1; }));
  csv->log(1, 0, EMBER_STAGE_FIT, {{"loss", 0.5}});
  csv->finalize();
  BOOST_TEST(rows_of(t.urls().read_all(url)).size() == 2u, "the failed rewrite's row was not dropped");
  std::string log = t.joined();
  BOOST_TEST(log.find("csv_logger: cannot write " + url) != std::string::npos, log);
  BOOST_TEST(log.find("injected failure") != std::string::npos, log);
}

BOOST_FIXTURE_TEST_CASE(finalize_fails_naming_the_url_when_the_last_rewrite_fails, ObjectStoreRun) {
  store->fail_commits("metrics.csv", -1);
  csv->log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  csv->log(1, 0, EMBER_STAGE_FIT, {{"loss", 0.5}});
  BOOST_TEST(csv->finalize_status() != EMBER_OK);
  std::string err = csv->plugin().last_error();
  BOOST_TEST(err.find("csv_logger: cannot write " + url) != std::string::npos, err);
  BOOST_TEST(err.find("injected failure") != std::string::npos, err);
  BOOST_TEST(!t.urls().stat(url).has_value());
}

BOOST_AUTO_TEST_CASE(a_foreign_metrics_file_in_an_object_store_is_refused_naming_the_url) {
  FakeTrainer t;
  auto store = std::make_shared<ObjectStore>();
  t.urls().add("obj", store);
  const std::string url = "obj://runs/lightning_logs/old/metrics.csv";
  t.urls().put_atomic(url, "epoch,loss\n0,1.5\n");
  Csv csv(t, config("obj://runs", "\"version\": \"old\", \"flush_logs_every_n_steps\": 1"));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"loss", 1.0}});
  BOOST_TEST(csv.finalize_status() != EMBER_OK);
  std::string err = csv.plugin().last_error();
  BOOST_TEST(err.find("csv_logger") != std::string::npos, err);
  BOOST_TEST(err.find(url) != std::string::npos, err);
  BOOST_TEST(t.urls().read_all(url) == "epoch,loss\n0,1.5\n");
}

// --- Lightning's wide layout (the default) ---------------------------------------------------

namespace {

std::string wide(const std::string& save_dir, const std::string& more = "") {
  std::string c = "{\"save_dir\": \"" + save_dir + "\"";
  if (!more.empty()) c += ", " + more;
  return c + "}";
}

// The rows of a wide metrics.csv as column -> cell maps, and its header.
struct Wide {
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
};
Wide wide_of(const std::string& text) {
  auto records = parse_csv(text);
  BOOST_REQUIRE(!records.empty());
  Wide w{records[0], {}};
  for (size_t i = 1; i < records.size(); ++i) {
    BOOST_REQUIRE_EQUAL(records[i].size(), w.header.size());
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < w.header.size(); ++c) row[w.header[c]] = records[i][c];
    w.rows.push_back(std::move(row));
  }
  return w;
}

}  // namespace

BOOST_AUTO_TEST_CASE(wide_rows_are_one_per_step_under_a_sorted_header_with_empty_cells) {
  TempDir tmp("csv");
  FakeTrainer t;
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  {
    Csv csv(t, wide(tmp.path().string(), "\"flush_every_seconds\": 0"));
    csv.log(0, 0, EMBER_STAGE_FIT, {{"train_loss", 0.5}, {"lr", 1e-3}});
    csv.log(1, 0, EMBER_STAGE_FIT, {{"train_loss", 1.0 / 3.0}});
    csv.log(1, 0, EMBER_STAGE_VALIDATE, {{"val_loss", nan}, {"odd,\"name\"", inf}});  // same step: same row
    csv.log(1, 0, EMBER_STAGE_FIT, {{"train_loss", 0.25}});  // a name again at that step: a row of its own
    csv.log(2, 1, EMBER_STAGE_TEST, {{"Zeta", -inf}});       // Python's sort: "Z" before "e"
    csv.finalize();
  }
  BOOST_TEST(ember::test::read_file(tmp / "lightning_logs/version_0/metrics.csv") ==
             "Zeta,epoch,lr,\"odd,\"\"name\"\"\",step,train_loss,val_loss\n"
             ",0,0.001,,0,0.5,\n"
             ",0,,inf,1,0.3333333333333333,nan\n"
             ",0,,,1,0.25,\n"
             "-inf,1,,,2,,\n");
}

// A metric first logged in epoch 2 widens the header: the local file is rewritten with it
// (atomically, as Lightning rewrites its file) and every earlier row keeps its cells.
BOOST_AUTO_TEST_CASE(a_metric_first_logged_in_epoch_2_gets_its_column_and_earlier_rows_stay_intact) {
  TempDir tmp("csv");
  FakeTrainer t;
  const fs::path file = tmp / "lightning_logs/version_0/metrics.csv";
  Csv csv(t, wide(tmp.path().string(), "\"flush_logs_every_n_steps\": 1, \"flush_every_seconds\": 0"));
  std::int64_t step = 0;
  for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
    for (int b = 0; b < 3; ++b, ++step) csv.log(step, epoch, EMBER_STAGE_FIT, {{"train_loss", step * 0.5}});
    csv.log(step - 1, epoch, EMBER_STAGE_VALIDATE, {{"val_loss", epoch + 0.25}});
  }
  csv.log(step, 2, EMBER_STAGE_FIT, {{"train_loss", 9.0}, {"val_f1", 0.75}});  // held: its step may get more
  Wide before = wide_of(ember::test::read_file(file));
  BOOST_TEST(before.header == (std::vector<std::string>{"epoch", "step", "train_loss", "val_loss"}));
  BOOST_REQUIRE_EQUAL(before.rows.size(), 6u);
  BOOST_TEST(before.rows[2].at("val_loss") == "0.25");
  BOOST_TEST(before.rows[5].at("val_loss") == "1.25");
  BOOST_TEST(before.rows[4].at("val_loss") == "");

  csv.log(step + 1, 2, EMBER_STAGE_FIT, {{"train_loss", 10.0}});  // closes the step: flushed
  Wide after = wide_of(ember::test::read_file(file));
  BOOST_TEST(after.header == (std::vector<std::string>{"epoch", "step", "train_loss", "val_f1", "val_loss"}));
  BOOST_REQUIRE_EQUAL(after.rows.size(), 7u);
  for (size_t i = 0; i < before.rows.size(); ++i) {
    auto want = before.rows[i];
    want["val_f1"] = "";
    BOOST_TEST((after.rows[i] == want), "row " << i << " changed");
  }
  BOOST_TEST(after.rows[6].at("epoch") == "2");
  BOOST_TEST(after.rows[6].at("val_f1") == "0.75");
  csv.finalize();
  Wide last = wide_of(ember::test::read_file(file));
  BOOST_REQUIRE_EQUAL(last.rows.size(), 8u);
  BOOST_TEST(last.rows[7].at("train_loss") == "10");
  BOOST_TEST(last.rows[7].at("val_f1") == "");
  // After the rewrite the file is appended to again.
  BOOST_TEST(!fs::exists(tmp / "lightning_logs/version_0/hparams.json"));
}

// On an object store the wider header comes with the next rewrite; a failed rewrite keeps
// every row, and the next one writes them under the new header.
BOOST_AUTO_TEST_CASE(wide_on_an_object_store_widens_at_the_next_flush_and_a_failed_rewrite_keeps_its_rows) {
  FakeTrainer t;
  auto store = std::make_shared<ObjectStore>();
  t.urls().add("obj", store);
  const std::string url = "obj://runs/lightning_logs/version_0/metrics.csv";
  Csv csv(t, wide("obj://runs", "\"flush_logs_every_n_steps\": 1, \"flush_every_seconds\": 0"));
  csv.log(0, 0, EMBER_STAGE_FIT, {{"a", 1.0}});
  csv.log(1, 0, EMBER_STAGE_FIT, {{"a", 2.0}});  // row 0 is written
  BOOST_REQUIRE(store->wait([&](ObjectStore& s) { return s.commits_locked(url) == 1; }));
  BOOST_TEST(t.urls().read_all(url) == "a,epoch,step\n1,0,0\n");
  store->fail_commits("metrics.csv", 1);
  csv.log(2, 0, EMBER_STAGE_FIT, {{"a", 3.0}, {"b", 30.0}});  // row 1: its rewrite fails
  BOOST_REQUIRE(store->wait([](ObjectStore& s) { return s.failed_locked() == 1; }));
  csv.log(3, 1, EMBER_STAGE_FIT, {{"a", 4.0}});  // row 2 (b is new): written with row 1
  BOOST_REQUIRE(store->wait([&](ObjectStore& s) { return s.commits_locked(url) == 2; }));
  BOOST_TEST(t.urls().read_all(url) == "a,b,epoch,step\n1,,0,0\n2,,0,1\n3,30,0,2\n");
  csv.finalize();
  BOOST_TEST(t.urls().read_all(url) == "a,b,epoch,step\n1,,0,0\n2,,0,1\n3,30,0,2\n4,,1,3\n");
}

// A metrics.csv Lightning wrote (or this logger, in the wide layout) is continued: its columns
// are kept, new ones join them; one in the long layout is refused with the fix in the message.
BOOST_AUTO_TEST_CASE(wide_continues_a_lightning_metrics_file_and_refuses_a_long_one) {
  TempDir tmp("csv");
  FakeTrainer t;
  fs::create_directories(tmp / "lightning_logs/old");
  ember::test::write_file(tmp / "lightning_logs/old/metrics.csv", "epoch,lr-Adam,step,train_loss\n0,0.1,0,1.5\n");
  {
    Csv csv(t, wide(tmp.path().string(), "\"version\": \"old\""));
    csv.log(1, 0, EMBER_STAGE_FIT, {{"train_loss", 2.0}, {"val_acc", 0.5}});
    csv.finalize();
  }
  BOOST_TEST(ember::test::read_file(tmp / "lightning_logs/old/metrics.csv") ==
             "epoch,lr-Adam,step,train_loss,val_acc\n0,0.1,0,1.5,\n0,,1,2,0.5\n");

  fs::create_directories(tmp / "lightning_logs/long");
  const std::string long_text = "step,epoch,stage,name,value\n0,0,fit,loss,1\n";
  ember::test::write_file(tmp / "lightning_logs/long/metrics.csv", long_text);
  Csv csv(t, wide(tmp.path().string(), "\"version\": \"long\""));
  csv.log(1, 0, EMBER_STAGE_FIT, {{"loss", 2.0}});
  BOOST_TEST(csv.finalize_status() != EMBER_OK);
  std::string err = csv.plugin().last_error();
  BOOST_TEST(err.find((tmp / "lightning_logs/long/metrics.csv").string()) != std::string::npos, err);
  BOOST_TEST(err.find("format") != std::string::npos, err);
  BOOST_TEST(ember::test::read_file(tmp / "lightning_logs/long/metrics.csv") == long_text);
}

BOOST_AUTO_TEST_CASE(an_unknown_format_is_refused_naming_the_key_and_the_choices) {
  FakeTrainer t;
  try {
    Csv csv(t, R"({"format": "tall"})");
    BOOST_FAIL("format tall was accepted");
  } catch (const ember::ConfigError& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("format") != std::string::npos, msg);
    BOOST_TEST(msg.find("\"wide\"") != std::string::npos, msg);
  }
}

// `ember fit` on Fashion-MNIST with two csv_loggers, one in each layout: Python's csv module
// (and pandas, when installed) reads the wide file and finds the columns, steps and values of
// the long one (tests/plugins/csv_wide_check.py).
BOOST_AUTO_TEST_CASE(python_reads_the_wide_file_with_the_columns_steps_and_values_of_the_long_one) {
  TempDir tmp("csv");
  const std::string data = "/usr/share/datasets/fashion-mnist/";
  namespace json = boost::json;
  json::object cfg{
      {"seed_everything", 3},
      {"trainer", json::object{{"max_epochs", 3}, {"limit_train_batches", 6}, {"limit_val_batches", 2},
                               {"log_every_n_steps", 2}, {"enable_progress_bar", false}, {"enable_checkpointing", false},
                               {"default_root_dir", tmp.path().string()},
                               {"logger", json::array{
                                   json::object{{"plugin", "csv_logger"}, {"config", json::object{{"name", "wide"}, {"flush_logs_every_n_steps", 3}}}},
                                   json::object{{"plugin", "csv_logger"}, {"config", json::object{{"name", "long"}, {"format", "long"}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{data + "train-images-idx3-ubyte.gz", data + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
  const std::string path = (tmp / "fit.json").string();
  ember::test::write_file(path, json::serialize(cfg));
  auto fit = ember::test::run_process({ember::test::require_env("EMBER_EXE"), "fit", "--config", path, "--plugin-dir",
                                       ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"});
  BOOST_REQUIRE_MESSAGE(fit.exit_code == 0, fit.describe());
  auto check = ember::test::run_process({"/usr/bin/python3", ember::test::require_env("EMBER_CSV_WIDE_CHECK"),
                                         (tmp / "wide/version_0/metrics.csv").string(),
                                         (tmp / "long/version_0/metrics.csv").string()});
  BOOST_TEST_MESSAGE(check.out);
  BOOST_TEST(check.exit_code == 0, check.describe());
  BOOST_TEST(check.out.find("csv module: ok") != std::string::npos, check.out);
  BOOST_TEST(fs::exists(tmp / "wide/version_0/hparams.yaml"));
}
