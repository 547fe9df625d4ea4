// bench_wandb: figures for plugins/wandb/README.md, printed, never asserted on time.
//
// 1. Step-time ratio: a training loop doing fixed work (a 0.5 ms step by default;
//    EMBER_BENCH_STEP_US changes it) and logging 10 metrics per step through the built plugin, while
//    the test server stalls every request for 2 s, against the same loop without a logger.
//    Rounds alternate (ABBA) so drift cancels; the ratio is total(with) / total(without). The stall
//    stays on through finalize, which drains everything logged through the stalled server: the
//    figure is printed both for the loop alone and with finalize's time added to the logged side.
// 2. Rows per second delivered through the plugin, batched (N rows logged as fast as possible,
//    then finalize), against (a) the server in sink mode (lines counted, not parsed: measures the
//    plugin) and (b) the parsing server, which parses and checks every line in Python as the
//    strict server does (offsets, _step/_runtime/_timestamp): the end-to-end figure. The process
//    CPU time per row (training thread + worker) is the plugin's own cost. The last case prints
//    every figure side by side.
// EMBER_BENCH_ROUNDS (default 12) and EMBER_BENCH_ROWS (default 500000 sink, 200000 parsing)
// shorten a run on a shared machine.
#define BOOST_TEST_MODULE bench_wandb
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>

#include "plugin_fixture.hpp"
#include "wandb_server.hpp"

namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using ember::test::FakeTrainer;
using ember::test::LoadedPlugin;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

// The figures, printed side by side by the last case.
struct Figures {
  double ratio_loop = 0, ratio_with_finalize = 0, finalize_s = 0;
  double rows_sink = 0, rows_parsing = 0;
} g_fig;

std::int64_t env_int(const char* name, std::int64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : dflt;
}

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_WANDB_SO");
  return l;
}

using QuietTrainer = FakeTrainer;  // its log is thread-safe (the worker logs too)

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Fixed work: a dependent chain of multiply-adds the compiler cannot drop.
volatile double g_sink = 0;
void work(std::int64_t iters) {
  double x = 1.0;
  for (std::int64_t i = 0; i < iters; ++i) x = x * 1.0000001 + 1e-9;
  g_sink = g_sink + x;
}

// Iterations of work() for a step of step_us, timed the way the loop runs it (many short calls).
std::int64_t calibrate(double step_us) {
  const std::int64_t probe = 20000;
  for (int i = 0; i < 50; ++i) work(probe);
  auto t0 = Clock::now();
  for (int i = 0; i < 500; ++i) work(probe);
  double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 500;
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(probe) * step_us / us));
}

std::string config(const Server& s, const std::string& id, const std::string& spool, const std::string& extra = "") {
  return R"({"project": "bench", "id": ")" + id + R"(", "base_url": ")" + s.url() + R"(", "spool_dir": ")" + spool +
         R"(", "finalize_timeout_s": 300)" + extra + "}";
}

struct Logger {
  Logger(FakeTrainer& t, const std::string& cfg) : p(lib(), cfg, t) {
    for (int k = 0; k < 10; ++k) names.push_back("metric_" + std::to_string(k));
    for (auto& n : names) raw.push_back({ember::cstr(n), 0.0});
  }
  void log(std::int64_t step) {
    for (std::size_t k = 0; k < raw.size(); ++k) raw[k].value = static_cast<double>(step) * 0.001 + static_cast<double>(k);
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, step / 1000};
    p.check(p.logger().log_metrics(p.self(), &ctx, raw.data(), raw.size()), "log_metrics");
  }
  void finalize() { p.check(p.logger().finalize(p.self(), ember::cstr("success")), "finalize"); }
  LoadedPlugin p;
  std::vector<std::string> names;
  std::vector<ember_metric_t> raw;
};

}  // namespace

BOOST_AUTO_TEST_CASE(step_time_ratio_with_a_server_stalling_every_request_2s) {
  ::setenv("WANDB_API_KEY", kKey.c_str(), 1);
  ::setenv("WANDB_SILENT", "true", 1);
  const char* su = std::getenv("EMBER_BENCH_STEP_US");
  const double step_us = su ? std::atof(su) : 500.0;
  const int rounds = static_cast<int>(env_int("EMBER_BENCH_ROUNDS", 12)), steps = 2000;  // >= 12 s per variant
  const std::int64_t iters = calibrate(step_us);

  Server srv;
  TempDir spool("wandb-bench-spool");
  QuietTrainer t;
  srv.control(R"({"stall_seconds": 2})");
  Logger lg(t, config(srv, "benchstl", spool.path().string()));
  std::int64_t step = 0;
  auto loop = [&](bool with_logger) {
    auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) {
      work(iters);
      if (with_logger) lg.log(step++);
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  loop(true), loop(false);  // warm-up: the run exists, buffers have grown
  double with = 0, without = 0;
  std::vector<double> ratios;
  for (int r = 0; r < rounds; ++r) {
    double a, b;
    if (r % 2 == 0) a = loop(true), b = loop(false);
    else b = loop(false), a = loop(true);
    with += a, without += b;
    ratios.push_back(a / b);
  }
  std::sort(ratios.begin(), ratios.end());
  // The hot path alone: log_metrics with no work between calls.
  auto h0 = Clock::now();
  const int hot = 200000;
  for (int i = 0; i < hot; ++i) lg.log(step++);
  double hot_ns = std::chrono::duration<double, std::nano>(Clock::now() - h0).count() / hot;
  std::int64_t rows = step;
  json::object before = srv.run("benchstl");  // empty if the stalled UpsertBucket is still pending
  const std::size_t requests_before = srv.state().at("requests").as_array().size();
  // The stall stays on: finalize drains what the loop left behind through the stalled server,
  // which is part of what logging costs the run.
  auto f0 = Clock::now();
  lg.finalize();
  const double fin = std::chrono::duration<double>(Clock::now() - f0).count();
  const std::size_t requests_finalize = srv.state().at("requests").as_array().size() - requests_before;
  json::object run = srv.run("benchstl");
  g_fig.ratio_loop = with / without;
  g_fig.ratio_with_finalize = (with + fin) / without;
  g_fig.finalize_s = fin;
  BOOST_REQUIRE_EQUAL(run.at("history").as_array().size(), static_cast<std::size_t>(rows));
  std::cout << "wandb bench: step " << without / (rounds * steps) * 1e6 << " us of fixed work + log_metrics (10 metrics), server stalling every "
            << "request 2 s: step-time ratio " << with / without << " (total " << with << " s vs " << without
            << " s; per-round median " << ratios[ratios.size() / 2] << ", min " << ratios.front() << ", max "
            << ratios.back() << "); log_metrics alone " << hot_ns << " ns/call; requests answered during the loop: "
            << (before.contains("file_stream_posts") ? before.at("file_stream_posts").to_number<std::int64_t>() : 0)
            << " file_stream posts; all " << rows
            << " rows delivered by finalize, which took " << fin << " s and " << requests_finalize
            << " requests (each stalled 2 s) with the server still stalling (ratio with it "
            << (with + fin) / without << ")\n";
}

namespace {
void throughput(bool sink, std::int64_t rows) {
  ::setenv("WANDB_API_KEY", kKey.c_str(), 1);
  ::setenv("WANDB_SILENT", "true", 1);
  Server srv;
  TempDir spool("wandb-bench-spool");
  QuietTrainer t;
  if (sink) srv.control(R"({"sink": true})");
  const std::string id = sink ? "benchsnk" : "benchful";
  double hot = 0, total = 0, cpu = 0;
  {
    Logger lg(t, config(srv, id, spool.path().string(), R"(, "stats_interval_s": 0)"));
    lg.log(0);
    srv.wait_for("requests", "", 4);  // the run exists before the clock starts
    const double c0 = cpu_seconds();
    auto t0 = Clock::now();
    for (std::int64_t i = 1; i <= rows; ++i) lg.log(i);
    auto t1 = Clock::now();
    lg.finalize();
    auto t2 = Clock::now();
    cpu = cpu_seconds() - c0;
    hot = std::chrono::duration<double>(t1 - t0).count();
    total = std::chrono::duration<double>(t2 - t0).count();
  }
  json::object run = srv.run(id);
  (sink ? g_fig.rows_sink : g_fig.rows_parsing) = static_cast<double>(rows) / total;
  if (sink) {
    BOOST_REQUIRE_EQUAL(run.at("sunk_rows").to_number<std::int64_t>(), rows + 1);
    BOOST_REQUIRE_EQUAL(run.at("sunk_last_offset").to_number<std::int64_t>(), rows);
  } else {
    BOOST_REQUIRE_EQUAL(run.at("history").as_array().size(), static_cast<std::size_t>(rows + 1));
  }
  BOOST_REQUIRE(run.at("complete").as_bool());
  std::cout << "wandb bench: " << rows << " rows x 10 metrics through the plugin to the "
            << (sink ? "sink-mode server (lines counted, not parsed)" : "parsing server (every line parsed and checked in Python)")
            << ": " << static_cast<double>(rows) / total << " rows/s delivered (logging took " << hot << " s, "
            << hot / static_cast<double>(rows) * 1e9 << " ns/row; until finalize returned " << total
            << " s); this process's CPU (training thread + worker) " << cpu / static_cast<double>(rows) * 1e6
            << " us/row = " << static_cast<double>(rows) / cpu << " rows per CPU-second\n";
}
}  // namespace

BOOST_AUTO_TEST_CASE(rows_per_second_sink_server) { throughput(true, env_int("EMBER_BENCH_ROWS", 500000)); }
BOOST_AUTO_TEST_CASE(rows_per_second_parsing_server) { throughput(false, env_int("EMBER_BENCH_ROWS", 200000)); }

BOOST_AUTO_TEST_CASE(figures_side_by_side) {
  std::cout << "wandb bench figures: step-time ratio, server stalling 2 s: " << g_fig.ratio_loop
            << " (loop only, as before) | " << g_fig.ratio_with_finalize << " (with finalize draining under the stall, "
            << g_fig.finalize_s << " s of finalize)\n"
            << "wandb bench figures: rows/s delivered: " << g_fig.rows_sink << " (sink server, counts lines) | "
            << g_fig.rows_parsing << " (parsing server)\n";
}
