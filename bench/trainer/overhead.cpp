// Trainer overhead: the same model, data and thread settings trained by a raw libtorch loop and
// by ember::Trainer with csv_logger + model_checkpoint + progress_bar loaded, alternating in one
// process; prints the ratio of median step times. Also the cost of Module::log on the hot path.
//
//   bench_trainer_overhead PLUGIN_DIR [ROUNDS] [STEPS_PER_ROUND] [both|raw|ember|aa] [HIDDEN1 HIDDEN2]
//
// HIDDEN1/HIDDEN2 shrink the MLP (default 128 256): with 2 2 a step is mostly data and trainer,
// so the difference of the medians is the trainer's fixed cost per step in microseconds.
// "raw" or "ember" runs one side only (for `perf record`); "aa" times the raw loop against
// itself, which shows how far apart two identical loops land on this machine now.
#include "../../samples/fashion_mnist/fashion_mlp.hpp"

#include <ember/session.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Records the time between consecutive on_train_batch_start calls: one full step each.
struct StepTimer : ember::Callback {
  std::vector<double>* out = nullptr;
  Clock::time_point last{};
  bool have = false;
  void on_train_batch_start(const ember::HookArgs&) override {
    auto now = Clock::now();
    if (have) out->push_back(std::chrono::duration<double, std::micro>(now - last).count());
    last = now;
    have = true;
  }
  void on_train_epoch_start(const ember::HookArgs&) override { have = false; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_trainer_overhead PLUGIN_DIR [ROUNDS] [STEPS_PER_ROUND]\n";
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 6;
  const std::int64_t steps = argc > 3 ? std::atoll(argv[3]) : 150;
  const std::string mode = argc > 4 ? argv[4] : "both";
  const bool run_raw = mode != "ember", run_ember = mode != "raw";
  const int hid1 = argc > 6 ? std::atoi(argv[5]) : 128, hid2 = argc > 6 ? std::atoi(argv[6]) : 256;
  const std::string root = "/tmp/ember-bench-overhead";
  ember::storage::UrlSpace urls;
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  auto train = ember::data::read_idx(urls, {d + "train-images-idx3-ubyte.gz", d + "train-labels-idx1-ubyte.gz"}, true);
  std::printf("torch threads: %d\n", torch::get_num_threads());

  ember::Catalog catalog;
  catalog.scan(argv[1]);

  std::vector<double> raw_steps, ember_steps, raw2_steps;
  // Raw loop: the module's own training_step, zero_grad, backward, step; no trainer.
  auto raw_round = [&](int r, std::vector<double>& out) {
    torch::manual_seed(r);
    fashion::FashionMLP m(1e-3, hid1, hid2);
    auto opt = m.configure_optimizers();
    ember::data::Loader loader(train, 64, true, static_cast<std::uint64_t>(r));
    loader.start_epoch(0);
    m.train(true);
    auto last = Clock::now();
    for (std::int64_t b = 0; b < steps; ++b) {
      auto loss = *m.training_step(loader.batch(b), b);
      opt.optimizer->zero_grad();
      loss.backward();
      opt.optimizer->step();
      auto now = Clock::now();
      if (b > 0) out.push_back(std::chrono::duration<double, std::micro>(now - last).count());
      last = now;
    }
  };
  // Ember: the same through the trainer, with the default plugins loaded from PLUGIN_DIR.
  auto ember_round = [&](int r) {
    torch::manual_seed(r);
    boost::json::value cfg = boost::json::object{
        {"seed_everything", r},
        {"trainer", boost::json::object{{"max_epochs", 1}, {"limit_train_batches", steps}, {"num_sanity_val_steps", 0},
                                        {"default_root_dir", root}, {"log_every_n_steps", 50},
                                        {"logger", boost::json::array{boost::json::object{{"plugin", "csv_logger"}}}},
                                        {"callbacks", boost::json::array{
                                            boost::json::object{{"plugin", "model_checkpoint"}},
                                            boost::json::object{{"plugin", "progress_bar"}}}}}}};
    static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");
    ember::config::check(cfg, schema, "bench", "", true);
    ember::Session session(cfg, catalog, "bench");
    fashion::FashionMLP m(1e-3, hid1, hid2);
    ember::Trainer& t = session.build(&m);
    ember::data::Loader loader(train, 64, true, static_cast<std::uint64_t>(r));
    t.set_data(&loader, nullptr, nullptr, nullptr);
    StepTimer timer;
    timer.out = &ember_steps;
    t.add_callback(timer, "step_timer");
    t.fit();
  };
  // Alternating, and the order swaps every round so neither side always runs second (warm
  // caches, allocator state). Mode "aa" runs the raw loop against itself: the bench's noise floor.
  for (int r = 0; r < rounds; ++r) {
    const bool raw_first = r % 2 == 0;
    if (mode == "aa") {
      raw_round(r, raw_first ? raw_steps : raw2_steps);
      raw_round(r, raw_first ? raw2_steps : raw_steps);
      continue;
    }
    if (run_raw && raw_first) raw_round(r, raw_steps);
    if (run_ember) ember_round(r);
    if (run_raw && !raw_first) raw_round(r, raw_steps);
  }
  if (mode == "aa") {
    std::printf("raw vs raw (noise floor): medians %.1f / %.1f us, ratio %.4f\n", median(raw_steps),
                median(raw2_steps), median(raw2_steps) / median(raw_steps));
    return 0;
  }
  const double raw = median(raw_steps), emb = median(ember_steps);
  std::printf("raw libtorch loop: median step %.1f us (%zu steps)\n", raw, raw_steps.size());
  std::printf("ember trainer (csv_logger + model_checkpoint + progress_bar): median step %.1f us (%zu steps)\n", emb,
              ember_steps.size());
  if (!run_raw || !run_ember) return 0;
  std::printf("overhead ratio (ember / raw): %.4f (difference %.1f us per step)\n", emb / raw, emb - raw);

  // log() on the hot path: 4 names, values varying so nothing folds away.
  ember::MetricStore store;
  store.set_context(EMBER_STAGE_FIT, true, 64);
  ember::LogOptions o;
  o.on_epoch = true;
  const char* names[] = {"train_loss", "train_accuracy", "lr", "grad_norm"};
  for (const char* n : names) store.log(n, 0.0, o);  // first calls allocate
  const std::int64_t n_calls = 20'000'000;
  std::vector<double> per_call;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    for (std::int64_t i = 0; i < n_calls; ++i) store.log(names[i & 3], static_cast<double>(i), o);
    auto t1 = Clock::now();
    per_call.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n_calls));
  }
  std::printf("log() on the hot path: %.1f ns per call (median of 5 x %lld calls)\n", median(per_call),
              static_cast<long long>(n_calls));
  return 0;
}
