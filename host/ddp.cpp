#include "ddp.hpp"

#include <ember/config.hpp>

#include <string>

namespace ember::cli {

DdpPlan plan_ddp(const boost::json::value& cfg) {
  DdpPlan p;
  const auto& t = cfg.as_object().at("trainer").as_object();
  auto integer = [&](const char* k, int def) {
    auto* v = t.if_contains(k);
    return v && v->is_number() ? static_cast<int>(config::number_of(*v)) : def;
  };
  const std::string strategy = t.contains("strategy") ? std::string(t.at("strategy").as_string()) : "auto";
  p.devices = integer("devices", 1);
  p.num_nodes = integer("num_nodes", 1);
  p.options = ddp::DdpOptions::from_json(t);
  if (strategy == "single_device") {
    if (p.devices * p.num_nodes > 1)
      throw ConfigError("trainer.strategy=\"single_device\" runs one process, but trainer.devices * trainer.num_nodes = " +
                        std::to_string(p.devices * p.num_nodes) + "; use \"ddp\"");
    return p;
  }
  const bool launched = ddp::process_env("RANK").has_value() || ddp::process_env("SLURM_PROCID").has_value();
  if (strategy == "auto" && !launched && p.devices * p.num_nodes == 1) return p;
  if (strategy == "auto" && launched && !ddp::process_env("RANK") && p.devices * p.num_nodes == 1) return p;  // a 1-task srun
  p.env = ddp::detect_env(ddp::process_env, p.devices, p.num_nodes);
  if (p.env.launcher == "none") {
    if (p.env.world_size == 1) return p;  // ddp on one device: nothing to spread
    p.spawn = true;
    return p;
  }
  p.ddp = true;
  return p;
}

}  // namespace ember::cli
