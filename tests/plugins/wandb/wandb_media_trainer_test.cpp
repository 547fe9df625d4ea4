// Media from the trainer's side: Module::log_image / log_table / log_text and watch reach every
// logger offering ember.media/1 (recorded in-process, and the real wandb plugin against the
// W&B-protocol test server), loggers without it are skipped, bad images and failing loggers give
// errors naming what failed.
#define BOOST_TEST_MODULE wandb_media_trainer
#include <boost/test/unit_test.hpp>

#include <ember/run_config.hpp>

#include <functional>
#include <map>
#include <set>

#include "plugin_fixture.hpp"
#include "tiny.hpp"
#include "wandb_server.hpp"

namespace json = boost::json;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

// An in-process ember.media/1 table that records what it is sent.
struct MediaRecorder {
  struct Call {
    std::string what, key;
    std::int64_t step = 0;
    std::int32_t stage = 0;
    std::vector<std::vector<std::int64_t>> shapes;  // images
    std::vector<std::string> captions;
    std::string columns, rows;  // tables
    std::int64_t numel = 0;     // histograms
    std::int32_t bins = 0;
  };
  std::vector<Call> calls;
  ember_status_t fail = EMBER_OK;
  std::string error;

  static MediaRecorder& of(void* s) { return *static_cast<MediaRecorder*>(s); }
  static Call make(const char* what, const ember_log_context_t* c, ember_str_t key) {
    Call call;
    call.what = what, call.key = std::string(ember::sv(key)), call.step = c->step, call.stage = c->stage;
    return call;
  }
  static ember_status_t image(void* s, const ember_log_context_t* c, ember_str_t key, const ember_image_t* im, size_t n) {
    Call call = make("image", c, key);
    for (size_t i = 0; i < n; ++i) {
      call.shapes.emplace_back(im[i].tensor->shape, im[i].tensor->shape + im[i].tensor->ndim);
      call.captions.emplace_back(ember::sv(im[i].caption));
    }
    of(s).calls.push_back(call);
    return of(s).fail;
  }
  static ember_status_t table(void* s, const ember_log_context_t* c, ember_str_t key, ember_str_t cols, ember_str_t rows) {
    Call call = make("table", c, key);
    call.columns = std::string(ember::sv(cols)), call.rows = std::string(ember::sv(rows));
    of(s).calls.push_back(call);
    return of(s).fail;
  }
  static ember_status_t histogram(void* s, const ember_log_context_t* c, ember_str_t key, const DLTensor* v, int32_t bins) {
    Call call = make("histogram", c, key);
    call.numel = ember::media::numel(*v), call.bins = bins;
    of(s).calls.push_back(call);
    return of(s).fail;
  }
  static ember_str_t last_error(void* s) { return ember::cstr(of(s).error); }
  ember_media_v1_t table_v1{sizeof(ember_media_v1_t), &image, &table, &histogram};
  ember::MediaSlot slot(const std::string& id = "recorder") { return {id, table_v1, this, &last_error}; }

  std::vector<Call> only(const std::string& what) const {
    std::vector<Call> out;
    for (auto& c : calls)
      if (c.what == what) out.push_back(c);
    return out;
  }
};

// A metrics-only logger (no ember.media/1): must not be bothered by media.
struct MetricsOnly {
  int rows = 0;
  static ember_status_t log_metrics(void* s, const ember_log_context_t*, const ember_metric_t*, size_t) {
    ++static_cast<MetricsOnly*>(s)->rows;
    return EMBER_OK;
  }
  static ember_str_t last_error(void*) { return {"", 0}; }
  ember_logger_v1_t table{sizeof(ember_logger_v1_t), nullptr, &log_metrics, nullptr, nullptr, nullptr};
  ember::LoggerSlot slot() { return {"metrics_only", &table, this, &last_error}; }
};

// The tiny model, logging media the way a LightningModule would with WandbLogger.
class MediaModel : public tiny::Model {
 public:
  std::function<void(MediaModel&, std::int64_t)> on_train_batch;  // called in training_step
  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t i) override {
    if (on_train_batch) on_train_batch(*this, i);
    return tiny::Model::training_step(b, i);
  }
  void validation_step(const ember::Batch& b, std::int64_t i) override {
    tiny::Model::validation_step(b, i);
    if (i != 0) return;
    log_image("val/sample", {torch::rand({1, 4, 4}), torch::randint(0, 255, {8, 6, 3}).to(torch::kUInt8)}, {"gray", "rgb"});
    auto pred = forward(b.x).argmax(1);
    ember::TableRows rows;
    for (std::int64_t k = 0; k < 3; ++k) rows.push_back({k, pred[k].item<std::int64_t>(), b.y[k].item<std::int64_t>()});
    log_table("val/preds", {"index", "pred", "label"}, rows);
    log_text("val/notes", {"hello", "world"});
  }
};

struct Fixture {
  ember::data::Loader train{tiny::make_data(24, 1), 8, true, 5};  // 3 batches
  ember::data::Loader val{tiny::make_data(16, 2), 8, false, 5};
  ember::TrainerOptions options(std::int64_t epochs) {
    ember::TrainerOptions o;
    o.max_epochs = epochs;
    o.num_sanity_val_steps = 0;
    o.log_every_n_steps = 1;
    o.seed = 7;
    return o;
  }
};

std::int64_t param_numel(MediaModel& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters())
    if (n == name) return p.numel();
  return -1;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(module_media_reach_media_loggers_and_skip_the_others, Fixture) {
  MediaModel m;
  ember::Trainer t(options(2), m);
  MediaRecorder rec;
  MetricsOnly metrics;
  t.add_logger(metrics.slot());
  t.add_media(rec.slot());
  t.set_data(&train, &val, nullptr, nullptr);
  t.fit();
  BOOST_TEST(metrics.rows > 0);
  auto images = rec.only("image");
  BOOST_REQUIRE_EQUAL(images.size(), 2u);  // one validation per epoch
  BOOST_TEST(images[0].key == "val/sample");
  BOOST_TEST(images[0].step == 3);  // the global step when logged: after the first epoch's 3 steps
  BOOST_TEST(images[1].step == 6);
  BOOST_TEST(images[0].stage == EMBER_STAGE_VALIDATE);
  BOOST_REQUIRE_EQUAL(images[0].shapes.size(), 2u);
  BOOST_TEST((images[0].shapes[0] == std::vector<std::int64_t>{1, 4, 4}));
  BOOST_TEST((images[0].shapes[1] == std::vector<std::int64_t>{8, 6, 3}));
  BOOST_TEST(images[0].captions[1] == "rgb");
  auto tables = rec.only("table");
  BOOST_REQUIRE_EQUAL(tables.size(), 4u);
  BOOST_TEST(tables[0].key == "val/preds");
  BOOST_TEST(tables[0].columns == R"(["index","pred","label"])");
  BOOST_TEST(json::parse(tables[0].rows).as_array().size() == 3u);
  BOOST_TEST(tables[1].key == "val/notes");  // log_text: one "text" column, a row per string
  BOOST_TEST(tables[1].columns == R"(["text"])");
  BOOST_TEST(tables[1].rows == R"([["hello"],["world"]])");
  BOOST_TEST(rec.only("histogram").empty());  // nothing watched
}

BOOST_FIXTURE_TEST_CASE(bad_image_from_a_module_fails_naming_key_and_expected_shapes, Fixture) {
  for (bool with_logger : {false, true}) {
    for (int which = 0; which < 3; ++which) {
      MediaModel m;
      m.on_train_batch = [which](MediaModel& self, std::int64_t) {
        if (which == 0) self.log_image("bad", torch::zeros({2, 3, 4, 5}));
        if (which == 1) self.log_image("bad", torch::zeros({4, 4}, torch::kInt64));
        if (which == 2) self.log_image("bad", {torch::zeros({4, 4}), torch::zeros({4, 4})}, {"only one caption"});
      };
      ember::Trainer t(options(1), m);
      MediaRecorder rec;
      if (with_logger) t.add_media(rec.slot());
      t.set_data(&train, nullptr, nullptr, nullptr);
      try {
        t.fit();
        BOOST_FAIL("expected std::invalid_argument");
      } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        BOOST_TEST_CONTEXT(what) {
          BOOST_TEST(what.find("log_image 'bad': ") == 0u);
          if (which == 0) BOOST_TEST(what.find("image 0 has shape [2, 3, 4, 5] (4 dimensions); expected HW, CHW or HWC") != std::string::npos);
          if (which == 1) BOOST_TEST(what.find("image 0 has dtype int64; expected") != std::string::npos);
          if (which == 2) BOOST_TEST(what.find("1 captions for 2 images") != std::string::npos);
        }
      }
      BOOST_TEST(rec.calls.empty());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(failing_media_logger_stops_the_run_naming_the_plugin, Fixture) {
  MediaModel m;
  ember::Trainer t(options(1), m);
  MediaRecorder rec;
  rec.fail = EMBER_E_IO;
  rec.error = "disk full";
  t.add_media(rec.slot("picky_logger"));
  t.set_data(&train, &val, nullptr, nullptr);
  try {
    t.fit();
    BOOST_FAIL("expected PluginFailure");
  } catch (const ember::PluginFailure& e) {
    BOOST_TEST(std::string(e.what()) == "picky_logger: logger log_image 'val/sample' failed: disk full");
  }
}

BOOST_FIXTURE_TEST_CASE(watch_logs_every_parameter_every_log_freq_steps_and_on_no_other, Fixture) {
  MediaModel m;
  ember::Trainer t(options(4), m);  // 12 optimizer steps
  MediaRecorder rec;
  t.add_media(rec.slot());
  t.set_data(&train, nullptr, nullptr, nullptr);
  m.watch("all", 5);
  t.fit();
  std::map<std::int64_t, std::set<std::string>> by_step;
  for (auto& c : rec.only("histogram")) {
    by_step[c.step].insert(c.key);
    BOOST_TEST(c.bins == 64);
    const std::string name = c.key.substr(c.key.find('/') + 1);
    BOOST_TEST(c.numel == param_numel(m, name), c.key);
  }
  BOOST_REQUIRE_EQUAL(by_step.size(), 2u);  // steps 5 and 10 of 12
  const std::set<std::string> all{"gradients/0.weight",  "gradients/0.bias",  "gradients/2.weight",  "gradients/2.bias",
                                  "parameters/0.weight", "parameters/0.bias", "parameters/2.weight", "parameters/2.bias"};
  BOOST_TEST((by_step.at(5) == all));
  BOOST_TEST((by_step.at(10) == all));

  // The config's trainer.watch (only "parameters" here); a module's unwatch() wins over it.
  auto cfg = json::parse(R"({"watch": {"log": "parameters", "log_freq": 4}})").as_object();
  auto o = ember::TrainerOptions::from_json(cfg, json::value());
  BOOST_REQUIRE(o.watch.has_value());
  o.max_epochs = 2, o.num_sanity_val_steps = 0, o.log_every_n_steps = 1;
  // Fit with these options; before_fit may call the module's watch()/unwatch().
  auto fit_recorded = [&](const std::function<void(MediaModel&)>& before_fit) {
    MediaModel model;
    ember::Trainer trainer(o, model);
    MediaRecorder recorder;
    trainer.add_media(recorder.slot());
    trainer.set_data(&train, nullptr, nullptr, nullptr);
    before_fit(model);
    trainer.fit();
    return recorder.calls;
  };
  std::set<std::int64_t> steps;
  for (auto& c : fit_recorded([](MediaModel&) {})) {
    steps.insert(c.step);
    BOOST_TEST(c.key.rfind("parameters/", 0) == 0u, c.key);
  }
  BOOST_TEST((steps == std::set<std::int64_t>{4}));
  BOOST_TEST(fit_recorded([](MediaModel& model) { model.unwatch(); }).empty());
}

BOOST_AUTO_TEST_CASE(run_config_accepts_trainer_watch_and_fills_its_defaults) {
  TempDir dir("watch-config");
  const auto path = dir.path() / "run.json";
  ember::test::write_file(path, R"({"trainer": {"watch": {"log": "all"}}})");
  auto cfg = ember::load_run_config(path.string(), {});
  const auto& w = cfg.at("trainer").at("watch").as_object();
  BOOST_TEST(w.at("log").as_string() == "all");
  BOOST_TEST(w.at("log_freq").to_number<int>() == 100);
  ember::test::write_file(path, R"({"trainer": {"watch": {"log": "weights"}}})");
  try {
    ember::load_run_config(path.string(), {});
    BOOST_FAIL("expected ConfigError");
  } catch (const ember::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("trainer.watch.log: expected one of \"gradients\", \"parameters\", \"all\"") !=
                   std::string::npos,
               e.what());
  }
  ember::test::write_file(path, "{}");
  auto none = ember::load_run_config(path.string(), {});
  BOOST_TEST(none.at("trainer").at("watch").is_null());
}

// The whole path: a fit with the wandb plugin against the test server.
BOOST_FIXTURE_TEST_CASE(watch_and_media_from_fit_reach_wandb_history, Fixture) {
  ::setenv("WANDB_API_KEY", kKey.c_str(), 1);
  for (const char* v : {"WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_BASE_URL", "RANK"}) ::unsetenv(v);
  Server srv;
  TempDir spool("wandb-spool");
  {
    MediaModel m;
    ember::Trainer t(options(2), m);  // 6 steps
    auto lib = ember::test::library_from_env("EMBER_WANDB_SO");
    ember::PluginInstance wandb(lib,
                                json::parse(R"({"project": "proj", "id": "fitmedia", "base_url": ")" + srv.url() +
                                            R"(", "spool_dir": ")" + spool.path().string() + R"(", "stats_interval_s": 0})"),
                                t, "test");
    t.add_plugin(wandb);
    t.set_data(&train, &val, nullptr, nullptr);
    m.watch("gradients", 2);
    t.fit();
  }
  json::object run = srv.run("fitmedia");
  BOOST_REQUIRE(!run.empty());
  BOOST_TEST(run.at("complete").as_bool());
  std::set<std::int64_t> grad_steps;
  std::size_t images = 0, tables = 0;
  for (auto& r : run.at("history").as_array()) {
    const auto& row = r.as_object();
    std::int64_t step = row.at("trainer/global_step").to_number<std::int64_t>();
    if (row.contains("gradients/0.weight")) {
      grad_steps.insert(step);
      for (const char* k : {"gradients/0.bias", "gradients/2.weight", "gradients/2.bias"}) BOOST_TEST(row.contains(k), k);
      std::int64_t sum = 0;
      for (auto& c : row.at("gradients/0.weight").at("values").as_array()) sum += c.to_number<std::int64_t>();
      BOOST_TEST(sum == 32);  // Linear(4, 8).weight
    }
    for (auto& kv : row) BOOST_TEST(std::string(kv.key()).rfind("parameters/", 0) != 0u, kv.key());
    if (row.contains("val/sample")) {
      ++images;
      const auto& v = row.at("val/sample").as_object();
      BOOST_TEST(v.at("_type").as_string() == "images/separated");
      for (auto& f : v.at("filenames").as_array()) BOOST_TEST(run.at("file_sha256").as_object().contains(f.as_string()));
    }
    if (row.contains("val/preds")) {
      ++tables;
      BOOST_TEST(row.at("val/preds").at("_type").as_string() == "table-file");
    }
  }
  BOOST_TEST((grad_steps == std::set<std::int64_t>{2, 4, 6}));
  BOOST_TEST(images == 2u);
  BOOST_TEST(tables == 2u);
}
