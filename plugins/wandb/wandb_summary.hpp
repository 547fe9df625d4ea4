// The run's config and summary as W&B's clients keep them: config wrapping and config.yaml,
// define_metric (parsing the plugin's config, encoding it into the config's _wandb.m) and the
// client-side summary (last/min/max/mean per metric). Header-only; needs Boost.JSON.
// Part of wandb_proto.hpp (W&B's data formats, no networking).
#pragma once

#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wandb_json.hpp"

namespace ember::wandb {

// ---- config, summary, define_metric -----------------------------------------------------------

// Every top-level key wrapped as W&B's Python client sends it: {"desc": null, "value": v}.
inline json::object wrap_config(const json::object& config) {
  json::object out;
  for (const auto& kv : config) out[kv.key()] = json::object{{"desc", nullptr}, {"value", kv.value()}};
  return out;
}

// YAML for config.yaml: "wandb_version: 1" then each wrapped key in block style; nested values
// in JSON flow style, which YAML 1.2 reads as the same data.
inline std::string config_yaml(const json::object& wrapped) {
  std::string out = "wandb_version: 1\n\n";
  for (const auto& kv : wrapped) {
    std::string key;
    append_json_string(key, kv.key());
    out += key + ":\n";
    if (kv.value().is_object()) {
      for (const auto& inner : kv.value().as_object())
        out += "  " + std::string(inner.key()) + ": " + json::serialize(inner.value()) + "\n";
    } else {
      out += "  value: " + json::serialize(kv.value()) + "\n";
    }
  }
  return out;
}

// One define_metric entry (MetricRecord fields: 1 name, 2 glob_name, 5 step_metric_index,
// 6 options {1 step_sync, 3 defined}, 7 summary {1 min 2 max 3 mean 4 best 5 last 6 none 7 copy},
// 8 goal {1 minimize 2 maximize}).
struct MetricDef {
  std::string name;           // exact name, or a prefix when glob
  bool glob = false;          // name ended in '*'
  std::string step_metric;    // "" for none
  bool step_sync = false, defined = true;
  bool s_min = false, s_max = false, s_mean = false, s_best = false, s_last = false, s_none = false,
       s_copy = false;
  int goal = 0;  // 0 unset, 1 minimize, 2 maximize
  bool has_summary() const { return s_min || s_max || s_mean || s_best || s_last || s_none; }
  bool matches(std::string_view key) const {
    return glob ? key.substr(0, name.size()) == name : key == name;
  }
};

// Parse the `define_metric` config value: {"name": {"summary": "max,last", "goal": "maximize",
// "step_metric": "...", "hidden": false}} or {"name": "max"}. Throws naming the key on bad input.
inline std::vector<MetricDef> parse_metric_defs(const json::value* v, const std::string& default_step) {
  std::vector<MetricDef> out;
  if (!v || v->is_null()) return out;
  if (!v->is_object()) throw std::invalid_argument("config key define_metric: expected an object of metric name -> options");
  for (const auto& kv : v->as_object()) {
    MetricDef d;
    std::string name(kv.key());
    if (!name.empty() && name.back() == '*') d.glob = true, name.pop_back();
    d.name = name;
    d.step_metric = default_step;
    std::string summary;
    const std::string where = "config key define_metric." + std::string(kv.key());
    if (kv.value().is_string()) {
      summary = std::string(kv.value().as_string());
    } else if (kv.value().is_object()) {
      const auto& o = kv.value().as_object();
      if (auto* s = o.if_contains("summary")) {
        if (!s->is_string()) throw std::invalid_argument(where + ".summary: expected a string such as \"max\" or \"min,last\"");
        summary = std::string(s->as_string());
      }
      if (auto* g = o.if_contains("goal"); g && !g->is_null()) {
        std::string goal = g->is_string() ? std::string(g->as_string()) : "";
        if (goal.substr(0, 3) == "min") d.goal = 1;
        else if (goal.substr(0, 3) == "max") d.goal = 2;
        else throw std::invalid_argument(where + ".goal: expected \"minimize\" or \"maximize\"");
      }
      if (auto* s = o.if_contains("step_metric"); s && !s->is_null()) {
        if (!s->is_string()) throw std::invalid_argument(where + ".step_metric: expected a metric name");
        d.step_metric = std::string(s->as_string());
      }
    } else {
      throw std::invalid_argument(where + ": expected a summary string or an options object");
    }
    std::size_t p = 0;
    while (p <= summary.size() && !summary.empty()) {
      std::size_t q = summary.find(',', p);
      std::string op = summary.substr(p, q == std::string::npos ? std::string::npos : q - p);
      while (!op.empty() && op.front() == ' ') op.erase(op.begin());
      while (!op.empty() && op.back() == ' ') op.pop_back();
      if (op == "min") d.s_min = true;
      else if (op == "max") d.s_max = true;
      else if (op == "mean") d.s_mean = true;
      else if (op == "best") d.s_best = true;
      else if (op == "last") d.s_last = true;
      else if (op == "none") d.s_none = true;
      else if (op == "copy") d.s_copy = true;
      else if (!op.empty())
        throw std::invalid_argument(where + ": unknown summary '" + op + "'; expected min, max, mean, best, last, none or copy");
      if (q == std::string::npos) break;
      p = q + 1;
    }
    if (d.s_best && d.goal == 0)
      throw std::invalid_argument(where + ": summary 'best' needs goal \"minimize\" or \"maximize\"");
    d.step_sync = !d.step_metric.empty();
    out.push_back(std::move(d));
  }
  return out;
}

// `_wandb.m`: Lightning's definitions first (trainer/global_step, then "*" stepped by it), then
// the user's, each as {field number: value} the way W&B's sender encodes MetricRecords.
inline json::array encode_metric_defs(const std::string& step_metric, const std::vector<MetricDef>& defs) {
  json::array m;
  m.push_back(json::object{{"1", step_metric}, {"6", json::array{3}}});
  const std::int64_t step_index = 1;  // 1-based index of step_metric in m
  m.push_back(json::object{{"2", "*"}, {"5", step_index}, {"6", json::array{1}}});
  for (const auto& d : defs) {
    json::object e;
    if (d.glob) e["2"] = d.name + "*";
    else e["1"] = d.name;
    if (!d.step_metric.empty()) {
      if (d.step_metric == step_metric) e["5"] = step_index;
      else e["4"] = d.step_metric;
    }
    json::array opts;
    if (d.step_sync) opts.push_back(1);
    if (d.defined) opts.push_back(3);
    e["6"] = opts;
    json::array sum;
    if (d.s_min) sum.push_back(1);
    if (d.s_max) sum.push_back(2);
    if (d.s_mean) sum.push_back(3);
    if (d.s_best) sum.push_back(4);
    if (d.s_last) sum.push_back(5);
    if (d.s_none) sum.push_back(6);
    if (d.s_copy) sum.push_back(7);
    if (!sum.empty()) e["7"] = sum;
    if (d.goal) e["8"] = d.goal;
    m.push_back(std::move(e));
  }
  return m;
}

// The consolidated summary, computed client-side as W&B's handler does: the last value of each
// key, or for a defined metric the requested aggregates (NaN skipped for the aggregates).
class Summary {
 public:
  explicit Summary(std::vector<MetricDef> defs = {}) : defs_(std::move(defs)) {}

  void update(const std::string& key, double v) {
    Entry& e = entries_[key];
    if (!e.resolved) {
      e.resolved = true;
      for (const auto& d : defs_)
        if (d.matches(key)) {
          e.def = &d;
          break;
        }
    }
    e.last = v;
    e.seen = true;
    if (std::isnan(v)) return;
    if (!e.any || v < e.min) e.min = v;
    if (!e.any || v > e.max) e.max = v;
    e.total += v;
    ++e.count;
    e.any = true;
  }
  // A non-metric value kept verbatim (e.g. "_wandb": {"runtime": N}).
  void set(const std::string& key, json::value v) { extra_[key] = std::move(v); }

  json::object to_json() const {
    json::object out;
    for (const auto& [key, e] : entries_) {
      const MetricDef* d = e.def;
      if (!d || !d->has_summary()) {
        out[key] = number_value(e.last);
        continue;
      }
      if (d->s_none) continue;
      json::object agg;
      if (d->s_min && e.any) agg["min"] = e.min;
      if (d->s_max && e.any) agg["max"] = e.max;
      if (d->s_mean && e.any) agg["mean"] = e.total / static_cast<double>(e.count);
      if (d->s_best && e.any) agg["best"] = d->goal == 2 ? e.max : e.min;
      if (d->s_last) agg["last"] = number_value(e.last);
      out[key] = std::move(agg);
    }
    for (const auto& kv : extra_) out[kv.first] = kv.second;
    return out;
  }

 private:
  struct Entry {
    bool resolved = false, seen = false, any = false;
    const MetricDef* def = nullptr;
    double last = 0, min = 0, max = 0, total = 0;
    std::int64_t count = 0;
  };
  std::vector<MetricDef> defs_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, json::value> extra_;
};
}  // namespace ember::wandb
