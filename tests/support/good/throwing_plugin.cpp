// A C++ plugin that fails by throwing, to prove plugin.hpp catches at the boundary:
// on_train_start throws, and so does the constructor when the config says {"throw_in_ctor": true}.
// The host must see statuses and last_error, never an exception crossing the C ABI.
#include <ember/sdk/plugin.hpp>

#include <stdexcept>
#include <string_view>

namespace {

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "throw_in_ctor": {"type": "boolean", "default": false}
  }
})";

class ThrowingPlugin : public ember::plugin::Plugin, public ember::plugin::Callbacks {
 public:
  ThrowingPlugin(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    // The host serialises the checked config compactly, so this match is exact.
    if (config_json.find("\"throw_in_ctor\":true") != std::string_view::npos)
      throw std::runtime_error("throwing_plugin constructor refuses: throw_in_ctor is set");
  }

  void on_train_start(const ember_hook_args_t&) override {
    throw std::runtime_error("boom from throwing_plugin");
  }
};

}  // namespace

EMBER_PLUGIN(ThrowingPlugin, "throwing_plugin", "0.1.0",
             "Throws from on_train_start, and from its constructor on request (test fixture)",
             kSchema)
