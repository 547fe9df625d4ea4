// A model plugin for tests that claims another libtorch build: the host must refuse it.
#include <ember/sdk/model_plugin.hpp>

namespace {

class WrongTag : public ember::plugin::Plugin, public ember::NetModule<torch::nn::Linear> {
 public:
  WrongTag(const ember_host_t* host, std::string_view) : Plugin(host), NetModule(torch::nn::Linear(784, 10)) {}
  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t) override {
    return torch::nn::functional::cross_entropy(forward(b.x), b.y);
  }
  ember::OptimizerConfig configure_optimizers() override { return ember::make_optimizer("sgd", parameters(), 0.01); }
};

}  // namespace

EMBER_PLUGIN_TAGGED(WrongTag, "wrong_tag_model", "0.1.0", "test model built for another libtorch", "",
                    "libtorch-0.9.0 gcc-9 cxx11abi-0 ember-abi-1")
