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

class ScriptModule : public Module {
 public:
  ScriptModule(const storage::UrlSpace& urls, const std::string& url, std::string loss,
               std::string optimizer, double lr)
      : loss_(std::move(loss)), optimizer_(std::move(optimizer)), lr_(lr) {
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
  OptimizerConfig configure_optimizers() override { return make_optimizer(optimizer_, parameters(), lr_); }

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
  std::string loss_, optimizer_;
  double lr_;
};

}  // namespace ember
