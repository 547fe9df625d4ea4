// The seed model: 784 -> 128 -> 256 -> 10 MLP with ReLU, Adam, cross-entropy.
// Used by the model plugin (fashion_mlp_plugin.cpp) and by the embedding sample (samples/embed).
#pragma once

#include <ember/module.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace fashion {

inline torch::nn::Sequential make_mlp(int hidden1, int hidden2) {
  return torch::nn::Sequential(torch::nn::Linear(784, hidden1), torch::nn::ReLU(),
                               torch::nn::Linear(hidden1, hidden2), torch::nn::ReLU(),
                               torch::nn::Linear(hidden2, 10));
}

class FashionMLP : public ember::NetModule<torch::nn::Sequential> {
 public:
  // log_examples: how many validation images (with prediction and label) to log at the end of
  // each validation, as images and a table, to loggers that take media (wandb); 0: none.
  explicit FashionMLP(double lr = 1e-3, int hidden1 = 128, int hidden2 = 256, int log_examples = 8)
      : NetModule(make_mlp(hidden1, hidden2)), lr_(lr), hidden1_(hidden1), hidden2_(hidden2), log_examples_(log_examples) {}

  std::optional<torch::Tensor> training_step(const ember::Batch& batch, std::int64_t) override {
    auto logits = forward(batch.x);
    auto loss = torch::nn::functional::cross_entropy(logits, batch.y);
    ember::LogOptions bar;
    bar.prog_bar = true;
    log("train_loss", loss.item<double>(), bar);
    log("train_accuracy", accuracy(logits, batch.y));
    return loss;
  }
  void validation_step(const ember::Batch& batch, std::int64_t batch_idx) override {
    auto logits = forward(batch.x);
    ember::LogOptions bar;
    bar.prog_bar = true;
    log("val_loss", torch::nn::functional::cross_entropy(logits, batch.y).item<double>(), bar);
    log("val_accuracy", accuracy(logits, batch.y), bar);
    if (batch_idx == 0 && log_examples_ > 0) {
      const std::int64_t n = std::min<std::int64_t>(log_examples_, batch.size());
      examples_ = batch.x.narrow(0, 0, n).clone();
      probs_ = torch::softmax(logits.narrow(0, 0, n), 1);
      labels_ = batch.y.narrow(0, 0, n).clone();
    }
  }
  // The first validation batch's examples, once per validation (not in the sanity check):
  // Lightning's WandbLogger.log_image / log_table idiom.
  void on_validation_epoch_end(const ember::HookArgs& args) override {
    if (args.stage != EMBER_STAGE_VALIDATE || !examples_.defined()) return;
    static const char* const names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    std::vector<torch::Tensor> images;
    std::vector<std::string> captions;
    ember::TableRows rows;
    for (std::int64_t i = 0; i < examples_.size(0); ++i) {
      // The data are normalised with Fashion-MNIST's mean and std; undo it for display.
      images.push_back(examples_[i].reshape({28, 28}).mul(0.3530).add(0.2860));
      auto [conf, pred] = probs_[i].max(0);
      const auto p = pred.item<std::int64_t>(), y = labels_[i].item<std::int64_t>();
      captions.push_back(std::string("pred ") + names[p] + ", label " + names[y]);
      rows.push_back({i, names[p], names[y], conf.item<double>()});
    }
    log_image("val/examples", images, captions);
    log_table("val/predictions", {"index", "prediction", "label", "confidence"}, rows);
    examples_ = torch::Tensor();
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
  int hidden1_, hidden2_, log_examples_;
  torch::Tensor examples_, probs_, labels_;
};

}  // namespace fashion
