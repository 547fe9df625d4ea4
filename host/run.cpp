#include "commands.hpp"

#include <ember/loader.hpp>

#include <iostream>

namespace ember::cli {

int run_trainer_impl(Command, const Options&, boost::json::value, Catalog&) {
  std::cerr << "ember: the trainer is not implemented yet\n";
  return 1;
}

}  // namespace ember::cli
