// Logging cost per step: the same Fashion-MNIST fit (sample MLP, Adam, batch 64) through
// ember::Trainer with no logger, and with the tensorboard + csv_logger loggers, in one process,
// with a second no-logger run as the A/A noise floor; the three sides alternate.
//
//   bench_logging_cost PLUGIN_DIR [ROUNDS] [TRAIN_BATCHES] [LOG_EVERY_N_STEPS]
//
// Defaults: 12 rounds, 300 training batches, log_every_n_steps 1 (every step sends its metrics
// to the loggers: the worst case; Lightning's default is 50). Validation is off (limit_val_batches
// 0), no checkpoint, no progress bar: what differs between the sides is only the loggers.
// A round runs none A, loggers L and none B in one of the six orders (round r uses order r % 6).
// Figures: per side the median step (interval between consecutive on_train_batch_start calls;
// it includes on_train_batch_end, where the trainer hands the step's metrics to the loggers) in
// wall time and in the training thread's CPU time, and the median fit() in wall time and in the
// whole process's CPU time (every thread: the loggers' background writers too; fit also holds
// the loggers' finalize: csv_logger's last write and fsync, the event file's flush). CPU times
// are what a machine loaded by other work disturbs least. "L / A" is the logging cost; "B / A"
// is the noise floor of this machine at that moment.
#include "../../samples/fashion_mnist/fashion_mlp.hpp"

#include <ember/session.hpp>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// CPU time of the calling thread, or of the whole process (every thread: the loggers' writers too).
double cpu_us(clockid_t which) {
  timespec ts{};
  ::clock_gettime(which, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

struct Side {
  std::vector<double> fit_ms;       // one per round: wall time of fit()
  std::vector<double> fit_cpu_ms;   // one per round: CPU time of the process during fit()
  std::vector<double> step_us;      // every step interval of every round (wall)
  std::vector<double> step_cpu_us;  // the same intervals in the training thread's CPU time
};

// Records the interval between consecutive on_train_batch_start calls: one full step each.
struct StepTimer : ember::Callback {
  Side* out = nullptr;
  Clock::time_point last{};
  double last_cpu = 0;
  bool have = false;
  void on_train_batch_start(const ember::HookArgs&) override {
    auto now = Clock::now();
    double cpu = cpu_us(CLOCK_THREAD_CPUTIME_ID);
    if (have) {
      out->step_us.push_back(std::chrono::duration<double, std::micro>(now - last).count());
      out->step_cpu_us.push_back(cpu - last_cpu);
    }
    last = now, last_cpu = cpu;
    have = true;
  }
};

void print_side(const char* name, const Side& s) {
  std::printf("  %-30s step: wall %8.1f us, thread CPU %8.1f us (%zu steps); fit: wall %8.1f ms, process CPU %8.1f ms (%zu rounds)\n",
              name, median(s.step_us), median(s.step_cpu_us), s.step_us.size(), median(s.fit_ms), median(s.fit_cpu_ms),
              s.fit_ms.size());
}

// Ratios of the medians: step wall, step thread CPU, fit wall, fit process CPU.
void print_ratio(const char* name, const Side& num, const Side& den) {
  auto r = [](const std::vector<double>& a, const std::vector<double>& b) { return median(a) / median(b); };
  std::printf("  %-30s step: wall %.4f (%+.1f us), thread CPU %.4f (%+.1f us); fit: wall %.4f, process CPU %.4f\n", name,
              r(num.step_us, den.step_us), median(num.step_us) - median(den.step_us), r(num.step_cpu_us, den.step_cpu_us),
              median(num.step_cpu_us) - median(den.step_cpu_us), r(num.fit_ms, den.fit_ms), r(num.fit_cpu_ms, den.fit_cpu_ms));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_logging_cost PLUGIN_DIR [ROUNDS] [TRAIN_BATCHES] [LOG_EVERY_N_STEPS]\n";
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 12;
  const std::int64_t steps = argc > 3 ? std::atoll(argv[3]) : 300;
  const std::int64_t every = argc > 4 ? std::atoll(argv[4]) : 1;
  if (rounds < 1 || steps < 2 || every < 1) {
    std::cerr << "bench_logging_cost: ROUNDS >= 1, TRAIN_BATCHES >= 2, LOG_EVERY_N_STEPS >= 1\n";
    return 2;
  }
  const std::string root = "/tmp/ember-bench-logging-" + std::to_string(::getpid());
  ember::storage::UrlSpace urls;
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  auto train = ember::data::read_idx(urls, {d + "train-images-idx3-ubyte.gz", d + "train-labels-idx1-ubyte.gz"}, true);
  if (steps > (train.size() + 63) / 64) {
    std::cerr << "bench_logging_cost: at most " << (train.size() + 63) / 64 << " batches of 64\n";
    return 2;
  }
  std::printf("torch threads: %d; %lld train batches of 64 per fit, log_every_n_steps %lld, %d rounds\n",
              torch::get_num_threads(), static_cast<long long>(steps), static_cast<long long>(every), rounds);

  ember::Catalog catalog;
  catalog.scan(argv[1]);
  static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");
  namespace js = boost::json;

  Side none_a, none_b, logged;
  std::size_t csv_rows = 0, event_files = 0;
  auto fit_round = [&](int r, const std::string& dir, bool loggers, Side& out) {
    torch::manual_seed(r);
    js::value logger = false;
    if (loggers)
      logger = js::array{js::object{{"plugin", "tensorboard"}, {"config", js::object{{"save_dir", dir}, {"name", "tb"}}}},
                         js::object{{"plugin", "csv_logger"}, {"config", js::object{{"save_dir", dir}, {"name", "csv"}}}}};
    js::value cfg = js::object{
        {"seed_everything", r},
        {"trainer", js::object{{"max_epochs", 1}, {"limit_train_batches", steps}, {"limit_val_batches", 0},
                               {"num_sanity_val_steps", 0}, {"default_root_dir", dir}, {"log_every_n_steps", every},
                               {"enable_checkpointing", false}, {"enable_progress_bar", false}, {"logger", logger}}}};
    ember::config::check(cfg, schema, "bench", "", true);
    ember::Session session(cfg, catalog, "bench");
    fashion::FashionMLP m(1e-3, 128, 256, /*log_examples=*/0);
    ember::Trainer& t = session.build(&m);
    ember::data::Loader loader(train, 64, true, static_cast<std::uint64_t>(r));
    t.set_data(&loader, nullptr, nullptr, nullptr);
    StepTimer timer;
    timer.out = &out;
    t.add_callback(timer, "step_timer");
    auto t0 = Clock::now();
    double c0 = cpu_us(CLOCK_PROCESS_CPUTIME_ID);
    t.fit();
    out.fit_cpu_ms.push_back((cpu_us(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e3);
    out.fit_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  };

  static const char orders[6][4] = {"alb", "abl", "lab", "lba", "bal", "bla"};
  for (int r = 0; r < rounds; ++r) {
    for (const char* c = orders[r % 6]; *c; ++c) {
      const std::string dir = root + "/round" + std::to_string(r) + "-" + *c;
      if (*c == 'a') fit_round(r, dir, false, none_a);
      if (*c == 'b') fit_round(r, dir, false, none_b);
      if (*c == 'l') {
        fit_round(r, dir, true, logged);
        // The loggers must have written what they were given: a side that dropped rows would look fast.
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
          if (e.path().filename() == "metrics.csv") {
            std::FILE* f = std::fopen(e.path().c_str(), "r");
            for (int ch; f && (ch = std::fgetc(f)) != EOF;) csv_rows += ch == '\n';
            if (f) std::fclose(f);
            --csv_rows;  // the header
          }
          event_files += e.path().filename().string().find("tfevents") != std::string::npos;
        }
      }
      std::filesystem::remove_all(dir);
    }
  }
  std::filesystem::remove_all(root);
  const std::size_t want_rows = static_cast<std::size_t>(rounds) * static_cast<std::size_t>(steps / every);
  if (csv_rows < want_rows || event_files < static_cast<std::size_t>(rounds)) {
    std::fprintf(stderr, "bench_logging_cost: the loggers wrote %zu csv rows (expected >= %zu) and %zu event files\n",
                 csv_rows, want_rows, event_files);
    return 1;
  }
  std::printf("loggers wrote %zu metrics.csv rows and %zu event files in all\n", csv_rows, event_files);
  print_side("no logger A", none_a);
  print_side("no logger B (same as A)", none_b);
  print_side("tensorboard + csv_logger L", logged);
  print_ratio("L / A (logging cost):", logged, none_a);
  print_ratio("B / A (A/A noise floor):", none_b, none_a);
  return 0;
}
