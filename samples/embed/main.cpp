// An application that embeds Ember: it builds the model itself, adds an in-process callback,
// loads logger/checkpoint plugins from a directory, and runs fit then test.
//
//   embed CONFIG.json [PLUGIN_DIR ...]
#include "../fashion_mnist/fashion_mlp.hpp"

#include <ember/session.hpp>

#include <iostream>

namespace {

// An in-process callback: compiled into the application, registered like a plugin.
class EpochPrinter : public ember::Callback {
 public:
  explicit EpochPrinter(ember::Trainer& t) : trainer_(t) {}
  void on_train_epoch_end(const ember::HookArgs& a) override {
    auto loss = trainer_.metrics().get("train_loss_epoch");
    auto acc = trainer_.metrics().get("val_accuracy");
    std::cout << "embed: epoch " << a.epoch << " done, step " << a.global_step;
    if (loss) std::cout << ", train_loss " << *loss;
    if (acc) std::cout << ", val_accuracy " << *acc;
    std::cout << "\n";
  }

 private:
  ember::Trainer& trainer_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: embed CONFIG.json [PLUGIN_DIR ...]\n";
    return 2;
  }
  try {
    auto cfg = ember::load_run_config(argv[1], {});
    ember::Catalog catalog;
    for (int i = 2; i < argc; ++i) catalog.scan(argv[i]);
    for (const auto& r : catalog.refusals) std::cerr << "embed: warning: " << r << "\n";
    ember::Session session(std::move(cfg), catalog, argv[1]);
    fashion::FashionMLP model(1e-3);
    ember::Trainer& trainer = session.build(&model);
    EpochPrinter printer(trainer);
    trainer.add_callback(printer, "epoch_printer");
    trainer.fit();
    trainer.test();
    for (const auto& m : trainer.last_eval_metrics()) std::cout << "embed: test " << m.name << " " << m.value << "\n";
    return 0;
  } catch (const ember::ConfigError& e) {
    std::cerr << "embed: config error:\n" << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "embed: error: " << e.what() << "\n";
    return 1;
  }
}
