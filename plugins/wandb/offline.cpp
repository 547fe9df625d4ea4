// Offline mode (worker): a local run directory as W&B's offline mode writes it,
// <save_dir>/wandb/offline-run-<time>-<id>/ with run-<id>.wandb (the transaction log: run, config,
// history, stats, console, summary, exit records) and files/ (metadata, summary, config.yaml,
// media), for `ember wandb sync DIR`.
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "logger.hpp"
#include "sysinfo.hpp"
#include "wandb_records.hpp"

namespace ember::wandb_plugin {

void TxLogFile::open(const std::string& path) {
  path_ = path;
  file_.reset(std::fopen(path.c_str(), "wb"));
  if (!file_) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  buf_ = wb::txlog::file_header();
  offset_ = buf_.size();
}

void TxLogFile::append(std::string_view record) {
  wb::txlog::frame(buf_, offset_, record);
  if (buf_.size() > (1u << 20)) flush();
}

void TxLogFile::flush() {
  if (!file_ || buf_.empty()) return;
  if (std::fwrite(buf_.data(), 1, buf_.size(), file_.get()) != buf_.size() || std::fflush(file_.get()) != 0)
    throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
  buf_.clear();
}

void TxLogFile::close() {
  if (!file_) return;
  flush();
  if (std::fclose(file_.release()) != 0) throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
}

void WandbLogger::run_offline() {
  std::string root = opt_.save_dir.empty() ? (env("TMPDIR").empty() ? std::string("/tmp") : env("TMPDIR")) : opt_.save_dir;
  if (root.rfind("file://", 0) == 0) root = root.substr(7);
  if (root.find("://") != std::string::npos)
    throw std::runtime_error("mode offline writes a local run directory; config key save_dir (or WANDB_DIR) must be a local path, got " + root);
  char ts[32];
  std::time_t t = static_cast<std::time_t>(start_unix_);
  std::strftime(ts, sizeof ts, "%Y%m%d_%H%M%S", std::localtime(&t));
  offline_dir_ = root + "/wandb/offline-run-" + ts + "-" + opt_.meta.run_id;
  std::string files = offline_dir_ + "/files";
  std::error_code ec;
  std::filesystem::create_directories(files, ec);
  if (ec) throw std::runtime_error("cannot create " + files + ": " + ec.message());
  txlog_.open(offline_dir_ + "/run-" + opt_.meta.run_id + ".wandb");
  write_record(wb::empty_record(wb::kHeader));
  wb::RunInfo ri;
  ri.run_id = opt_.meta.run_id, ri.entity = opt_.meta.entity, ri.project = opt_.meta.project, ri.group = opt_.meta.group;
  ri.job_type = opt_.meta.job_type, ri.display_name = opt_.meta.display_name, ri.notes = opt_.meta.notes, ri.host = opt_.meta.host;
  ri.tags = opt_.meta.tags;
  ri.start_time_s = static_cast<std::int64_t>(start_unix_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    cfg_config_ = config_;
    config_dirty_ = false;
  }
  for (const auto& kv : full_config()) ri.config.emplace_back(std::string(kv.key()), json::serialize(kv.value()));
  write_record(wb::run_record(ri));
  write_file("wandb-metadata.json", metadata_json());
  write_record(wb::files_record({"wandb-metadata.json"}, 0));
  txlog_.flush();
  say(EMBER_LOG_INFO, "offline run in " + offline_dir_ + "; upload it with `ember wandb sync " + offline_dir_ + "`");
  last_stats_ = Clock::now();
  last_cpu_s_ = sample_proc().cpu_s;

  bool finishing = false;
  for (;;) {
    wait_until(Clock::now() + std::chrono::seconds(1));
    bool cfg = drain(finishing);
    if (cfg) {
      wb::Items items;
      for (const auto& kv : full_config()) items.emplace_back(std::string(kv.key()), json::serialize(kv.value()));
      write_record(wb::record(wb::kConfig, wb::encode_items(1, items)));
    }
    history_.lines.clear();
    history_.mem_bytes = 0;
    if (opt_.stats_interval > 0 && Clock::now() - last_stats_ >= std::chrono::duration<double>(opt_.stats_interval)) sample_stats();
    if (finishing) break;
    txlog_.flush();
  }
  if (opt_.stats_interval > 0) sample_stats();
  double rt = std::chrono::duration<double>(Clock::now() - t0_).count();
  write_record(wb::exit_record(exit_code_, static_cast<std::int64_t>(rt)));
  std::string summary = summary_text(true);
  json::object so = wb::parse_line(summary).as_object();
  wb::Items items;
  for (const auto& kv : so) items.emplace_back(std::string(kv.key()), wb::line_text(kv.value()));
  write_record(wb::summary_record(items));
  write_record(wb::empty_record(wb::kFinal));
  write_record(wb::empty_record(wb::kFooter));
  txlog_.close();
  write_file("wandb-summary.json", summary);
  write_file("config.yaml", wb::config_yaml(wb::wrap_config(full_config())));
  completed_ = true;
  say(EMBER_LOG_INFO, "offline run " + opt_.meta.run_id + " written to " + offline_dir_ + " (" + std::to_string(history_.next) +
                          " history rows); upload it with `ember wandb sync " + offline_dir_ + "`");
}

void WandbLogger::offline_history(const std::string& line, std::int64_t step) {
  write_record(wb::history_record(wb::items_of_line(line), step));
}

void WandbLogger::write_file(const std::string& name, const std::string& bytes) {
  std::string path = offline_dir_ + "/files/" + name;
  if (name.find('/') != std::string::npos) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create the directory of " + path + ": " + ec.message());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace ember::wandb_plugin
