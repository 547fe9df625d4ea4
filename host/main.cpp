// The `ember` command: parse, load, run, report. Exit codes: 0 ok, 2 usage or config error,
// 1 runtime failure, 128 + N a run stopped cleanly by signal N (130 SIGINT, 143 SIGTERM).
#include "commands.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <string_view>

int main(int argc, char** argv) {
  // `ember storage` and `ember plot` parse their own arguments (subcommands of their own, URLs);
  // they are declared below only so that --help lists them.
  if (argc > 1 && std::string_view(argv[1]) == "storage") return ember::cli::run_storage(argc - 1, argv + 1);
  if (argc > 1 && std::string_view(argv[1]) == "plot") return ember::cli::run_plot(argc - 1, argv + 1);
  CLI::App app{"ember: a Lightning-style training host for libtorch"};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");

  ember::cli::Options opt;
  auto add_common = [&](CLI::App* sub, bool needs_config) {
    auto* c = sub->add_option("--config,-c", opt.config, "the run's JSON config file");
    if (needs_config) c->required();
    sub->add_option("--set", opt.overrides, "override a config value: KEY.PATH=VALUE (JSON or text)")
        ->take_all();
    sub->add_option("--plugin-dir", opt.plugin_dirs, "a directory of plugins (repeatable)");
  };
  auto* plugins = app.add_subcommand("plugins", "list the plugins found, with their ABI and interfaces");
  plugins->add_option("--plugin-dir", opt.plugin_dirs, "a directory of plugins (repeatable)");
  plugins->add_flag("--json", opt.json, "print JSON");
  auto* config = app.add_subcommand("config", "print the resolved config, or its errors");
  add_common(config, true);
  app.add_subcommand("storage", "ls|stat|cat|cp|rm URLs on any scheme a plugin serves (ember storage --help)");
  app.add_subcommand("plot", "draw a run's metrics (csv or tfevents) as PNG or SVG (ember plot --help)");
  auto* lambda = app.add_subcommand("lambda", "serve AWS Lambda events (the custom runtime; samples/lambda/README.md)");
  add_common(lambda, false);
  std::vector<std::pair<CLI::App*, ember::cli::Command>> runs;
  for (auto [name, cmd, help] :
       {std::tuple{"fit", ember::cli::Command::fit, "train (and validate) the model"},
        std::tuple{"validate", ember::cli::Command::validate, "run the validation loop"},
        std::tuple{"test", ember::cli::Command::test, "run the test loop"},
        std::tuple{"predict", ember::cli::Command::predict, "run prediction"}}) {
    auto* sub = app.add_subcommand(name, help);
    add_common(sub, true);
    sub->add_option("--ckpt-path", opt.ckpt_path, "checkpoint URL, or \"last\" / \"best\"");
    runs.emplace_back(sub, cmd);
  }

  // Commands plugins add (git-style: an executable ember-NAME in a plugin directory, e.g.
  // `ember wandb sync DIR`): a first word that is none of the subcommands declared above is looked
  // up there and exec'd with the rest (keep this after the last built-in subcommand).
  app.footer([] { return ember::cli::plugin_commands_help(); });
  if (argc > 1 && argv[1][0] != '-' &&
      app.get_subcommands([&](const CLI::App* s) { return s->check_name(argv[1]); }).empty())
    return ember::cli::run_plugin_command(argv[1], argc - 2, argv + 2);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  if (version) return ember::cli::print_version();
  if (*plugins) return ember::cli::run_plugins(opt);
  if (*config) return ember::cli::run_config(opt);
  if (*lambda) return ember::cli::run_lambda(opt);
  for (auto& [sub, cmd] : runs)
    if (*sub) return ember::cli::run_trainer(cmd, opt);
  std::cerr << app.help();
  return 2;
}
