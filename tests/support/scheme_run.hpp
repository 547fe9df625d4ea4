// What the "fit on a remote root" tests of the storage plugins (tests/plugins/{s3,gcs,azure,
// webhdfs}/trainer_*_test.cpp) share: the Fashion-MNIST run config with default_root_dir on a
// scheme, the `ember` child process with the build's plugins, and listing helpers.
#pragma once

#include "run_process.hpp"

#include <ember/storage.hpp>

#include <boost/json.hpp>

#include <algorithm>
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

}  // namespace ember::test
