// The trainer in-process: Lightning's hook order (golden), self.log semantics, exact resume,
// refusing a checkpoint of another model, failures reaching on_exception.
#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include "tiny.hpp"

#include <cstdlib>
#include <cstring>
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

// The reference traces in tests/trainer/golden/ are written by hand from Lightning's source (each
// block cites the call site it follows) and never by this test. Format: one hook call per line;
// '#' starts a comment; a line marked '+' is a call Ember makes and Lightning does not (the
// comment says why), so dropping the '+' lines gives Lightning's own sequence.
std::vector<std::string> read_reference(const std::string& path) {
  std::ifstream in(path);
  BOOST_REQUIRE_MESSAGE(in, "missing reference trace " << path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '+') line.erase(0, line.find_first_not_of("+ "));
    out.push_back(line);
  }
  return out;
}

// Compare a recorded trace with a reference file, reporting the first difference in context.
// EMBER_UPDATE_GOLDEN only writes what was recorded next to the build (for a reader to compare
// and edit the reference by hand) and then fails: it can never make this test pass.
void check_against_reference(const std::vector<std::string>& got, const std::string& name) {
  const char* root = std::getenv("EMBER_SOURCE_ROOT");
  BOOST_REQUIRE_MESSAGE(root && *root, "EMBER_SOURCE_ROOT is not set; run the test through `meson test`");
  const std::string path = std::string(root) + "/tests/trainer/golden/" + name;
  if (const char* update = std::getenv("EMBER_UPDATE_GOLDEN"); update && *update) {
    const std::string actual = "ember-" + name + ".actual";
    std::ofstream(actual) << join_lines(got);
    BOOST_ERROR("EMBER_UPDATE_GOLDEN is set: wrote the recorded trace to ./" << actual << " (the test's working "
                "directory). " << path << " is not generated: compare the two and edit it by hand against Lightning's source.");
    return;
  }
  const std::vector<std::string> want = read_reference(path);
  std::size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  if (i == want.size() && i == got.size()) return;
  std::ostringstream msg;
  msg << "hook sequence differs from " << path << " at call " << i + 1 << ":\n";
  for (std::size_t j = i >= 3 ? i - 3 : 0; j < std::max(want.size(), got.size()) && j < i + 4; ++j)
    msg << (j == i ? "> " : "  ") << "want: " << (j < want.size() ? want[j] : "(end)") << " | got: " << (j < got.size() ? got[j] : "(end)") << "\n";
  BOOST_ERROR(msg.str());
}

// Exact equality of two floating-point values or tensors, bit for bit.
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.detach().contiguous(), y = b.detach().contiguous();
  return x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) == 0;
}

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
  check_against_reference(trace, "fit_resume_hooks.txt");
}

// A callback's exception in the middle of an epoch: Lightning's _call_and_handle_interrupt path.
BOOST_FIXTURE_TEST_CASE(failure_calls_hooks_in_lightning_order, Fixture) {
  struct Boom : ember::Callback {
    void on_train_batch_start(const ember::HookArgs& a) override {
      if (a.batch_idx == 1) throw std::runtime_error("boom");
    }
  } boom;
  std::vector<std::string> trace;
  tiny::Model m;
  m.trace = &trace;
  ember::Trainer t(small_options(1), m);
  tiny::Recorder cb(trace);
  t.add_callback(cb, "recorder");
  t.add_callback(boom, "boom");
  t.set_data(&train, &val, nullptr, nullptr);
  t.options().limit_val_batches = ember::TrainerOptions::Limit::count(1);
  BOOST_CHECK_THROW(t.fit(), ember::HookError);
  check_against_reference(trace, "exception_hooks.txt");
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
  // Bit for bit: every loss, and every parameter at the end (no tolerance anywhere).
  BOOST_REQUIRE_EQUAL(straight.losses.size(), 12u);
  BOOST_REQUIRE_EQUAL(first.losses.size(), 6u);
  BOOST_REQUIRE_EQUAL(second.losses.size(), 6u);
  for (std::size_t i = 0; i < 12; ++i) {
    double resumed = i < 6 ? first.losses[i] : second.losses[i - 6];
    BOOST_TEST(same_bits(straight.losses[i], resumed),
               "step " << i << ": " << std::hexfloat << straight.losses[i] << " vs " << resumed);
  }
  auto want = straight.named_parameters(), got = second.named_parameters();
  BOOST_REQUIRE_EQUAL(want.size(), got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(want[i].first == got[i].first);
    BOOST_TEST(same_bits(want[i].second, got[i].second), "parameter " << want[i].first << " differs after the resume");
  }
  // The check can fail: the run that stopped at epoch 2 holds other parameters.
  BOOST_TEST(!same_bits(first.named_parameters()[0].second, want[0].second));
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

// A NaN loss does not stop training (Lightning's default, no detect_anomaly): every batch still
// runs, and a callback sees the NaN both as the loss view its hooks are handed and as the logged
// metric, batch by batch.
BOOST_FIXTURE_TEST_CASE(nan_loss_trains_on_but_is_visible_to_callbacks, Fixture) {
  struct Watcher : ember::Callback {
    ember::Trainer* t = nullptr;
    std::vector<float> before_backward;  // the loss view at on_before_backward
    std::vector<double> logged;          // train_loss as logged, at on_train_batch_end
    void on_before_backward(const ember::HookArgs& a) override {
      const bool f32_scalar = a.loss && a.loss->dtype.code == kDLFloat && a.loss->dtype.bits == 32 && a.loss->ndim == 0;
      BOOST_TEST(f32_scalar, "on_before_backward without a float32 scalar loss view");
      before_backward.push_back(f32_scalar ? *static_cast<const float*>(a.loss->data) : 0.0f);
    }
    void on_train_batch_end(const ember::HookArgs&) override { logged.push_back(t->metrics().get("train_loss").value()); }
  } watcher;
  tiny::Model m;
  m.nan_after = 1;  // the first batch's loss is finite, every later one NaN
  ember::Trainer t(small_options(1), m);
  watcher.t = &t;
  t.add_callback(watcher, "watcher");
  t.set_data(&train, nullptr, nullptr, nullptr);
  t.fit();
  BOOST_TEST(t.global_step() == 3);  // all three batches stepped
  BOOST_REQUIRE_EQUAL(watcher.before_backward.size(), 3u);
  BOOST_REQUIRE_EQUAL(watcher.logged.size(), 3u);
  BOOST_TEST(std::isfinite(watcher.before_backward[0]));
  BOOST_TEST(std::isfinite(watcher.logged[0]));
  for (std::size_t i = 1; i < 3; ++i) {
    BOOST_TEST(std::isnan(watcher.before_backward[i]), "batch " << i);
    BOOST_TEST(std::isnan(watcher.logged[i]), "batch " << i);
  }
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
