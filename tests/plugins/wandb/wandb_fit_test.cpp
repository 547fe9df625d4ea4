// wandb end to end: `ember fit` on Fashion-MNIST (a few batches) with the wandb logger and
// model_checkpoint against the W&B-protocol test server, then a second `ember fit` that resumes
// from the logged model artifact through the plugin's read-only wandb:// scheme.
#define BOOST_TEST_MODULE wandb_fit
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "../../support/run_process.hpp"
#include "../../support/temp_dir.hpp"
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using ember::test::run_process;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";

std::string exe() { return ember::test::require_env("EMBER_EXE"); }
std::string plugins() { return ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"; }

// The child inherits this process's environment: the key goes there, and nothing W&B-related
// from the outside leaks in.
struct Env : ember::test::wandb::CleanEnv {
  Env() { ::setenv("WANDB_SILENT", "false", 1); }
};

json::object fit_config(const std::string& root, const Server& srv, const std::string& run_id, const std::string& spool,
                        int max_epochs, bool progress_bar = false) {
  json::object wandb{{"project", "fmnist"},
                     {"id", run_id},
                     {"base_url", srv.url()},
                     {"spool_dir", spool},
                     {"log_model", true},
                     {"define_metric", json::object{{"val_accuracy", json::object{{"summary", "max"}}}}},
                     {"post_interval_s", 0.2},
                     {"retry_initial_s", 0.05},
                     {"retry_max_s", 0.2},
                     {"finalize_timeout_s", 60}};
  return json::object{
      {"seed_everything", 1},
      {"trainer",
       json::object{{"max_epochs", max_epochs},
                    {"limit_train_batches", 20},
                    {"limit_val_batches", 5},
                    {"default_root_dir", root},
                    {"enable_progress_bar", progress_bar},
                    {"log_every_n_steps", 5},
                    {"watch", json::object{{"log", "all"}, {"log_freq", 10}}},
                    {"logger", json::array{json::object{{"plugin", "wandb"}, {"config", wandb}}}},
                    {"callbacks", json::array{json::object{{"plugin", "model_checkpoint"},
                                                           {"config", json::object{{"monitor", "val_accuracy"},
                                                                                   {"mode", "max"}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
}

ember::test::ProcessResult ember_fit(const TempDir& dir, const json::object& cfg, const std::string& name,
                                     std::vector<std::string> extra = {}) {
  std::string path = (dir.path() / name).string();
  ember::test::write_file(path, json::serialize(cfg));
  std::vector<std::string> argv{exe(), "fit", "--config", path, "--plugin-dir", plugins()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv);
}

const json::object* find_collection(const json::object& st, const std::string& name) {
  for (auto& c : st.at("collections").as_array())
    if (c.at("name").as_string() == name) return &c.as_object();
  return nullptr;
}

const json::object* find_artifact(const json::object& st, const std::string& id) {
  for (auto& a : st.at("artifacts").as_array())
    if (a.at("id").as_string() == id) return &a.as_object();
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb)

BOOST_AUTO_TEST_CASE(fit_logs_history_summary_config_and_model_artifact_then_resumes_from_wandb_best) {
  Env env;
  Server srv;
  TempDir dir("wandb-fit"), spool("wandb-fit-spool");
  // With the progress bar: its plain lines (stderr, not a terminal here) are console output.
  auto r = ember_fit(dir, fit_config((dir.path() / "run1").string(), srv, "fit00001", spool.path().string(), 2, true),
                     "run1.json");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("fit done: epoch 2, global_step 40") != std::string::npos, r.describe());
  BOOST_TEST(r.describe().find(kKey) == std::string::npos);

  json::object st = srv.state();
  json::object run = srv.run("fit00001");
  BOOST_REQUIRE_MESSAGE(!run.empty(), json::serialize(st).substr(0, 2000));
  BOOST_TEST(run.at("entity").as_string() == "ember-test");
  BOOST_TEST(run.at("project").as_string() == "fmnist");

  // History: every row has the step metric and W&B's system keys; training and validation rows.
  const auto& hist = run.at("history").as_array();
  BOOST_REQUIRE(hist.size() >= 8u);
  bool train_loss = false, val_accuracy = false;
  double best_val = -1;
  for (std::size_t i = 0; i < hist.size(); ++i) {
    const auto& row = hist[i].as_object();
    BOOST_TEST(row.contains("trainer/global_step"), json::serialize(row));
    BOOST_TEST(row.at("_step").to_number<std::int64_t>() == static_cast<std::int64_t>(i));
    BOOST_TEST(row.at("_runtime").to_number<double>() >= 0);
    BOOST_TEST(row.at("_timestamp").to_number<double>() > 1.6e9);
    if (row.contains("train_loss")) train_loss = true;
    if (auto* v = row.if_contains("val_accuracy")) {
      val_accuracy = true;
      best_val = std::max(best_val, v->to_number<double>());
    }
  }
  BOOST_TEST(train_loss);
  BOOST_TEST(val_accuracy);

  // Media: trainer.watch's histograms every 10 steps (all four layers' weights and biases),
  // the sample's validation examples and predictions table, their files uploaded.
  std::set<std::int64_t> watched;
  std::size_t examples = 0, tables = 0;
  for (const auto& r : hist) {
    const auto& row = r.as_object();
    if (row.contains("gradients/0.weight")) {
      watched.insert(row.at("trainer/global_step").to_number<std::int64_t>());
      for (const char* k : {"gradients/4.bias", "parameters/0.weight", "parameters/4.bias"})
        BOOST_TEST(row.contains(k), k);
      std::int64_t n = 0;
      for (const auto& c : row.at("parameters/0.weight").at("values").as_array()) n += c.to_number<std::int64_t>();
      BOOST_TEST(n == 784 * 128);
    }
    if (const auto* v = row.if_contains("val/examples")) {
      ++examples;
      BOOST_TEST(v->at("_type").as_string() == "images/separated");
      BOOST_TEST(v->at("count").to_number<int>() == 8);
      BOOST_TEST(v->at("width").to_number<int>() == 28);
      for (const auto& f : v->at("filenames").as_array())
        BOOST_TEST(run.at("file_sha256").as_object().contains(f.as_string()), f.as_string());
    }
    if (const auto* v = row.if_contains("val/predictions")) {
      ++tables;
      BOOST_TEST(v->at("nrows").to_number<int>() == 8);
      BOOST_TEST(run.at("file_sha256").at(v->at("path").as_string()).as_string() == v->at("sha256").as_string());
    }
  }
  BOOST_TEST((watched == std::set<std::int64_t>{10, 20, 30, 40}));
  BOOST_TEST(examples == 2u);  // one per epoch's validation, none from the sanity check
  BOOST_TEST(tables == 2u);

  // Summary: define_metric val_accuracy max.
  const auto& summary = run.at("summary").as_object();
  BOOST_TEST(summary.at("val_accuracy").as_object().size() == 1u, json::serialize(summary));
  BOOST_TEST(summary.at("val_accuracy").at("max").to_number<double>() == best_val);
  BOOST_TEST(summary.at("trainer/global_step").to_number<std::int64_t>() == 40);

  // Config: the model's hyper-parameters, wrapped as W&B's clients wrap them.
  json::object config = json::parse(run.at("config").as_string()).as_object();
  BOOST_TEST(config.at("lr").at("value").to_number<double>() > 0);
  BOOST_TEST(config.at("lr").at("desc").is_null());
  BOOST_TEST(config.at("model").at("value").as_string() == "FashionMLP");
  BOOST_TEST(config.contains("_wandb"));

  // The model artifact: aliases latest and best, metadata score + monitor.
  const json::object* col = find_collection(st, "model-fit00001");
  BOOST_REQUIRE_MESSAGE(col, json::serialize(st.at("collections")));
  BOOST_TEST(col->at("type").as_string() == "model");
  const auto& aliases = col->at("aliases").as_object();
  BOOST_REQUIRE(aliases.contains("latest"));
  BOOST_REQUIRE(aliases.contains("best"));
  const json::object* best = find_artifact(st, std::string(aliases.at("best").as_string()));
  BOOST_REQUIRE(best);
  BOOST_TEST(best->at("state").as_string() == "COMMITTED");
  json::object meta = json::parse(best->at("metadata").as_string()).as_object();
  BOOST_TEST(meta.at("monitor").as_string() == "val_accuracy");
  BOOST_TEST(meta.at("score").to_number<double>() == best_val, json::serialize(meta));
  const std::int64_t best_step = meta.at("global_step").to_number<std::int64_t>();
  BOOST_TEST((best_step == 20 || best_step == 40), json::serialize(meta));
  BOOST_TEST(best->at("files").as_object().contains("model.ckpt"));

  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(run.at("exitcode").to_number<int>() == 0);
  BOOST_TEST(run.at("uploaded").as_array().size() >= 4u);

  // Console capture: the progress bar's lines and the host's log lines (stderr) are output.log
  // lines marked ERROR, in the order the terminal (the child's stderr) shows them, which still
  // has them all; the run file output.log holds their text.
  std::size_t at[2] = {0, 0};
  bool epoch_line = false, validation_line = false;
  std::string first;
  for (const auto& l : run.at("output").as_array()) {
    std::string line(l.as_string());
    const bool err = line.rfind("ERROR ", 0) == 0;
    const std::size_t ts = err ? 6 : 0;
    BOOST_REQUIRE_MESSAGE(line.size() > ts + 27 && line[ts + 10] == 'T' && line[ts + 26] == ' ', line);
    std::string text = line.substr(ts + 27);
    if (first.empty()) first = text;
    if (err && text.rfind("Epoch 2/2", 0) == 0) epoch_line = true;
    if (err && text.rfind("validation:", 0) == 0) validation_line = true;
    const std::string& terminal = err ? r.err : r.out;
    std::size_t p = terminal.find(text + "\n", at[err]);
    BOOST_TEST(p != std::string::npos, "'" << text << "' is not on the terminal in this order");
    if (p != std::string::npos) at[err] = p + text.size();
  }
  BOOST_TEST(epoch_line, json::serialize(run.at("output")));
  BOOST_TEST(validation_line);
  BOOST_TEST(run.at("files").at("output.log").as_string().find(first + "\n") == 0u);

  // Resume from W&B: the best checkpoint through wandb://, in a new run with max_epochs 3.
  const std::string url = "wandb://ember-test/fmnist/model-fit00001:best";
  auto cfg2 = fit_config((dir.path() / "run2").string(), srv, "fit00002", spool.path().string(), 3);
  auto r2 = ember_fit(dir, cfg2, "run2.json", {"--ckpt-path", url});
  BOOST_REQUIRE_MESSAGE(r2.exit_code == 0, r2.describe());
  BOOST_TEST(r2.out.find("fit done: epoch 3, global_step " + std::to_string(best_step + 20 * (3 - best_step / 20))) !=
                 std::string::npos,
             r2.describe());
  BOOST_TEST(r2.err.find("read " + url) != std::string::npos, r2.describe());
  json::object run2 = srv.run("fit00002");
  BOOST_REQUIRE(!run2.empty());
  const auto& hist2 = run2.at("history").as_array();
  BOOST_REQUIRE(!hist2.empty());
  // The first row comes after the restored step, in the epoch after the checkpoint's.
  BOOST_TEST(hist2[0].at("trainer/global_step").to_number<std::int64_t>() > best_step, json::serialize(hist2[0]));
  BOOST_TEST(hist2[0].at("epoch").to_number<std::int64_t>() == best_step / 20, json::serialize(hist2[0]));
  BOOST_TEST(run2.at("complete").as_bool());

  // The same through the config key (ckpt_path), at the version alias; and bad URLs are clear.
  auto cfg3 = fit_config((dir.path() / "run3").string(), srv, "fit00003", spool.path().string(), 3);
  cfg3["trainer"].as_object()["logger"].as_array()[0].as_object()["config"].as_object()["mode"] = "disabled";
  cfg3["ckpt_path"] = "wandb://ember-test/fmnist/model-fit00001:v0";
  auto r3 = ember_fit(dir, cfg3, "run3.json");
  BOOST_REQUIRE_MESSAGE(r3.exit_code == 0, r3.describe());
  BOOST_TEST(srv.run("fit00003").empty());  // disabled: no run, but wandb:// still reads

  auto r4 = ember_fit(dir, cfg3, "run4.json", {"--ckpt-path", "wandb://ember-test/fmnist/model-nope:best"});
  BOOST_TEST(r4.exit_code != 0, r4.describe());
  BOOST_TEST(r4.err.find("no artifact ember-test/fmnist/model-nope:best") != std::string::npos, r4.describe());
  auto r5 = ember_fit(dir, cfg3, "run5.json", {"--ckpt-path", "wandb://model-fit00001:best"});
  BOOST_TEST(r5.exit_code != 0, r5.describe());
  BOOST_TEST(r5.err.find("expected wandb://ENTITY/PROJECT/NAME[:ALIAS][/FILE]") != std::string::npos, r5.describe());
}

BOOST_AUTO_TEST_SUITE_END()
