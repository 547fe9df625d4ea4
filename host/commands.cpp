#include "commands.hpp"
#include "ddp.hpp"

#include <ember/loader.hpp>
#include <ember/redact.hpp>
#include <ember/run_config.hpp>
#include <ember/signals.hpp>
#include <ember/version.hpp>

#include <iostream>

namespace ember::cli {

namespace json = boost::json;

int print_version() {
  std::cout << "ember " << kVersion << " (plugin ABI " << EMBER_ABI_MAJOR << "." << EMBER_ABI_MINOR
            << ")\n";
  return 0;
}

// Directories in precedence order: --plugin-dir, config plugins.dirs, EMBER_PLUGIN_PATH, then
// the defaults next to the executable. Relative config dirs are relative to the config file.
static Catalog scan_plugins(const Options& opt, const json::value* cfg) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& d : opt.plugin_dirs) dirs.emplace_back(d);
  if (cfg)
    if (auto* p = cfg->as_object().if_contains("plugins"))
      if (auto* d = p->as_object().if_contains("dirs"))
        for (const auto& v : d->as_array()) {
          std::filesystem::path dir(std::string(v.as_string()));
          if (dir.is_relative()) dir = std::filesystem::path(opt.config).parent_path() / dir;
          dirs.push_back(dir.lexically_normal());
        }
  for (auto& d : env_plugin_dirs()) dirs.push_back(d);
  if (dirs.empty())
    for (auto& d : default_plugin_dirs()) dirs.push_back(d);
  Catalog catalog;
  for (const auto& d : dirs) catalog.scan(d);
  return catalog;
}

int run_plugins(const Options& opt) {
  Catalog catalog = scan_plugins(opt, nullptr);
  if (opt.json) {
    json::array list;
    for (const auto& [id, lib] : catalog.plugins) {
      json::array ifaces;
      for (auto& i : lib->interfaces()) ifaces.emplace_back(i);
      list.push_back(json::object{{"id", id},
                                  {"version", lib->version()},
                                  {"abi", lib->abi()},
                                  {"interfaces", ifaces},
                                  {"description", lib->description()},
                                  {"file", lib->path()}});
    }
    json::array refused;
    for (auto& r : catalog.refusals) refused.emplace_back(r);
    std::cout << json::serialize(json::object{{"plugins", list}, {"refused", refused}}) << "\n";
  } else {
    for (const auto& [id, lib] : catalog.plugins) {
      std::cout << id << " " << lib->version() << "  abi " << lib->abi() << "  ";
      auto ifaces = lib->interfaces();
      for (std::size_t i = 0; i < ifaces.size(); ++i) std::cout << (i ? "," : "") << ifaces[i];
      if (ifaces.empty()) std::cout << "-";
      std::cout << "  " << lib->path() << "\n";
    }
    if (catalog.plugins.empty()) std::cout << "no plugins found\n";
    for (const auto& r : catalog.refusals) std::cerr << r << "\n";
  }
  return 0;
}

// Check each referenced plugin exists and that its config matches its schema (no create).
static void check_plugin_configs(const Options& opt, json::value& cfg, const Catalog& catalog) {
  std::string errors;
  for (auto& ref : all_plugin_refs(cfg)) {
    try {
      auto lib = catalog.require(ref.id, opt.config + ": " + ref.where + ".plugin");
      const auto& e = lib->entry();
      if (e.config_schema.size) {
        auto schema = config::parse(sv(e.config_schema), lib->path() + " config_schema");
        config::check(ref.config, schema, opt.config + ": plugin " + ref.id, ref.where + ".config", true);
      }
    } catch (const ConfigError& e) {
      errors += (errors.empty() ? "" : "\n") + std::string(e.what());
    }
  }
  if (!errors.empty()) throw ConfigError(errors);
}

int run_config(const Options& opt) {
  try {
    json::value cfg = load_run_config(opt.config, opt.overrides);
    Catalog catalog = scan_plugins(opt, &cfg);
    check_plugin_configs(opt, cfg, catalog);
    // Secrets (schema `writeOnly`) print as "***": this output is pasted into issues and logs.
    redact_run_config(cfg, plugin_schemas(catalog));
    std::cout << json::serialize(cfg) << "\n";
    return 0;
  } catch (const ConfigError& e) {
    std::cerr << "ember: config error:\n" << e.what() << "\n";
    return 2;
  }
}

int run_trainer_impl(Command cmd, const Options& opt, json::value cfg, Catalog& catalog, const DdpPlan& plan);

int run_trainer(Command cmd, const Options& opt) {
  // SIGINT/SIGTERM from here on stop the run at the next batch boundary with loggers finalized
  // (include/ember/signals.hpp); a second one ends the process at once.
  StopOnSignals stop_on_signals;
  json::value cfg;
  Catalog catalog;
  DdpPlan plan;
  try {
    cfg = load_run_config(opt.config, opt.overrides);
    catalog = scan_plugins(opt, &cfg);
    check_plugin_configs(opt, cfg, catalog);
    plan = plan_ddp(cfg);
  } catch (const ConfigError& e) {
    std::cerr << "ember: config error:\n" << e.what() << "\n";
    return 2;
  }
  if (int signo = caught_stop_signal()) {  // before anything was created or written
    std::cerr << "ember: interrupted: " << signal_name(signo) << " received before the run started\n";
    return 128 + signo;
  }
  try {
    // trainer.devices > 1 and no launcher: this process becomes Ember's launcher (host/ddp_launch.cpp).
    if (plan.spawn) return launch_local_ranks(plan.devices, plan.options.timeout_s);
    int rc = run_trainer_impl(cmd, opt, std::move(cfg), catalog, plan);
    if (int signo = caught_stop_signal())  // after the last batch boundary: the run finished anyway
      std::cerr << "ember: " << signal_name(signo) << " received after the last step; the run completed\n";
    return rc;
  } catch (const Interrupted& e) {
    std::cerr << "ember: interrupted: " << e.what() << "; loggers finalized\n";
    return e.exit_status();
  } catch (const ConfigError& e) {
    std::cerr << "ember: config error:\n" << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ember: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ember::cli
