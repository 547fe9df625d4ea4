// early_stopping — Lightning's EarlyStopping callback.
//
// After each validation run of fit (or each training epoch, with check_on_train_epoch_end) it
// reads the monitored callback metric from the host and asks the trainer to stop when the
// metric has not improved by more than min_delta for `patience` checks, crossed a threshold,
// or is not finite. Checks are skipped during the sanity check and outside fit, as in Lightning.
// wait_count, best_score and stopped_epoch travel in checkpoints through ember.state/1.
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

namespace json = boost::json;
using ember::plugin::str;
using ember::plugin::view;

constexpr const char* kId = "early_stopping";

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["monitor"],
  "properties": {
    "monitor": {"type": "string", "minLength": 1,
                "description": "the callback metric to watch, e.g. val_loss"},
    "mode": {"enum": ["min", "max"], "default": "min",
             "description": "min: lower is better; max: higher is better"},
    "patience": {"type": "integer", "minimum": 0, "maximum": 9007199254740991, "default": 3,
                 "description": "checks without improvement before stopping"},
    "min_delta": {"type": "number", "minimum": 0, "default": 0.0,
                  "description": "an improvement must exceed this"},
    "stopping_threshold": {"type": ["number", "null"], "default": null,
                           "description": "stop as soon as the metric is better than this"},
    "divergence_threshold": {"type": ["number", "null"], "default": null,
                             "description": "stop as soon as the metric is worse than this"},
    "check_finite": {"type": "boolean", "default": true,
                     "description": "stop when the metric is NaN or infinite"},
    "check_on_train_epoch_end": {"type": "boolean", "default": false,
                                 "description": "check at the end of each training epoch instead of after validation"},
    "strict": {"type": "boolean", "default": true,
               "description": "a monitored metric that was never logged is an error"},
    "verbose": {"type": "boolean", "default": false,
                "description": "log every improvement and the reason to stop"}
  }
})";

[[noreturn]] void throw_error(const std::string& message) {
  throw std::runtime_error(std::string(kId) + ": " + message);
}

// Python's "{:.3f}" (the best score in Lightning's messages).
std::string fixed3(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// The shortest text that reads back as v ("nan", "inf", "-inf" when not finite).
std::string shortest(double v) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// JSON has no NaN or infinity: those go as the strings "nan", "inf", "-inf".
json::value number_to_json(double v) {
  if (std::isfinite(v)) return v;
  return json::string(shortest(v));
}

double number_from_json(const json::value& v, const char* key) {
  if (v.is_number()) return v.to_number<double>();
  if (v.is_string()) {
    std::string_view s = v.as_string();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  throw_error(std::string("load_state_dict: key ") + key +
              ": expected a number, \"nan\", \"inf\" or \"-inf\", got " + json::serialize(v));
}

class EarlyStopping : public ember::plugin::Plugin,
                      public ember::plugin::Callbacks,
                      public ember::plugin::State {
 public:
  EarlyStopping(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    const ember::plugin::Config cfg(config_json, kId);
    const json::value* m = cfg.find("monitor");
    if (!m || !m->is_string() || m->as_string().empty())
      cfg.fail("monitor", "required, the name of a logged metric such as \"val_loss\"");
    monitor_ = std::string(m->as_string());
    max_mode_ = cfg.one_of("mode", "min", {"min", "max"}) == "max";
    patience_ = cfg.integer("patience", patience_, 0);
    min_delta_ = cfg.number("min_delta", min_delta_, 0);
    stopping_threshold_ = cfg.optional_number("stopping_threshold");
    divergence_threshold_ = cfg.optional_number("divergence_threshold");
    check_finite_ = cfg.boolean("check_finite", check_finite_);
    on_train_epoch_end_ = cfg.boolean("check_on_train_epoch_end", on_train_epoch_end_);
    strict_ = cfg.boolean("strict", strict_);
    verbose_ = cfg.boolean("verbose", verbose_);
    best_score_ = max_mode_ ? -std::numeric_limits<double>::infinity()
                            : std::numeric_limits<double>::infinity();
  }

  // Lightning checks only while fitting; setup/teardown say when that is.
  void setup(const ember_hook_args_t& args) override { fitting_ = args.stage == EMBER_STAGE_FIT; }
  void teardown(const ember_hook_args_t&) override { fitting_ = false; }

  void on_validation_end(const ember_hook_args_t& args) override {
    if (!on_train_epoch_end_) check(args);
  }
  void on_train_epoch_end(const ember_hook_args_t& args) override {
    if (on_train_epoch_end_) check(args);
  }

  std::string state_dict() override {
    json::object o;
    o["monitor"] = monitor_;
    o["mode"] = max_mode_ ? "max" : "min";
    o["wait_count"] = wait_count_;
    o["stopped_epoch"] = stopped_epoch_;
    o["best_score"] = number_to_json(best_score_);
    o["patience"] = patience_;
    return json::serialize(o);
  }

  void load_state_dict(std::string_view text) override {
    const json::object o = ember::plugin::parse_object(text, kId, "load_state_dict");
    // Lightning keys the state by monitor and mode: another one's state is not ours to resume.
    auto* m = o.if_contains("monitor");
    auto* md = o.if_contains("mode");
    if ((m && m->is_string() && m->as_string() != monitor_) ||
        (md && md->is_string() && md->as_string() != (max_mode_ ? "max" : "min"))) {
      log(EMBER_LOG_WARN, "checkpoint state is for monitor " + (m ? json::serialize(*m) : "?") +
                              " mode " + (md ? json::serialize(*md) : "?") +
                              ", not for this callback's; starting afresh");
      return;
    }
    try {
      if (auto* w = o.if_contains("wait_count")) wait_count_ = w->to_number<std::int64_t>();
      if (auto* s = o.if_contains("stopped_epoch")) stopped_epoch_ = s->to_number<std::int64_t>();
    } catch (const boost::system::system_error&) {
      throw_error("load_state_dict: wait_count and stopped_epoch must be integers, got " +
                  std::string(text));
    }
    if (auto* b = o.if_contains("best_score")) best_score_ = number_from_json(*b, "best_score");
  }

 private:
  void check(const ember_hook_args_t& args) {
    if (!fitting_) return;
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    if (host().get_state(host().ctx, &st) != EMBER_OK)
      throw_error("cannot read the trainer state: " +
                  std::string(view(host().last_error(host().ctx))));
    if (st.sanity_checking || args.stage == EMBER_STAGE_SANITY_CHECK) return;

    double current = 0;
    // Under ddp every rank decides on rank 0's value, so all stop at the same epoch (Lightning
    // reduces the decision; here rank 0's metric is the one, as in its checkpoints).
    struct {
      double value;
      std::int32_t found;
    } seen{0, host().get_metric(host().ctx, str(monitor_), &current) == EMBER_OK ? 1 : 0};
    seen.value = current;
    broadcast_from_zero(seen);
    current = seen.value;
    if (!seen.found) {
      std::string msg = "Early stopping conditioned on metric `" + monitor_ +
                        "` (config key monitor) which is not available. Pass in or modify your "
                        "early_stopping config to use any of the following: " +
                        logged_names();
      if (strict_) throw_error(msg);
      if (verbose_) log(EMBER_LOG_WARN, msg);
      return;
    }

    auto [should_stop, reason] = evaluate(current);
    if (should_stop) {
      stopped_epoch_ = st.epoch;
      host().request_stop(host().ctx, str(reason));
    }
    if (!reason.empty() && verbose_) log(EMBER_LOG_INFO, reason);
  }

  // Lightning's _evaluate_stopping_criteria, in its order.
  std::pair<bool, std::string> evaluate(double current) {
    const std::string cur = shortest(current);
    if (check_finite_ && !std::isfinite(current))
      return {true, "Monitored metric " + monitor_ + " = " + cur +
                        " is not finite. Previous best value was " + fixed3(best_score_) +
                        ". Signaling Trainer to stop."};
    if (stopping_threshold_ && better(current, *stopping_threshold_))
      return {true, "Stopping threshold reached: " + monitor_ + " = " + cur + " " +
                        (max_mode_ ? ">" : "<") + " " + shortest(*stopping_threshold_) +
                        ". Signaling Trainer to stop."};
    if (divergence_threshold_ && better(*divergence_threshold_, current))
      return {true, "Divergence threshold reached: " + monitor_ + " = " + cur + " " +
                        (max_mode_ ? "<" : ">") + " " + shortest(*divergence_threshold_) +
                        ". Signaling Trainer to stop."};
    // An improvement beats the best by more than min_delta (Lightning: monitor_op(current -
    // min_delta, best) with min_delta negated in min mode).
    if (better(max_mode_ ? current - min_delta_ : current + min_delta_, best_score_)) {
      std::string msg =
          std::isfinite(best_score_)
              ? "Metric " + monitor_ + " improved by " + fixed3(std::fabs(best_score_ - current)) +
                    " >= min_delta = " + shortest(min_delta_) +
                    ". New best score: " + fixed3(current)
              : "Metric " + monitor_ + " improved. New best score: " + fixed3(current);
      best_score_ = current;
      wait_count_ = 0;
      return {false, msg};
    }
    ++wait_count_;
    if (wait_count_ >= patience_)
      return {true, "Monitored metric " + monitor_ + " did not improve in the last " +
                        std::to_string(wait_count_) + " records. Best score: " +
                        fixed3(best_score_) + ". Signaling Trainer to stop."};
    return {false, {}};
  }

  // Strictly better in this mode (false when either side is NaN, as torch.lt/gt).
  bool better(double a, double b) const { return max_mode_ ? a > b : a < b; }

  // "`a`, `b`" — the callback metrics logged so far, or "(none logged yet)".
  std::string logged_names() const {
    std::string out;
    host().list_metrics(
        host().ctx,
        [](void* user, ember_str_t name, double) -> int32_t {
          auto& s = *static_cast<std::string*>(user);
          if (!s.empty()) s += ", ";
          s += "`" + std::string(view(name)) + "`";
          return 0;
        },
        &out);
    return out.empty() ? "(none logged yet)" : out;
  }

  // Config.
  std::string monitor_;
  bool max_mode_ = false;
  std::int64_t patience_ = 3;
  double min_delta_ = 0;
  std::optional<double> stopping_threshold_, divergence_threshold_;
  bool check_finite_ = true, on_train_epoch_end_ = false, strict_ = true, verbose_ = false;

  // State (saved in checkpoints).
  std::int64_t wait_count_ = 0, stopped_epoch_ = 0;
  double best_score_ = 0;

  bool fitting_ = false;
};

}  // namespace

EMBER_PLUGIN(EarlyStopping, "early_stopping", "1.0.0",
             "Lightning's EarlyStopping: stop fit when a monitored metric stops improving", kSchema)
