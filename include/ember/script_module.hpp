// A TorchScript file as an ember::Module, trained with a configured loss.
#pragma once

#include <ember/module.hpp>
#include <ember/storage.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <sstream>
#include <string>

namespace ember {

// Supervised defaults shared by generic modules: loss, and accuracy for classification.
inline torch::Tensor compute_loss(const std::string& loss, const torch::Tensor& out, const torch::Tensor& y) {
  if (loss == "cross_entropy") return torch::nn::functional::cross_entropy(out, y);
  if (loss == "nll") return torch::nn::functional::nll_loss(out, y);
  if (loss == "mse") return torch::mse_loss(out, y.to(out.dtype()).view_as(out));
  if (loss == "l1") return torch::l1_loss(out, y.to(out.dtype()).view_as(out));
  throw std::invalid_argument("unknown loss '" + loss + "'");
}

// The config's model.optimizer and model.lr_scheduler sections, for modules that do not write
// their own configure_optimizers (TorchScript files).
struct OptimizerSpec {
  std::string name = "adam";
  double lr = 1e-3, momentum = 0, weight_decay = 0;
  std::string scheduler;  // "", "step" or "cosine"
  std::string interval = "epoch";
  unsigned step_size = 1, t_max = 10;
  double gamma = 0.1, eta_min = 0;

  OptimizerConfig build(std::vector<torch::Tensor> params) const {
    OptimizerConfig c = make_optimizer(name, std::move(params), lr, momentum, weight_decay);
    if (scheduler == "step") c.scheduler = std::make_shared<StepLR>(*c.optimizer, step_size, gamma);
    else if (scheduler == "cosine") c.scheduler = std::make_shared<CosineAnnealingLR>(*c.optimizer, t_max, eta_min);
    c.scheduler_interval = interval;
    return c;
  }
};

class ScriptModule : public Module {
 public:
  ScriptModule(const storage::UrlSpace& urls, const std::string& url, std::string loss, OptimizerSpec optimizer)
      : loss_(std::move(loss)), optimizer_(std::move(optimizer)) {
    std::istringstream in(urls.read_all(url));
    try {
      module_ = torch::jit::load(in);
    } catch (const std::exception& e) {
      throw RuntimeError(url + ": not a TorchScript module: " + std::string(e.what()).substr(0, 300));
    }
  }
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() override {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& p : module_.named_parameters()) out.emplace_back(p.name, p.value);
    return out;
  }
  std::vector<std::pair<std::string, torch::Tensor>> named_buffers() override {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& p : module_.named_buffers()) out.emplace_back(p.name, p.value);
    return out;
  }
  void train(bool on) override { module_.train(on); }
  torch::Tensor forward(const torch::Tensor& x) override { return module_.forward({x}).toTensor(); }

  std::optional<torch::Tensor> training_step(const Batch& b, std::int64_t) override {
    return step(b, 0);
  }
  void validation_step(const Batch& b, std::int64_t) override { step(b, 1); }
  void test_step(const Batch& b, std::int64_t) override { step(b, 2); }
  OptimizerConfig configure_optimizers() override { return optimizer_.build(parameters()); }

 private:
  // stage 0 train, 1 val, 2 test; names are fixed strings, so log() does not allocate.
  torch::Tensor step(const Batch& b, int stage) {
    static const char* const loss_names[] = {"train_loss", "val_loss", "test_loss"};
    static const char* const acc_names[] = {"train_accuracy", "val_accuracy", "test_accuracy"};
    LogOptions o;
    o.prog_bar = stage < 2;
    auto out = forward(b.x);
    auto loss = compute_loss(loss_, out, b.y);
    log(loss_names[stage], loss.item<double>(), o);
    if (loss_ == "cross_entropy" || loss_ == "nll")
      log(acc_names[stage], out.argmax(1).eq(b.y).to(torch::kFloat32).mean().item<double>(), o);
    return loss;
  }
  torch::jit::Module module_;
  std::string loss_;
  OptimizerSpec optimizer_;
};

}  // namespace ember
