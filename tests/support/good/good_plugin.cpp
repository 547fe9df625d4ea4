// A well-behaved C++ plugin that records what the host calls, through the host's log service
// (a test's ember::Services subclass keeps the lines). It offers callbacks (two hooks only),
// a logger and state, and has a config schema with defaults.
//
// Every recorded line starts with the configured prefix (default "good"), so a test also sees
// that the host filled the schema's defaults before create.
#include <ember/sdk/plugin.hpp>

#include <string>
#include <string_view>

namespace {

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "prefix": {"type": "string", "minLength": 1, "default": "good",
               "description": "starts every line the plugin logs"},
    "level": {"enum": ["debug", "info"], "default": "info"}
  }
})";

// The string value of "key" in the compact JSON the host passes (serialised by Boost.JSON),
// or "" — enough for a fixture; a real plugin would use a JSON parser.
std::string string_value(std::string_view json, std::string_view key) {
  std::string needle = "\"" + std::string(key) + "\":\"";
  auto at = json.find(needle);
  if (at == std::string_view::npos) return {};
  auto begin = at + needle.size();
  auto end = json.find('"', begin);
  return std::string(json.substr(begin, end - begin));
}

class GoodPlugin : public ember::plugin::Plugin,
                   public ember::plugin::Callbacks,
                   public ember::plugin::Logger,
                   public ember::plugin::State {
 public:
  GoodPlugin(const ember_host_t* host, std::string_view config_json)
      : Plugin(host), prefix_(string_value(config_json, "prefix")) {
    record("create " + std::string(config_json));
  }
  ~GoodPlugin() override { record("destroy"); }

  void on_fit_start(const ember_hook_args_t& args) override {
    ++fit_starts_;
    record("on_fit_start stage=" + std::to_string(args.stage));
  }
  void on_train_batch_end(const ember_hook_args_t& args) override {
    ++batches_;
    record("on_train_batch_end batch_idx=" + std::to_string(args.batch_idx));
  }

  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics,
                   size_t count) override {
    std::string line = "log_metrics step=" + std::to_string(ctx.step);
    for (size_t i = 0; i < count; ++i)
      line += " " + std::string(ember::plugin::view(metrics[i].name)) + "=" +
              std::to_string(metrics[i].value);
    record(line);
  }
  void finalize(std::string_view status) override { record("finalize " + std::string(status)); }

  std::string state_dict() override {
    return "{\"fit_starts\":" + std::to_string(fit_starts_) +
           ",\"batches\":" + std::to_string(batches_) + "}";
  }
  void load_state_dict(std::string_view json) override {
    record("load_state_dict " + std::string(json));
  }

 private:
  void record(const std::string& what) const { log(EMBER_LOG_INFO, prefix_ + ": " + what); }

  std::string prefix_;
  int fit_starts_ = 0;
  int batches_ = 0;
};

}  // namespace

EMBER_PLUGIN(GoodPlugin, "good_plugin", "1.2.3", "Records the hooks it receives (test fixture)",
             kSchema)
