// Strategy "ddp" in the `ember` CLI: which launcher started this process, whether Ember must
// start the local ranks itself (host/ddp_launch.cpp), and the c10d strategy of this rank.
#pragma once

#include <ember/ddp/strategy.hpp>

#include <boost/json.hpp>

#include <memory>

namespace ember::cli {

struct DdpPlan {
  bool ddp = false;    // run as one rank of a c10d group
  bool spawn = false;  // no launcher: start trainer.devices local ranks first
  int devices = 1, num_nodes = 1;
  ddp::ClusterEnv env;
  ddp::DdpOptions options;
};

// From the resolved config and the environment (torchrun, SLURM, Ember's launcher). Throws
// ConfigError for a contradiction (num_nodes > 1 without a launcher, SLURM_NTASKS mismatch).
DdpPlan plan_ddp(const boost::json::value& cfg);

// Start devices ranks of this very command and wait for them; the exit status to return.
int launch_local_ranks(int devices, double timeout_s);

}  // namespace ember::cli
