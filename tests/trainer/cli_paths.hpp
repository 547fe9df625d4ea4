// Where the trainer suites that run the built `ember` find it, the plugins and the data.
#pragma once

#include "../support/temp_dir.hpp"

#include <string>

namespace ember::test::cli_paths {

inline const std::string kData = "/usr/share/datasets/fashion-mnist/";  // Debian's dataset-fashion-mnist

inline std::string exe() { return require_env("EMBER_EXE"); }
inline std::string plugins() { return require_env("EMBER_BUILD_ROOT") + "/plugins"; }
// The test plugins of tests/trainer/plugins (model plugins, signal_probe).
inline std::string test_plugins() { return require_env("EMBER_BUILD_ROOT") + "/tests/trainer/plugins"; }

}  // namespace ember::test::cli_paths
