// Where this process sits in a data-parallel job, read from the launcher's environment as
// torch.distributed and Lightning read it: torchrun (and Ember's own launcher, which sets the
// same variables), or SLURM (srun). No c10d here: the launcher and the tests use it alone.
#pragma once

#include <ember/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

namespace ember::ddp {

struct ClusterEnv {
  std::string launcher = "none";  // "torchrun" (RANK/WORLD_SIZE, also Ember's own), "slurm", "none"
  int rank = 0, local_rank = 0, world_size = 1, local_world_size = 1, node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  // torchrun's agent hosts the store; every rank is a client and keys are prefixed
  // /worker/attempt_<restart_count> (torch.distributed.rendezvous._create_c10d_store).
  bool use_agent_store = false;
  int restart_count = 0;
  bool distributed() const { return world_size > 1 || launcher != "none"; }
};

using EnvFn = std::function<std::optional<std::string>(const char*)>;

inline std::optional<std::string> process_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

inline int env_int(const EnvFn& env, const char* name, std::optional<int> fallback = std::nullopt) {
  auto v = env(name);
  if (!v) {
    if (fallback) return *fallback;
    throw ConfigError(std::string("environment variable ") + name + " is not set (expected an integer)");
  }
  try {
    std::size_t used = 0;
    long n = std::stol(*v, &used);
    if (used != v->size() || n < 0 || n > 1 << 30) throw std::invalid_argument("range");
    return static_cast<int>(n);
  } catch (const std::exception&) {
    throw ConfigError(std::string("environment variable ") + name + "='" + *v + "': expected a non-negative integer");
  }
}

// The first host of a SLURM node list, as Lightning's SLURMEnvironment.resolve_root_node_address:
// "node[01-04],gpu7" -> "node01"; "a,b" -> "a"; "rack[3,5-6]-ib" -> "rack3-ib".
inline std::string slurm_first_host(const std::string& nodelist) {
  std::size_t depth = 0, end = nodelist.size();
  for (std::size_t i = 0; i < nodelist.size(); ++i) {
    if (nodelist[i] == '[') ++depth;
    else if (nodelist[i] == ']' && depth) --depth;
    else if (nodelist[i] == ',' && depth == 0) {
      end = i;
      break;
    }
  }
  std::string first = nodelist.substr(0, end);
  auto open = first.find('[');
  if (open == std::string::npos) return first;
  auto close = first.find(']', open);
  if (close == std::string::npos) throw ConfigError("SLURM_JOB_NODELIST='" + nodelist + "': unbalanced '['");
  std::string inside = first.substr(open + 1, close - open - 1);
  std::string head = inside.substr(0, inside.find_first_of(",-"));
  if (head.empty()) throw ConfigError("SLURM_JOB_NODELIST='" + nodelist + "': empty range");
  return first.substr(0, open) + head + first.substr(close + 1);
}

// devices and num_nodes: the config's trainer.devices / trainer.num_nodes, checked against what
// the launcher says, as Lightning does.
inline ClusterEnv detect_env(const EnvFn& env, int devices, int num_nodes) {
  ClusterEnv c;
  if (env("RANK") && env("WORLD_SIZE")) {
    c.launcher = env("TORCHELASTIC_RUN_ID") ? "torchrun" : env("EMBER_LAUNCHER") ? "ember" : "torchrun";
    c.rank = env_int(env, "RANK");
    c.world_size = env_int(env, "WORLD_SIZE");
    c.local_rank = env_int(env, "LOCAL_RANK", 0);
    c.local_world_size = env_int(env, "LOCAL_WORLD_SIZE", c.world_size);
    c.node_rank = env_int(env, "GROUP_RANK", env_int(env, "NODE_RANK", 0));
    auto addr = env("MASTER_ADDR");
    if (!addr) throw ConfigError("RANK and WORLD_SIZE are set but MASTER_ADDR is not (torch.distributed's env:// needs it)");
    c.master_addr = *addr;
    c.master_port = env_int(env, "MASTER_PORT");
    c.use_agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    c.restart_count = env_int(env, "TORCHELASTIC_RESTART_COUNT", 0);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    c.launcher = "slurm";
    c.rank = env_int(env, "SLURM_PROCID");
    c.world_size = env_int(env, "SLURM_NTASKS");
    c.local_rank = env_int(env, "SLURM_LOCALID", 0);
    c.node_rank = env_int(env, "SLURM_NODEID", 0);
    c.local_world_size = env_int(env, "SLURM_NTASKS_PER_NODE", c.world_size / std::max(1, num_nodes));
    if (auto addr = env("MASTER_ADDR")) c.master_addr = *addr;
    else if (auto list = env("SLURM_JOB_NODELIST") ? env("SLURM_JOB_NODELIST") : env("SLURM_NODELIST"))
      c.master_addr = slurm_first_host(*list);
    else throw ConfigError("SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST is");
    // Lightning's default: 15000 + the job id's last four digits, so two jobs on a node differ.
    if (env("MASTER_PORT")) c.master_port = env_int(env, "MASTER_PORT");
    else if (auto job = env("SLURM_JOB_ID"); job && !job->empty())
      c.master_port = 15000 + std::atoi(job->substr(job->size() > 4 ? job->size() - 4 : 0).c_str());
    else c.master_port = 12910;
    if (c.world_size != devices * num_nodes)
      throw ConfigError("SLURM_NTASKS=" + std::to_string(c.world_size) + " but trainer.devices * trainer.num_nodes = " +
                        std::to_string(devices) + " * " + std::to_string(num_nodes) +
                        "; run srun with --ntasks-per-node=" + std::to_string(devices) + " and --nodes=" + std::to_string(num_nodes));
  } else {
    c.world_size = devices * num_nodes;
    c.local_world_size = devices;
    if (num_nodes > 1)
      throw ConfigError("trainer.num_nodes=" + std::to_string(num_nodes) +
                        " needs a launcher on every node (torchrun or srun); Ember's own launcher starts ranks on this machine only");
  }
  if (c.world_size < 1 || c.rank >= c.world_size)
    throw ConfigError("rank " + std::to_string(c.rank) + " is outside world size " + std::to_string(c.world_size) +
                      " (launcher " + c.launcher + ")");
  if (c.master_port < 0 || c.master_port > 65535)
    throw ConfigError("MASTER_PORT=" + std::to_string(c.master_port) + ": expected 0 to 65535");
  return c;
}

}  // namespace ember::ddp
