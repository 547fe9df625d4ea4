// Trainer overhead: the same model, data and thread settings trained for one epoch by a raw
// libtorch loop and by ember::Trainer with csv_logger + model_checkpoint + progress_bar loaded,
// in one process, with a second raw loop as the A/A noise floor, all three alternating.
//
//   bench_trainer_overhead PLUGIN_DIR [ROUNDS] [TRAIN_BATCHES] [both|raw|ember|aa] [HIDDEN1 HIDDEN2]
//                          [--val-batches N]
//
// The headline is the whole epoch: N training batches, a validation pass over --val-batches
// batches (default 50) of Fashion-MNIST's test set, and one checkpoint save.
//   Ember: the wall time of Trainer::fit() with max_epochs 1 — configure_optimizers, the epoch,
//     validation, model_checkpoint's save (monitor val_accuracy, top-1, no last.ckpt: one file
//     plus its index), csv_logger's flushes and its finalize (fsync), progress_bar, teardown.
//     Building the session (config check, plugin instances) is outside the timed region.
//   Raw: configure_optimizers, the same training_step/zero_grad/backward/step loop, the same
//     validation_step calls under NoGradGuard in eval mode, then the model's state_dict and
//     Adam's exp_avg/exp_avg_sq serialised with torch::pickle_save and written durably (temp
//     file, fsync, rename, fsync of the directory: what Ember's file writer does, so both sides
//     put the same bytes on disk with the same guarantee).
// A round runs raw A, Ember and raw B in one of the six orders (round r uses order r % 6, so
// the default 6 rounds use each once): no side always runs first or last. "raw B / raw A" is
// the noise floor of this machine at that moment; an Ember ratio inside it is no measurable
// overhead. Per-round ratios (sides of one round ran seconds apart) are reported beside the
// ratio of the medians.
//
// The per-step figure is kept from the same rounds: the median interval between consecutive
// training steps (Ember: on_train_batch_start to on_train_batch_start). It leaves out what
// happens once per epoch and the steps' tails where loggers flush: read it as the hot-loop cost,
// and the epoch figure as the cost of a run.
//
// HIDDEN1/HIDDEN2 shrink the MLP (default 128 256): with 2 2 a step is mostly data and trainer,
// so the difference of the per-step medians is the trainer's fixed cost per step. "raw" or
// "ember" runs one side only (for `perf record`); "aa" runs only the two raw loops.
//
// Lightning itself is not measured: Debian's python3-torch ships no Lightning, and pip's torch
// is a different libtorch build than the one Ember links, so its figure would compare two
// libtorch builds as much as two trainers. To obtain it on a machine with network access:
// `python3 -m venv v && v/bin/pip install torch==1.13.* lightning` and time trainer.fit() of a
// LightningModule with the same MLP, Adam(lr 1e-3), batch 64, limit_train_batches,
// limit_val_batches, num_sanity_val_steps=0, CSVLogger and ModelCheckpoint(monitor=val_accuracy,
// save_top_k=1, save_last=False), against a plain PyTorch loop doing the same work in the same
// process — the ratio, not the absolute time, is what compares with this bench's.
#include "../../samples/fashion_mnist/fashion_mlp.hpp"

#include <ember/session.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
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

// The raw loop's checkpoint write: all bytes, fsync, rename over the final name, fsync the
// directory. Throws with the path on any failure.
void write_durably(const std::string& dir, const std::string& name, const std::vector<char>& bytes) {
  const std::string tmp = dir + "/." + name + ".tmp", final_path = dir + "/" + name;
  auto fail = [](const std::string& what, const std::string& path) {
    throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", tmp);
  for (std::size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write", tmp);
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot sync", tmp);
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) fail("cannot rename to", final_path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) ::fsync(dfd), ::close(dfd);
}

int count_checkpoints(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".ckpt") ++n;
  return n;
}

// One side's figures over all rounds.
struct Side {
  std::vector<double> epoch_ms;  // one per round
  std::vector<double> step_us;   // every step interval of every round
};

void print_side(const char* name, const Side& s) {
  std::printf("  %-44s median epoch %9.1f ms (%zu rounds, min %.1f, max %.1f); median step %.1f us (%zu steps)\n",
              name, median(s.epoch_ms), s.epoch_ms.size(),
              s.epoch_ms.empty() ? 0 : *std::min_element(s.epoch_ms.begin(), s.epoch_ms.end()),
              s.epoch_ms.empty() ? 0 : *std::max_element(s.epoch_ms.begin(), s.epoch_ms.end()), median(s.step_us),
              s.step_us.size());
}

// "num / den": ratio of the median epochs, median and range of the per-round ratios, and the
// ratio of the median steps.
void print_ratio(const char* name, const Side& num, const Side& den) {
  std::vector<double> per_round;
  for (std::size_t i = 0; i < std::min(num.epoch_ms.size(), den.epoch_ms.size()); ++i)
    per_round.push_back(num.epoch_ms[i] / den.epoch_ms[i]);
  if (per_round.empty()) return;
  std::sort(per_round.begin(), per_round.end());
  std::printf("  %-44s epoch %.4f (per round: median %.4f, %.4f..%.4f); step %.4f (%+.1f us)\n", name,
              median(num.epoch_ms) / median(den.epoch_ms), median(per_round), per_round.front(), per_round.back(),
              median(num.step_us) / median(den.step_us), median(num.step_us) - median(den.step_us));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::int64_t val_batches = 50;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--val-batches" && i + 1 < argc) {
      val_batches = std::atoll(argv[++i]);
    } else if (a.rfind("--", 0) == 0) {
      pos.clear();
      break;
    } else {
      pos.push_back(a);
    }
  }
  if (pos.empty() || val_batches < 1) {
    std::cerr << "usage: bench_trainer_overhead PLUGIN_DIR [ROUNDS] [TRAIN_BATCHES] [both|raw|ember|aa] "
                 "[HIDDEN1 HIDDEN2] [--val-batches N]\n";
    return 2;
  }
  const int rounds = pos.size() > 1 ? std::atoi(pos[1].c_str()) : 6;
  const std::int64_t steps = pos.size() > 2 ? std::atoll(pos[2].c_str()) : 150;
  const std::string mode = pos.size() > 3 ? pos[3] : "both";
  if (rounds < 1 || steps < 2 || (mode != "both" && mode != "raw" && mode != "ember" && mode != "aa")) {
    std::cerr << "bench_trainer_overhead: ROUNDS >= 1, TRAIN_BATCHES >= 2, mode both|raw|ember|aa\n";
    return 2;
  }
  const bool run_raw = mode != "ember", run_ember = mode == "both" || mode == "ember";
  const bool run_raw2 = mode == "both" || mode == "aa";
  const int hid1 = pos.size() > 5 ? std::atoi(pos[4].c_str()) : 128, hid2 = pos.size() > 5 ? std::atoi(pos[5].c_str()) : 256;
  const std::string root = "/tmp/ember-bench-overhead-" + std::to_string(::getpid());
  ember::storage::UrlSpace urls;
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  auto train = ember::data::read_idx(urls, {d + "train-images-idx3-ubyte.gz", d + "train-labels-idx1-ubyte.gz"}, true);
  auto val = ember::data::read_idx(urls, {d + "t10k-images-idx3-ubyte.gz", d + "t10k-labels-idx1-ubyte.gz"}, true);
  const std::int64_t max_train = (train.size() + 63) / 64, max_val = (val.size() + 63) / 64;
  if (steps > max_train || val_batches > max_val) {
    std::cerr << "bench_trainer_overhead: at most " << max_train << " train and " << max_val << " val batches of 64\n";
    return 2;
  }
  std::printf("torch threads: %d; epoch: %lld train + %lld val batches of 64, MLP 784-%d-%d-10\n",
              torch::get_num_threads(), static_cast<long long>(steps), static_cast<long long>(val_batches), hid1, hid2);

  ember::Catalog catalog;
  catalog.scan(pos[0]);
  static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");

  Side raw_a, raw_b, emb;
  // Raw loop: the module's own steps; no trainer. log_examples 0 on both sides: the example
  // images are a trainer-hook feature the raw loop has no counterpart for.
  auto raw_round = [&](int r, const std::string& dir, Side& out) {
    torch::manual_seed(r);
    fashion::FashionMLP m(1e-3, hid1, hid2, /*log_examples=*/0);
    ember::data::Loader loader(train, 64, true, static_cast<std::uint64_t>(r));
    ember::data::Loader vloader(val, 64, false, 0);
    std::filesystem::create_directories(dir);
    auto t0 = Clock::now();
    auto opt = m.configure_optimizers();
    loader.start_epoch(0);
    m.train(true);
    auto last = Clock::now();
    for (std::int64_t b = 0; b < steps; ++b) {
      auto loss = *m.training_step(loader.batch(b), b);
      opt.optimizer->zero_grad();
      loss.backward();
      opt.optimizer->step();
      auto now = Clock::now();
      if (b > 0) out.step_us.push_back(std::chrono::duration<double, std::micro>(now - last).count());
      last = now;
    }
    {
      torch::NoGradGuard ng;
      m.train(false);
      for (std::int64_t b = 0; b < val_batches; ++b) m.validation_step(vloader.batch(b), b);
      m.train(true);
    }
    c10::impl::GenericDict sd(c10::StringType::get(), c10::TensorType::get());
    for (const auto& p : m.named_parameters()) sd.insert(p.first, p.second);
    c10::impl::GenericList exp_avg(c10::TensorType::get()), exp_avg_sq(c10::TensorType::get());
    for (auto& g : opt.optimizer->param_groups())
      for (auto& p : g.params()) {
        auto it = opt.optimizer->state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
        if (it == opt.optimizer->state().end()) continue;
        auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
        exp_avg.push_back(st.exp_avg()), exp_avg_sq.push_back(st.exp_avg_sq());
      }
    c10::impl::GenericDict ck(c10::StringType::get(), c10::AnyType::get());
    ck.insert("epoch", 0), ck.insert("global_step", steps), ck.insert("state_dict", sd);
    ck.insert("exp_avg", exp_avg), ck.insert("exp_avg_sq", exp_avg_sq);
    write_durably(dir, "epoch=0.ckpt", torch::pickle_save(ck));
    out.epoch_ms.push_back(ms_since(t0));
  };
  // Ember: the same through the trainer, with the default plugins loaded from PLUGIN_DIR.
  auto ember_round = [&](int r, const std::string& dir) {
    torch::manual_seed(r);
    namespace js = boost::json;
    js::value cfg = js::object{
        {"seed_everything", r},
        {"trainer", js::object{{"max_epochs", 1}, {"limit_train_batches", steps}, {"limit_val_batches", val_batches},
                               {"num_sanity_val_steps", 0}, {"default_root_dir", dir}, {"log_every_n_steps", 50},
                               {"logger", js::array{js::object{{"plugin", "csv_logger"}}}},
                               {"callbacks", js::array{
                                   js::object{{"plugin", "model_checkpoint"},
                                              {"config", js::object{{"monitor", "val_accuracy"}, {"mode", "max"},
                                                                    {"save_top_k", 1}, {"save_last", false}}}},
                                   js::object{{"plugin", "progress_bar"}}}}}}};
    ember::config::check(cfg, schema, "bench", "", true);
    ember::Session session(cfg, catalog, "bench");
    fashion::FashionMLP m(1e-3, hid1, hid2, /*log_examples=*/0);
    ember::Trainer& t = session.build(&m);
    ember::data::Loader loader(train, 64, true, static_cast<std::uint64_t>(r));
    ember::data::Loader vloader(val, 64, false, 0);
    t.set_data(&loader, &vloader, nullptr, nullptr);
    StepTimer timer;
    timer.out = &emb.step_us;
    t.add_callback(timer, "step_timer");
    auto t0 = Clock::now();
    t.fit();
    emb.epoch_ms.push_back(ms_since(t0));
  };

  // The six orders of (raw A, Ember, raw B); sides a mode does not run are skipped.
  static const char orders[6][4] = {"aeb", "abe", "eab", "eba", "bae", "bea"};
  for (int r = 0; r < rounds; ++r) {
    for (const char* c = orders[r % 6]; *c; ++c) {
      const std::string dir = root + "/round" + std::to_string(r) + "-" + *c;
      if (*c == 'a' && run_raw) raw_round(r, dir, raw_a);
      if (*c == 'b' && run_raw2) raw_round(r, dir, raw_b);
      if (*c == 'e' && run_ember) ember_round(r, dir);
      // Each side must have saved its checkpoint: a side that skipped the save would look fast.
      std::error_code ec;
      if (std::filesystem::exists(dir, ec) && count_checkpoints(dir) != 1) {
        std::fprintf(stderr, "bench_trainer_overhead: round %d side %c wrote %d checkpoints under %s, expected 1\n", r,
                     *c, count_checkpoints(dir), dir.c_str());
        return 1;
      }
      std::filesystem::remove_all(dir);
    }
  }
  std::filesystem::remove_all(root);

  std::printf("whole epoch (%lld train + %lld val batches + 1 checkpoint) and step inside it:\n",
              static_cast<long long>(steps), static_cast<long long>(val_batches));
  if (run_raw) print_side("raw libtorch loop A", raw_a);
  if (run_raw2) print_side("raw libtorch loop B (same code as A)", raw_b);
  if (run_ember) print_side("ember fit (csv_logger+model_checkpoint+pbar)", emb);
  if (run_raw && run_ember) print_ratio("ember / raw A:", emb, raw_a);
  if (run_raw2) print_ratio("raw B / raw A (A/A noise floor):", raw_b, raw_a);
  if (mode != "both") return 0;

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
