// The trainer in-process: Lightning's hook order (golden), self.log semantics, exact resume,
// refusing a checkpoint of another model, failures reaching on_exception.
#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include "tiny.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/ember-trainer-XXXXXX";
  BOOST_REQUIRE(mkdtemp(tmpl));
  return tmpl;
}

struct Fixture {
  ember::data::Loader train{tiny::make_data(24, 1), 8, true, 5};
  ember::data::Loader val{tiny::make_data(16, 2), 8, false, 5};
  ember::data::Loader test{tiny::make_data(16, 3), 8, false, 5};
};

ember::TrainerOptions small_options(std::int64_t epochs) {
  ember::TrainerOptions o;
  o.max_epochs = epochs;
  o.num_sanity_val_steps = 1;
  o.log_every_n_steps = 1;
  o.seed = 42;
  return o;
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (auto& l : v) out += l + "\n";
  return out;
}

// A logger table that records every record it is sent, with its context.
struct RecordingLogger {
  std::vector<std::string> lines;
  static ember_status_t log_metrics(void* self, const ember_log_context_t* c, const ember_metric_t* m, size_t n) {
    auto* r = static_cast<RecordingLogger*>(self);
    for (size_t i = 0; i < n; ++i) {
      std::ostringstream s;
      s << "stage=" << c->stage << " step=" << c->step << " epoch=" << c->epoch << " "
        << std::string(m[i].name.data, m[i].name.size) << "=" << m[i].value;
      r->lines.push_back(s.str());
    }
    return EMBER_OK;
  }
  static ember_str_t last_error(void*) { return {"", 0}; }
  ember_logger_v1_t table{sizeof(ember_logger_v1_t), nullptr, &log_metrics, nullptr, nullptr, nullptr};
  ember::LoggerSlot slot() { return {"recording_logger", &table, this, &last_error}; }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(fit_and_resume_call_hooks_in_lightning_order, Fixture) {
  const std::string dir = temp_dir();
  const std::string ckpt = dir + "/epoch0.ckpt";
  std::vector<std::string> trace;
  {
    tiny::Model m;
    m.trace = &trace;
    ember::Trainer t(small_options(1), m);
    tiny::Recorder cb(trace);
    t.add_callback(cb, "recorder");
    t.set_data(&train, &val, nullptr, nullptr);
    t.options().limit_val_batches = ember::TrainerOptions::Limit::count(1);
    t.fit();
    trace.push_back("-- save_checkpoint");
    t.save_checkpoint(ckpt, false);
  }
  trace.push_back("-- resume");
  {
    tiny::Model m;
    m.trace = &trace;
    ember::Trainer t(small_options(2), m);
    tiny::Recorder cb(trace);
    t.add_callback(cb, "recorder");
    t.set_data(&train, &val, nullptr, nullptr);
    t.options().limit_val_batches = ember::TrainerOptions::Limit::count(1);
    t.options().limit_train_batches = ember::TrainerOptions::Limit::count(2);
    t.fit(ckpt);
  }
  const std::string golden_path = std::string(std::getenv("EMBER_SOURCE_ROOT")) + "/tests/trainer/golden/fit_resume_hooks.txt";
  const std::string got = join_lines(trace);
  if (std::getenv("EMBER_UPDATE_GOLDEN")) std::ofstream(golden_path) << got;
  std::ifstream in(golden_path);
  BOOST_REQUIRE_MESSAGE(in, "missing golden file " << golden_path << "; run with EMBER_UPDATE_GOLDEN=1");
  std::stringstream want;
  want << in.rdbuf();
  BOOST_TEST(got == want.str(), "hook sequence differs from " << golden_path);
}

BOOST_FIXTURE_TEST_CASE(resume_continues_with_identical_losses, Fixture) {
  const std::string dir = temp_dir();
  tiny::Model straight;
  {
    ember::Trainer t(small_options(4), straight);
    t.set_data(&train, &val, nullptr, nullptr);
    t.fit();
  }
  tiny::Model first, second;
  {
    // Saved from on_train_epoch_end, where model_checkpoint saves, in the middle of a longer fit.
    struct SaveAtEpoch1 : ember::Callback {
      ember::Trainer* t = nullptr;
      std::string url;
      void on_train_epoch_end(const ember::HookArgs& a) override {
        if (a.epoch == 1) t->save_checkpoint(url, false);
      }
    } saver;
    ember::Trainer t(small_options(2), first);
    saver.t = &t;
    saver.url = dir + "/mid.ckpt";
    t.add_callback(saver, "saver");
    t.set_data(&train, &val, nullptr, nullptr);
    t.fit();
  }
  torch::manual_seed(999);  // a resumed run must not depend on the RNG state it starts with
  {
    ember::Trainer t(small_options(4), second);
    t.set_data(&train, &val, nullptr, nullptr);
    t.fit(dir + "/mid.ckpt");
    BOOST_TEST(t.global_step() == 12);
  }
  BOOST_REQUIRE_EQUAL(straight.losses.size(), 12u);
  BOOST_REQUIRE_EQUAL(first.losses.size() + second.losses.size(), 12u);
  for (std::size_t i = 0; i < 12; ++i) {
    double resumed = i < 6 ? first.losses[i] : second.losses[i - 6];
    BOOST_TEST(std::round(straight.losses[i] * 1e5) == std::round(resumed * 1e5), "step " << i << ": " << straight.losses[i] << " vs " << resumed);
  }
}

BOOST_FIXTURE_TEST_CASE(refuses_checkpoint_from_another_model, Fixture) {
  const std::string dir = temp_dir();
  tiny::Model m;
  ember::Trainer t(small_options(1), m);
  t.set_data(&train, nullptr, nullptr, nullptr);
  t.options().num_sanity_val_steps = 0;
  t.fit();
  t.save_checkpoint(dir + "/a.ckpt", true);

  struct Other : tiny::Model {
    Other() { net_ = torch::nn::Sequential(torch::nn::Linear(4, 5), torch::nn::ReLU(), torch::nn::Linear(5, 3), torch::nn::Linear(3, 3)); }
  } other;
  ember::Trainer t2(small_options(1), other);
  try {
    t2.restore(dir + "/a.ckpt", true);
    BOOST_FAIL("a checkpoint of another model was accepted");
  } catch (const ember::RuntimeError& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("does not fit this model") != std::string::npos, msg);
    BOOST_TEST(msg.find("missing keys: 3.weight 3.bias") != std::string::npos, msg);
    BOOST_TEST(msg.find("0.weight (checkpoint [8, 4], model [5, 4])") != std::string::npos, msg);
  }
}

BOOST_FIXTURE_TEST_CASE(log_defaults_follow_lightning, Fixture) {
  tiny::Model m;
  RecordingLogger rec;
  ember::Trainer t(small_options(1), m);
  t.add_logger(rec.slot());
  t.set_data(&train, &val, nullptr, nullptr);
  t.options().num_sanity_val_steps = 0;
  t.fit();
  // training_step: on_step (every step, log_every_n_steps=1), not on_epoch.
  int train_records = 0, val_records = 0;
  for (auto& l : rec.lines) {
    if (l.find("train_loss=") != std::string::npos) ++train_records;
    if (l.find("val_loss=") != std::string::npos) {
      ++val_records;
      BOOST_TEST(l.find("stage=2 step=3 epoch=0") == 0, l);
    }
    BOOST_TEST(l.find("_step=") == std::string::npos, "no _step suffix unless both on: " << l);
  }
  BOOST_TEST(train_records == 3);
  BOOST_TEST(val_records == 1);  // validation: once per epoch, reduced
  BOOST_TEST(t.metrics().get("val_loss").has_value());
  BOOST_TEST(!t.metrics().get("nope").has_value());
}

BOOST_AUTO_TEST_CASE(epoch_mean_is_weighted_by_batch_size) {
  ember::MetricStore s;
  ember::LogOptions both;
  both.on_step = true;
  both.on_epoch = true;
  s.set_context(EMBER_STAGE_VALIDATE, false, 10);
  s.log("m", 1.0, both);
  s.set_context(EMBER_STAGE_VALIDATE, false, 30);
  s.log("m", 3.0, both);
  std::vector<ember::MetricValue> step, epoch;
  s.collect_step(step);
  BOOST_REQUIRE_EQUAL(step.size(), 1u);
  BOOST_TEST(step[0].name == "m_step");
  s.reduce_epoch(EMBER_STAGE_VALIDATE, &epoch);
  BOOST_REQUIRE_EQUAL(epoch.size(), 1u);
  BOOST_TEST(epoch[0].name == "m_epoch");
  BOOST_TEST(epoch[0].value == 2.5);  // (1*10 + 3*30) / 40
  BOOST_TEST(*s.get("m_epoch") == 2.5);
  BOOST_TEST(*s.get("m_step") == 3.0);

  ember::LogOptions mx;
  mx.reduce = ember::Reduce::max;
  s.log("peak", 2.0, mx);
  s.log("peak", 7.0, mx);
  s.log("peak", 5.0, mx);
  ember::LogOptions sum;
  sum.reduce = ember::Reduce::sum;
  s.log("count", 1.0, sum);
  s.log("count", 1.0, sum);
  epoch.clear();
  s.reduce_epoch(EMBER_STAGE_VALIDATE, &epoch);
  BOOST_TEST(*s.get("peak") == 7.0);
  BOOST_TEST(*s.get("count") == 2.0);
}

BOOST_FIXTURE_TEST_CASE(callback_failure_runs_on_exception_and_teardown, Fixture) {
  struct Boom : ember::Callback {
    void on_train_epoch_start(const ember::HookArgs&) override { throw std::runtime_error("boom"); }
  } boom;
  std::vector<std::string> trace;
  tiny::Model m;
  m.trace = &trace;
  ember::Trainer t(small_options(1), m);
  t.add_callback(boom, "boom_cb");
  t.set_data(&train, nullptr, nullptr, nullptr);
  try {
    t.fit();
    BOOST_FAIL("fit did not fail");
  } catch (const ember::HookError& e) {
    BOOST_TEST(e.owner() == "boom_cb");
    BOOST_TEST(std::string(ember::hook_name(e.hook())) == "on_train_epoch_start");
    BOOST_TEST(e.message() == "boom");
  }
  auto has = [&](const std::string& s) { return std::find(trace.begin(), trace.end(), s) != trace.end(); };
  BOOST_TEST(has("module on_exception epoch=0"));
  BOOST_TEST(has("module teardown epoch=0"));
}

BOOST_FIXTURE_TEST_CASE(nan_loss_trains_on_but_is_visible_to_callbacks, Fixture) {
  tiny::Model m;
  m.nan_after = 1;
  ember::Trainer t(small_options(1), m);
  t.set_data(&train, nullptr, nullptr, nullptr);
  t.fit();
  BOOST_TEST(std::isnan(*t.metrics().get("train_loss")));
}

BOOST_FIXTURE_TEST_CASE(accumulate_grad_batches_steps_every_k, Fixture) {
  tiny::Model m;
  auto o = small_options(2);
  o.accumulate_grad_batches = 2;
  ember::Trainer t(o, m);
  t.set_data(&train, nullptr, nullptr, nullptr);
  t.fit();
  BOOST_TEST(t.global_step() == 4);  // 3 batches: steps after batch 1 and after the last
}

BOOST_FIXTURE_TEST_CASE(max_steps_stops_mid_epoch, Fixture) {
  tiny::Model m;
  auto o = small_options(10);
  o.max_steps = 4;
  ember::Trainer t(o, m);
  t.set_data(&train, nullptr, nullptr, nullptr);
  t.fit();
  BOOST_TEST(t.global_step() == 4);
  BOOST_TEST(m.losses.size() == 4u);
}

BOOST_FIXTURE_TEST_CASE(test_loop_reduces_test_metrics, Fixture) {
  tiny::Model m;
  ember::Trainer t(small_options(1), m);
  t.set_data(nullptr, nullptr, &test, nullptr);
  t.test();
  BOOST_REQUIRE_EQUAL(t.last_eval_metrics().size(), 1u);
  BOOST_TEST(t.last_eval_metrics()[0].name == "test_loss");
}

BOOST_AUTO_TEST_CASE(csv_reader_takes_the_label_column_and_reports_bad_cells) {
  const std::string dir = temp_dir();
  std::ofstream(dir + "/d.csv") << "a,b,label\n1,2,0\n3,4.5,1\n-1,0,2\n";
  ember::storage::UrlSpace urls;
  auto d = ember::data::read_csv(urls, dir + "/d.csv", -1, true);
  BOOST_TEST(d.x.sizes() == torch::IntArrayRef({3, 2}));
  BOOST_TEST(d.y.scalar_type() == torch::kInt64);
  BOOST_TEST(d.y[1].item<std::int64_t>() == 1);
  BOOST_TEST(d.x[1][1].item<float>() == 4.5f);
  std::ofstream(dir + "/bad.csv") << "a,b\n1,2\n3,x\n";
  try {
    ember::data::read_csv(urls, dir + "/bad.csv", 0, true);
    BOOST_FAIL("a non-number was accepted");
  } catch (const ember::RuntimeError& e) {
    BOOST_TEST(std::string(e.what()) == dir + "/bad.csv:3: 'x' is not a number");
  }
  std::ofstream(dir + "/ragged.csv") << "1,2\n3\n";
  BOOST_CHECK_THROW(ember::data::read_csv(urls, dir + "/ragged.csv", 0, false), ember::RuntimeError);
}

BOOST_AUTO_TEST_CASE(saved_tensors_reader_reads_a_pickled_dict) {
  const std::string dir = temp_dir();
  c10::impl::GenericDict d(c10::StringType::get(), c10::TensorType::get());
  d.insert("x", torch::ones({5, 3}));
  d.insert("y", torch::arange(5));
  auto bytes = torch::pickle_save(d);
  ember::storage::UrlSpace urls;
  urls.put_atomic("memory://t.pt", std::string_view(bytes.data(), bytes.size()));
  auto ds = ember::data::read_tensors(urls, "memory://t.pt");
  BOOST_TEST(ds.size() == 5);
  BOOST_TEST(ds.y[4].item<std::int64_t>() == 4);
}

BOOST_AUTO_TEST_CASE(idx_reader_refuses_a_truncated_file) {
  const std::string dir = temp_dir();
  std::string header("\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", 10);  // says 5 bytes, has 2
  std::ofstream(dir + "/t.idx", std::ios::binary) << header;
  ember::storage::UrlSpace urls;
  try {
    ember::data::read_idx(urls, {dir + "/t.idx"}, false);
    BOOST_FAIL("a truncated idx file was accepted");
  } catch (const ember::RuntimeError& e) {
    BOOST_TEST(std::string(e.what()).find("idx body has 2 bytes, header says 5") != std::string::npos, e.what());
  }
}
