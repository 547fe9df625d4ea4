// The seed model: 784 -> 128 -> 256 -> 10 MLP with ReLU, Adam, cross-entropy.
// Used by the model plugin (fashion_mlp_plugin.cpp) and by the embedding sample (samples/embed).
#pragma once

#include <ember/module.hpp>

#include <torch/torch.h>

#include <sstream>

namespace fashion {

inline torch::nn::Sequential make_mlp(int hidden1, int hidden2) {
  return torch::nn::Sequential(torch::nn::Linear(784, hidden1), torch::nn::ReLU(),
                               torch::nn::Linear(hidden1, hidden2), torch::nn::ReLU(),
                               torch::nn::Linear(hidden2, 10));
}

class FashionMLP : public ember::NetModule<torch::nn::Sequential> {
 public:
  explicit FashionMLP(double lr = 1e-3, int hidden1 = 128, int hidden2 = 256)
      : NetModule(make_mlp(hidden1, hidden2)), lr_(lr), hidden1_(hidden1), hidden2_(hidden2) {}

  std::optional<torch::Tensor> training_step(const ember::Batch& batch, std::int64_t) override {
    auto logits = forward(batch.x);
    auto loss = torch::nn::functional::cross_entropy(logits, batch.y);
    ember::LogOptions bar;
    bar.prog_bar = true;
    log("train_loss", loss.item<double>(), bar);
    log("train_accuracy", accuracy(logits, batch.y));
    return loss;
  }
  void validation_step(const ember::Batch& batch, std::int64_t) override {
    auto logits = forward(batch.x);
    ember::LogOptions bar;
    bar.prog_bar = true;
    log("val_loss", torch::nn::functional::cross_entropy(logits, batch.y).item<double>(), bar);
    log("val_accuracy", accuracy(logits, batch.y), bar);
  }
  void test_step(const ember::Batch& batch, std::int64_t) override {
    auto logits = forward(batch.x);
    log("test_loss", torch::nn::functional::cross_entropy(logits, batch.y).item<double>());
    log("test_accuracy", accuracy(logits, batch.y));
  }
  torch::Tensor predict_step(const ember::Batch& batch, std::int64_t) override {
    return torch::softmax(forward(batch.x), 1);
  }
  ember::OptimizerConfig configure_optimizers() override {
    return ember::make_optimizer("adam", parameters(), lr_);
  }
  std::string hparams_json() const override {
    std::ostringstream s;
    s << "{\"lr\":" << lr_ << ",\"hidden1\":" << hidden1_ << ",\"hidden2\":" << hidden2_
      << ",\"model\":\"FashionMLP\"}";
    return s.str();
  }

 private:
  static double accuracy(const torch::Tensor& logits, const torch::Tensor& y) {
    return logits.argmax(1).eq(y).to(torch::kFloat32).mean().item<double>();
  }
  double lr_;
  int hidden1_, hidden2_;
};

}  // namespace fashion
