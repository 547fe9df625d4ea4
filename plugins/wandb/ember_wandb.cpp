// `ember wandb` (the executable ember-wandb, a git-style plugin command: `ember wandb ARGS` finds it
// next to the plugins and execs it with ARGS): upload runs the wandb plugin could not send, and
// fetch model artifacts.
//
//   ember wandb sync DIR [--base-url URL]          an offline run (offline-run-<ts>-<id>/) or a
//                                                  spool directory (run-<id>-<pid>/) -> W&B
//   ember wandb download ENTITY/PROJECT/NAME[:ALIAS] --to DIR [--base-url URL]
//   both: [--allow-insecure-http]                  send the key over http:// to a non-loopback host
//
// The key comes from WANDB_API_KEY or the netrc entry of the base URL's host; the base URL from
// --base-url, WANDB_BASE_URL, W&B's settings file (base_url under [default] in
// $WANDB_CONFIG_DIR/settings or ~/.config/wandb/settings), then https://api.wandb.ai — never from the directory being synced
// (a spool's meta.json could name any host, and the key would go there). The directory is read as
// untrusted: regular files only, no symlinks, no paths outside it. Downloaded files stay inside
// --to. Exit codes as the rest of `ember`: 0 ok, 2 usage, 1 failure.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "wandb_api.hpp"

namespace {

namespace fs = std::filesystem;
namespace wb = ember::wandb;

int usage() {
  std::cerr << "usage: ember wandb sync DIR [--base-url URL] [--allow-insecure-http]\n"
               "       ember wandb download ENTITY/PROJECT/NAME[:ALIAS] --to DIR [--base-url URL] [--allow-insecure-http]\n";
  return 2;
}

// base_url from W&B's settings file, as `wandb login --host URL` writes it (INI, section [default]).
std::string settings_base_url() {
  std::string dir = wb::getenv_str("WANDB_CONFIG_DIR");
  if (dir.empty()) {
    std::string home = wb::getenv_str("HOME");
    if (home.empty()) return {};
    dir = home + "/.config/wandb";
  }
  std::ifstream in(dir + "/settings");
  std::string line, section;
  auto trim = [](std::string t) {
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    std::size_t b = 0;
    while (b < t.size() && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
    return t.substr(b);
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.size() > 1 && line.front() == '[' && line.back() == ']') section = line.substr(1, line.size() - 2);
    auto eq = line.find('=');
    if (section == "default" && eq != std::string::npos && trim(line.substr(0, eq)) == "base_url")
      return trim(line.substr(eq + 1));
  }
  return {};
}

wb::Api make_api(const std::string& base_url, bool allow_insecure) {
  wb::ApiOptions o;
  o.base_url = base_url;
  wb::check_key_transport(base_url, ember::http::Url::parse(base_url).host, allow_insecure, "--allow-insecure-http");
  o.api_key = wb::getenv_str("WANDB_API_KEY");
  std::string where;
  if (o.api_key.empty()) o.api_key = wb::netrc_key(ember::http::Url::parse(base_url).host, &where);
  if (o.api_key.empty())
    throw std::runtime_error("no W&B API key: set WANDB_API_KEY or add a 'machine " + ember::http::Url::parse(base_url).host +
                             " ... password KEY' entry to " + (where.empty() ? std::string("~/.netrc") : where));
  o.max_attempts = 8;
  return wb::Api(o);
}

}  // namespace

int run_wandb(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);  // argv[0] is this program
  if (args.empty() || args[0] == "--help" || args[0] == "-h") return usage();
  std::string cmd = args[0], target, to, base_url;
  bool allow_insecure = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--allow-insecure-http") {
      allow_insecure = true;
    } else if ((args[i] == "--base-url" || args[i] == "--to") && i + 1 < args.size()) {
      (args[i] == "--to" ? to : base_url) = args[i + 1];
      ++i;
    } else if (target.empty() && args[i].rfind("--", 0) != 0) {
      target = args[i];
    } else {
      std::cerr << "ember wandb: unexpected argument '" << args[i] << "'\n";
      return usage();
    }
  }
  if (target.empty()) return usage();
  if (base_url.empty()) base_url = wb::getenv_str("WANDB_BASE_URL");
  if (base_url.empty()) base_url = settings_base_url();
  try {
    if (cmd == "sync") {
      fs::path dir(target);
      if (!fs::is_directory(dir)) throw std::runtime_error(target + ": not a directory");
      wb::RunData data;
      std::vector<std::string> used;
      bool spool = fs::exists(fs::symlink_status(dir / "meta.json"));
      wb::LocalStore store(false);
      std::string spool_base;
      if (spool) data = wb::read_spool_dir(store, dir.string(), &used, &spool_base);
      else data = wb::read_offline_dir(dir);
      if (base_url.empty()) base_url = "https://api.wandb.ai";
      while (base_url.size() > 1 && base_url.back() == '/') base_url.pop_back();
      if (!spool_base.empty() && spool_base != base_url)
        std::cerr << "ember wandb sync: " << target << " was spooled for " << wb::strip_query_strings(spool_base)
                  << "; sending to " << base_url << " (the base URL comes from --base-url, WANDB_BASE_URL or W&B's "
                  << "settings file, never from the directory)\n";
      wb::Api api = make_api(base_url, allow_insecure);
      wb::RunRef run = wb::upload_run(api, data);
      if (spool)
        for (const auto& f : used) store.remove((dir / f).string());
      else  // O_NOFOLLOW: a planted .synced symlink must not truncate its target
        wb::write_file_under(dir.string(), ".synced", "", "sync marker");
      std::cout << "synced " << data.history.size() << " history rows of run " << run.entity << "/" << run.project << "/"
                << run.run_id << " to " << base_url << "\n";
      return 0;
    }
    if (cmd == "download") {
      if (to.empty()) {
        std::cerr << "ember wandb download: --to DIR is required\n";
        return usage();
      }
      if (base_url.empty()) base_url = "https://api.wandb.ai";
      wb::Api api = make_api(base_url, allow_insecure);
      wb::DownloadedArtifact a = wb::download_artifact(api, target);
      // The manifest's paths are the server's choice: every one is checked before anything is
      // written, and each file is written below --to without following a symlink.
      for (const auto& kv : a.files) wb::safe_relative_path(kv.first, "artifact " + target + ": manifest entry");
      fs::create_directories(to);
      for (const auto& [name, bytes] : a.files)
        std::cout << wb::write_file_under(to, name, bytes, "artifact " + target + ": manifest entry") << "\n";
      std::cerr << "downloaded " << target << " (" << a.version << ", " << a.files.size() << " file(s)) to " << to << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "ember wandb " << cmd << ": " << wb::strip_query_strings(e.what()) << "\n";
    return 1;
  }
  std::cerr << "ember wandb: unknown command '" << cmd << "'\n";
  return usage();
}

int main(int argc, char** argv) { return run_wandb(argc, argv); }
