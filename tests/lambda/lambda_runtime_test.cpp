// `ember lambda` against a local Runtime API (tests/lambda/runtime_api_server.py, which records
// every request): predict replies match the same model called in-process, bad events get an
// /error reply and the next event is served, a fit cut by the deadline resumes from "last" with
// continuous steps and the weights of an uninterrupted run, a bad config goes to /init/error,
// and nothing is written outside $TMPDIR (the task root and HOME are compared before and after:
// the tests may run as root, which chmod does not stop).
#define BOOST_TEST_MODULE lambda_runtime
#include <boost/test/unit_test.hpp>

#include "../support/child_process.hpp"
#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"

#include <ember/lambda/predict_inputs.hpp>
#include <ember/session.hpp>

#include <boost/json.hpp>
#include <png.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace json = boost::json;
using ember::test::Child;
using ember::test::Fifo;
using ember::test::TempDir;
using ember::test::require_env;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";
const std::string kTestImages = kData + "t10k-images-idx3-ubyte.gz";
const std::string kTestLabels = kData + "t10k-labels-idx1-ubyte.gz";

std::string base64(const std::string& in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const auto n = (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8) | std::uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += a[(n >> s) & 63];
  }
  if (i < in.size()) {
    std::uint32_t n = std::uint32_t(std::uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) n |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
    out += a[(n >> 18) & 63];
    out += a[(n >> 12) & 63];
    out += i + 1 < in.size() ? a[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string png_gray(const torch::Tensor& img) {  // uint8 [28, 28]
  auto c = img.contiguous();
  png_image p;
  std::memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = static_cast<png_uint_32>(c.size(1));
  p.height = static_cast<png_uint_32>(c.size(0));
  p.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  BOOST_REQUIRE(png_image_write_to_memory(&p, nullptr, &size, 0, c.data_ptr(), 0, nullptr));
  std::string out(size, '\0');
  BOOST_REQUIRE(png_image_write_to_memory(&p, out.data(), &size, 0, c.data_ptr(), 0, nullptr));
  out.resize(size);
  return out;
}

// Every regular file under dir with its size and modification time.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    auto t = fs::last_write_time(e.path()).time_since_epoch().count();
    out[e.path().string()] = (e.is_regular_file() ? std::to_string(e.file_size()) : std::string("dir")) + "@" + std::to_string(t);
  }
  return out;
}

// The suite's files, made once: a task root holding the sample config and a trained model.ckpt
// (a short `ember fit`), a HOME and a fake /tmp.
struct World {
  TempDir base{"ember-lambda-test"};
  fs::path task = base / "task", home = base / "home", tmp = base / "tmp";
  std::string exe = require_env("EMBER_EXE");
  std::string plugins = require_env("EMBER_BUILD_ROOT") + "/plugins";
  std::string server = require_env("EMBER_SOURCE_ROOT") + "/tests/lambda/runtime_api_server.py";
  std::string config = require_env("EMBER_SOURCE_ROOT") + "/samples/lambda/fashion_mnist.json";
  int runs = 0;

  World() {
    fs::create_directories(task);
    fs::create_directories(home);
    fs::create_directories(tmp);
    fs::copy_file(config, task / "fashion_mnist.json");
    auto r = ember::test::run_process({exe, "fit", "--config", (task / "fashion_mnist.json").string(), "--plugin-dir", plugins,
                                       "--set", "trainer.limit_train_batches=100", "--set", "data.val_fraction=0",
                                       "--set", "trainer.default_root_dir=" + (base / "train").string()});
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
    fs::copy_file(base / "train" / "checkpoints" / "last.ckpt", task / "model.ckpt");
  }
  static World& get() {
    static World w;
    return w;
  }
};

struct Reply {
  std::string kind;        // "response" or "error"
  json::value body;        // the JSON posted
  std::string error_type;  // Lambda-Runtime-Function-Error-Type
};

struct Run {
  std::vector<json::object> requests;
  std::vector<Reply> replies;
  int exit_status = -1;
  std::string log;
};

struct EnvGuard {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  void set(const std::string& k, const std::string& v) {
    const char* old = std::getenv(k.c_str());
    saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }
};

// `ember lambda` in the task root (cwd, LAMBDA_TASK_ROOT, _HANDLER=handler) against a fresh
// server handing out events; returns once every event was answered (or /init/error came).
Run serve(const json::array& events, const std::string& handler = "fashion_mnist.json", const fs::path& task = {}) {
  World& w = World::get();
  const fs::path dir = w.base / ("run" + std::to_string(++w.runs));
  fs::create_directories(dir / "srv");
  fs::create_directories(dir / "rt");
  ember::test::write_file(dir / "events.json", json::serialize(events));
  Fifo fifo((dir / "fifo").string());
  Child server({"/usr/bin/python3", w.server, "--events", (dir / "events.json").string(), "--log",
                (dir / "requests.jsonl").string(), "--fifo", fifo.path()},
               dir / "srv");
  const std::string port = server.read_line(fifo);
  BOOST_TEST_REQUIRE(port.rfind("port ", 0) == 0u, port);
  Run run;
  {
    EnvGuard env;
    env.set("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:" + port.substr(5, port.size() - 6));
    env.set("LAMBDA_TASK_ROOT", (task.empty() ? w.task : task).string());
    env.set("_HANDLER", handler);
    env.set("AWS_LAMBDA_FUNCTION_NAME", "ember-test");
    env.set("TMPDIR", w.tmp.string());
    env.set("HOME", w.home.string());
    const fs::path cwd = fs::current_path();
    fs::current_path(task.empty() ? w.task : task);  // Lambda starts the runtime in the task root
    Child rt({w.exe, "lambda", "--plugin-dir", w.plugins}, dir / "rt");
    fs::current_path(cwd);
    const std::string line = rt.read_line(fifo);
    if (line == "done\n") rt.signal(SIGTERM);
    run.exit_status = rt.wait();
    run.log = rt.describe();
    // SIGTERM ends the runtime at once, also while it waits on /next for an event.
    if (line == "done\n") BOOST_TEST((WIFEXITED(run.exit_status) && WEXITSTATUS(run.exit_status) == 128 + SIGTERM), run.log);
  }
  server.signal(SIGTERM);
  server.wait();
  std::istringstream in(ember::test::read_file(dir / "requests.jsonl"));
  for (std::string l; std::getline(in, l);) {
    auto e = json::parse(l).as_object();
    if (e.contains("kind")) {
      Reply r;
      r.kind = std::string(e.at("kind").as_string());
      r.body = json::parse(e.at("body").as_string());
      if (auto* h = e.at("headers").as_object().if_contains("Lambda-Runtime-Function-Error-Type")) r.error_type = std::string(h->as_string());
      run.replies.push_back(std::move(r));
    }
    run.requests.push_back(std::move(e));
  }
  return run;
}

json::value ev(const char* text) { return json::parse(text); }

json::object event(json::value e, std::int64_t timeout_ms = 0) {
  json::object o{{"event", std::move(e)}};
  if (timeout_ms) o["timeout_ms"] = timeout_ms;
  return o;
}

// What a fit event sets so that it runs in a second: the 10,000 test images as training data.
json::object quick_fit_set(const fs::path& root) {
  return json::object{{"data.train", json::array{kTestImages, kTestLabels}},
                      {"data.val_fraction", 0},
                      {"trainer.limit_train_batches", 20},
                      {"trainer.max_epochs", 3},
                      {"trainer.default_root_dir", root.string()}};
}

torch::Tensor test_pixels(std::int64_t n) {
  ember::storage::UrlSpace urls;
  return ember::data::read_idx_file(urls, kTestImages).narrow(0, 0, n);
}

}  // namespace

BOOST_AUTO_TEST_CASE(predict_json_png_and_tensor_match_the_model_in_process) {
  World& w = World::get();
  const std::int64_t n = 8;
  torch::Tensor pixels = test_pixels(n);  // uint8 [8, 28, 28]
  torch::Tensor x = ember::data::pixels_to_inputs(pixels, true);
  json::array rows, pngs;
  for (std::int64_t i = 0; i < n; ++i) {
    json::array r;
    for (std::int64_t j = 0; j < 784; ++j) r.emplace_back(static_cast<double>(x[i][j].item<float>()));
    rows.emplace_back(std::move(r));
    pngs.emplace_back(base64(png_gray(pixels[i])));
  }
  std::string raw(static_cast<std::size_t>(x.numel()) * 4, '\0');
  std::memcpy(raw.data(), x.contiguous().data_ptr(), raw.size());
  json::array events{
      event(json::object{{"command", "predict"}, {"inputs", rows}}),
      event(json::object{{"command", "predict"}, {"images_png_base64", pngs}}),
      event(json::object{{"command", "predict"},
                         {"tensor", json::object{{"dtype", "float32"}, {"shape", json::array{n, 784}}, {"data_base64", base64(raw)}}}}),
  };
  const auto before = snapshot(w.task), home_before = snapshot(w.home);
  Run run = serve(events);
  BOOST_TEST_REQUIRE(run.replies.size() == 3u, run.log);

  // The same model in-process: the sample config, its model.ckpt, predict_step.
  ember::Catalog catalog;
  catalog.scan(w.plugins);
  auto cfg = ember::load_run_config((w.task / "fashion_mnist.json").string(), {});
  cfg.as_object().erase("data");
  cfg.as_object()["trainer"].as_object()["logger"] = false;
  cfg.as_object()["trainer"].as_object()["callbacks"] = json::array();
  ember::Session session(cfg, catalog, "in-process");
  session.build(nullptr, EMBER_STAGE_PREDICT);
  session.trainer().restore((w.task / "model.ckpt").string(), true);
  session.module().train(false);
  torch::NoGradGuard ng;
  torch::Tensor probs = session.module().predict_step(ember::Batch{x, torch::Tensor()}, 0);
  torch::Tensor classes = probs.argmax(1);

  for (const auto& r : run.replies) {
    BOOST_TEST_REQUIRE(r.kind == "response", json::serialize(r.body));
    const auto& preds = r.body.at("predictions").as_array();
    BOOST_TEST_REQUIRE(preds.size() == static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      const auto& p = preds[static_cast<std::size_t>(i)].as_object();
      BOOST_TEST(p.at("class").as_int64() == classes[i].item<std::int64_t>());
      BOOST_TEST(p.at("label").is_string());
      const auto& pr = p.at("probabilities").as_array();
      BOOST_TEST_REQUIRE(pr.size() == 10u);
      for (std::size_t j = 0; j < 10; ++j)
        BOOST_TEST(pr[j].to_number<double>() == probs[i][static_cast<std::int64_t>(j)].item<double>(), boost::test_tools::tolerance(1e-5));
    }
  }
  // The model was trained a little: most of the 8 are right.
  auto labels = ember::data::read_idx_file(ember::storage::UrlSpace(), kTestLabels).narrow(0, 0, n).to(torch::kInt64);
  BOOST_TEST(classes.eq(labels).sum().item<std::int64_t>() >= 5);
  BOOST_TEST((snapshot(w.task) == before), "the task root changed");
  BOOST_TEST((snapshot(w.home) == home_before), "HOME changed");
}

BOOST_AUTO_TEST_CASE(bad_events_get_an_error_reply_and_the_next_event_is_served) {
  World& w = World::get();
  json::object failing_plugin = quick_fit_set(w.tmp / "failing");
  failing_plugin["trainer.callbacks"] = json::array{json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "never_logged"}}}}};
  failing_plugin["lambda.deadline_margin_ms"] = 900000;
  json::array events{
      json::object{{"raw", "{\"command\": \"predict\", "}},
      event(ev(R"({"command": "explode"})")),
      event(ev(R"({"inputs": [[1, 2, 3]]})")),
      event(ev(R"({"command": "predict", "inputs": [[1, 2, 3]]})")),
      event(ev(R"({"command": "predict", "images_png_base64": ["bm90IGEgcG5n"]})")),
      event(ev(R"({"command": "predict", "tensor": {"shape": [1, 10], "data_base64": ""}})")),
      event(ev(R"({"command": "fit", "bogus": 1})")),
      event(ev(R"({"command": "fit", "set": {"trainer.max_epochs": "many"}})")),
      event(json::object{{"command", "fit"}, {"set", failing_plugin}}, 1000),
      event(ev(R"({"command": "ping"})")),
  };
  Run run = serve(events);
  BOOST_TEST_REQUIRE(run.replies.size() == events.size(), run.log);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"Ember.BadEvent", "event:1:"},
      {"Ember.BadEvent", "unknown command 'explode'"},
      {"Ember.BadEvent", "event.command: required"},
      {"Ember.BadInput", "inputs[0] has 3 values; expected 784"},
      {"Ember.BadInput", "images_png_base64[0]: not a PNG file"},
      {"Ember.BadInput", "tensor.shape [1, 10]: one input is [10]; expected [784]"},
      {"Ember.BadEvent", "event.bogus: unknown key"},
      {"Ember.ConfigError", "trainer.max_epochs"},
      {"Ember.PluginFailure", "never_logged"},
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const Reply& r = run.replies[i];
    BOOST_TEST_CONTEXT("event " << i) {
      BOOST_TEST(r.kind == "error");
      BOOST_TEST(r.error_type == expected[i].first);
      BOOST_TEST(std::string(r.body.at("errorType").as_string()) == expected[i].first);
      const std::string msg(r.body.at("errorMessage").as_string());
      BOOST_TEST(msg.find(expected[i].second) != std::string::npos, msg);
      BOOST_TEST(r.body.at("stackTrace").is_array());
    }
  }
  BOOST_TEST(run.replies.back().kind == "response");
  BOOST_TEST(json::serialize(run.replies.back().body) == R"({"pong":true})");
  // One event at a time: each event handed out by /next is answered before the next /next,
  // with its own request id.
  std::vector<std::string> order;
  for (const auto& r : run.requests)
    if (const auto* id = r.if_contains("request_id"))
      order.push_back((r.at("method").as_string() == "GET" ? "next " : "reply ") + std::string(id->as_string()));
  BOOST_TEST_REQUIRE(order.size() == 2 * events.size());
  for (std::size_t i = 0; i < order.size(); i += 2) {
    BOOST_TEST(order[i].rfind("next ", 0) == 0u);
    BOOST_TEST(order[i + 1] == "reply " + order[i].substr(5));
  }
}

BOOST_AUTO_TEST_CASE(fit_cut_by_the_deadline_resumes_from_last_with_continuous_steps) {
  World& w = World::get();
  // A margin beyond the invocation's time: each fit stops after its first batch (the trainer
  // always trains one), deterministically; then the same three steps in one go.
  json::object chain = quick_fit_set(w.tmp / "chain");
  chain["lambda.deadline_margin_ms"] = 900000;
  json::object straight = quick_fit_set(w.tmp / "straight");
  straight["trainer.max_steps"] = 3;
  straight["lambda.deadline_margin_ms"] = 0;
  json::array events{
      event(json::object{{"command", "fit"}, {"set", chain}, {"ckpt_path", "last"}}, 1000),
      event(json::object{{"command", "fit"}, {"set", chain}, {"ckpt_path", "last"}}, 1000),
      event(json::object{{"command", "fit"}, {"set", chain}, {"ckpt_path", "last"}}, 1000),
      event(json::object{{"command", "fit"}, {"set", straight}}, 600000),
  };
  const auto before = snapshot(w.task), home_before = snapshot(w.home);
  Run run = serve(events);
  BOOST_TEST_REQUIRE(run.replies.size() == 4u, run.log);
  const std::string last = (w.tmp / "chain" / "checkpoints" / "last.ckpt").string();
  for (std::int64_t i = 0; i < 3; ++i) {
    const Reply& r = run.replies[static_cast<std::size_t>(i)];
    BOOST_TEST_CONTEXT("fit " << i << ": " << json::serialize(r.body)) {
      BOOST_TEST_REQUIRE(r.kind == "response");
      const auto& o = r.body.as_object();
      BOOST_TEST(std::string(o.at("stopped_by").as_string()) == "deadline");
      BOOST_TEST(o.at("global_step").as_int64() == i + 1);
      BOOST_TEST(o.at("epoch").as_int64() == 0);
      BOOST_TEST(std::string(o.at("checkpoint").as_string()) == last);
      if (i == 0) BOOST_TEST(o.at("resumed_from").is_null());
      else BOOST_TEST(std::string(o.at("resumed_from").as_string()) == last);
    }
  }
  const auto& s = run.replies[3].body.as_object();
  BOOST_TEST(std::string(s.at("stopped_by").as_string()) == "max_steps");
  BOOST_TEST(s.at("global_step").as_int64() == 3);
  // Resumed exactly: the chained weights are the uninterrupted run's, bit for bit.
  auto state = [](const fs::path& p) {
    std::string bytes = ember::test::read_file(p);
    auto d = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
    return d.at("state_dict").toGenericDict();
  };
  auto a = state(last), b = state(w.tmp / "straight" / "checkpoints" / "last.ckpt");
  BOOST_TEST_REQUIRE(a.size() == b.size());
  BOOST_TEST_REQUIRE(a.size() > 0u);
  for (const auto& kv : a) BOOST_TEST(torch::equal(kv.value().toTensor(), b.at(kv.key()).toTensor()), kv.key().toStringRef());
  BOOST_TEST((snapshot(w.task) == before), "the task root changed");
  BOOST_TEST((snapshot(w.home) == home_before), "HOME changed");
  BOOST_TEST(fs::exists(w.tmp / "chain" / "lightning_logs"));  // the loggers wrote under $TMPDIR
}

BOOST_AUTO_TEST_CASE(a_bad_config_is_posted_to_init_error_before_any_event) {
  World& w = World::get();
  const fs::path task = w.base / "bad-task";
  fs::create_directories(task);
  ember::test::write_file(task / "bad.json", R"({"trainer": {"max_epochs": "x"}, "model": {"plugin": "fashion_mlp"}})");
  ember::test::write_file(task / "unwritable.json",
                          R"({"trainer": {"default_root_dir": "/dev/null/runs"}, "model": {"plugin": "fashion_mlp"}})");
  for (auto [handler, type, words] : {std::tuple{"bad.json", "Ember.ConfigError", "trainer.max_epochs"},
                                      std::tuple{"unwritable.json", "Ember.ConfigError", "trainer.default_root_dir: /dev/null/runs is not writable"},
                                      std::tuple{"missing.json", "Ember.ConfigError", "missing.json"}}) {
    BOOST_TEST_CONTEXT(handler) {
      Run run = serve(json::array{event(ev(R"({"command": "ping"})"))}, handler, task);
      BOOST_TEST(WIFEXITED(run.exit_status));
      BOOST_TEST(WEXITSTATUS(run.exit_status) == 2, run.log);
      BOOST_TEST_REQUIRE(run.requests.size() == 1u, run.log);  // /init/error, and no /next
      const auto& r = run.requests[0];
      BOOST_TEST(std::string(r.at("path").as_string()) == "/2018-06-01/runtime/init/error");
      auto body = json::parse(r.at("body").as_string()).as_object();
      BOOST_TEST(std::string(body.at("errorType").as_string()) == type);
      const std::string msg(body.at("errorMessage").as_string());
      BOOST_TEST(msg.find(words) != std::string::npos, msg);
      BOOST_TEST(std::string(r.at("headers").as_object().at("Lambda-Runtime-Function-Error-Type").as_string()) == type);
    }
  }
}

// The deadline also ends validation, at an evaluation batch boundary after at least one batch:
// fit's own validation (one training batch, then the epoch's validation of 5 batches is cut after
// its first; last.ckpt is written, the reply says where), and a validate event (metrics over the
// batches that ran, stopped_by "deadline", batches/of); with time left the loop runs to its end.
BOOST_AUTO_TEST_CASE(validation_stops_at_the_deadline_and_the_reply_says_where) {
  World& w = World::get();
  json::object cut = quick_fit_set(w.tmp / "valcut");
  cut["data.val_fraction"] = 0.1;
  cut["trainer.limit_train_batches"] = 1;
  cut["trainer.limit_val_batches"] = 5;
  cut["trainer.max_epochs"] = 1;
  cut["lambda.deadline_margin_ms"] = 900000;  // past the deadline from the start
  json::object roomy = cut;
  roomy["lambda.deadline_margin_ms"] = 0;
  json::array events{
      event(json::object{{"command", "fit"}, {"set", cut}}, 1000),
      event(json::object{{"command", "validate"}, {"set", cut}, {"ckpt_path", "last"}}, 1000),
      event(json::object{{"command", "validate"}, {"set", roomy}, {"ckpt_path", "last"}}, 600000),
  };
  const auto before = snapshot(w.task);
  Run run = serve(events);
  BOOST_TEST_REQUIRE(run.replies.size() == 3u, run.log);
  for (const auto& r : run.replies) BOOST_TEST_REQUIRE(r.kind == "response", json::serialize(r.body) << "\n" << run.log);
  const auto& fit = run.replies[0].body.as_object();
  BOOST_TEST_MESSAGE("fit: " << json::serialize(fit));
  BOOST_TEST(std::string(fit.at("stopped_by").as_string()) == "deadline");
  BOOST_TEST(fit.at("global_step").as_int64() == 1);
  BOOST_TEST(std::string(fit.at("checkpoint").as_string()) == (w.tmp / "valcut" / "checkpoints" / "last.ckpt").string());
  BOOST_TEST_REQUIRE(fit.contains("validation_cut"));
  const auto& vc = fit.at("validation_cut").as_object();
  BOOST_TEST(std::string(vc.at("stage").as_string()) == "validate");
  BOOST_TEST(vc.at("batches").as_int64() == 1);
  BOOST_TEST(vc.at("of").as_int64() == 5);

  const auto& val = run.replies[1].body.as_object();
  BOOST_TEST_MESSAGE("validate (cut): " << json::serialize(val));
  BOOST_TEST(std::string(val.at("stopped_by").as_string()) == "deadline");
  BOOST_TEST(val.at("batches").as_int64() == 1);
  BOOST_TEST(val.at("of").as_int64() == 5);
  BOOST_TEST(val.at("metrics").as_object().contains("val_loss"));

  const auto& full = run.replies[2].body.as_object();
  BOOST_TEST_MESSAGE("validate: " << json::serialize(full));
  BOOST_TEST(std::string(full.at("stopped_by").as_string()) == "end");
  BOOST_TEST(!full.contains("batches"));
  BOOST_TEST(full.at("metrics").as_object().contains("val_loss"));
  BOOST_TEST((snapshot(w.task) == before), "the task root changed");
}
