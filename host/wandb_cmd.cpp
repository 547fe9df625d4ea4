// `ember wandb`: upload runs the wandb plugin could not send, and fetch model artifacts.
//
//   ember wandb sync DIR [--base-url URL]          an offline run (offline-run-<ts>-<id>/) or a
//                                                  spool directory (run-<id>-<pid>/) -> W&B
//   ember wandb download ENTITY/PROJECT/NAME[:ALIAS] --to DIR [--base-url URL]
//
// The key comes from WANDB_API_KEY or the netrc entry of the base URL's host; the base URL from
// --base-url, WANDB_BASE_URL, the spool's meta.json, then https://api.wandb.ai. Exit codes as the
// rest of `ember`: 0 ok, 2 usage, 1 failure.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "wandb_api.hpp"

namespace ember::cli {

namespace {

namespace fs = std::filesystem;
namespace wb = ember::wandb;

// The spool on the local filesystem (the plugin uses the host's URL space instead).
class FsStore final : public wb::Store {
 public:
  std::optional<std::string> read(const std::string& url) override {
    std::ifstream in(url, std::ios::binary);
    if (!in) return std::nullopt;
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return s;
  }
  void write(const std::string& url, std::string_view bytes) override {
    std::string tmp = url + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) throw std::runtime_error("cannot write " + tmp);
    }
    fs::rename(tmp, url);
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  void remove(const std::string& url) override {
    std::error_code ec;
    fs::remove(url, ec);
  }
};

int usage() {
  std::cerr << "usage: ember wandb sync DIR [--base-url URL]\n"
               "       ember wandb download ENTITY/PROJECT/NAME[:ALIAS] --to DIR [--base-url URL]\n";
  return 2;
}

wb::Api make_api(const std::string& base_url) {
  wb::ApiOptions o;
  o.base_url = base_url;
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
  std::vector<std::string> args(argv + 1, argv + argc);  // argv[0] is "wandb"
  if (args.empty() || args[0] == "--help" || args[0] == "-h") return usage();
  std::string cmd = args[0], target, to, base_url;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if ((args[i] == "--base-url" || args[i] == "--to") && i + 1 < args.size()) {
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
  try {
    if (cmd == "sync") {
      fs::path dir(target);
      if (!fs::is_directory(dir)) throw std::runtime_error(target + ": not a directory");
      wb::RunData data;
      std::vector<std::string> used;
      bool spool = fs::exists(dir / "meta.json");
      FsStore store;
      if (spool) {
        std::string spool_base;
        data = wb::read_spool_dir(store, dir.string(), &used, &spool_base);
        if (base_url.empty()) base_url = spool_base;
      } else {
        data = wb::read_offline_dir(dir);
      }
      if (base_url.empty()) base_url = "https://api.wandb.ai";
      wb::Api api = make_api(base_url);
      wb::RunRef run = wb::upload_run(api, data);
      if (spool)
        for (const auto& f : used) store.remove((dir / f).string());
      else
        std::ofstream(dir / (".synced"));
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
      wb::Api api = make_api(base_url);
      wb::DownloadedArtifact a = wb::download_artifact(api, target);
      fs::create_directories(to);
      for (const auto& [name, bytes] : a.files) {
        fs::path p = fs::path(to) / name;
        fs::create_directories(p.parent_path());
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw std::runtime_error("cannot write " + p.string());
        std::cout << p.string() << "\n";
      }
      std::cerr << "downloaded " << target << " (" << a.version << ", " << a.files.size() << " file(s)) to " << to << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "ember wandb " << cmd << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "ember wandb: unknown command '" << cmd << "'\n";
  return usage();
}

}  // namespace ember::cli
