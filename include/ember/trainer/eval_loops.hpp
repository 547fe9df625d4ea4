// Trainer's evaluation loops: eval_loop (sanity check, validation, test) and predict_loop.
// Member definitions of ember::Trainer; part of ember/trainer.hpp.
#pragma once

#include <ember/trainer.hpp>

namespace ember {

inline void Trainer::eval_loop(ember_stage_t stage, data::Loader* loader, std::int64_t n, bool sanity) {
  if (!loader) {
    if (stage == EMBER_STAGE_TEST) throw ConfigError("test: no test data (config key data.test)");
    if (stage == EMBER_STAGE_VALIDATE && stage_ != EMBER_STAGE_FIT)
      throw ConfigError("validate: no validation data (config key data.val or data.val_fraction)");
    return;
  }
  n = dev_limit(n);
  const bool is_val = stage == EMBER_STAGE_VALIDATE;
  const ember_stage_t outer = stage_;
  const std::int64_t outer_batch = args_.batch_idx;
  args_.batch_idx = -1;
  stage_ = stage;
  args_.stage = sanity ? EMBER_STAGE_SANITY_CHECK : stage;
  torch::NoGradGuard ng;
  module_.train(false);
  dispatch(is_val ? EMBER_HOOK_ID_on_validation_start : EMBER_HOOK_ID_on_test_start);
  dispatch(is_val ? EMBER_HOOK_ID_on_validation_epoch_start : EMBER_HOOK_ID_on_test_epoch_start);
  for (std::int64_t b = 0; b < n; ++b) {
    check_interrupt();
    Batch batch = loader->batch(b);
    args_.batch_idx = b;
    dispatch(is_val ? EMBER_HOOK_ID_on_validation_batch_start : EMBER_HOOK_ID_on_test_batch_start);
    metrics_.set_context(stage, false, batch.size());
    if (is_val) module_.validation_step(batch, b);
    else module_.test_step(batch, b);
    dispatch(is_val ? EMBER_HOOK_ID_on_validation_batch_end : EMBER_HOOK_ID_on_test_batch_end);
    if (!sanity && b + 1 < n && past_deadline()) {
      eval_cut_ = EvalCut{stage, b + 1, n};
      break;
    }
  }
  args_.batch_idx = -1;
  std::vector<MetricValue> buf;
  if (sanity) {
    metrics_.discard(stage);
  } else {
    metrics_.reduce_epoch(stage, &buf);
  }
  dispatch(is_val ? EMBER_HOOK_ID_on_validation_epoch_end : EMBER_HOOK_ID_on_test_epoch_end);
  if (!sanity) {
    metrics_.reduce_epoch(stage, &buf);
    send_to_loggers(buf, stage);
    last_eval_ = buf;
  }
  dispatch(is_val ? EMBER_HOOK_ID_on_validation_end : EMBER_HOOK_ID_on_test_end);
  stage_ = outer;
  args_.stage = outer;
  args_.batch_idx = outer_batch;
}

inline std::vector<torch::Tensor> Trainer::predict_loop() {
  std::vector<torch::Tensor> out;
  if (!predict_) throw ConfigError("predict: no data (config key data.predict)");
  std::int64_t n = dev_limit(limit(opt_.limit_predict_batches, predict_));
  torch::NoGradGuard ng;
  module_.train(false);
  dispatch(EMBER_HOOK_ID_on_predict_start);
  dispatch(EMBER_HOOK_ID_on_predict_epoch_start);
  for (std::int64_t b = 0; b < n; ++b) {
    check_interrupt();
    Batch batch = predict_->batch(b);
    args_.batch_idx = b;
    dispatch(EMBER_HOOK_ID_on_predict_batch_start);
    torch::Tensor p = module_.predict_step(batch, b).contiguous();
    std::vector<std::int64_t> shape(p.sizes().begin(), p.sizes().end());
    DLTensor view{};
    view.data = p.data_ptr();
    view.device = {kDLCPU, 0};
    view.ndim = static_cast<int32_t>(p.dim());
    view.dtype = {kDLFloat, 32, 1};
    view.shape = shape.data();
    if (p.scalar_type() == torch::kFloat32) args_.outputs = &view;
    dispatch(EMBER_HOOK_ID_on_predict_batch_end);
    args_.outputs = nullptr;
    out.push_back(p);
  }
  args_.batch_idx = -1;
  dispatch(EMBER_HOOK_ID_on_predict_epoch_end);
  dispatch(EMBER_HOOK_ID_on_predict_end);
  return out;
}

}  // namespace ember
