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
// `ember lambda`: the AWS Lambda custom runtime (host/lambda_cmd.cpp).
int run_lambda(const Options& opt);
// `ember storage ls|stat|cat|cp|rm URL...` (host/storage_cmd.cpp); argv[0] is "storage".
int run_storage(int argc, char** argv);
// `ember plot RUN_DIR_OR_METRICS_URL [--metrics a,b] [-o out.png|svg]` (host/plot_cmd.cpp); argv[0] is "plot".
int run_plot(int argc, char** argv);

// Commands plugins add, git-style: an executable `ember-NAME` in a plugin directory makes
// `ember NAME ARGS…` exec it with ARGS (stdin, stdout, stderr and the exit status are its own).
// Searched like plugin libraries (EMBER_PLUGIN_PATH, else the default directories; each directory
// and one level of sub-directories) and refused on the same ownership and mode rules
// (check_trusted); the first found for a name wins.
struct PluginCommand {
  std::string name;  // NAME of ember-NAME
  std::string path;  // the file found; what is run is its resolved path, the one checked
};
struct CommandScan {
  std::vector<PluginCommand> commands;  // sorted by name
  std::vector<std::string> refusals;    // "PATH: refused: REASON"
};
CommandScan scan_plugin_commands();
// The "commands from plugins:" section of `ember --help`.
std::string plugin_commands_help();
// Exec ember-NAME with args (argv after NAME); returns only on failure: 2 when there is no such
// command (or it was refused: the message names the file and why), 1 when it cannot be run.
int run_plugin_command(const std::string& name, int argc, char** argv);

}  // namespace ember::cli
