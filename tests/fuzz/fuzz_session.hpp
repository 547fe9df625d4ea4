// The host set-up the fuzz targets share when they need Session's readers or its URL space: a
// run config with no logger and no callbacks, default_root_dir memory://fuzz (nothing touches
// the disk), the Fashion-MNIST module shrunk to 784-2-2-10, and the given "plugins" section,
// whose plugins must be in catalog (e.g. a plugin compiled into the target, added in-process).
#pragma once

#include "../../samples/fashion_mnist/fashion_mlp.hpp"

#include <ember/run_config.hpp>
#include <ember/session.hpp>

#include <memory>

namespace fuzz {

struct FuzzSession {
  explicit FuzzSession(boost::json::object plugins = {}, std::shared_ptr<ember::PluginLibrary> in_process = nullptr) {
    if (in_process) catalog.add(std::move(in_process));
    boost::json::value c = boost::json::object{
        {"plugins", std::move(plugins)},
        {"trainer", boost::json::object{{"default_root_dir", "memory://fuzz"}, {"logger", false},
                                        {"callbacks", boost::json::array{}}}}};
    static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");
    ember::config::check(c, schema, "fuzz", "", true);
    session = std::make_unique<ember::Session>(c, catalog, "fuzz");
    session->build(&model);
  }
  ember::Catalog catalog;
  fashion::FashionMLP model{1e-3, 2, 2, 0};
  std::unique_ptr<ember::Session> session;
};

}  // namespace fuzz
