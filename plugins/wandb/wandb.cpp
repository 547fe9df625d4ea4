// wandb — Lightning's WandbLogger speaking W&B's own protocol (see plugins/wandb/README.md and
// logger.hpp for the threads and where each part lives). This file: the entry, creation and
// destruction, and the hooks the training thread calls. The plugin also serves the read-only
// wandb:// scheme (ember.storage/1, scheme.cpp) to resume from artifacts.
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include "logger.hpp"
#include "sysinfo.hpp"
#include "wandb_api_client.hpp"  // complete types for the worker's members, destroyed here
#include "wandb_safety.hpp"
#include "wandb_spool.hpp"

namespace ember::wandb_plugin {

WandbLogger::WandbLogger(const ember_host_t* host, std::string_view config_json)
    : Plugin(host), opt_(Settings::parse(config_json)) {
  if (!opt_.verify_tls)
    log(EMBER_LOG_WARN, "verify_tls is false: the TLS certificate of " + wb::strip_query_strings(opt_.base_url) +
                            " is NOT checked; anyone on the network path can impersonate W&B and read the API key "
                            "and the run. Use ca_file for a private CA instead.");
  config_ = opt_.config;
  summary_ = wb::Summary(opt_.defs);
}

WandbLogger::~WandbLogger() {
  if (worker_.joinable()) {
    try {
      say(EMBER_LOG_WARN, "destroyed without finalize; finishing the run as failed");
      finish("failed");
    } catch (...) {
    }
  }
}

void WandbLogger::log_hyperparams(std::string_view params_json) {
  if (!enabled()) return;
  json::value v = json::parse(params_json);
  if (!v.is_object()) throw std::invalid_argument("wandb: log_hyperparams: expected a JSON object");
  start();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& kv : v.as_object()) config_[kv.key()] = kv.value();
  config_dirty_ = true;
}

// The hot path: a few appends to a byte buffer under the mutex.
void WandbLogger::log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) {
  if (!enabled() || count == 0) return;
  if (!started_) start();
  if (!pending_hist_.items.empty()) flush_histograms();
  const double runtime = std::chrono::duration<double>(Clock::now() - t0_).count();
  const double ts = unix_now();
  std::lock_guard<std::mutex> lk(mu_);
  rows_.add_metrics({ctx.step, ctx.epoch, runtime, ts, static_cast<std::uint32_t>(count)}, metrics, count);
}

void WandbLogger::after_save_checkpoint(std::string_view url) {
  if (!enabled() || opt_.log_model == 0) return;
  ember_trainer_state_t st{};
  st.struct_size = sizeof st;
  host().get_state(host().ctx, &st);
  std::string u(url);
  auto slash = u.rfind('/');
  index_dir_ = slash == std::string::npos ? "." : u.substr(0, slash);
  // model_checkpoint writes its index after the checkpoints: the job waits for the next hook.
  if (opt_.log_model == 2) saved_.push_back({u, index_dir_, st.global_step});
}

void WandbLogger::save() {
  if (!enabled() || !started_) return;
  if (!pending_hist_.items.empty()) flush_histograms();
  std::lock_guard<std::mutex> lk(mu_);
  flush_now_ = true;
  cv_.notify_one();
}

void WandbLogger::finalize(std::string_view status) {
  if (!enabled()) return;
  start();
  finish(status);
}

void WandbLogger::say(ember_log_level_t level, const std::string& msg) const {
  if (opt_.silent && level < EMBER_LOG_WARN) return;
  log(level, wb::strip_query_strings(msg));
}

void WandbLogger::start() {
  if (started_ || !enabled()) return;
  started_ = true;
  t0_ = Clock::now();
  start_unix_ = unix_now();
  if (opt_.online && opt_.api_key.empty()) {
    say(EMBER_LOG_ERROR, "no W&B API key: " + opt_.key_hint() + "; mode offline needs no key. Rows are kept in " + opt_.spool_dir +
                             " for `ember wandb sync`");
    net_disabled_ = "no API key";
  }
  start_console();
  worker_ = std::thread([this] { run_worker(); });
}

// Checkpoints saved since the last hook go to the worker once model_checkpoint has written its index.
void WandbLogger::hand_over_checkpoints() {
  if (saved_.empty()) return;
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& j : saved_) jobs_.push_back(std::move(j));
  saved_.clear();
  cv_.notify_one();
}

void WandbLogger::finish(std::string_view status) {
  hand_over_checkpoints();
  if (started_ && !pending_hist_.items.empty()) flush_histograms();
  if (console_) console_->stop();  // every captured line is queued before the worker's last drain
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (finishing_) return;
    if (opt_.log_model == 1 && !index_dir_.empty()) jobs_.push_back({"", index_dir_, 0});
    exit_code_ = status == "success" ? 0 : 1;
    finishing_ = true;
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.finalize_timeout));
    cv_.notify_one();
  }
  if (worker_.joinable()) worker_.join();
  report_console();
  if (!report_.empty()) {
    std::string r = report_;
    report_.clear();
    say(EMBER_LOG_WARN, r);
  }
}

}  // namespace ember::wandb_plugin

EMBER_PLUGIN(ember::wandb_plugin::WandbLogger, "wandb", "1.1.0",
             "Weights & Biases logger (Lightning's WandbLogger): runs, metrics, media, summary, config, model artifacts, offline runs",
             ember::wandb_plugin::kSchema)
