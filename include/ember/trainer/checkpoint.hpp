// Trainer checkpoint state: the checkpoint as a dict with Lightning's keys (checkpoint_value) and
// restoring from one (restore). Member definitions of ember::Trainer; part of ember/trainer.hpp.
#pragma once

#include <ember/trainer.hpp>

namespace ember {

inline torch::IValue Trainer::checkpoint_value(bool weights_only) {
  auto d = ckpt::new_dict();
  d.insert("epoch", epoch_);
  d.insert("global_step", global_step_);
  d.insert("pytorch-lightning_version", std::string("2.1.0"));
  d.insert("state_dict", ckpt::state_dict(module_));
  auto hp = boost::json::parse(module_.hparams_json());
  d.insert("hyper_parameters", ckpt::to_ivalue(hp));
  if (!weights_only) {
    c10::impl::GenericList opts(c10::AnyType::get());
    if (optim_.optimizer) opts.push_back(ckpt::optimizer_state(*optim_.optimizer));
    d.insert("optimizer_states", opts);
    c10::impl::GenericList scheds(c10::AnyType::get());
    if (optim_.scheduler) {
      auto s = ckpt::new_dict();
      s.insert("name", optim_.scheduler->name());
      s.insert("interval", optim_.scheduler_interval);
      s.insert("last_epoch", static_cast<std::int64_t>(optim_.scheduler->last_epoch()));
      s.insert("_step_count", static_cast<std::int64_t>(optim_.scheduler->last_epoch()) + 1);
      scheds.push_back(s);
    }
    d.insert("lr_schedulers", scheds);
    auto cbs = ckpt::new_dict();
    for (auto& s : stateful_) {
      std::string json;
      ember_sink_t sink{&json, [](void* c, const void* p, size_t n) -> ember_status_t {
                          static_cast<std::string*>(c)->append(static_cast<const char*>(p), n);
                          return EMBER_OK;
                        }};
      if (ember_status_t rc = s.table->state_dict(s.self, &sink); rc != EMBER_OK)
        throw RuntimeError(plugin_failure(s.id, "state_dict", s.last_error, s.self, rc));
      cbs.insert(s.id, json);
    }
    d.insert("callbacks", cbs);
    auto loops = ckpt::new_dict();
    auto fit_loop = ckpt::new_dict();
    fit_loop.insert("epoch_progress.current.completed", next_epoch_);
    fit_loop.insert("epoch_loop.batch_progress.current.completed", next_batch_);
    fit_loop.insert("epoch_loop._batches_that_stepped", global_step_);
    loops.insert("fit_loop", fit_loop);
    d.insert("loops", loops);
    auto em = ckpt::new_dict();
    em.insert("format_version", ckpt::kFormatVersion);
    em.insert("next_epoch", next_epoch_);
    em.insert("next_batch", next_batch_);
    em.insert("rng_state", at::detail::getDefaultCPUGenerator().get_state());
    em.insert("best_metrics", std::string("{}"));
    d.insert("ember", em);
  }
  return d;
}

inline void Trainer::restore(const std::string& url, bool weights_only) {
  std::string bytes = urls().read_all(url);
  torch::IValue v;
  try {
    v = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const std::exception& e) {
    throw RuntimeError(url + ": not a readable checkpoint: " + std::string(e.what()).substr(0, 300));
  }
  if (!v.isGenericDict()) throw RuntimeError(url + ": not a checkpoint (expected a dict)");
  auto d = v.toGenericDict();
  ckpt::load_state_dict(module_, ckpt::get(d, "state_dict").toGenericDict(), url);
  if (weights_only) return;
  global_step_ = ckpt::get(d, "global_step").toInt();
  if (d.find("ember") != d.end()) {
    auto em = ckpt::get(d, "ember").toGenericDict();
    next_epoch_ = ckpt::get(em, "next_epoch").toInt();
    next_batch_ = ckpt::get(em, "next_batch").toInt();
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(ckpt::get(em, "rng_state").toTensor());
  } else {
    next_epoch_ = ckpt::get(d, "epoch").toInt() + 1;
    next_batch_ = 0;
  }
  auto opts = ckpt::get(d, "optimizer_states").toList();
  if (optim_.optimizer && opts.size() > 0) ckpt::load_optimizer_state(*optim_.optimizer, opts.get(0));
  auto scheds = ckpt::get(d, "lr_schedulers").toList();
  if (optim_.scheduler && scheds.size() > 0)
    optim_.scheduler->restore(static_cast<unsigned>(ckpt::get(scheds.get(0).toGenericDict(), "last_epoch").toInt()));
  if (d.find("callbacks") != d.end()) {
    auto cbs = ckpt::get(d, "callbacks").toGenericDict();
    for (auto& s : stateful_) {
      auto it = cbs.find(s.id);
      if (it == cbs.end()) continue;
      const std::string& json = it->value().toStringRef();
      if (ember_status_t rc = s.table->load_state_dict(s.self, cstr(json)); rc != EMBER_OK)
        throw RuntimeError(plugin_failure(s.id, "load_state_dict", s.last_error, s.self, rc));
    }
  }
  // Lightning: the module's on_load_checkpoint first, then the callbacks'.
  epoch_ = next_epoch_;
  args_.epoch = epoch_;
  args_.global_step = global_step_;
  args_.url = cstr(url);
  (module_.*hook_member(EMBER_HOOK_ID_on_load_checkpoint))(args_);
  registry_.call(EMBER_HOOK_ID_on_load_checkpoint, args_);
  args_.url = {};
  restored_ = true;
}

}  // namespace ember
