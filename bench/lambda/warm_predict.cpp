// Warm predict latency of `ember lambda` for one Fashion-MNIST image, p50/p99 over N events
// through the local Runtime API (tests/lambda/runtime_api_server.py), against the same model
// called in-process (predict_step on the same input), and against `ping` events (the Runtime API
// round trip alone: the floor). The latency of an event is what the server measures from handing
// it out (the /next response written) to the reply's arrival.
//   bench_lambda_warm_predict EMBER_EXE PLUGINS_DIR SOURCE_ROOT [N=1000]
#include "../../tests/support/child_process.hpp"

#include <ember/session.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

struct Stats {
  double p50, p99, mean;
};

Stats stats(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(us.size())))]; };
  return {at(0.50), at(0.99), sum / static_cast<double>(us.size())};
}

void print(const char* what, const Stats& s) {
  std::printf("%-44s p50 %8.1f us   p99 %8.1f us   mean %8.1f us\n", what, s.p50, s.p99, s.mean);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: bench_lambda_warm_predict EMBER_EXE PLUGINS_DIR SOURCE_ROOT [N]\n";
    return 2;
  }
  const std::string exe = argv[1], plugins = argv[2], src = argv[3];
  const int n = argc > 4 ? std::atoi(argv[4]) : 1000;
  const int warmup = 50;
  ember::test::TempDir dir("ember-bench-lambda");
  const fs::path task = dir / "task";
  fs::create_directories(task);
  // The sample config with the model as built (no model.ckpt needed for timing).
  const std::string config = (task / "config.json").string();
  fs::copy_file(src + "/samples/lambda/fashion_mnist.json", config);
  const json::value image_event = json::parse(ember::test::read_file(src + "/samples/lambda/events/predict_inputs.json"));
  const json::value png_event = json::parse(ember::test::read_file(src + "/samples/lambda/events/predict_png.json"));
  json::object png_one = png_event.as_object();
  png_one["images_png_base64"] = json::array{png_event.at("images_png_base64").as_array()[0]};

  // In-process: the same model, the same input, predict_step + argmax.
  std::vector<double> inproc;
  {
    ember::Catalog catalog;
    catalog.scan(plugins);
    auto cfg = ember::load_run_config(config, {"lambda.predict_ckpt_path=null"});
    cfg.as_object().erase("data");
    cfg.as_object()["trainer"].as_object()["logger"] = false;
    cfg.as_object()["trainer"].as_object()["callbacks"] = json::array();
    ember::Session session(cfg, catalog, "bench");
    session.build(nullptr, EMBER_STAGE_PREDICT);
    session.module().train(false);
    std::vector<float> v;
    for (const auto& x : image_event.at("inputs").as_array()[0].as_array()) v.push_back(static_cast<float>(x.to_number<double>()));
    torch::NoGradGuard ng;
    for (int i = 0; i < warmup + n; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      torch::Tensor x = torch::from_blob(v.data(), {1, 784}, torch::kFloat32);
      torch::Tensor p = session.module().predict_step(ember::Batch{x, torch::Tensor()}, 0);
      volatile std::int64_t c = p.argmax(1).item<std::int64_t>();
      (void)c;
      auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      if (i >= warmup) inproc.push_back(us);
    }
  }

  // Through the Runtime API: warm-up events, then N ping, N predict (inputs), N predict (PNG).
  json::array events;
  auto add = [&](const json::value& e, int count) {
    for (int i = 0; i < count; ++i) events.push_back(json::object{{"event", e}});
  };
  const json::value ping = json::parse(R"({"command": "ping"})");
  add(image_event, warmup);
  add(ping, n);
  add(image_event, n);
  add(png_one, n);
  ember::test::write_file(dir / "events.json", json::serialize(events));
  fs::create_directories(dir / "srv");
  fs::create_directories(dir / "rt");
  ember::test::Fifo fifo((dir / "fifo").string());
  ember::test::Child server({"/usr/bin/python3", src + "/tests/lambda/runtime_api_server.py", "--events",
                             (dir / "events.json").string(), "--log", (dir / "log.jsonl").string(), "--fifo", fifo.path()},
                            dir / "srv");
  std::string port = server.read_line(fifo);
  port = port.substr(5, port.size() - 6);
  ::setenv("AWS_LAMBDA_RUNTIME_API", ("127.0.0.1:" + port).c_str(), 1);
  ::setenv("LAMBDA_TASK_ROOT", task.c_str(), 1);
  ::setenv("_HANDLER", "config.json", 1);
  ::setenv("TMPDIR", dir.path().c_str(), 1);
  ember::test::Child rt({exe, "lambda", "--plugin-dir", plugins, "--set", "lambda.predict_ckpt_path=null"}, dir / "rt");
  const std::string line = server.read_line(fifo);
  if (line != "done\n") {
    std::cerr << "runtime API server: " << line << rt.describe();
    return 1;
  }
  rt.signal(SIGTERM);
  rt.wait();
  server.signal(SIGTERM);
  server.wait();
  std::vector<double> lat;
  std::istringstream in(ember::test::read_file(dir / "log.jsonl"));
  int errors = 0;
  for (std::string l; std::getline(in, l);) {
    auto e = json::parse(l).as_object();
    if (!e.contains("latency_ns")) continue;
    if (e.at("kind").as_string() != "response") ++errors;
    lat.push_back(static_cast<double>(e.at("latency_ns").to_number<std::int64_t>()) / 1000.0);
  }
  if (errors || lat.size() != static_cast<std::size_t>(warmup + 3 * n)) {
    std::cerr << "expected " << warmup + 3 * n << " replies, got " << lat.size() << " (" << errors << " errors)\n" << rt.describe();
    return 1;
  }
  auto part = [&](int k) { return std::vector<double>(lat.begin() + warmup + k * n, lat.begin() + warmup + (k + 1) * n); };
  const Stats s_in = stats(inproc), s_ping = stats(part(0)), s_json = stats(part(1)), s_png = stats(part(2));
  std::printf("warm predict, one Fashion-MNIST image, %d events each (after %d warm-up)\n", n, warmup);
  print("in-process predict_step (same model, input)", s_in);
  print("Runtime API ping (round trip floor)", s_ping);
  print("ember lambda predict, inputs (784 floats)", s_json);
  print("ember lambda predict, images_png_base64", s_png);
  std::printf("goal: predict p50 <= 1.1 x in-process + round trip = %.1f us; measured %.1f us (inputs), %.1f us (png)\n",
              1.1 * s_in.p50 + s_ping.p50, s_json.p50, s_png.p50);
  return 0;
}
