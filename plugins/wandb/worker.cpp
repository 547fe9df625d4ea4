// The worker thread's loop and what both modes share: waiting on the training thread, draining
// its rows into history lines and the summary, the run config, metadata and system metrics.
// Online and offline sending are in online.cpp and offline.cpp.
#include <sys/utsname.h>

#include <cstdio>
#include <ctime>
#include <thread>

#include "logger.hpp"
#include "sysinfo.hpp"
#include "wandb_json.hpp"
#include "wandb_records.hpp"
#include "wandb_safety.hpp"

namespace ember::wandb_plugin {

void WandbLogger::run_worker() {
  LiveSpool live(opt_.spool_dir);
  try {
    if (opt_.offline) run_offline();
    else run_online();
  } catch (const std::exception& e) {
    report_ = std::string("worker stopped: ") + e.what();
  }
}

// Wait until t or until finishing/flush; false once past the finalize deadline.
bool WandbLogger::wait_until(Clock::time_point t) {
  std::unique_lock<std::mutex> lk(mu_);
  if (finishing_ && t > deadline_) t = deadline_;
  cv_.wait_until(lk, t, [&] { return flush_now_ || (finishing_ && !finish_seen_); });
  if (finishing_ && !finish_seen_) finish_seen_ = true;  // wake once for the finish request
  return !(finishing_ && Clock::now() >= deadline_);
}

double WandbLogger::post_interval() const {
  if (opt_.post_interval >= 0) return opt_.post_interval;
  double rt = std::chrono::duration<double>(Clock::now() - t0_).count();
  return rt < 60 ? 2.0 : rt < 300 ? 10.0 : 30.0;
}

// Move queued rows into history lines and the summary; pick up config changes and jobs.
bool WandbLogger::drain(bool& finishing) {
  // Double buffering: the training thread gets back the capacity of the buffer drained last
  // time, so its appends do not reallocate once both buffers have grown.
  RowBuffer& rows = spare_rows_;
  rows.clear();
  bool cfg_changed = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    rows.swap(rows_);
    flush_now_ = false;
    finishing = finishing_;
    if (config_dirty_) cfg_config_ = config_, config_dirty_ = false, cfg_changed = true;
    for (auto& j : jobs_) my_jobs_.push_back(std::move(j));
    jobs_.clear();
  }
  std::string line;
  RowBuffer::Head h;
  while (rows.next(h)) {
    std::uint32_t n = h.count;
    line.clear();
    line += '{';
    bool has_epoch = false;
    if (h.media()) {
      const std::int64_t step = starting_step_ + history_.next;
      MediaRow media = rows.take_media();
      for (auto& item : media.items) {
        json::value v = media_value(item, step);
        wb::append_json_string(line, item.key);
        line += ": ";
        line += json::serialize(v);
        line += ", ";
        summary_.set(item.key, std::move(v));
      }
      n = 0;  // the common tail below: epoch, trainer/global_step, _step, _runtime, _timestamp
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      auto [raw, v] = rows.metric();
      std::string name = opt_.prefix.empty() ? std::string(raw) : opt_.prefix + "-" + std::string(raw);
      if (name == "epoch") has_epoch = true;
      wb::append_json_string(line, name);
      line += ": ";
      wb::append_number(line, v);
      line += ", ";
      summary_.update(name, v);
    }
    // Lightning's WandbLogger: every row carries trainer/global_step (and epoch, as
    // Lightning's logger connector adds it), so no metric depends on _step for its x axis.
    if (!has_epoch) {
      line += "\"epoch\": ";
      wb::append_int(line, h.epoch);
      line += ", ";
      summary_.update("epoch", static_cast<double>(h.epoch));
    }
    line += "\"trainer/global_step\": ";
    wb::append_int(line, h.step);
    summary_.update(kStepMetric, static_cast<double>(h.step));
    const std::int64_t step = starting_step_ + history_.next;
    line += ", \"_step\": ";
    wb::append_int(line, step);
    line += ", \"_runtime\": ";
    wb::append_number(line, h.runtime + runtime_offset_);
    line += ", \"_timestamp\": ";
    wb::append_number(line, h.unix_time);
    line += '}';
    summary_.update("_step", static_cast<double>(step));
    summary_.update("_runtime", h.runtime + runtime_offset_);
    summary_.update("_timestamp", h.unix_time);
    if (opt_.offline) offline_history(line, step);
    history_.push(line);
  }
  if (console_) take_console();
  return cfg_changed;
}

json::object WandbLogger::wandb_config_block() const {
  return json::object{{"cli_version", nullptr},
                      {"ember_version", std::string(view(host().host_version))},
                      {"is_jupyter_run", false},
                      {"is_kaggle_kernel", false},
                      {"start_time", start_unix_},
                      {"t", json::object{}},
                      {"m", wb::encode_metric_defs(kStepMetric, opt_.defs)}};
}

json::object WandbLogger::full_config() const {
  json::object c = cfg_config_;
  c["_wandb"] = wandb_config_block();
  return c;
}

std::string WandbLogger::config_wire() const { return json::serialize(wb::wrap_config(full_config())); }

std::string WandbLogger::summary_text(bool final) {
  if (final) {
    double rt = std::chrono::duration<double>(Clock::now() - t0_).count() + runtime_offset_;
    summary_.set("_wandb", json::object{{"runtime", static_cast<std::int64_t>(rt)}});
  }
  return wb::line_text(summary_.to_json());
}

std::string WandbLogger::metadata_json() const {
  struct utsname u {};
  ::uname(&u);
  std::string args;
  json::array argv;
  if (std::FILE* f = std::fopen("/proc/self/cmdline", "r")) {
    std::string cur;
    for (int c; (c = std::fgetc(f)) != EOF;) {
      if (c == 0) argv.emplace_back(cur), cur.clear();
      else cur += static_cast<char>(c);
    }
    std::fclose(f);
  }
  if (!argv.empty()) argv.erase(argv.begin());
  // `--set s3.secret_access_key=…` and the like must not reach W&B.
  std::vector<std::string> raw;
  for (const auto& a : argv) raw.emplace_back(a.as_string());
  argv.clear();
  for (auto& a : wb::redact_argv(std::move(raw))) argv.emplace_back(wb::strip_query_strings(a));
  ProcSample s = sample_proc();
  char started[64];
  std::time_t t = static_cast<std::time_t>(start_unix_);
  std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
  return json::serialize(json::object{
      {"os", std::string(u.sysname) + "-" + u.release + "-" + u.machine},
      {"python", nullptr},
      {"ember", std::string(view(host().host_version))},
      {"heartbeatAt", started},
      {"startedAt", started},
      {"docker", nullptr},
      {"cuda", nullptr},
      {"args", argv},
      {"state", "running"},
      {"program", opt_.meta.program},
      {"codePathLocal", nullptr},
      {"host", opt_.meta.host},
      {"username", env("USER")},
      {"executable", opt_.meta.program},
      {"cpu_count", static_cast<std::int64_t>(std::thread::hardware_concurrency())},
      {"cpu_count_logical", static_cast<std::int64_t>(std::thread::hardware_concurrency())},
      {"memory", json::object{{"total", s.mem_total_mb / 1024.0}}}});
}

// One system-metrics line (wandb-events.jsonl), as W&B's sender flattens StatsRecords.
void WandbLogger::sample_stats() {
  ProcSample s = sample_proc();
  auto now = Clock::now();
  double wall = std::chrono::duration<double>(now - last_stats_).count();
  double ncpu = std::max(1u, std::thread::hardware_concurrency());
  double cpu = wall > 0 ? 100.0 * (s.cpu_s - last_cpu_s_) / wall / ncpu : 0;
  last_cpu_s_ = s.cpu_s;
  last_stats_ = now;
  double mem = s.mem_total_mb > 0 ? 100.0 * (s.mem_total_mb - s.mem_avail_mb) / s.mem_total_mb : 0;
  wb::Items items{{"system.cpu", wb::number_text(cpu)},
                  {"system.memory", wb::number_text(mem)},
                  {"system.proc.memory.rssMB", wb::number_text(s.rss_mb)},
                  {"system.proc.memory.percent", wb::number_text(s.mem_total_mb > 0 ? 100.0 * s.rss_mb / s.mem_total_mb : 0)},
                  {"system.proc.memory.availableMB", wb::number_text(s.mem_avail_mb)},
                  {"system.proc.cpu.threads", std::to_string(s.threads)}};
  double rt = std::chrono::duration<double>(now - t0_).count() + runtime_offset_;
  if (opt_.offline) {
    write_record(wb::stats_record(items, static_cast<std::int64_t>(unix_now())));
    return;
  }
  items.emplace_back("_wandb", "true");
  items.emplace_back("_timestamp", wb::number_text(unix_now()));
  items.emplace_back("_runtime", wb::number_text(rt));
  events_.push(wb::line_of_items(items));
  ++stats_lines_;
}

}  // namespace ember::wandb_plugin
