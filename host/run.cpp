// fit / validate / test / predict from the config.
#include "commands.hpp"
#include "ddp.hpp"

#include <ember/session.hpp>

#include <iomanip>
#include <iostream>

namespace ember::cli {

static ember_stage_t stage_of(Command cmd) {
  switch (cmd) {
    case Command::fit: return EMBER_STAGE_FIT;
    case Command::validate: return EMBER_STAGE_VALIDATE;
    case Command::test: return EMBER_STAGE_TEST;
    case Command::predict: return EMBER_STAGE_PREDICT;
  }
  return EMBER_STAGE_NONE;
}

static void run_entry(Command cmd, Trainer& trainer, const std::string& url);

int run_trainer_impl(Command cmd, const Options& opt, boost::json::value cfg, Catalog& catalog, const DdpPlan& plan) {
  // The whole run config is known good before any plugin is created or anything written (a
  // logger that has started writes its version directory, even on failure).
  check_data_config(cfg, stage_of(cmd), opt.config);
  for (const auto& r : catalog.refusals) std::cerr << "ember: warning: " << r << "\n";
  std::string ckpt = opt.ckpt_path;
  if (ckpt.empty())
    if (auto* c = cfg.as_object().if_contains("ckpt_path"); c && c->is_string()) ckpt = std::string(c->as_string());
  // Under ddp: join the process group first (a peer that never arrives fails here, named), then
  // DistributedDataParallel's set-up once the model exists.
  std::unique_ptr<ddp::DdpStrategy> dist;
  if (plan.ddp) {
    dist = std::make_unique<ddp::DdpStrategy>(plan.env, plan.options);
    dist->connect();
  }
  Session session(std::move(cfg), catalog, opt.config);
  if (!ckpt.empty() && ckpt != "last" && ckpt != "best") session.uses_url("ckpt_path", ckpt);
  Trainer& trainer = session.build(nullptr, stage_of(cmd), dist.get());
  if (dist) dist->attach(session.module());
  std::string url = session.resolve_ckpt(ckpt);
  if (dist) {
    try {
      run_entry(cmd, trainer, url);
    } catch (const Interrupted&) {
      throw;
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      throw RuntimeError(dist->explain_failure(e.what()));
    }
    if (cmd == Command::fit) {
      const double checksum = dist->check_replicas();
      if (dist->is_global_zero())
        std::cout << "ddp: " << dist->world_size() << " ranks hold identical parameters (checksum "
                  << std::setprecision(17) << checksum << ")\n";
    }
    dist->barrier("end of run");
    return 0;
  }
  run_entry(cmd, trainer, url);
  return 0;
}

static void run_entry(Command cmd, Trainer& trainer, const std::string& url) {
  const bool rank0 = trainer.is_global_zero();
  auto print_metrics = [&](const char* what) {
    if (!rank0) return;
    for (const auto& m : trainer.last_eval_metrics()) std::cout << what << " " << m.name << " " << m.value << "\n";
  };
  switch (cmd) {
    case Command::fit:
      trainer.fit(url);
      if (!rank0) break;
      if (trainer.should_stop()) std::cout << "stopped: " << trainer.stop_reason() << "\n";
      std::cout << "fit done: epoch " << trainer.current_epoch() << ", global_step " << trainer.global_step() << "\n";
      break;
    case Command::validate:
      trainer.validate(url);
      print_metrics("validate");
      break;
    case Command::test:
      trainer.test(url);
      print_metrics("test");
      break;
    case Command::predict: {
      auto preds = trainer.predict(url);
      std::string out = storage::join(trainer.options().default_root_dir, "predictions.pt");
      if (!rank0) break;  // each rank predicted its shard; rank 0 writes its own (no gather yet)
      auto all = preds.empty() ? torch::empty({0}) : torch::cat(preds);
      auto bytes = torch::pickle_save(all);
      trainer.urls().put_atomic(out, std::string_view(bytes.data(), bytes.size()));
      std::cout << "predictions: " << all.size(0) << " rows written to " << out << "\n";
      break;
    }
  }
}

}  // namespace ember::cli
