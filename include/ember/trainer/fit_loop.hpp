// Trainer's fit loop: fit_impl (epochs, validation cadence, stopping) and train_batch (one
// optimisation step with its hooks). Member definitions of ember::Trainer; part of ember/trainer.hpp.
#pragma once

#include <ember/trainer.hpp>

namespace ember {

inline void Trainer::fit_impl(const std::string& ckpt_path) {
  if (!train_) throw ConfigError("fit: no training data (config key data.train)");
  optim_ = module_.configure_optimizers();
  if (!optim_.optimizer) throw RuntimeError("configure_optimizers returned no optimizer");
  if (opt_.watch && !watch_set_) watch(*opt_.watch);
  if (!ckpt_path.empty()) restore(ckpt_path, false);
  if (dist_) dist_->sync_parameters();
  dispatch(EMBER_HOOK_ID_on_fit_start);
  const std::int64_t n_train = dev_limit(limit(opt_.limit_train_batches, train_));
  const std::int64_t n_val = dev_limit(limit(opt_.limit_val_batches, val_));
  std::int64_t sanity = opt_.fast_dev_run ? 0
                        : opt_.num_sanity_val_steps < 0 ? n_val
                                                       : std::min(opt_.num_sanity_val_steps, n_val);
  if (sanity > 0) {
    sanity_ = true;
    dispatch(EMBER_HOOK_ID_on_sanity_check_start);
    eval_loop(EMBER_STAGE_VALIDATE, val_, sanity, /*sanity=*/true);
    dispatch(EMBER_HOOK_ID_on_sanity_check_end);
    sanity_ = false;
  }
  // Validation points inside an epoch: every k batches, or a fraction of it.
  std::int64_t val_every = 0;
  if (opt_.val_check_interval > 1.0) val_every = static_cast<std::int64_t>(opt_.val_check_interval);
  else val_every = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(opt_.val_check_interval * static_cast<double>(n_train))));

  args_.stage = stage_ = EMBER_STAGE_FIT;
  module_.train(true);
  dispatch(EMBER_HOOK_ID_on_train_start);
  const std::int64_t max_ep = max_epochs();
  std::vector<MetricValue> buf;
  for (epoch_ = next_epoch_; max_ep < 0 || epoch_ < max_ep; ++epoch_) {
    if (should_stop_ && epoch_ >= opt_.min_epochs) break;
    if (opt_.max_steps >= 0 && global_step_ >= opt_.max_steps) break;
    args_.epoch = epoch_;
    args_.batch_idx = -1;
    train_->start_epoch(epoch_);
    dispatch(EMBER_HOOK_ID_on_train_epoch_start);
    const std::int64_t first = next_batch_;
    next_epoch_ = epoch_;
    next_batch_ = 0;
    bool hit_max_steps = false;
    for (std::int64_t b = first; b < n_train; ++b) {
      check_interrupt();
      train_batch(b, n_train, buf);
      // Lightning raises SIGTERMException here: after the batch's hooks and logged row, before
      // a validation run could start.
      check_interrupt();
      const bool last = b + 1 == n_train;
      const bool val_now = val_ && n_val > 0 && (epoch_ + 1) % opt_.check_val_every_n_epoch == 0 &&
                           ((b + 1) % val_every == 0 || (last && opt_.val_check_interval <= 1.0));
      if (val_now) {
        eval_loop(EMBER_STAGE_VALIDATE, val_, n_val, false);
        module_.train(true);
        args_.stage = stage_ = EMBER_STAGE_FIT;
      }
      if (opt_.max_steps >= 0 && global_step_ >= opt_.max_steps) {
        hit_max_steps = true;
        break;
      }
      if (past_deadline()) break;
    }
    args_.batch_idx = -1;
    if (next_batch_ == 0) next_epoch_ = epoch_ + 1;
    buf.clear();
    metrics_.reduce_epoch(EMBER_STAGE_FIT, &buf);
    // Epoch-interval schedulers step before on_train_epoch_end, so that a checkpoint written
    // there (model_checkpoint) holds the schedule of the epoch it resumes into.
    if (next_batch_ == 0 && optim_.scheduler && optim_.scheduler_interval == "epoch") optim_.scheduler->step();
    dispatch(EMBER_HOOK_ID_on_train_epoch_end);
    metrics_.reduce_epoch(EMBER_STAGE_FIT, &buf);  // what on_train_epoch_end logged
    send_to_loggers(buf, EMBER_STAGE_FIT);
    if (dist_) sync_should_stop();
    if (hit_max_steps || stopped_by_deadline_) break;
  }
  args_.epoch = epoch_;
  dispatch(EMBER_HOOK_ID_on_train_end);
  dispatch(EMBER_HOOK_ID_on_fit_end);
}

inline void Trainer::train_batch(std::int64_t b, std::int64_t n_train, std::vector<MetricValue>& buf) {
  Batch batch = train_->batch(b);
  args_.batch_idx = b;
  args_.loss = nullptr;
  dispatch(EMBER_HOOK_ID_on_train_batch_start);
  metrics_.set_context(EMBER_STAGE_FIT, true, batch.size());
  // Lightning's automatic optimization: training_step; on_before_zero_grad + zero_grad on the
  // first batch of an accumulation window; backward; and when this batch steps:
  // on_before_optimizer_step, clip, step. Under ddp only a stepping batch all-reduces (no_sync).
  const bool step_now = (b + 1) % opt_.accumulate_grad_batches == 0 || b + 1 == n_train;
  if (dist_) dist_->prepare_forward(step_now);
  std::optional<torch::Tensor> loss = module_.training_step(batch, b);
  DLTensor view{};
  std::int64_t shape0 = 0;
  float loss_value = 0;
  if (loss) {
    torch::Tensor l = *loss;
    if (!l.defined()) throw RuntimeError("training_step returned an undefined tensor");
    if (opt_.accumulate_grad_batches > 1) l = l / static_cast<double>(opt_.accumulate_grad_batches);
    // The view points at the loss itself when it is a CPU float scalar (the usual case): no
    // item() sync on the hot path; otherwise a converted copy.
    if (loss->device().is_cpu() && loss->scalar_type() == torch::kFloat32 && loss->numel() == 1 &&
        loss->is_contiguous()) {
      view.data = loss->data_ptr();
    } else {
      loss_value = loss->detach().item<float>();
      view.data = &loss_value;
    }
    view.device = {kDLCPU, 0};
    view.ndim = 0;
    view.dtype = {kDLFloat, 32, 1};
    view.shape = &shape0;
    args_.loss = &view;
    if (accumulated_ == 0) {  // the first batch of an accumulation window
      args_.optimizer_idx = 0;
      dispatch(EMBER_HOOK_ID_on_before_zero_grad);
      if (dist_) dist_->zero_grad(*optim_.optimizer);
      else optim_.optimizer->zero_grad();
    }
    dispatch(EMBER_HOOK_ID_on_before_backward);
    if (dist_) dist_->prepare_backward(l, step_now);
    l.backward();
    dispatch(EMBER_HOOK_ID_on_after_backward);
    ++accumulated_;
  }
  if (step_now && accumulated_ > 0) {
    // watch (off: watch_freq_ == 0, one branch): the gradients this step applies.
    if (watch_freq_ > 0 && (global_step_ + 1) % watch_freq_ == 0 && !media_.empty()) log_watch();
    args_.optimizer_idx = 0;
    dispatch(EMBER_HOOK_ID_on_before_optimizer_step);
    if (opt_.gradient_clip_val && *opt_.gradient_clip_val > 0) {
      auto params = module_.parameters();
      if (opt_.gradient_clip_algorithm == "value") torch::nn::utils::clip_grad_value_(params, *opt_.gradient_clip_val);
      else torch::nn::utils::clip_grad_norm_(params, *opt_.gradient_clip_val);
    }
    optim_.optimizer->step();
    accumulated_ = 0;
    args_.optimizer_idx = -1;
    ++global_step_;
    args_.global_step = global_step_;
    if (optim_.scheduler && optim_.scheduler_interval == "step") optim_.scheduler->step();
  }
  next_batch_ = b + 1 == n_train ? 0 : b + 1;
  dispatch(EMBER_HOOK_ID_on_train_batch_end);
  args_.loss = nullptr;
  if (step_now && (global_step_ % opt_.log_every_n_steps == 0)) {
    buf.clear();
    metrics_.collect_step(buf);
    send_to_loggers(buf, EMBER_STAGE_FIT);
  } else {
    metrics_.skip_step();
  }
}

}  // namespace ember
