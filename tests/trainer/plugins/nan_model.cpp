// A model plugin for tests: a linear classifier whose training loss turns NaN after
// `nan_after` steps (config), to prove check_finite and NaN-never-best.
#include <ember/sdk/model_plugin.hpp>

#include <boost/json.hpp>

#include <cmath>

namespace {

class NanModel : public ember::plugin::Plugin, public ember::NetModule<torch::nn::Linear> {
 public:
  using Module::log;  // self.log, not Plugin::log (the host's log line)
  NanModel(const ember_host_t* host, std::string_view config)
      : Plugin(host), NetModule(torch::nn::Linear(784, 10)) {
    nan_after_ = boost::json::parse(config).as_object().at("nan_after").to_number<std::int64_t>();
  }
  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t) override {
    auto loss = torch::nn::functional::cross_entropy(forward(b.x), b.y);
    if (steps_++ >= nan_after_) loss = loss * std::nan("");
    log("train_loss", loss.item<double>());
    return loss;
  }
  void validation_step(const ember::Batch& b, std::int64_t) override {
    log("val_loss", torch::nn::functional::cross_entropy(forward(b.x), b.y).item<double>());
  }
  ember::OptimizerConfig configure_optimizers() override { return ember::make_optimizer("sgd", parameters(), 0.01); }

 private:
  std::int64_t nan_after_ = 0, steps_ = 0;
};

}  // namespace

EMBER_MODEL_PLUGIN(NanModel, "nan_model", "0.1.0", "test model: loss becomes NaN after nan_after steps",
                   R"({"type":"object","additionalProperties":false,
                       "properties":{"nan_after":{"type":"integer","minimum":0,"default":3}}})")
