// Stand-in for the one header of torch's distributed autograd that c10d/reducer.hpp includes and
// Debian's libtorch-dev does not ship. reducer.hpp only names two types from it (a callback
// signature and a shared_ptr to an opaque context); both are declared here exactly as libtorch
// 1.13 declares them, so the layout of c10d::Reducer is the library's. Nothing else of the
// distributed autograd engine is used. Only on the include path of code that includes
// <ember/ddp/*.hpp> (the ember_ddp dependency in meson).
#pragma once

#include <torch/csrc/autograd/variable.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(torch::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
