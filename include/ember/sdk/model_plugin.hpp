// Model plugins: a .so that provides an ember::Module, "ember.model/1".
//
// The interface passes a C++ object, so plugin and host must be built against the same libtorch
// with the same compiler ABI: the entry's build_tag says which, and the host refuses a mismatch
// before creating anything.
#pragma once

#include <ember/module.hpp>
#include <ember/sdk/plugin.hpp>

#include <torch/version.h>

#include <string>
#include <string_view>

#define EMBER_MODEL_V1 "ember.model/1"

namespace ember {

#define EMBER_STRINGIFY2(x) #x
#define EMBER_STRINGIFY(x) EMBER_STRINGIFY2(x)
// libtorch version, compiler and C++ ABI: what a C++ object crossing the boundary depends on.
#define EMBER_BUILD_TAG                                                                   \
  "libtorch-" EMBER_STRINGIFY(TORCH_VERSION_MAJOR) "." EMBER_STRINGIFY(TORCH_VERSION_MINOR) "." \
  EMBER_STRINGIFY(TORCH_VERSION_PATCH) " gcc-" EMBER_STRINGIFY(__GNUC__) " cxx11abi-"      \
  EMBER_STRINGIFY(_GLIBCXX_USE_CXX11_ABI) " ember-abi-" EMBER_STRINGIFY(EMBER_ABI_MAJOR)

inline constexpr std::string_view kBuildTag = EMBER_BUILD_TAG;

struct ModelTable {
  std::uint32_t struct_size;
  // The instance's module; owned by the instance. [train-thread].
  Module* (*module)(void* self);
};

namespace plugin::detail {
template <class T>
const void* model_interface(std::string_view id) {
  static const ModelTable table = {sizeof(ModelTable), [](void* s) -> Module* {
                                     return static_cast<T*>(static_cast<Plugin*>(s));
                                   }};
  return id == EMBER_MODEL_V1 ? &table : nullptr;
}
}  // namespace plugin::detail

}  // namespace ember

// Export a model class T (derived from ember::plugin::Plugin and ember::Module, constructed
// from (const ember_host_t*, std::string_view config_json)). Both bases have a log(): add
// `using ember::Module::log;` to the class to call self.log unqualified.
#define EMBER_MODEL_PLUGIN(T, ID, VERSION, DESCRIPTION, SCHEMA)                              \
  EMBER_PLUGIN_TAGGED(T, ID, VERSION, DESCRIPTION, SCHEMA, EMBER_BUILD_TAG)
