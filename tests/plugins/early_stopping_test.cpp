// early_stopping: the built .so driven in-process through hooks and the host table.
#define BOOST_TEST_MODULE early_stopping
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>

#include "plugin_fixture.hpp"

using ember::test::FakeTrainer;
using ember::test::hook_args;
using ember::test::LoadedPlugin;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_EARLY_STOPPING_SO");
  return l;
}

// A fit in progress: setup(FIT) ran; each validate(value) is one validation run ending.
class Fit {
 public:
  explicit Fit(const std::string& config, FakeTrainer* trainer = nullptr)
      : t_(trainer ? *trainer : own_), p_(lib(), config, t_) {
    p_.call(EMBER_HOOK_ID_setup, hook_args(EMBER_STAGE_FIT));
  }

  // Log value under name, end a validation run; returns whether a stop was requested by it.
  bool validate(double value, const std::string& name = "val_loss") {
    t_.set_metric(name, value);
    return end_validation();
  }
  bool end_validation() {
    size_t before = t_.stops.size();
    t_.state.epoch = epoch_;
    p_.call(EMBER_HOOK_ID_on_validation_end, hook_args(EMBER_STAGE_VALIDATE, epoch_));
    ++epoch_;
    return t_.stops.size() > before;
  }
  void end_train_epoch(double value, const std::string& name = "train_loss") {
    t_.set_metric(name, value);
    p_.call(EMBER_HOOK_ID_on_train_epoch_end, hook_args(EMBER_STAGE_FIT, epoch_));
  }

  FakeTrainer& trainer() { return t_; }
  LoadedPlugin& plugin() { return p_; }
  const std::string& last_stop() const { return t_.stops.back(); }

 private:
  FakeTrainer own_;
  FakeTrainer& t_;
  LoadedPlugin p_;
  std::int64_t epoch_ = 0;
};

// The index of the first validation that requested a stop, or -1.
int stops_at(Fit& fit, const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    if (fit.validate(values[i])) return static_cast<int>(i);
  return -1;
}

}  // namespace

BOOST_AUTO_TEST_CASE(stops_after_patience_checks_without_improvement) {
  Fit fit(R"({"monitor": "val_loss", "patience": 3})");
  BOOST_TEST(stops_at(fit, {1.0, 0.312, 0.5, 0.4, 0.35, 0.1}) == 4);
  BOOST_TEST(fit.last_stop() ==
             "Monitored metric val_loss did not improve in the last 3 records. Best score: 0.312. "
             "Signaling Trainer to stop.");
  auto st = boost::json::parse(fit.plugin().state_dict()).as_object();
  BOOST_TEST(st.at("stopped_epoch").as_int64() == 4);
  BOOST_TEST(st.at("wait_count").as_int64() == 3);
}

BOOST_AUTO_TEST_CASE(an_improvement_resets_the_wait) {
  Fit fit(R"({"monitor": "val_loss", "patience": 2})");
  BOOST_TEST(stops_at(fit, {1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.85}) == 6);
}

BOOST_AUTO_TEST_CASE(an_improvement_must_exceed_min_delta) {
  Fit fit(R"({"monitor": "val_loss", "patience": 2, "min_delta": 0.1})");
  // 0.95 and 0.91 beat 1.0 but not by more than 0.1.
  BOOST_TEST(stops_at(fit, {1.0, 0.95, 0.91}) == 2);
  Fit enough(R"({"monitor": "val_loss", "patience": 2, "min_delta": 0.1})");
  BOOST_TEST(stops_at(enough, {1.0, 0.85, 0.7, 0.55, 0.5}) == -1);
}

BOOST_AUTO_TEST_CASE(max_mode_wants_the_metric_to_grow) {
  Fit fit(R"({"monitor": "val_loss", "mode": "max", "patience": 2})");
  BOOST_TEST(stops_at(fit, {0.5, 0.6, 0.7, 0.65, 0.7}) == 4);
  BOOST_TEST(fit.last_stop().find("Best score: 0.700") != std::string::npos, fit.last_stop());
}

BOOST_AUTO_TEST_CASE(stopping_threshold_stops_once_the_metric_is_good_enough) {
  Fit fit(R"({"monitor": "val_loss", "patience": 100, "stopping_threshold": 0.2})");
  BOOST_TEST(stops_at(fit, {1.0, 0.5, 0.2, 0.19}) == 3);
  BOOST_TEST(fit.last_stop() ==
             "Stopping threshold reached: val_loss = 0.19 < 0.2. Signaling Trainer to stop.");
  Fit up(R"({"monitor": "val_loss", "mode": "max", "patience": 100, "stopping_threshold": 0.9})");
  BOOST_TEST(stops_at(up, {0.5, 0.9, 0.95}) == 2);
}

BOOST_AUTO_TEST_CASE(divergence_threshold_stops_once_the_metric_is_hopeless) {
  Fit fit(R"({"monitor": "val_loss", "patience": 100, "divergence_threshold": 5.0})");
  BOOST_TEST(stops_at(fit, {1.0, 4.0, 5.0, 6.5}) == 3);
  BOOST_TEST(fit.last_stop() ==
             "Divergence threshold reached: val_loss = 6.5 > 5. Signaling Trainer to stop.");
  Fit up(R"({"monitor": "val_loss", "mode": "max", "patience": 100, "divergence_threshold": 0.1})");
  BOOST_TEST(stops_at(up, {0.5, 0.2, 0.05}) == 2);
}

BOOST_AUTO_TEST_CASE(a_non_finite_metric_stops_when_check_finite) {
  Fit fit(R"({"monitor": "val_loss", "patience": 100})");
  BOOST_TEST(stops_at(fit, {0.5, 0.312, std::nan("")}) == 2);
  BOOST_TEST(fit.last_stop() ==
             "Monitored metric val_loss = nan is not finite. Previous best value was 0.312. "
             "Signaling Trainer to stop.");
  Fit inf(R"({"monitor": "val_loss", "patience": 100})");
  BOOST_TEST(stops_at(inf, {0.5, std::numeric_limits<double>::infinity()}) == 1);

  // Without check_finite a NaN is just not an improvement.
  Fit lax(R"({"monitor": "val_loss", "patience": 2, "check_finite": false})");
  BOOST_TEST(stops_at(lax, {0.5, std::nan(""), std::nan("")}) == 2);
  BOOST_TEST(lax.last_stop().find("did not improve in the last 2 records") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(strict_names_the_missing_metric_and_the_logged_ones) {
  Fit fit(R"({"monitor": "val_loss"})");
  fit.trainer().set_metric("train_loss", 0.5);
  fit.trainer().set_metric("val_acc", 0.9);
  try {
    fit.end_validation();
    BOOST_FAIL("a missing monitored metric was accepted");
  } catch (const ember::HookError& e) {
    std::string msg = e.what();
    BOOST_TEST(e.owner() == "early_stopping");
    BOOST_TEST(msg.find("`val_loss`") != std::string::npos, msg);
    BOOST_TEST(msg.find("`train_loss`, `val_acc`") != std::string::npos, msg);
    BOOST_TEST(msg.find("config key monitor") != std::string::npos, msg);
  }
  BOOST_TEST(fit.trainer().stops.empty());

  Fit lax(R"({"monitor": "val_loss", "strict": false, "verbose": true})");
  BOOST_TEST(!lax.end_validation());
  BOOST_TEST(lax.trainer().lines.size() == 1u);
}

BOOST_AUTO_TEST_CASE(the_sanity_check_and_other_stages_are_skipped) {
  Fit fit(R"({"monitor": "val_loss", "patience": 0})");
  fit.trainer().state.sanity_checking = 1;
  BOOST_TEST(!fit.end_validation(),
             "the sanity check is never checked, not even for a missing metric");
  fit.trainer().state.sanity_checking = 0;

  // validate() outside fit: Lightning checks only while fitting.
  FakeTrainer t;
  LoadedPlugin p(lib(), R"({"monitor": "val_loss", "patience": 0})", t);
  p.call(EMBER_HOOK_ID_setup, hook_args(EMBER_STAGE_VALIDATE));
  t.set_metric("val_loss", std::nan(""));
  p.call(EMBER_HOOK_ID_on_validation_end, hook_args(EMBER_STAGE_VALIDATE));
  BOOST_TEST(t.stops.empty());
}

BOOST_AUTO_TEST_CASE(check_on_train_epoch_end_moves_the_check) {
  Fit fit(R"({"monitor": "train_loss", "patience": 1, "check_on_train_epoch_end": true})");
  fit.trainer().set_metric("train_loss", 1.0);
  fit.end_validation();
  fit.end_validation();
  BOOST_TEST(fit.trainer().stops.empty(), "validation end does not check");
  fit.end_train_epoch(1.0);
  BOOST_TEST(fit.trainer().stops.empty());
  fit.end_train_epoch(1.0);
  BOOST_TEST(fit.trainer().stops.size() == 1u);
}

BOOST_AUTO_TEST_CASE(state_round_trips_through_state_dict) {
  std::string saved;
  {
    Fit fit(R"({"monitor": "val_loss", "patience": 3})");
    BOOST_TEST(stops_at(fit, {0.4, 0.5, 0.6}) == -1);
    saved = fit.plugin().state_dict();
  }
  auto st = boost::json::parse(saved).as_object();
  BOOST_TEST(st.at("wait_count").as_int64() == 2);
  BOOST_TEST(st.at("best_score").as_double() == 0.4);

  Fit resumed(R"({"monitor": "val_loss", "patience": 3})");
  resumed.plugin().load_state_dict(saved);
  BOOST_TEST(resumed.validate(0.45), "the third record without improvement stops");
  BOOST_TEST(resumed.last_stop().find("Best score: 0.400") != std::string::npos);

  // Before any check best_score is infinite, which JSON spells as a string.
  Fit fresh(R"({"monitor": "val_loss"})");
  std::string empty = fresh.plugin().state_dict();
  BOOST_TEST(boost::json::parse(empty).as_object().at("best_score") == "inf");
  Fit again(R"({"monitor": "val_loss", "patience": 1})");
  again.plugin().load_state_dict(empty);
  BOOST_TEST(!again.validate(9.0), "anything beats an infinite best");

  // Another monitor's state is not resumed.
  Fit other(R"({"monitor": "val_acc", "mode": "max", "patience": 1})");
  other.plugin().load_state_dict(saved);
  BOOST_TEST(
      boost::json::parse(other.plugin().state_dict()).as_object().at("wait_count").as_int64() == 0);
}

BOOST_AUTO_TEST_CASE(a_missing_monitor_is_refused_by_the_schema) {
  FakeTrainer t;
  try {
    LoadedPlugin p(lib(), R"({"mode": "min"})", t);
    BOOST_FAIL("no monitor was accepted");
  } catch (const ember::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("monitor") != std::string::npos, e.what());
  }
  try {
    LoadedPlugin p(lib(), R"({"monitor": "val_loss", "mode": "minimum"})", t);
    BOOST_FAIL("a bad mode was accepted");
  } catch (const ember::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("mode") != std::string::npos, e.what());
  }
}
