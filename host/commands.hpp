// The `ember` subcommands.
#pragma once

#include <ember/loader.hpp>

#include <boost/json.hpp>

#include <string>
#include <vector>

namespace ember::cli {

enum class Command { fit, validate, test, predict };

struct Options {
  std::string config;
  std::vector<std::string> overrides;
  std::vector<std::string> plugin_dirs;
  std::string ckpt_path;
  bool json = false;
};

// The plugins the options and config name (--plugin-dir, plugins.dirs, EMBER_PLUGIN_PATH,
// else the defaults), and each referenced plugin's config checked against its schema.
Catalog scan_plugins(const Options& opt, const boost::json::value* cfg);
void check_plugin_configs(const Options& opt, boost::json::value& cfg, const Catalog& catalog);

int print_version();
int run_plugins(const Options& opt);
int run_config(const Options& opt);
int run_trainer(Command cmd, const Options& opt);
// `ember wandb sync DIR` / `ember wandb download NAME --to DIR` (host/wandb_cmd.cpp); argv[0] is "wandb".
int run_wandb(int argc, char** argv);
// `ember lambda`: the AWS Lambda custom runtime (host/lambda_cmd.cpp).
int run_lambda(const Options& opt);
// `ember storage ls|stat|cat|cp|rm URL...` (host/storage_cmd.cpp); argv[0] is "storage".
int run_storage(int argc, char** argv);
// `ember plot RUN_DIR_OR_METRICS_URL [--metrics a,b] [-o out.png|svg]` (host/plot_cmd.cpp); argv[0] is "plot".
int run_plot(int argc, char** argv);

}  // namespace ember::cli
