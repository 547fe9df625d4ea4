#include "commands.hpp"
#include "ddp.hpp"

#include <ember/loader.hpp>
#include <ember/redact.hpp>
#include <ember/run_config.hpp>
#include <ember/schemes.hpp>
#include <ember/storage_options.hpp>
#include <ember/signals.hpp>
#include <ember/version.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

namespace ember::cli {

namespace json = boost::json;

int print_version() {
  std::cout << "ember " << kVersion << " (plugin ABI " << EMBER_ABI_MAJOR << "." << EMBER_ABI_MINOR
            << ")\n";
  return 0;
}

// Directories in precedence order: --plugin-dir, config plugins.dirs, EMBER_PLUGIN_PATH, then
// the defaults next to the executable. Relative config dirs are relative to the config file.
Catalog scan_plugins(const Options& opt, const json::value* cfg) {
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

static json::array schemes_of(const PluginLibrary& lib) {
  json::array out;
  for (auto& s : claimed_schemes(lib)) out.emplace_back(s);
  return out;
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
                                  {"schemes", schemes_of(*lib)},
                                  {"description", lib->description()},
                                  {"file", lib->path()}});
    }
    json::array refused;
    for (auto& r : catalog.refusals) refused.emplace_back(r);
    json::array conflicts;
    for (auto& c : scheme_owners(catalog).conflicts) conflicts.emplace_back(c);
    std::cout << json::serialize(json::object{{"plugins", list}, {"refused", refused}, {"scheme_conflicts", conflicts}})
              << "\n";
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
    for (const auto& c : scheme_owners(catalog).conflicts) std::cerr << "note: " << c << "\n";
  }
  return 0;
}

// Check each referenced plugin exists and that its config matches its schema (no create).
void check_plugin_configs(const Options& opt, json::value& cfg, const Catalog& catalog) {
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
  // Every URL scheme the run uses must be served: by the host, a configured plugin, or a plugin
  // found that claims it (loaded for it when the run starts).
  std::vector<std::pair<std::string, std::string>> extra;
  if (!opt.ckpt_path.empty() && opt.ckpt_path != "last" && opt.ckpt_path != "best") extra.emplace_back("--ckpt-path", opt.ckpt_path);
  try {
    auto_storage_plugins(cfg, catalog, opt.config, extra);
  } catch (const ConfigError& e) {
    errors += (errors.empty() ? "" : "\n") + std::string(e.what());
  }
  // storage_options: each object against its scheme's plugin schema.
  try {
    storage_options(cfg, catalog, opt.config);
  } catch (const ConfigError& e) {
    errors += (errors.empty() ? "" : "\n") + std::string(e.what());
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

// ---- commands from plugins (git-style ember-NAME executables) ---------------------------------

namespace ember::cli {

namespace {

constexpr std::string_view kCommandPrefix = "ember-";

std::vector<std::filesystem::path> command_dirs() {
  std::vector<std::filesystem::path> dirs = env_plugin_dirs();
  if (dirs.empty()) dirs = default_plugin_dirs();
  return dirs;
}

}  // namespace

CommandScan scan_plugin_commands() {
  namespace fs = std::filesystem;
  CommandScan out;
  std::map<std::string, std::string> found;  // name -> path
  auto consider = [&](const fs::path& file) {
    std::string fname = file.filename().string();
    if (fname.size() <= kCommandPrefix.size() || fname.compare(0, kCommandPrefix.size(), kCommandPrefix) != 0) return;
    std::string name = fname.substr(kCommandPrefix.size());
    std::error_code ec;
    if (!fs::is_regular_file(file, ec) || ::access(file.c_str(), X_OK) != 0) return;  // not a program
    if (std::string why = check_trusted(file); !why.empty()) {
      out.refusals.push_back(file.string() + ": refused: " + why);
      return;
    }
    auto [it, inserted] = found.emplace(name, file.string());
    if (!inserted)
      out.refusals.push_back(file.string() + ": refused: command '" + name + "' is already provided by " + it->second);
  };
  for (const auto& dir : command_dirs()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    if (std::string why = check_trusted(dir); !why.empty()) {
      out.refusals.push_back(dir.string() + ": refused: " + why);
      continue;
    }
    std::vector<fs::path> files;
    for (const auto& ent : fs::directory_iterator(dir, ec)) {
      std::error_code e;
      if (ent.is_directory(e)) {  // one level down, as for plugin libraries; consider() checks the way
        for (const auto& sub : fs::directory_iterator(ent.path(), e)) files.push_back(sub.path());
      } else {
        files.push_back(ent.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) consider(f);
  }
  for (const auto& [name, path] : found) out.commands.push_back({name, path});
  return out;
}

std::string plugin_commands_help() {
  CommandScan scan = scan_plugin_commands();
  std::string out = "commands from plugins:";
  if (scan.commands.empty()) out += " none found (an executable ember-NAME in a plugin directory adds `ember NAME`)";
  for (const auto& c : scan.commands) out += "\n  " + c.name + "  (" + c.path + ")";
  for (const auto& r : scan.refusals) out += "\n  " + r;
  return out;
}

int run_plugin_command(const std::string& name, int argc, char** argv) {
  CommandScan scan = scan_plugin_commands();
  for (const auto& c : scan.commands) {
    if (c.name != name) continue;
    std::filesystem::path real;
    // Checked again, and the resolved path is what runs: nothing can be swapped in between.
    if (std::string why = check_trusted(c.path, &real); !why.empty()) {
      std::cerr << "ember: " << c.path << ": refused: " << why << "\n";
      return 2;
    }
    std::vector<char*> args;
    std::string prog = real.string();
    args.push_back(prog.data());
    for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    std::cout.flush();
    std::cerr.flush();
    ::execv(prog.c_str(), args.data());
    std::cerr << "ember: cannot run " << prog << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cerr << "ember: '" << name << "' is not an ember command (see ember --help)\n";
  const std::string file = "/" + std::string(kCommandPrefix) + name;
  for (const auto& r : scan.refusals)
    if (r.find(file + ": refused") != std::string::npos) std::cerr << "  " << r << "\n";
  return 2;
}

}  // namespace ember::cli
