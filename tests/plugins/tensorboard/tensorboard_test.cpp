// tensorboard: the built .so driven in-process through the host table (tests/plugins'
// fixture), and under a real `ember fit`. Every event file is read back by an independent reader:
// tests/plugins/tensorboard/read_events.py, python3-protobuf with the tests' own .proto files, both
// TFRecord CRCs checked, PNGs decoded by hand.
#define BOOST_TEST_MODULE tensorboard
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "plugin_fixture.hpp"
#include "run_process.hpp"
#include "tb_reader.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using ember::test::FakeTrainer;
using ember::test::LoadedPlugin;
using ember::test::run_process;
using ember::test::TempDir;
using namespace ember::test::tb;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_TENSORBOARD_SO");
  return l;
}

// events.out.tfevents.<10-digit time>.<host>.<pid>.<n> (no std::regex: GCC 12 warns inside it
// under -fsanitize).
bool is_event_file_name(const std::string& name) {
  const std::string head = "events.out.tfevents.";
  if (name.compare(0, head.size(), head) != 0) return false;
  auto digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string_view rest(name);
  rest.remove_prefix(head.size());
  auto last = rest.rfind('.'), before = rest.rfind('.', last - 1);
  if (rest.size() < 11 || rest[10] != '.' || last == std::string_view::npos || before == std::string_view::npos ||
      before <= 10)
    return false;
  return digits(rest.substr(0, 10)) && digits(rest.substr(before + 1, last - before - 1)) && digits(rest.substr(last + 1));
}

// A tensor view over a vector's data.
template <class T>
DLTensor view_of(std::vector<T>& data, std::vector<std::int64_t>& shape, DLDataTypeCode code) {
  DLTensor t{};
  t.data = data.data();
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int>(shape.size());
  t.dtype = {static_cast<std::uint8_t>(code), static_cast<std::uint8_t>(sizeof(T) * 8), 1};
  t.shape = shape.data();
  return t;
}

// A tensorboard instance with helpers that fail the test with the plugin's message.
class Tb {
 public:
  Tb(FakeTrainer& t, const std::string& config) : p_(lib(), config, t) {}

  void log(std::int64_t step, const std::vector<std::pair<std::string, double>>& ms,
           ember_stage_t stage = EMBER_STAGE_FIT) {
    std::vector<ember_metric_t> raw;
    for (const auto& m : ms) raw.push_back({ember::cstr(m.first), m.second});
    ember_log_context_t c = ctx(step, stage);
    p_.check(p_.logger().log_metrics(p_.self(), &c, raw.data(), raw.size()), "log_metrics");
  }
  void hparams(const std::string& json) {
    p_.check(p_.logger().log_hyperparams(p_.self(), ember::cstr(json)), "log_hyperparams");
  }
  const ember_media_v1_t& media() {
    auto* m = p_.instance().interface<ember_media_v1_t>(EMBER_MEDIA_V1);
    BOOST_REQUIRE_MESSAGE(m, "tensorboard offers no " EMBER_MEDIA_V1);
    return *m;
  }
  void save() { p_.check(p_.logger().save(p_.self()), "save"); }
  ember_status_t finalize_status() { return p_.logger().finalize(p_.self(), ember::cstr("success")); }
  void finalize() { p_.check(finalize_status(), "finalize"); }
  LoadedPlugin& plugin() { return p_; }
  static ember_log_context_t ctx(std::int64_t step, ember_stage_t stage = EMBER_STAGE_FIT) {
    return {sizeof(ember_log_context_t), stage, step, 0};
  }

 private:
  LoadedPlugin p_;
};

std::string config(const fs::path& save_dir, const std::string& extra = "") {
  return R"({"save_dir": ")" + save_dir.string() + "\"" + (extra.empty() ? "" : ", " + extra) + "}";
}

// --- a storage scheme whose commits fail or wait on the test's word ---------------------------------
class ControlledBackend final : public ember::storage::Backend {
 public:
  std::shared_ptr<ember::storage::Backend> inner = std::make_shared<ember::storage::MemoryBackend>();
  std::mutex mu;
  std::condition_variable cv;
  int fail_next_event_commits = 0;  // event-file commits to fail before the next succeeds
  bool fail_all = false;
  bool hold = false;      // commits wait until released
  int waiting = 0;        // commits waiting now
  int event_commits = 0;  // event-file commits that went through
  int event_attempts = 0; // event-file commits tried

  std::unique_ptr<ember::storage::Reader> open_read(const std::string& url, std::uint64_t o, std::uint64_t n) override {
    return inner->open_read(mem(url), o, n);
  }
  std::unique_ptr<ember::storage::Writer> open_write(const std::string& url) override {
    struct W final : ember::storage::Writer {
      ControlledBackend* b;
      std::string url;
      std::unique_ptr<ember::storage::Writer> w;
      void write(const void* d, std::size_t n) override { w->write(d, n); }
      void commit() override {
        const bool event_file = url.find("tfevents") != std::string::npos;
        {
          std::unique_lock<std::mutex> lock(b->mu);
          ++b->waiting;
          b->cv.notify_all();
          b->cv.wait(lock, [&] { return !b->hold; });
          --b->waiting;
          if (event_file) ++b->event_attempts, b->cv.notify_all();
          if (b->fail_all || (event_file && b->fail_next_event_commits > 0)) {
            if (event_file && b->fail_next_event_commits > 0) --b->fail_next_event_commits;
            throw ember::RuntimeError("injected failure committing " + url);
          }
          if (event_file) ++b->event_commits;
        }
        w->commit();
        b->cv.notify_all();
      }
    };
    auto w = std::make_unique<W>();
    w->b = this;
    w->url = url;
    w->w = inner->open_write(mem(url));
    return w;
  }
  std::optional<ember::storage::Stat> stat(const std::string& url) override { return inner->stat(mem(url)); }
  std::vector<ember::storage::Stat> list(const std::string& prefix) override { return inner->list(mem(prefix)); }
  bool remove(const std::string& url) override { return inner->remove(mem(url)); }

  // Copy every object under prefix (flaky://...) into dir, by its base name.
  std::vector<std::string> copy_to(const std::string& prefix, const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& s : inner->list(mem(prefix))) {
      if (s.is_dir) continue;
      std::string name = s.url.substr(s.url.rfind('/') + 1);
      auto r = inner->open_read(s.url, 0, ember::storage::Backend::kToEnd);
      std::string bytes;
      char buf[1 << 16];
      while (std::size_t n = r->read(buf, sizeof buf)) bytes.append(buf, n);
      write_file(dir / name, bytes);
      names.push_back(name);
    }
    return names;
  }

 private:
  static std::string mem(const std::string& url) { return "memory://" + url.substr(url.find("://") + 3); }
};

std::shared_ptr<ControlledBackend> controlled(FakeTrainer& t) {
  auto b = std::make_shared<ControlledBackend>();
  t.urls().add("flaky", b);
  return b;
}

}  // namespace

// Scalars, hparams (HParams plugin + hparams.yaml), images, histograms and text all read back
// through python3-protobuf with both CRCs of every record verified.
BOOST_AUTO_TEST_CASE(event_file_reads_back_with_what_was_logged) {
  TempDir dir;
  FakeTrainer t;
  {
    Tb tb(t, config(dir.path(), R"("flush_secs": 1000)"));
    tb.hparams(R"({"lr": 0.01, "net": {"layers": 2, "act": "relu"}, "amp": true, "sched": null, "sizes": [1, 2]})");
    std::vector<std::pair<std::int64_t, double>> logged;
    for (std::int64_t s = 0; s < 25; ++s) {
      tb.log(s, {{"train_loss", 1.0 / (s + 1)}, {"lr", 0.01 * s}});
      logged.emplace_back(s, 1.0 / (s + 1));
    }
    // Images: uint8 HWC RGB 2x5 (height x width), float CHW gray 1x2x5.
    std::vector<std::uint8_t> rgb(2 * 5 * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(i * 7);
    std::vector<std::int64_t> rgb_shape{2, 5, 3};
    DLTensor rgb_t = view_of(rgb, rgb_shape, kDLUInt);
    std::vector<float> gray{0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.f, 0.f, 2.f, -1.f, 0.5f};
    std::vector<std::int64_t> gray_shape{1, 2, 5};
    DLTensor gray_t = view_of(gray, gray_shape, kDLFloat);
    ember_image_t images[2] = {{&rgb_t, nullptr, 0, ember::cstr("an rgb one")}, {&gray_t, nullptr, 0, ember::cstr("")}};
    ember_log_context_t c = Tb::ctx(7);
    tb.plugin().check(tb.media().log_image(tb.plugin().self(), &c, ember::cstr("samples"), images, 2), "log_image");
    // A histogram of 1000 values and two NaNs.
    std::vector<double> values;
    for (int i = 0; i < 1000; ++i) values.push_back(std::sin(i) * 3);
    values.push_back(std::nan(""));
    values.push_back(std::nan(""));
    std::vector<std::int64_t> vshape{static_cast<std::int64_t>(values.size())};
    DLTensor v_t = view_of(values, vshape, kDLFloat);
    c = Tb::ctx(9);
    tb.plugin().check(tb.media().log_histogram(tb.plugin().self(), &c, ember::cstr("weights"), &v_t, 30), "log_histogram");
    // Text: one text, and a table.
    c = Tb::ctx(11);
    tb.plugin().check(tb.media().log_table(tb.plugin().self(), &c, ember::cstr("note"), ember::cstr(R"(["text"])"),
                                           ember::cstr(R"([["hello *tensorboard*"]])")),
                      "log_table");
    tb.plugin().check(tb.media().log_table(tb.plugin().self(), &c, ember::cstr("table"), ember::cstr(R"(["a","b"])"),
                                           ember::cstr(R"([[1,"x|y"],[2.5,null]])")),
                      "log_table");
    tb.save();
    tb.finalize();

    const fs::path run = dir.path() / "lightning_logs" / "version_0";
    BOOST_REQUIRE(fs::is_directory(run));
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(run)) files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    BOOST_REQUIRE_EQUAL(files.size(), 2u);
    BOOST_CHECK_EQUAL(files[1], "hparams.yaml");
    BOOST_CHECK_MESSAGE(is_event_file_name(files[0]), files[0]);
    BOOST_CHECK_EQUAL(read_file(run / "hparams.yaml"),
                      "lr: 0.01\nnet:\n  layers: 2\n  act: \"relu\"\namp: true\nsched: null\nsizes:\n  - 1\n  - 2\n");

    json::object ev = read_events(run);
    auto& f0 = ev["files"].as_array().at(0).as_object();
    BOOST_CHECK_EQUAL(f0["file_version"].as_string(), "brain.Event:2");

    // Scalars at their steps, as float32; hp_metric = -1 at step 0 (default_hp_metric).
    auto& loss = ev["scalars"].as_object()["train_loss"].as_array();
    BOOST_REQUIRE_EQUAL(loss.size(), logged.size());
    for (size_t i = 0; i < logged.size(); ++i) {
      BOOST_CHECK_EQUAL(loss[i].as_array()[0].as_int64(), logged[i].first);
      BOOST_CHECK_EQUAL(f32(num(loss[i].as_array()[1])), f32(logged[i].second));
    }
    auto& hp_metric = ev["scalars"].as_object()["hp_metric"].as_array();
    BOOST_REQUIRE_EQUAL(hp_metric.size(), 1u);
    BOOST_CHECK_EQUAL(hp_metric[0].as_array()[0].as_int64(), 0);
    BOOST_CHECK_EQUAL(num(hp_metric[0].as_array()[1]), -1.0);

    // HParams plugin: experiment, session start (flattened, sanitized values), session end.
    auto& hp = ev["hparams"].as_array();
    BOOST_REQUIRE_EQUAL(hp.size(), 3u);
    auto& exp = hp[0].as_object();
    BOOST_CHECK_EQUAL(exp["tag"].as_string(), "_hparams_/experiment");
    BOOST_CHECK_EQUAL(exp["hparams"].as_object()["lr"].as_string(), "DATA_TYPE_FLOAT64");
    BOOST_CHECK_EQUAL(exp["hparams"].as_object()["net/act"].as_string(), "DATA_TYPE_STRING");
    BOOST_CHECK_EQUAL(exp["hparams"].as_object()["amp"].as_string(), "DATA_TYPE_BOOL");
    BOOST_CHECK_EQUAL(json::serialize(exp["metrics"]), R"(["hp_metric"])");
    auto& start = hp[1].as_object();
    BOOST_CHECK_EQUAL(start["tag"].as_string(), "_hparams_/session_start_info");
    auto& sh = start["hparams"].as_object();
    BOOST_CHECK_EQUAL(num(sh["lr"]), 0.01);
    BOOST_CHECK_EQUAL(num(sh["net/layers"]), 2.0);
    BOOST_CHECK_EQUAL(sh["net/act"].as_string(), "relu");
    BOOST_CHECK_EQUAL(sh["amp"].as_bool(), true);
    BOOST_CHECK_EQUAL(sh["sched"].as_string(), "None");
    BOOST_CHECK_EQUAL(sh["sizes"].as_string(), "[1,2]");
    BOOST_CHECK_EQUAL(hp[2].as_object()["status"].as_string(), "STATUS_SUCCESS");

    // Images decode to the logged pixels.
    auto& imgs = ev["images"].as_array();
    BOOST_REQUIRE_EQUAL(imgs.size(), 2u);
    auto& a = imgs[0].as_object();
    BOOST_CHECK_EQUAL(a["tag"].as_string(), "samples/0");
    BOOST_CHECK_EQUAL(a["step"].as_int64(), 7);
    BOOST_CHECK_EQUAL(a["caption"].as_string(), "an rgb one");
    BOOST_CHECK_EQUAL(a["width"].as_int64(), 5);
    BOOST_CHECK_EQUAL(a["height"].as_int64(), 2);
    BOOST_CHECK_EQUAL(a["colorspace"].as_int64(), 3);
    BOOST_CHECK_EQUAL(a["png_width"].as_int64(), 5);
    BOOST_CHECK_EQUAL(a["png_height"].as_int64(), 2);
    BOOST_CHECK_EQUAL(a["channels"].as_int64(), 3);
    std::vector<std::int64_t> px;
    for (auto& p : a["pixels"].as_array()) px.push_back(p.as_int64());
    BOOST_CHECK_EQUAL_COLLECTIONS(px.begin(), px.end(), rgb.begin(), rgb.end());
    auto& g = imgs[1].as_object();
    BOOST_CHECK_EQUAL(g["tag"].as_string(), "samples/1");
    BOOST_CHECK_EQUAL(g["channels"].as_int64(), 1);
    px.clear();
    for (auto& p : g["pixels"].as_array()) px.push_back(p.as_int64());
    const std::vector<std::int64_t> want_gray{0, 64, 128, 191, 255, 255, 0, 255, 0, 128};
    BOOST_CHECK_EQUAL_COLLECTIONS(px.begin(), px.end(), want_gray.begin(), want_gray.end());

    // The histogram: counts sum to the finite element count; min, max, sum, sum of squares.
    auto& hs = ev["histograms"].as_array();
    BOOST_REQUIRE_EQUAL(hs.size(), 1u);
    auto& h = hs[0].as_object();
    BOOST_CHECK_EQUAL(h["tag"].as_string(), "weights");
    BOOST_CHECK_EQUAL(h["step"].as_int64(), 9);
    double total = 0, mn = 1e9, mx = -1e9, sum = 0, sq = 0;
    for (auto& b : h["bucket"].as_array()) total += num(b);
    for (int i = 0; i < 1000; ++i) {
      double v = values[static_cast<size_t>(i)];
      mn = std::min(mn, v), mx = std::max(mx, v), sum += v, sq += v * v;
    }
    BOOST_CHECK_EQUAL(total, 1000.0);
    BOOST_CHECK_EQUAL(num(h["num"]), 1000.0);
    BOOST_CHECK_EQUAL(h["bucket"].as_array().size(), 30u);
    BOOST_CHECK_EQUAL(h["bucket_limit"].as_array().size(), 30u);
    BOOST_CHECK_EQUAL(num(h["min"]), mn);
    BOOST_CHECK_EQUAL(num(h["max"]), mx);
    BOOST_CHECK_EQUAL(num(h["bucket_limit"].as_array().back()), mx);
    BOOST_CHECK_CLOSE(num(h["sum"]), sum, 1e-9);
    BOOST_CHECK_CLOSE(num(h["sum_squares"]), sq, 1e-9);

    // Text: the text plugin's string tensor.
    auto& texts = ev["texts"].as_array();
    BOOST_REQUIRE_EQUAL(texts.size(), 2u);
    BOOST_CHECK_EQUAL(texts[0].as_object()["tag"].as_string(), "note/text_summary");
    BOOST_CHECK_EQUAL(texts[0].as_object()["dtype"].as_int64(), 7);
    BOOST_CHECK_EQUAL(json::serialize(texts[0].as_object()["text"]), R"(["hello *tensorboard*"])");
    BOOST_CHECK_EQUAL(texts[1].as_object()["text"].as_array()[0].as_string(),
                      "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2.5 | null |\n");
  }
}

// Lightning's layout: the next free version_N, a given version (integer or name), sub_dir, name.
BOOST_AUTO_TEST_CASE(layout_is_lightnings_next_version_given_version_and_sub_dir) {
  TempDir dir;
  fs::create_directories(dir.path() / "lightning_logs" / "version_0");
  fs::create_directories(dir.path() / "lightning_logs" / "version_3");
  fs::create_directories(dir.path() / "lightning_logs" / "version_x");
  auto run = [&](const std::string& extra) {
    FakeTrainer t;
    Tb tb(t, config(dir.path(), extra));
    tb.log(1, {{"m", 1}});
    tb.finalize();
  };
  run("");
  BOOST_CHECK_EQUAL(read_events(dir.path() / "lightning_logs" / "version_4")["scalar_steps"].as_array().size(), 1u);
  run(R"("version": 7, "sub_dir": "train")");
  BOOST_CHECK(fs::is_directory(dir.path() / "lightning_logs" / "version_7" / "train"));
  BOOST_CHECK_EQUAL(read_events(dir.path() / "lightning_logs" / "version_7" / "train")["scalars"].as_object().size(), 1u);
  run(R"("name": "exp", "version": "best", "prefix": "p")");
  auto ev = read_events(dir.path() / "exp" / "best");
  BOOST_CHECK(ev["scalars"].as_object().contains("p-m"));
  // default_root_dir when save_dir is unset.
  FakeTrainer t;
  t.root_dir = (dir.path() / "root").string();
  {
    Tb tb(t, R"({"name": ""})");
    tb.log(3, {{"m", 2}});
    tb.finalize();
  }
  BOOST_CHECK_EQUAL(read_events(dir.path() / "root" / "version_0")["scalar_steps"].as_array().size(), 1u);
}

// Without default_hp_metric, log_hyperparams writes hparams.yaml only (as Lightning does).
BOOST_AUTO_TEST_CASE(without_default_hp_metric_hparams_go_to_yaml_only) {
  TempDir dir;
  FakeTrainer t;
  Tb tb(t, config(dir.path(), R"("default_hp_metric": false)"));
  tb.hparams(R"({"lr": 1e-05})");
  tb.log(0, {{"a", 1}});
  tb.finalize();
  auto run = dir.path() / "lightning_logs" / "version_0";
  BOOST_CHECK_EQUAL(read_file(run / "hparams.yaml"), "lr: 1.0e-05\n");
  auto ev = read_events(run);
  BOOST_CHECK(ev["hparams"].as_array().empty());
  BOOST_CHECK(!ev["scalars"].as_object().contains("hp_metric"));
}

// log_graph cannot be honoured (no GraphDef from libtorch): a warning, no graph, no failure.
BOOST_AUTO_TEST_CASE(log_graph_warns_that_it_is_not_supported) {
  TempDir dir;
  FakeTrainer t;
  Tb tb(t, config(dir.path(), R"("log_graph": true)"));
  BOOST_CHECK_NE(t.joined().find("log_graph is not supported"), std::string::npos);
  tb.finalize();
}

// On an object store every flush publishes a new whole event file; a failed publish is retried
// under the same name at the next flush, reported, and the run continues: read back in name
// order, every step is there once, in order.
BOOST_AUTO_TEST_CASE(object_store_rotates_event_files_without_loss_or_duplicates) {
  TempDir dir;
  FakeTrainer t;
  auto store = controlled(t);
  store->fail_next_event_commits = 1;
  {
    Tb tb(t, R"({"save_dir": "flaky://bucket/runs", "flush_secs": 1000, "max_queue": 3})");
    tb.hparams(R"({"lr": 0.1})");
    for (std::int64_t s = 0; s < 60; ++s) {
      tb.log(s, {{"loss", static_cast<double>(s)}});
      if (s % 10 == 9) {
        tb.save();  // a flush: publish what is there as one file; wait for the attempt
        const int want = static_cast<int>(s / 10) + 1;
        std::unique_lock<std::mutex> lock(store->mu);
        store->cv.wait(lock, [&] { return store->event_attempts >= want; });
      }
    }
    tb.finalize();
  }
  BOOST_CHECK_NE(t.joined().find("injected failure committing flaky://bucket/runs/lightning_logs/version_0/events.out.tfevents."),
                 std::string::npos);
  auto names = store->copy_to("flaky://bucket/runs/lightning_logs/version_0/", dir.path());
  std::size_t event_files = 0;
  for (auto& n : names) event_files += n.find("tfevents") != std::string::npos;
  BOOST_CHECK_GE(event_files, 2u);
  BOOST_CHECK_EQUAL(static_cast<int>(event_files), store->event_commits);
  BOOST_CHECK(std::find(names.begin(), names.end(), "hparams.yaml") != names.end());
  auto ev = read_events(dir.path());
  for (auto& f : ev["files"].as_array())
    BOOST_CHECK_EQUAL(f.as_object().at("file_version").as_string(), "brain.Event:2");
  auto& loss = ev["scalars"].as_object()["loss"].as_array();
  BOOST_REQUIRE_EQUAL(loss.size(), 60u);
  for (std::int64_t s = 0; s < 60; ++s) {
    BOOST_CHECK_EQUAL(loss[static_cast<size_t>(s)].as_array()[0].as_int64(), s);
    BOOST_CHECK_EQUAL(num(loss[static_cast<size_t>(s)].as_array()[1]), static_cast<double>(s));
  }
}

// A publish that never succeeds: finalize fails naming the event file's URL.
BOOST_AUTO_TEST_CASE(finalize_reports_a_failed_publish_naming_the_url) {
  FakeTrainer t;
  auto store = controlled(t);
  store->fail_all = true;
  Tb tb(t, R"({"save_dir": "flaky://bucket/runs", "flush_secs": 1000})");
  tb.log(1, {{"loss", 1}});
  BOOST_CHECK_NE(tb.finalize_status(), EMBER_OK);
  const std::string err = tb.plugin().last_error();
  BOOST_CHECK_MESSAGE(err.find("tensorboard: cannot write flaky://bucket/runs/lightning_logs/version_0/events.out.tfevents.") !=
                          std::string::npos,
                      err);
}

// A local event file that cannot be created (a file where a directory must go): the run goes
// on, finalize fails naming the file.
BOOST_AUTO_TEST_CASE(finalize_reports_a_local_file_that_cannot_be_written) {
  TempDir dir;
  write_file(dir.path() / "blocker", "not a directory");
  FakeTrainer t;
  Tb tb(t, config(dir.path() / "blocker", R"("version": 0)"));
  tb.log(1, {{"loss", 1}});
  tb.log(2, {{"loss", 2}});
  BOOST_CHECK_NE(tb.finalize_status(), EMBER_OK);
  const std::string err = tb.plugin().last_error();
  const std::string url = (dir.path() / "blocker" / "lightning_logs" / "version_0" / "events.out.tfevents.").string();
  BOOST_CHECK_MESSAGE(err.find("tensorboard: cannot write " + url) != std::string::npos, err);
}

// The training thread never waits for storage: with the writer stuck in a commit, logging many
// more events than max_queue (and save) returns; once storage answers, all of them are written.
BOOST_AUTO_TEST_CASE(logging_does_not_wait_for_a_stuck_store) {
  TempDir dir;
  FakeTrainer t;
  auto store = controlled(t);
  {
    Tb tb(t, R"({"save_dir": "flaky://bucket/runs", "flush_secs": 1000, "max_queue": 2})");
    store->hold = true;
    tb.log(0, {{"loss", 0}});
    tb.save();
    {
      std::unique_lock<std::mutex> lock(store->mu);
      store->cv.wait(lock, [&] { return store->waiting > 0; });  // the writer is inside a commit
    }
    for (std::int64_t s = 1; s < 500; ++s) tb.log(s, {{"loss", static_cast<double>(s)}});
    tb.save();
    {
      std::lock_guard<std::mutex> lock(store->mu);
      BOOST_CHECK_EQUAL(store->event_commits, 0);  // still stuck, and we got here
      store->hold = false;
    }
    store->cv.notify_all();
    tb.finalize();
  }
  store->copy_to("flaky://bucket/runs/lightning_logs/version_0/", dir.path());
  auto ev = read_events(dir.path());
  BOOST_CHECK_EQUAL(ev["scalars"].as_object()["loss"].as_array().size(), 500u);
}

// `ember fit` with the tensorboard logger (and csv_logger beside it) on a tiny run: the event
// files hold every scalar csv_logger saw, at the same steps (as float32), the hparams, and
// watch's histograms with counts summing to the parameter sizes.
BOOST_AUTO_TEST_CASE(ember_fit_writes_event_files_tensorboard_reads) {
  TempDir dir;
  const std::string data = "/usr/share/datasets/fashion-mnist/";
  BOOST_REQUIRE_MESSAGE(fs::exists(data + "train-images-idx3-ubyte.gz"), "install dataset-fashion-mnist (scripts/bootstrap)");
  json::object cfg{
      {"seed_everything", 3},
      {"trainer",
       json::object{{"max_epochs", 2}, {"limit_train_batches", 5}, {"limit_val_batches", 2}, {"log_every_n_steps", 1},
                    {"default_root_dir", dir.path().string()}, {"enable_progress_bar", false},
                    {"enable_checkpointing", false},
                    {"watch", json::object{{"log", "parameters"}, {"log_freq", 5}}},
                    {"logger", json::array{json::object{{"plugin", "tensorboard"}, {"config", json::object{{"name", "tb"}, {"flush_secs", 1}}}},
                                           json::object{{"plugin", "csv_logger"}, {"config", json::object{{"name", "csv"}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{data + "train-images-idx3-ubyte.gz", data + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 32}}}};
  const fs::path path = dir.path() / "tb.json";
  write_file(path, json::serialize(cfg));
  auto r = run_process({ember::test::require_env("EMBER_EXE"), "fit", "--config", path.string(), "--plugin-dir",
                        ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());

  auto ev = read_events(dir.path() / "tb" / "version_0");
  BOOST_CHECK(fs::exists(dir.path() / "tb" / "version_0" / "hparams.yaml"));
  check_scalars_match_csv(ev, read_file(dir.path() / "csv" / "version_0" / "metrics.csv"));
  BOOST_CHECK_EQUAL(ev["hparams"].as_array().size(), 3u);
  auto& hs = ev["histograms"].as_array();
  BOOST_REQUIRE(!hs.empty());
  for (auto& h : hs) {
    double total = 0;
    for (auto& b : h.as_object().at("bucket").as_array()) total += num(b);
    BOOST_CHECK_EQUAL(total, num(h.as_object().at("num")));
    BOOST_CHECK_GT(total, 0);
  }
}
