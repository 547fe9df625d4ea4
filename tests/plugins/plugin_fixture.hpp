// Drive a real built plugin (.so) in-process without libtorch: a fake trainer behind the host
// table (state, callback metrics, stop requests, log lines, the URL space), the plugin created
// through ember::PluginInstance (schema check + defaults, as the host does), its hooks in an
// ember::HookRegistry, and its logger table at hand.
#pragma once

#include <boost/json.hpp>
#include <ember/loader.hpp>
#include <ember/registry.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "temp_dir.hpp"

namespace ember::test {

// What a trainer shows plugins; a test sets the fields and reads what the plugin did.
class FakeTrainer : public Services {
 public:
  FakeTrainer() {
    state.stage = EMBER_STAGE_FIT;
    state.max_epochs = -1;
    state.max_steps = -1;
    state.num_training_batches = -1;
    state.num_val_batches = -1;
  }

  ember_trainer_state_t state{};  // default_root_dir comes from root_dir
  std::string root_dir = ".";
  std::vector<std::pair<std::string, double>> metrics;  // callback metrics, in logging order
  std::vector<std::string> stops;                       // request_stop reasons
  std::vector<std::string> lines;                       // host log lines, "LEVEL: message"

  void set_metric(const std::string& name, double value) {
    for (auto& kv : metrics)
      if (kv.first == name) {
        kv.second = value;
        return;
      }
    metrics.emplace_back(name, value);
  }

  // host->log is [any-thread]: a plugin's worker may log while the test reads.
  void log(const std::string&, int level, std::string_view message) override {
    std::lock_guard<std::mutex> lock(lines_mutex_.m);
    lines.push_back(std::to_string(level) + ": " + std::string(message));
  }
  // A copy of the log lines, safe while a plugin's worker still logs.
  std::vector<std::string> all_lines() {
    std::lock_guard<std::mutex> lock(lines_mutex_.m);
    return lines;
  }
  std::string joined() {
    std::string s;
    for (auto& l : all_lines()) s += l + "\n";
    return s;
  }
  void fill_state(ember_trainer_state_t& out) override {
    out.stage = state.stage;
    out.epoch = state.epoch;
    out.global_step = state.global_step;
    out.max_epochs = state.max_epochs;
    out.max_steps = state.max_steps;
    out.num_training_batches = state.num_training_batches;
    out.num_val_batches = state.num_val_batches;
    out.sanity_checking = state.sanity_checking;
    out.should_stop = !stops.empty();
    out.default_root_dir = cstr(root_dir);
  }
  std::optional<double> metric(std::string_view name) override {
    for (const auto& kv : metrics)
      if (kv.first == name) return kv.second;
    return std::nullopt;
  }
  void for_each_metric(const std::function<bool(std::string_view, double)>& fn) override {
    for (const auto& kv : metrics)
      if (!fn(kv.first, kv.second)) return;
  }
  // Every metric counts as a prog_bar metric here.
  void for_each_progress_metric(const std::function<bool(std::string_view, double)>& fn) override {
    for_each_metric(fn);
  }
  void request_stop(const std::string&, std::string_view reason) override {
    stops.emplace_back(reason);
  }

 private:
  // A copy of a FakeTrainer gets its own mutex (tests return trainers by value).
  struct OwnMutex {
    std::mutex m;
    OwnMutex() = default;
    OwnMutex(const OwnMutex&) {}
    OwnMutex& operator=(const OwnMutex&) { return *this; }
  } lines_mutex_;
};

// The library named by an environment variable meson sets (tests/plugins/meson.build).
inline std::shared_ptr<PluginLibrary> library_from_env(const char* env) {
  return open_library(require_env(env));
}

// One created plugin instance with its hooks registered.
class LoadedPlugin {
 public:
  LoadedPlugin(std::shared_ptr<PluginLibrary> lib, std::string_view config_json, Services& services)
      : instance_(std::move(lib), boost::json::parse(config_json), services, "test config") {
    instance_.register_hooks(hooks_);
  }

  PluginInstance& instance() { return instance_; }
  void* self() const { return instance_.self(); }
  std::string last_error() const { return instance_.last_error(); }

  // Run a hook as the trainer does; throws HookError (owner + hook + the plugin's message).
  void call(ember_hook_id_t hook, const ember_hook_args_t& args) const { hooks_.call(hook, args); }

  const ember_logger_v1_t& logger() const {
    auto* t = instance_.interface<ember_logger_v1_t>(EMBER_LOGGER_V1);
    if (!t) throw std::runtime_error(instance_.id() + " offers no " EMBER_LOGGER_V1);
    return *t;
  }
  const ember_state_v1_t& state() const {
    auto* t = instance_.interface<ember_state_v1_t>(EMBER_STATE_V1);
    if (!t) throw std::runtime_error(instance_.id() + " offers no " EMBER_STATE_V1);
    return *t;
  }

  // A failing status becomes an exception carrying the plugin's last_error.
  void check(ember_status_t rc, const char* what) const {
    if (rc != EMBER_OK)
      throw std::runtime_error(std::string(what) + " failed (status " + std::to_string(rc) +
                               "): " + last_error());
  }

  std::string state_dict() const {
    std::string out;
    ember_sink_t sink{&out, [](void* c, const void* p, size_t n) -> ember_status_t {
                        static_cast<std::string*>(c)->append(static_cast<const char*>(p), n);
                        return EMBER_OK;
                      }};
    check(state().state_dict(self(), &sink), "state_dict");
    return out;
  }
  void load_state_dict(const std::string& json) const {
    check(state().load_state_dict(self(), cstr(json)), "load_state_dict");
  }

 private:
  PluginInstance instance_;
  HookRegistry hooks_;
};

inline ember_hook_args_t hook_args(ember_stage_t stage, std::int64_t epoch = 0,
                                   std::int64_t batch_idx = -1, std::int64_t global_step = 0) {
  ember_hook_args_t a{};
  a.struct_size = sizeof a;
  a.stage = stage;
  a.epoch = epoch;
  a.global_step = global_step;
  a.batch_idx = batch_idx;
  a.optimizer_idx = -1;
  return a;
}

}  // namespace ember::test
