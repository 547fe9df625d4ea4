// What the ddp suites that run `ember fit` as processes share: the paths, a free loopback port,
// a small Fashion-MNIST-shaped tensors file, config files, the argv of a rank started the way a
// launcher starts it, and reading a checkpoint's state_dict.
#pragma once

#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace ember::test::ddp_cli {

inline std::string exe() { return require_env("EMBER_EXE"); }
inline std::string plugins() { return require_env("EMBER_BUILD_ROOT") + "/plugins"; }

// A port the kernel just handed out on 127.0.0.1 (closed again: the caller's store binds it).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// 256 rows of Fashion-MNIST's shape (784 features, 10 classes), seed 11, as a tensors file.
inline std::string write_data(const TempDir& dir) {
  torch::manual_seed(11);
  c10::Dict<std::string, torch::Tensor> d;
  d.insert("x", torch::randn({256, 784}));
  d.insert("y", torch::randint(0, 10, {256}, torch::kInt64));
  auto bytes = torch::pickle_save(d);
  std::string path = (dir.path() / "data.pt").string();
  write_file(path, std::string(bytes.begin(), bytes.end()));
  return path;
}

inline std::string write_config(const TempDir& dir, const boost::json::object& cfg, const std::string& name) {
  std::string path = (dir.path() / name).string();
  write_file(path, boost::json::serialize(cfg));
  return path;
}

// `ember ARGS... --plugin-dir <build>/plugins`
inline std::vector<std::string> ember_argv(std::vector<std::string> args) {
  std::vector<std::string> argv{exe()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--plugin-dir");
  argv.push_back(plugins());
  return argv;
}

// `env -u ... VAR=... cmd`: a process started the way a launcher starts it, without this
// process's own launcher variables (if a test runner had any).
inline std::vector<std::string> with_env(const std::vector<std::string>& vars, const std::vector<std::string>& argv) {
  std::vector<std::string> out{"/usr/bin/env"};
  for (const char* v : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                        "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"}) {
    out.push_back("-u");
    out.push_back(v);
  }
  out.insert(out.end(), vars.begin(), vars.end());
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

inline c10::Dict<c10::IValue, c10::IValue> state_dict(const std::filesystem::path& ckpt) {
  std::ifstream in(ckpt, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  BOOST_REQUIRE_MESSAGE(!bytes.empty(), "no checkpoint at " << ckpt);
  auto d = torch::pickle_load(bytes).toGenericDict();
  return d.at("state_dict").toGenericDict();
}

// Every file called name under root.
inline std::vector<std::filesystem::path> find(const std::filesystem::path& root, const std::string& name) {
  std::vector<std::filesystem::path> out;
  if (!std::filesystem::exists(root)) return out;
  for (auto& e : std::filesystem::recursive_directory_iterator(root))
    if (e.path().filename() == name) out.push_back(e.path());
  return out;
}

inline bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

}  // namespace ember::test::ddp_cli
