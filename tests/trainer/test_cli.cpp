// `ember fit/test` end to end on Fashion-MNIST (few batches): Python reads the checkpoint,
// clear errors for a metric never logged and a model plugin of another build, NaN handling,
// a TorchScript model, and kill -9 in the middle of a checkpoint save.
#define BOOST_TEST_MODULE trainer_cli
#include <boost/test/unit_test.hpp>

#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"
#include "cli_paths.hpp"

#include <boost/json.hpp>
#include <signal.h>
#include <sys/inotify.h>

#include <poll.h>

namespace json = boost::json;
using ember::test::run_process;
using ember::test::TempDir;

namespace {

using namespace ember::test::cli_paths;

json::object base_config(const std::string& root) {
  return json::object{
      {"seed_everything", 1},
      {"trainer", json::object{{"max_epochs", 1}, {"limit_train_batches", 30}, {"limit_val_batches", 5},
                               {"default_root_dir", root}, {"logger", false}, {"enable_progress_bar", false},
                               {"log_every_n_steps", 5}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"test", json::array{kData + "t10k-images-idx3-ubyte.gz", kData + "t10k-labels-idx1-ubyte.gz"}},
                            {"batch_size", 64}}}};
}

std::string write_config(const TempDir& dir, const json::object& cfg, const std::string& name = "run.json") {
  std::string path = (dir.path() / name).string();
  ember::test::write_file(path, json::serialize(cfg));
  return path;
}

ember::test::ProcessResult ember_run(const std::vector<std::string>& args) {
  std::vector<std::string> argv{exe()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--plugin-dir");
  argv.push_back(plugins());
  argv.push_back("--plugin-dir");
  argv.push_back(test_plugins());
  return run_process(argv);
}

json::array& callbacks(json::object& cfg) { return cfg["trainer"].as_object()["callbacks"].emplace_array(); }

}  // namespace

BOOST_AUTO_TEST_CASE(python_torch_load_opens_the_checkpoint) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_accuracy"}, {"mode", "max"}}}});
  auto r = ember_run({"fit", "--config", write_config(dir, cfg)});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  auto ckpt = (dir.path() / "checkpoints" / "last.ckpt").string();
  auto py = run_process({"/usr/bin/python3", "-c",
                         "import sys, torch; c = torch.load(sys.argv[1]); print(sorted(c)); "
                         "print(c['global_step'], sorted(c['state_dict'])[0], c['optimizer_states'][0]['param_groups'][0]['lr'])",
                         ckpt});
  BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
  BOOST_TEST(py.out.find("['callbacks', 'ember', 'epoch', 'global_step', 'hyper_parameters', 'loops', 'lr_schedulers', "
                         "'optimizer_states', 'pytorch-lightning_version', 'state_dict']") != std::string::npos, py.out);
  BOOST_TEST(py.out.find("30 0.bias 0.001") != std::string::npos, py.out);
}

BOOST_AUTO_TEST_CASE(fit_then_test_best_through_the_index) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  cfg["trainer"].as_object()["max_epochs"] = 3;
  cfg["trainer"].as_object()["limit_train_batches"] = 10;
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_loss"}, {"save_top_k", 2}}}});
  auto path = write_config(dir, cfg);
  auto r = ember_run({"fit", "--config", path});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  auto index = json::parse(ember::test::read_file(dir.path() / "checkpoints" / "checkpoints.json")).as_object();
  BOOST_TEST(index["top_k"].as_array().size() == 2u);
  std::string best(index["best"].as_string());
  BOOST_TEST(std::filesystem::exists(best));
  auto t = ember_run({"test", "--config", path, "--ckpt-path", "best", "--set", "trainer.limit_test_batches=10"});
  BOOST_REQUIRE_MESSAGE(t.exit_code == 0, t.describe());
  BOOST_TEST(t.out.find("test test_accuracy") != std::string::npos, t.out);
}

BOOST_AUTO_TEST_CASE(monitor_never_logged_names_the_metric_and_the_logged_ones) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_f1"}}}});
  auto r = ember_run({"fit", "--config", write_config(dir, cfg)});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("monitor='val_f1' was never logged") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("val_accuracy") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("on_train_epoch_end") != std::string::npos, r.err);
  BOOST_TEST(!std::filesystem::exists(dir.path() / "checkpoints" / "last.ckpt"));
}

BOOST_AUTO_TEST_CASE(model_plugin_built_for_another_libtorch_is_refused) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  cfg["model"] = json::object{{"plugin", "wrong_tag_model"}};
  auto r = ember_run({"fit", "--config", write_config(dir, cfg)});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(r.err.find("was built for 'libtorch-0.9.0 gcc-9 cxx11abi-0 ember-abi-1' but this host is 'libtorch-1.13") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(nan_loss_is_never_marked_best) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  cfg["model"] = json::object{{"plugin", "nan_model"}, {"config", json::object{{"nan_after", 12}}}};
  cfg["trainer"].as_object()["max_epochs"] = 3;
  cfg["trainer"].as_object()["limit_train_batches"] = 5;
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"},
                                        {"config", json::object{{"monitor", "train_loss"}, {"save_top_k", 3}}}});
  auto r = ember_run({"fit", "--config", write_config(dir, cfg)});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  auto index = json::parse(ember::test::read_file(dir.path() / "checkpoints" / "checkpoints.json")).as_object();
  // Steps 13-15 (epoch 2) have NaN losses: that epoch's checkpoint is never in the top-k and
  // never best, though last.ckpt is still written.
  BOOST_TEST(index["best_score"].is_number(), json::serialize(index));
  BOOST_TEST(index["top_k"].as_array().size() == 2u, json::serialize(index));
  for (auto& e : index["top_k"].as_array()) {
    BOOST_TEST(!e.as_object().at("score").is_null(), json::serialize(index));
    BOOST_TEST(e.as_object().at("epoch").as_int64() < 2, json::serialize(index));
  }
  BOOST_TEST(std::filesystem::exists(dir.path() / "checkpoints" / "last.ckpt"));
}

BOOST_AUTO_TEST_CASE(torchscript_model_trains_with_a_configured_loss) {
  TempDir dir;
  auto script = (dir.path() / "mlp.pt").string();
  auto py = run_process({"/usr/bin/python3", "-c",
                         "import sys, torch\n"
                         "m = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))\n"
                         "torch.jit.script(m).save(sys.argv[1])\n",
                         script});
  BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
  auto cfg = base_config(dir.path().string());
  cfg["model"] = json::object{{"torchscript", script}, {"loss", "cross_entropy"},
                              {"optimizer", json::object{{"name", "sgd"}, {"lr", 0.05}, {"momentum", 0.9}}},
                              {"lr_scheduler", json::object{{"name", "step"}, {"step_size", 1}, {"gamma", 0.5}}}};
  cfg["trainer"].as_object()["max_epochs"] = 2;
  cfg["trainer"].as_object()["limit_train_batches"] = 15;
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"}});
  auto path = write_config(dir, cfg);
  auto r = ember_run({"fit", "--config", path});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("global_step 30") != std::string::npos, r.out);
  // Two epoch-interval scheduler steps: lr 0.05 * 0.5^2, and SGD's momentum buffers saved.
  auto py2 = run_process({"/usr/bin/python3", "-c",
                          "import sys, torch; c = torch.load(sys.argv[1]); o = c['optimizer_states'][0]; "
                          "print(c['lr_schedulers'][0]['last_epoch'], round(o['param_groups'][0]['lr'], 6), "
                          "'momentum_buffer' in o['state'][0], sorted(c['state_dict'])[0])",
                          (dir.path() / "checkpoints" / "last.ckpt").string()});
  BOOST_REQUIRE_MESSAGE(py2.exit_code == 0, py2.describe());
  BOOST_TEST(py2.out == "2 0.0125 True 0.bias\n", py2.out);
  auto t = ember_run({"validate", "--config", path});
  BOOST_REQUIRE_MESSAGE(t.exit_code == 0, t.describe());
  BOOST_TEST(t.out.find("validate val_accuracy") != std::string::npos, t.out);
}

BOOST_AUTO_TEST_CASE(resume_from_another_models_checkpoint_lists_the_mismatches) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  cfg["model"] = json::object{{"plugin", "nan_model"}, {"config", json::object{{"nan_after", 1000}}}};
  cfg["trainer"].as_object()["limit_train_batches"] = 3;
  callbacks(cfg).push_back(json::object{{"plugin", "model_checkpoint"}});
  auto path = write_config(dir, cfg);
  auto r = ember_run({"fit", "--config", path});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  auto other = base_config(dir.path().string());  // fashion_mlp: another architecture
  auto r2 = ember_run({"fit", "--config", write_config(dir, other, "other.json"), "--ckpt-path", (dir.path() / "checkpoints" / "last.ckpt").string()});
  BOOST_TEST(r2.exit_code == 1, r2.describe());
  BOOST_TEST(r2.err.find("checkpoint does not fit this model") != std::string::npos, r2.err);
  BOOST_TEST(r2.err.find("missing keys: 0.weight 0.bias 2.weight 2.bias 4.weight 4.bias") != std::string::npos, r2.err);
  BOOST_TEST(r2.err.find("unexpected keys: bias weight") != std::string::npos, r2.err);
}

BOOST_AUTO_TEST_CASE(model_plugin_refuses_optimizer_keys_meant_for_torchscript) {
  TempDir dir;
  auto cfg = base_config(dir.path().string());
  cfg["model"].as_object()["optimizer"] = json::object{{"name", "sgd"}};
  auto r = ember_run({"fit", "--config", write_config(dir, cfg)});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(r.err.find("model.optimizer: applies to model.torchscript; the model plugin 'fashion_mlp'") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(embedding_application_trains_and_tests) {
  auto embed = ember::test::require_env("EMBER_BUILD_ROOT") + "/samples/embed/embed";
  auto cfg = ember::test::require_env("EMBER_SOURCE_ROOT") + "/samples/embed/embed.json";
  TempDir dir;
  auto r = run_process({embed, cfg, plugins()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("embed: epoch 0 done, step 200") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("embed: test test_accuracy 0.") != std::string::npos, r.out);
}

// The plain-C plugin end to end through `ember fit`: it sees Lightning's hooks (its counts are
// exact for 5 batches + sanity check + one validation), and when it fails on purpose the host
// names the plugin, the hook and the message, runs on_exception and exits 1.
namespace {
std::string c_plugin_dir() { return ember::test::require_env("EMBER_BUILD_ROOT") + "/samples/c_plugin"; }
std::string c_plugin_config(const TempDir& dir, const std::string& fail_on) {
  auto cfg = base_config(dir.path().string());
  cfg["trainer"].as_object()["limit_train_batches"] = 5;
  cfg["trainer"].as_object()["limit_val_batches"] = 2;
  cfg["trainer"].as_object()["num_sanity_val_steps"] = 1;
  json::object c{{"verbose", false}};
  if (!fail_on.empty()) c["fail_on"] = fail_on;
  callbacks(cfg).push_back(json::object{{"plugin", "c_counter"}, {"config", c}});
  return write_config(dir, cfg);
}
}  // namespace

BOOST_AUTO_TEST_CASE(c_plugin_counts_every_hook_through_ember_fit) {
  TempDir dir;
  auto r = run_process({exe(), "fit", "--config", c_plugin_config(dir, ""), "--plugin-dir", plugins(), "--plugin-dir", c_plugin_dir()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  for (const char* line : {"c_counter: setup 1\n", "c_counter: on_train_batch_start 5\n", "c_counter: on_before_zero_grad 5\n",
                           "c_counter: on_validation_batch_start 3\n", "c_counter: on_validation_start 2\n",
                           "c_counter: on_sanity_check_start 1\n", "c_counter: on_train_epoch_end 1\n"})
    BOOST_TEST(r.out.find(line) != std::string::npos, "missing '" << line << "' in\n" << r.out);
}

BOOST_AUTO_TEST_CASE(c_plugin_failing_hook_exits_1_naming_plugin_and_hook) {
  TempDir dir;
  auto r = run_process({exe(), "fit", "--config", c_plugin_config(dir, "on_train_epoch_start"), "--plugin-dir", plugins(),
                        "--plugin-dir", c_plugin_dir()});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("c_counter: hook on_train_epoch_start failed: ") != std::string::npos, r.err);
  // c_counter prefixes its own messages with its id; the host does not repeat it.
  BOOST_TEST(r.err.find("failed: c_counter: ") == std::string::npos, r.err);
  BOOST_TEST(r.err.find("failing on purpose in on_train_epoch_start") != std::string::npos, r.err);
  // on_exception ran (its count is printed at teardown, which also ran).
  BOOST_TEST(r.out.find("c_counter: on_exception 1\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("c_counter: on_train_batch_start") == std::string::npos, r.out);
}

// A command reads only the data splits it uses: `fit` never opens data.test or data.predict,
// `test` never opens data.train (reading Fashion-MNIST's test set cost `ember fit` about 50 ms
// before its first step). Unused splits here name files that do not exist.
BOOST_AUTO_TEST_CASE(each_command_reads_only_the_splits_it_uses) {
  TempDir dir;
  const std::string missing = (dir.path() / "no-such-file-idx3-ubyte.gz").string();
  auto cfg = base_config(dir.path().string());
  auto& data = cfg["data"].as_object();
  cfg["trainer"].as_object()["limit_train_batches"] = 2;
  cfg["trainer"].as_object()["limit_val_batches"] = 2;
  data["test"] = json::array{missing, missing};
  data["predict"] = json::array{missing};
  auto fit = ember_run({"fit", "--config", write_config(dir, cfg, "fit.json")});
  BOOST_TEST(fit.exit_code == 0, fit.describe());
  BOOST_TEST(fit.out.find("global_step 2\n") != std::string::npos, fit.out);

  auto cfg2 = base_config(dir.path().string());
  auto& data2 = cfg2["data"].as_object();
  data2["train"] = json::array{missing, missing};
  data2["predict"] = json::array{missing};
  auto t = ember_run({"test", "--config", write_config(dir, cfg2, "test.json"), "--set", "trainer.limit_test_batches=2"});
  BOOST_TEST(t.exit_code == 0, t.describe());
  BOOST_TEST(t.out.find("test test_accuracy") != std::string::npos, t.out);
  // The split a command does use is still read before anything else, naming the file.
  data2["test"] = json::array{missing, missing};
  auto bad = ember_run({"test", "--config", write_config(dir, cfg2, "bad.json")});
  BOOST_TEST(bad.exit_code == 1, bad.describe());
  BOOST_TEST(bad.err.find(missing) != std::string::npos, bad.err);
}
