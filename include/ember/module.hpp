// ember::Module — Lightning's LightningModule for libtorch.
//
// Subclass it (embedded use or a model plugin), or use ScriptModule for a TorchScript file.
// Steps receive a Batch (slices of preloaded tensors) and log with log(name, value, options),
// which follows Lightning's per-hook defaults. Module is also a Callback: override any hook.
#pragma once

#include <ember/callback.hpp>
#include <ember/metrics.hpp>

#include <boost/json.hpp>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

struct Batch {
  torch::Tensor x;
  torch::Tensor y;  // undefined for predict data without labels
  std::int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

class Scheduler;

// One image for log_image: a tensor (HW, CHW or HWC with 1, 3 or 4 channels, CHW when the first
// dimension is 1, 3 or 4; uint8 0..255 or a floating type 0..1; any device) or the bytes of a PNG
// file, and an optional caption.
struct Image {
  torch::Tensor tensor;
  std::string png;
  std::string caption;

  explicit Image(torch::Tensor t, std::string caption_ = {}) : tensor(std::move(t)), caption(std::move(caption_)) {}
  static Image from_png(std::string bytes, std::string caption = {}) {
    Image i(torch::Tensor(), std::move(caption));
    i.png = std::move(bytes);
    return i;
  }
};

// A table's rows for log_table / log_text: each row one JSON value (string, number, bool, null)
// per column, e.g. {{"shirt", 0.93, true}, {"coat", 0.41, false}}.
using TableRows = std::vector<std::vector<boost::json::value>>;

// What watch logs (WandbLogger.watch's log / log_freq): histograms of the gradients, the
// parameters or both, after backward on every log_freq-th optimizer step.
struct WatchOptions {
  std::string log = "gradients";  // "gradients", "parameters" or "all"
  std::int64_t log_freq = 100;
};

// Where a module's media calls go: the trainer, which checks them and hands them to every
// logger offering ember.media/1.
class MediaSink {
 public:
  virtual ~MediaSink() = default;
  virtual void log_images(std::string_view key, const std::vector<Image>& images) = 0;
  virtual void log_table(std::string_view key, const std::vector<std::string>& columns, const TableRows& data) = 0;
  virtual void watch(const WatchOptions& options) = 0;
  virtual void unwatch() = 0;
};

// configure_optimizers' answer: an optimizer and optionally a scheduler with its interval.
struct OptimizerConfig {
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  std::shared_ptr<Scheduler> scheduler;  // optional
  std::string scheduler_interval = "epoch";              // "epoch" or "step"
  std::string optimizer_name;                            // "adam", "adamw", "sgd": for checkpoints
};

class Module : public Callback {
 public:
  ~Module() override = default;

  // The network's parameters and buffers with stable names (state_dict keys).
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_parameters() = 0;
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_buffers() { return {}; }
  virtual void train(bool on) = 0;
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

  // The loss for a batch, or nullopt to skip the step (Lightning: return None).
  virtual std::optional<torch::Tensor> training_step(const Batch& batch, std::int64_t batch_idx) = 0;
  virtual void validation_step(const Batch&, std::int64_t) {}
  virtual void test_step(const Batch&, std::int64_t) {}
  virtual torch::Tensor predict_step(const Batch& batch, std::int64_t) { return forward(batch.x); }
  virtual OptimizerConfig configure_optimizers() = 0;
  // Saved as hyper_parameters in checkpoints and sent to loggers (a JSON object).
  virtual std::string hparams_json() const { return "{}"; }

  std::vector<torch::Tensor> parameters() {
    std::vector<torch::Tensor> out;
    for (auto& kv : named_parameters()) out.push_back(kv.second);
    return out;
  }

  // Lightning's self.log. The first call of a name allocates; later calls do not.
  void log(std::string_view name, double value, const LogOptions& options = {},
           std::int64_t batch_size = -1) {
    metrics_->log(name, value, options, batch_size);
  }
  void log(std::string_view name, const torch::Tensor& value, const LogOptions& options = {},
           std::int64_t batch_size = -1) {
    metrics_->log(name, value.item<double>(), options, batch_size);
  }

  // Lightning's WandbLogger.log_image(key, images, caption=[...]), sent to every logger that
  // takes media (ember.media/1; the others skip it) at the current global step. Throws
  // std::invalid_argument naming key and the image for an image that is not HW/CHW/HWC uint8 or
  // 0..1 floats, or when caption is neither empty nor one per image.
  void log_image(std::string_view key, const std::vector<torch::Tensor>& images,
                 const std::vector<std::string>& caption = {}) {
    if (!caption.empty() && caption.size() != images.size())
      throw std::invalid_argument("log_image '" + std::string(key) + "': " + std::to_string(caption.size()) +
                                  " captions for " + std::to_string(images.size()) + " images; expected one per image or none");
    std::vector<Image> all;
    all.reserve(images.size());
    for (std::size_t i = 0; i < images.size(); ++i) all.emplace_back(images[i], caption.empty() ? std::string() : caption[i]);
    log_image(key, all);
  }
  void log_image(std::string_view key, const torch::Tensor& image, std::string caption = {}) {
    log_image(key, std::vector<Image>{Image(image, std::move(caption))});
  }
  // Tensors and encoded PNGs (Image::from_png) alike.
  void log_image(std::string_view key, const std::vector<Image>& images) { sink("log_image").log_images(key, images); }

  // Lightning's WandbLogger.log_table(key, columns, data): a W&B table at the current step.
  void log_table(std::string_view key, const std::vector<std::string>& columns, const TableRows& data) {
    sink("log_table").log_table(key, columns, data);
  }
  // Lightning's WandbLogger.log_text(key, columns, data): the same as log_table.
  void log_text(std::string_view key, const std::vector<std::string>& columns, const TableRows& data) {
    sink("log_text").log_table(key, columns, data);
  }
  // Text samples as a table with one "text" column, one row per string.
  void log_text(std::string_view key, const std::vector<std::string>& texts) {
    TableRows rows;
    rows.reserve(texts.size());
    for (const auto& t : texts) rows.push_back({boost::json::value(t)});
    sink("log_text").log_table(key, {"text"}, rows);
  }

  // Lightning's WandbLogger.watch(model, log, log_freq): histograms of gradients ("gradients"),
  // parameters ("parameters") or both ("all") of every named parameter, 64 bins, after backward
  // on every log_freq-th optimizer step, as "gradients/<name>" and "parameters/<name>". The
  // config's trainer.watch does the same without code. unwatch() stops it.
  void watch(const std::string& log = "gradients", std::int64_t log_freq = 100) {
    sink("watch").watch(WatchOptions{log, log_freq});
  }
  void unwatch() { sink("unwatch").unwatch(); }

  // Bound by the trainer.
  void attach(MetricStore* store) { metrics_ = store; }
  void attach_media(MediaSink* media) { media_ = media; }
  MediaSink* media_sink() const { return media_; }
  MetricStore& metric_store() { return *metrics_; }

 private:
  MediaSink& sink(const char* what) {
    if (!media_) throw std::logic_error(std::string(what) + ": the module is not attached to a trainer");
    return *media_;
  }

  MetricStore own_store_;
  MetricStore* metrics_ = &own_store_;
  MediaSink* media_ = nullptr;
};

// Wraps a torch::nn::Module holder (e.g. torch::nn::Sequential) for the common case.
template <class Net>
class NetModule : public Module {
 public:
  explicit NetModule(Net net) : net_(std::move(net)) {}
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() override {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& kv : net_->named_parameters()) out.emplace_back(kv.key(), kv.value());
    return out;
  }
  std::vector<std::pair<std::string, torch::Tensor>> named_buffers() override {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& kv : net_->named_buffers()) out.emplace_back(kv.key(), kv.value());
    return out;
  }
  void train(bool on) override { net_->train(on); }
  torch::Tensor forward(const torch::Tensor& x) override { return net_->forward(x); }
  Net& net() { return net_; }

 protected:
  Net net_;
};

// Build an optimizer by name over params (the config's model.optimizer section).
inline OptimizerConfig make_optimizer(const std::string& name, std::vector<torch::Tensor> params,
                                      double lr, double momentum = 0, double weight_decay = 0) {
  OptimizerConfig c;
  c.optimizer_name = name;
  if (name == "adam")
    c.optimizer = std::make_shared<torch::optim::Adam>(
        params, torch::optim::AdamOptions(lr).weight_decay(weight_decay));
  else if (name == "adamw")
    c.optimizer = std::make_shared<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
  else if (name == "sgd")
    c.optimizer = std::make_shared<torch::optim::SGD>(
        params, torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay));
  else
    throw std::invalid_argument("unknown optimizer '" + name + "'; expected sgd, adam or adamw");
  return c;
}

// A learning-rate schedule in closed form, lr = f(base_lr, t) after t calls of step(), as in
// torch.optim.lr_scheduler; its count is saved in checkpoints and restored exactly.
class Scheduler : public torch::optim::LRScheduler {
 public:
  explicit Scheduler(torch::optim::Optimizer& opt) : LRScheduler(opt) {
    for (auto& g : opt.param_groups()) base_.push_back(g.options().get_lr());
  }
  unsigned last_epoch() const { return step_count_; }
  // Jump to the state after `count` calls of step().
  void restore(unsigned count) {
    if (count == 0) return;
    step_count_ = count - 1;
    step();
  }
  virtual std::string name() const = 0;

 protected:
  // torch's LRScheduler computes from the count before incrementing it; Python's after.
  std::vector<double> get_lrs() override {
    std::vector<double> out;
    for (double b : base_) out.push_back(lr_at(b, step_count_ + 1));
    return out;
  }
  virtual double lr_at(double base, unsigned t) const = 0;
  std::vector<double> base_;
};

class StepLR : public Scheduler {
 public:
  StepLR(torch::optim::Optimizer& opt, unsigned step_size, double gamma)
      : Scheduler(opt), step_size_(step_size), gamma_(gamma) {}
  std::string name() const override { return "StepLR"; }

 protected:
  double lr_at(double base, unsigned t) const override {
    return base * std::pow(gamma_, static_cast<double>(t / step_size_));
  }
  unsigned step_size_;
  double gamma_;
};

class CosineAnnealingLR : public Scheduler {
 public:
  CosineAnnealingLR(torch::optim::Optimizer& opt, unsigned t_max, double eta_min = 0)
      : Scheduler(opt), t_max_(t_max), eta_min_(eta_min) {}
  std::string name() const override { return "CosineAnnealingLR"; }

 protected:
  double lr_at(double base, unsigned t) const override {
    const double pi = 3.14159265358979323846;
    t = std::min(t, t_max_);
    return eta_min_ + (base - eta_min_) * (1 + std::cos(pi * t / t_max_)) / 2;
  }
  unsigned t_max_;
  double eta_min_;
};

}  // namespace ember
