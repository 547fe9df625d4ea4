// TrainerOptions (Lightning's Trainer arguments, read from the config's "trainer" object) and the
// plugin slots the trainer keeps: LoggerSlot, MediaSlot, PluginFailure. Part of ember/trainer.hpp.
#pragma once

#include <ember/checkpoint.hpp>
#include <ember/data.hpp>
#include <ember/distributed.hpp>
#include <ember/loader.hpp>
#include <ember/sdk/media.hpp>
#include <ember/metrics.hpp>
#include <ember/module.hpp>
#include <ember/registry.hpp>
#include <ember/signals.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>


namespace ember {

struct TrainerOptions {
  std::int64_t max_epochs = -1;  // -1 with max_steps -1: 1000, as Lightning
  std::int64_t min_epochs = 0;
  std::int64_t max_steps = -1;
  double val_check_interval = 1.0;  // <= 1: fraction of an epoch; > 1: every N batches
  std::int64_t check_val_every_n_epoch = 1;
  // Lightning's limit_*_batches: a float is a fraction of the loader, an int a batch count.
  struct Limit {
    double value = 1.0;
    bool is_count = false;
    static Limit count(std::int64_t n) { return {static_cast<double>(n), true}; }
    static Limit fraction(double f) { return {f, false}; }
  };
  Limit limit_train_batches, limit_val_batches, limit_test_batches, limit_predict_batches;
  std::int64_t num_sanity_val_steps = 2;
  std::int64_t accumulate_grad_batches = 1;
  std::optional<double> gradient_clip_val;
  std::string gradient_clip_algorithm = "norm";
  std::int64_t log_every_n_steps = 50;
  std::string default_root_dir = ".";
  bool deterministic = false;
  std::int64_t fast_dev_run = 0;  // N > 0: N batches of each loop, 1 epoch, no sanity check
  std::optional<std::uint64_t> seed;
  // WandbLogger.watch from the config (trainer.watch); a module's own watch()/unwatch() wins.
  std::optional<WatchOptions> watch;

  static TrainerOptions from_json(const boost::json::object& t, const boost::json::value& seed) {
    TrainerOptions o;
    auto num = [&](const char* k) -> std::optional<double> {
      auto* v = t.if_contains(k);
      if (!v || v->is_null()) return std::nullopt;
      return config::number_of(*v);
    };
    if (auto v = num("max_epochs")) o.max_epochs = static_cast<std::int64_t>(*v);
    if (auto v = num("min_epochs")) o.min_epochs = static_cast<std::int64_t>(*v);
    if (auto v = num("max_steps")) o.max_steps = static_cast<std::int64_t>(*v);
    if (auto v = num("val_check_interval")) o.val_check_interval = *v;
    if (auto v = num("check_val_every_n_epoch")) o.check_val_every_n_epoch = static_cast<std::int64_t>(*v);
    auto lim = [&](const char* k, Limit& out) {
      auto* v = t.if_contains(k);
      if (!v || v->is_null()) return;
      if (v->is_int64() || v->is_uint64()) out = Limit::count(static_cast<std::int64_t>(config::number_of(*v)));
      else out = Limit::fraction(v->as_double());
    };
    lim("limit_train_batches", o.limit_train_batches);
    lim("limit_val_batches", o.limit_val_batches);
    lim("limit_test_batches", o.limit_test_batches);
    lim("limit_predict_batches", o.limit_predict_batches);
    if (auto v = num("num_sanity_val_steps")) o.num_sanity_val_steps = static_cast<std::int64_t>(*v);
    if (auto v = num("accumulate_grad_batches")) o.accumulate_grad_batches = static_cast<std::int64_t>(*v);
    if (auto v = num("gradient_clip_val")) o.gradient_clip_val = *v;
    if (auto v = num("log_every_n_steps")) o.log_every_n_steps = static_cast<std::int64_t>(*v);
    if (auto* v = t.if_contains("gradient_clip_algorithm")) o.gradient_clip_algorithm = std::string(v->as_string());
    if (auto* v = t.if_contains("default_root_dir")) o.default_root_dir = std::string(v->as_string());
    if (auto* v = t.if_contains("deterministic")) o.deterministic = v->as_bool();
    if (auto* v = t.if_contains("fast_dev_run"))
      o.fast_dev_run = v->is_bool() ? (v->as_bool() ? 1 : 0) : static_cast<std::int64_t>(config::number_of(*v));
    if (seed.is_number()) o.seed = static_cast<std::uint64_t>(config::number_of(seed));
    if (auto* w = t.if_contains("watch"); w && w->is_object()) {
      WatchOptions wo;
      if (auto* l = w->as_object().if_contains("log")) wo.log = std::string(l->as_string());
      if (auto* f = w->as_object().if_contains("log_freq")) wo.log_freq = static_cast<std::int64_t>(config::number_of(*f));
      o.watch = wo;
    }
    return o;
  }
};

// A logger the trainer feeds: a plugin's ember.logger/1 table.
struct LoggerSlot {
  std::string id;
  const ember_logger_v1_t* table;
  void* self;
  ember_str_t (*last_error)(void*);
};

// A logger's ember.media/1 table (copied: slots past the plugin's struct_size are null).
struct MediaSlot {
  std::string id;
  ember_media_v1_t table;
  void* self;
  ember_str_t (*last_error)(void*);

  MediaSlot(std::string id_, const ember_media_v1_t& t, void* self_, ember_str_t (*last_error_)(void*))
      : id(std::move(id_)), table{}, self(self_), last_error(last_error_) {
    std::memcpy(&table, &t, std::min<std::size_t>(t.struct_size, sizeof table));
    table.struct_size = sizeof table;
  }
};

// Raised to stop a run on a plugin failure after on_exception has run.
class PluginFailure : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

}  // namespace ember
