// What the "fit on a remote root" tests of the storage plugins (tests/plugins/{s3,gcs,azure,
// webhdfs}/trainer_*_test.cpp) share: the Fashion-MNIST run config with default_root_dir on a
// scheme, the `ember` child process with the build's plugins, listing helpers, and the fit then
// resume run they all make, checked one way (fit_then_resume).
#pragma once

#include "expect.hpp"
#include "run_process.hpp"
#include "temp_dir.hpp"

#include <boost/test/unit_test.hpp>

#include <ember/storage.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace ember::test {

inline const std::string kFashionMnist = "/usr/share/datasets/fashion-mnist/";

// One epoch of 30 batches (64 samples), 5 validation batches, csv_logger and model_checkpoint
// (monitor val_accuracy, max), logging every 5 steps, no progress bar, root on `root` through
// `storage` (a plugins.storage entry). with_test adds the test split.
inline boost::json::object remote_root_run(const std::string& root, boost::json::object storage, bool with_test = false) {
  namespace json = boost::json;
  const std::string& d = kFashionMnist;
  json::object ckpt{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_accuracy"}, {"mode", "max"}}}};
  json::object data{{"train", json::array{d + "train-images-idx3-ubyte.gz", d + "train-labels-idx1-ubyte.gz"}},
                    {"val_fraction", 0.1},
                    {"batch_size", 64}};
  if (with_test) data["test"] = json::array{d + "t10k-images-idx3-ubyte.gz", d + "t10k-labels-idx1-ubyte.gz"};
  return json::object{
      {"seed_everything", 1},
      {"plugins", json::object{{"storage", json::array{std::move(storage)}}}},
      {"trainer", json::object{{"max_epochs", 1},
                               {"limit_train_batches", 30},
                               {"limit_val_batches", 5},
                               {"default_root_dir", root},
                               {"logger", json::array{json::object{{"plugin", "csv_logger"}}}},
                               {"callbacks", json::array{ckpt}},
                               {"enable_progress_bar", false},
                               {"log_every_n_steps", 5}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", std::move(data)}};
}

// `$EMBER_EXE <args> --plugin-dir $EMBER_BUILD_ROOT/plugins`; the caller adds env and cwd.
inline ChildSpec ember_child(const std::vector<std::string>& args) {
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE")};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back("--plugin-dir");
  spec.argv.push_back(require_env("EMBER_BUILD_ROOT") + "/plugins");
  return spec;
}

// The entries of dir, relative to it, directories with a trailing '/'.
inline std::vector<std::string> names(ember::storage::UrlSpace& urls, const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : urls.list(dir)) out.push_back(e.url.substr(dir.size() + 1) + (e.is_dir ? "/" : ""));
  return out;
}

inline std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " ";
  return s;
}

inline bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The run each storage plugin's trainer test makes: `ember fit --config config` (one epoch of 30
// steps, remote_root_run) into root, then `--ckpt-path last --set trainer.max_epochs=2`. Checks,
// through urls (the plugin in-process): after the fit, the checkpoints folder holds last.ckpt,
// checkpoints.json and epoch=0-step=30.ckpt, the index names best and last there, metrics.csv
// has train_loss and val_accuracy; after the resume, the run went on from step 30 to 60,
// epoch=1-step=60.ckpt is there, the resumed run logged into version_1 as Lightning's CSVLogger
// does, and last.ckpt opens in Python's torch.load at step 60, epoch 1. The working directory
// (cwd) stays empty throughout. Returns both results, for the caller's checks (secrets).
struct FitResume {
  ProcessResult fit, resumed;
};
inline FitResume fit_then_resume(ember::storage::UrlSpace& urls, const std::string& root, const std::string& config,
                                 const std::filesystem::path& cwd,
                                 const std::function<ProcessResult(const std::vector<std::string>&)>& ember) {
  namespace json = boost::json;
  const std::string ckdir = root + "/checkpoints";
  FitResume r;
  r.fit = ember({"fit", "--config", config});
  BOOST_REQUIRE_MESSAGE(r.fit.exit_code == 0, r.fit.describe());
  BOOST_TEST(contains(r.fit.out, "global_step 30\n"), r.fit.out);
  auto ck = names(urls, ckdir);
  BOOST_TEST(has(ck, "last.ckpt"), joined(ck));
  BOOST_TEST(has(ck, "checkpoints.json"), joined(ck));
  BOOST_TEST(has(ck, "epoch=0-step=30.ckpt"), joined(ck));
  auto index = json::parse(urls.read_all(ckdir + "/checkpoints.json")).as_object();
  BOOST_TEST(index["best"].as_string() == ckdir + "/epoch=0-step=30.ckpt", json::serialize(index));
  BOOST_TEST(index["last"].as_string() == ckdir + "/last.ckpt", json::serialize(index));
  const std::string metrics = urls.read_all(root + "/lightning_logs/version_0/metrics.csv");
  BOOST_TEST(contains(metrics, "train_loss"), metrics);
  BOOST_TEST(contains(metrics, "val_accuracy"), metrics);
  BOOST_TEST(list_dir(cwd).empty(), joined(list_dir(cwd)));

  r.resumed = ember({"fit", "--config", config, "--ckpt-path", "last", "--set", "trainer.max_epochs=2"});
  BOOST_REQUIRE_MESSAGE(r.resumed.exit_code == 0, r.resumed.describe());
  BOOST_TEST(contains(r.resumed.out, "global_step 60\n"), r.resumed.out);
  ck = names(urls, ckdir);
  BOOST_TEST(has(ck, "epoch=1-step=60.ckpt"), joined(ck));
  BOOST_TEST(urls.stat(root + "/lightning_logs/version_1/metrics.csv").has_value());
  {
    TempDir scratch("ember-remote-root-ckpt");
    write_file(scratch / "last.ckpt", urls.read_all(ckdir + "/last.ckpt"));
    auto py = run_process({"/usr/bin/python3", "-c",
                           "import sys, torch; c = torch.load(sys.argv[1]); print(c['global_step'], c['epoch'])",
                           (scratch / "last.ckpt").string()});
    BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
    BOOST_TEST(py.out == "60 1\n", py.out);
  }
  BOOST_TEST(list_dir(cwd).empty(), joined(list_dir(cwd)));
  return r;
}

}  // namespace ember::test
