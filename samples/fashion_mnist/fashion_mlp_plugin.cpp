// The seed model as a model plugin (ember.model/1), built against the host's libtorch.
#include "fashion_mlp.hpp"

#include <ember/sdk/model_plugin.hpp>

#include <boost/json.hpp>

namespace {

class FashionMLPPlugin : public ember::plugin::Plugin, public fashion::FashionMLP {
 public:
  FashionMLPPlugin(const ember_host_t* host, std::string_view config)
      : Plugin(host), FashionMLP(read(config, "lr", 1e-3), static_cast<int>(read(config, "hidden1", 128)),
                                 static_cast<int>(read(config, "hidden2", 256)),
                                 static_cast<int>(read(config, "log_examples", 8))) {}

 private:
  static double read(std::string_view config, const char* key, double fallback) {
    auto v = boost::json::parse(config);
    auto* f = v.as_object().if_contains(key);
    return f ? f->to_number<double>() : fallback;
  }
};

constexpr const char* kSchema = R"({
  "type": "object", "additionalProperties": false,
  "properties": {
    "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001},
    "hidden1": {"type": "integer", "minimum": 1, "maximum": 1048576, "default": 128},
    "hidden2": {"type": "integer", "minimum": 1, "maximum": 1048576, "default": 256},
    "log_examples": {"type": "integer", "minimum": 0, "maximum": 1024, "default": 8,
                     "description": "validation images + predictions logged as media (wandb) per validation; 0: none"}
  }
})";

}  // namespace

EMBER_MODEL_PLUGIN(FashionMLPPlugin, "fashion_mlp", "1.0.0",
                   "Fashion-MNIST MLP 784-128-256-10 (ReLU, Adam, cross-entropy)", kSchema)
