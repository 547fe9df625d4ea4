// fit / validate / test / predict from the config.
#include "commands.hpp"

#include <ember/session.hpp>

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

int run_trainer_impl(Command cmd, const Options& opt, boost::json::value cfg, Catalog& catalog) {
  // The whole run config is known good before any plugin is created or anything written (a
  // logger that has started writes its version directory, even on failure).
  check_data_config(cfg, stage_of(cmd), opt.config);
  for (const auto& r : catalog.refusals) std::cerr << "ember: warning: " << r << "\n";
  std::string ckpt = opt.ckpt_path;
  if (ckpt.empty())
    if (auto* c = cfg.as_object().if_contains("ckpt_path"); c && c->is_string()) ckpt = std::string(c->as_string());
  Session session(std::move(cfg), catalog, opt.config);
  if (!ckpt.empty() && ckpt != "last" && ckpt != "best") session.uses_url("ckpt_path", ckpt);
  Trainer& trainer = session.build(nullptr, stage_of(cmd));
  std::string url = session.resolve_ckpt(ckpt);
  auto print_metrics = [&](const char* what) {
    for (const auto& m : trainer.last_eval_metrics()) std::cout << what << " " << m.name << " " << m.value << "\n";
  };
  switch (cmd) {
    case Command::fit:
      trainer.fit(url);
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
      auto all = preds.empty() ? torch::empty({0}) : torch::cat(preds);
      auto bytes = torch::pickle_save(all);
      trainer.urls().put_atomic(out, std::string_view(bytes.data(), bytes.size()));
      std::cout << "predictions: " << all.size(0) << " rows written to " << out << "\n";
      break;
    }
  }
  return 0;
}

}  // namespace ember::cli
