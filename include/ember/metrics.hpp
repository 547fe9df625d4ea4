// Lightning's self.log: per-hook defaults, reductions, step/epoch names, callback_metrics.
//
// log() is the hot path: after the first call of a name it does a cache probe, a compare and a
// few arithmetic operations; no allocation, no I/O. Loggers get records only when the trainer
// collects them (every log_every_n_steps, and at epoch ends).
#pragma once

#include <ember/abi/common.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

enum class Reduce { mean, sum, min, max };

struct LogOptions {
  bool prog_bar = false;
  bool logger = true;
  std::optional<bool> on_step;   // default: true in training_step, false elsewhere
  std::optional<bool> on_epoch;  // default: false in training_step, true elsewhere
  Reduce reduce = Reduce::mean;
  // Lightning's sync_dist: under ddp the value is reduced across ranks with `reduce` (a step
  // value when logged, an epoch value when reduced; an epoch mean weighs every rank's batches).
  // Every rank must log the same sync_dist names in the same order: each is a collective.
  bool sync_dist = false;
};

// A record for loggers: name and value; the context (step, epoch, stage) travels beside it.
struct MetricValue {
  std::string name;
  double value;
};

class MetricStore {
 public:
  // The trainer says which hook runs, which fixes the on_step/on_epoch defaults, and the
  // current batch size (the weight of the epoch mean).
  void set_context(ember_stage_t stage, bool in_training_step, std::int64_t batch_size) {
    stage_ = stage;
    default_on_step_ = in_training_step;
    batch_size_ = batch_size > 0 ? batch_size : 1;
  }

  // Who reduces sync_dist values across ranks (the trainer under ddp); null: a single process.
  using SyncFn = void (*)(void* ctx, std::vector<double>& values, Reduce op);
  void set_sync(SyncFn fn, void* ctx) {
    sync_ = fn;
    sync_ctx_ = ctx;
  }

  void log(std::string_view name, double value, const LogOptions& o, std::int64_t batch_size = -1) {
    Entry& e = entry(name, o);
    e.sync_dist = o.sync_dist;
    // A step value is reduced now; the epoch accumulates the local value and is reduced across
    // ranks at the epoch end.
    if (o.sync_dist && sync_ && o.on_step.value_or(default_on_step_)) {
      sync_buf_.assign(1, value);
      sync_(sync_ctx_, sync_buf_, o.reduce);
      log_value(e, o, sync_buf_[0], value, batch_size);
      return;
    }
    log_value(e, o, value, value, batch_size);
  }

 private:
  struct Entry;
  void log_value(Entry& e, const LogOptions& o, double value, double local, std::int64_t batch_size) {
    const bool on_step = o.on_step.value_or(default_on_step_);
    const bool on_epoch = o.on_epoch.value_or(!default_on_step_);
    e.on_step = on_step;
    e.on_epoch = on_epoch;
    e.stage = stage_;
    if (on_step) {
      e.step_value = value;
      e.step_fresh = true;
      e.latest = value;
      e.has_latest = true;
    }
    if (on_epoch) {
      value = local;
      const double w = static_cast<double>(batch_size > 0 ? batch_size : batch_size_);
      switch (e.reduce) {
        case Reduce::mean: e.acc += value * w; e.weight += w; break;
        case Reduce::sum: e.acc += value; e.weight = 1; break;
        case Reduce::min: e.acc = e.weight ? std::min(e.acc, value) : value; e.weight = 1; break;
        case Reduce::max: e.acc = e.weight ? std::max(e.acc, value) : value; e.weight = 1; break;
      }
      e.epoch_pending = true;
    }
  }

 public:

  // Step values logged since the last call, for loggers; names get "_step" when the metric is
  // also reduced per epoch (Lightning's convention).
  void collect_step(std::vector<MetricValue>& out) {
    for (Entry& e : entries_) {
      if (!e.step_fresh) continue;
      e.step_fresh = false;
      if (!e.logger) continue;
      out.push_back({e.on_epoch ? e.name + "_step" : e.name, e.step_value});
    }
  }

  // Forget this step's values without building records (a step that is not logged): the hot
  // path, so no names are built and nothing is allocated.
  void skip_step() {
    for (Entry& e : entries_) e.step_fresh = false;
  }

  // Reduce what stage logged this epoch into epoch values and reset the accumulators.
  // Names get "_epoch" when the metric is also logged per step.
  void reduce_epoch(ember_stage_t stage, std::vector<MetricValue>* out) {
    if (sync_) sync_epoch(stage);
    for (Entry& e : entries_) {
      if (!e.epoch_pending || e.stage != stage) continue;
      e.epoch_pending = false;
      double v = e.reduce == Reduce::mean ? (e.weight > 0 ? e.acc / e.weight : std::nan(""))
                                          : e.acc;
      e.epoch_value = v;
      e.has_epoch = true;
      e.latest = v;
      e.has_latest = true;
      e.acc = 0;
      e.weight = 0;
      if (out && e.logger) out->push_back({e.on_step ? e.name + "_epoch" : e.name, v});
    }
  }

  // Forget accumulated values (after the sanity check, which Lightning does not log).
  void discard(ember_stage_t stage) {
    for (Entry& e : entries_)
      if (e.stage == stage) e.epoch_pending = e.step_fresh = false, e.acc = e.weight = 0;
  }

  // Lightning's trainer.callback_metrics: "name" (latest), "name_step", "name_epoch".
  std::optional<double> get(std::string_view name) const {
    for (const Entry& e : entries_) {
      if (name == e.name) {
        if (e.has_latest) return e.latest;
        return std::nullopt;
      }
    }
    auto strip = [&](std::string_view suffix) -> std::optional<std::string_view> {
      if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
        return name.substr(0, name.size() - suffix.size());
      return std::nullopt;
    };
    if (auto base = strip("_step"))
      for (const Entry& e : entries_)
        if (*base == e.name && e.on_step && e.on_epoch && e.has_latest) return e.step_value;
    if (auto base = strip("_epoch"))
      for (const Entry& e : entries_)
        if (*base == e.name && e.on_step && e.on_epoch && e.has_epoch) return e.epoch_value;
    return std::nullopt;
  }

  void for_each(const std::function<bool(std::string_view, double)>& fn) const {
    for (const Entry& e : entries_) {
      if (!e.has_latest) continue;
      if (!fn(e.name, e.latest)) return;
      if (e.on_step && e.on_epoch) {
        if (!fn(e.name + "_step", e.step_value)) return;
        if (e.has_epoch && !fn(e.name + "_epoch", e.epoch_value)) return;
      }
    }
  }

  // Every name ever logged (for "metric never logged" messages).
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const Entry& e : entries_) out.push_back(e.name);
    return out;
  }

  // prog_bar metrics' latest values.
  void prog_bar(std::vector<MetricValue>& out) const {
    for (const Entry& e : entries_)
      if (e.prog_bar && e.has_latest) out.push_back({e.name, e.latest});
  }

 private:
  // sync_dist entries pending for stage: sums (a mean's weighted sum and weight, a sum) in one
  // all_reduce, maxima and minima in one each; in entry order, the same on every rank.
  void sync_epoch(ember_stage_t stage) {
    std::vector<double> sums, maxs, mins;
    for (Entry& e : entries_) {
      if (!e.sync_dist || !e.epoch_pending || e.stage != stage) continue;
      if (e.reduce == Reduce::mean) sums.push_back(e.acc), sums.push_back(e.weight);
      else if (e.reduce == Reduce::sum) sums.push_back(e.acc);
      else (e.reduce == Reduce::max ? maxs : mins).push_back(e.acc);
    }
    if (!sums.empty()) sync_(sync_ctx_, sums, Reduce::sum);
    if (!maxs.empty()) sync_(sync_ctx_, maxs, Reduce::max);
    if (!mins.empty()) sync_(sync_ctx_, mins, Reduce::min);
    std::size_t is = 0, ix = 0, in = 0;
    for (Entry& e : entries_) {
      if (!e.sync_dist || !e.epoch_pending || e.stage != stage) continue;
      if (e.reduce == Reduce::mean) e.acc = sums[is++], e.weight = sums[is++];
      else if (e.reduce == Reduce::sum) e.acc = sums[is++];
      else if (e.reduce == Reduce::max) e.acc = maxs[ix++];
      else e.acc = mins[in++];
    }
  }

  struct Entry {
    std::string name;
    Reduce reduce = Reduce::mean;
    bool prog_bar = false, logger = true, on_step = false, on_epoch = false, sync_dist = false;
    ember_stage_t stage = EMBER_STAGE_NONE;
    double step_value = 0, acc = 0, weight = 0, epoch_value = 0, latest = 0;
    bool step_fresh = false, epoch_pending = false, has_epoch = false, has_latest = false;
  };

  Entry& entry(std::string_view name, const LogOptions& o) {
    // Probe a small cache keyed by the name's address (string literals are stable), then check
    // the text, so a reused buffer with other content still finds the right entry.
    std::size_t slot = (reinterpret_cast<std::uintptr_t>(name.data()) >> 3) % kCache;
    std::uint32_t idx = cache_[slot];
    if (idx < entries_.size() && entries_[idx].name == name) return entries_[idx];
    auto it = index_.find(name);
    if (it == index_.end()) {
      Entry e;
      e.name = std::string(name);
      e.reduce = o.reduce;
      e.prog_bar = o.prog_bar;
      e.logger = o.logger;
      entries_.push_back(std::move(e));
      it = index_.emplace(std::string(name), static_cast<std::uint32_t>(entries_.size() - 1)).first;
    }
    cache_[slot] = it->second;
    Entry& e = entries_[it->second];
    e.prog_bar = o.prog_bar;
    e.logger = o.logger;
    return e;
  }

  static constexpr std::size_t kCache = 64;
  std::vector<Entry> entries_;
  std::map<std::string, std::uint32_t, std::less<>> index_;
  std::array<std::uint32_t, kCache> cache_ = [] {
    std::array<std::uint32_t, kCache> a{};
    a.fill(UINT32_MAX);
    return a;
  }();
  ember_stage_t stage_ = EMBER_STAGE_NONE;
  SyncFn sync_ = nullptr;
  void* sync_ctx_ = nullptr;
  std::vector<double> sync_buf_;
  bool default_on_step_ = false;
  std::int64_t batch_size_ = 1;
};

}  // namespace ember
