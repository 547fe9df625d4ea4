// A tiny classification module and synthetic data for fast in-process trainer tests.
#pragma once

#include <ember/trainer.hpp>

#include <string>
#include <vector>

namespace tiny {

inline ember::data::Dataset make_data(std::int64_t n, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  ember::data::Dataset d;
  d.x = torch::randn({n, 4}, gen);
  d.y = (d.x.select(1, 0) + d.x.select(1, 1) > 0).to(torch::kInt64) +
        (d.x.select(1, 2) > 1).to(torch::kInt64);
  return d;
}

class Model : public ember::NetModule<torch::nn::Sequential> {
 public:
  Model() : NetModule(torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 3))) {}
  std::vector<double> losses;  // every training loss, in order
  std::vector<std::string>* trace = nullptr;
  bool nan_at_step = false;
  std::int64_t nan_after = -1;

  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t) override {
    auto loss = torch::nn::functional::cross_entropy(forward(b.x), b.y);
    if (nan_after >= 0 && static_cast<std::int64_t>(losses.size()) >= nan_after) loss = loss * std::nan("");
    losses.push_back(loss.item<double>());
    ember::LogOptions o;
    o.prog_bar = true;
    log("train_loss", loss.item<double>(), o);
    return loss;
  }
  void validation_step(const ember::Batch& b, std::int64_t) override {
    auto out = forward(b.x);
    log("val_loss", torch::nn::functional::cross_entropy(out, b.y).item<double>());
    log("val_acc", out.argmax(1).eq(b.y).to(torch::kFloat32).mean().item<double>());
  }
  void test_step(const ember::Batch& b, std::int64_t) override {
    log("test_loss", torch::nn::functional::cross_entropy(forward(b.x), b.y).item<double>());
  }
  ember::OptimizerConfig configure_optimizers() override {
    auto c = ember::make_optimizer("adam", parameters(), 0.01);
    c.scheduler = std::make_shared<ember::StepLR>(*c.optimizer, 2, 0.5);
    c.scheduler_interval = "epoch";
    return c;
  }

#define EMBER_HOOK(name, since, doc) \
  void name(const ember::HookArgs& a) override { record("module", #name, a); }
#include <ember/abi/hooks.def>

  void record(const char* who, const char* hook, const ember::HookArgs& a) {
    if (!trace) return;
    std::string line = std::string(who) + " " + hook;
    if (a.batch_idx >= 0) line += " batch=" + std::to_string(a.batch_idx);
    line += " epoch=" + std::to_string(a.epoch);
    trace->push_back(line);
  }
};

// A callback that records every hook it sees.
class Recorder : public ember::Callback {
 public:
  explicit Recorder(std::vector<std::string>& trace, std::string name = "callback")
      : trace_(trace), name_(std::move(name)) {}
#define EMBER_HOOK(name, since, doc)                                     \
  void name(const ember::HookArgs& a) override {                         \
    std::string line = name_ + " " #name;                                \
    if (a.batch_idx >= 0) line += " batch=" + std::to_string(a.batch_idx); \
    line += " epoch=" + std::to_string(a.epoch);                         \
    trace_.push_back(line);                                              \
  }
#include <ember/abi/hooks.def>

 private:
  std::vector<std::string>& trace_;
  std::string name_;
};

}  // namespace tiny
