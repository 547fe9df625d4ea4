// The wandb plugin's one class: Lightning's WandbLogger speaking W&B's own protocol. Its state is
// grouped by the thread that owns it, and its member functions are defined one file per part:
//
//   wandb.cpp          the entry, creation, and the training thread's hooks      [train-thread]
//   media_capture.cpp  log_image / log_table / log_histogram: copy, check, queue [train-thread]
//   scheme.cpp         the read-only wandb:// scheme (a base class)              [any-thread]
//   worker.cpp         the worker: wait, drain rows into history lines, summary,
//                      config, metadata, system metrics                          [worker]
//   media_files.cpp    media history values and their run files                 [worker]
//   online.cpp         the online sender: run, file_stream, retries, the end     [worker]
//   spool.cpp          the spool: spill, resend, leave, earlier runs' leftovers  [worker]
//   artifacts.cpp      checkpoints logged as model artifacts                    [worker]
//   offline.cpp        the offline run directory and its .wandb log              [worker]
//   console.cpp        console capture into output.log                  [train-thread, worker]
//
// Threads: the training thread only appends rows to a byte buffer under a mutex (no allocation
// per metric once the buffer has grown, no I/O); a worker thread owns everything else — JSON
// lines, the consolidated summary, HTTP (ember::http: Beast + OpenSSL), the spool and the offline
// transaction log. The worker posts file_stream batches on W&B's cadence (2 s for the first
// minute, then 10 s, then 30 s), retries with W&B's policy (exponential backoff, no retry on
// 400/401/403/404/409...) and, while W&B is unreachable, moves rows to a spool directory through
// the host's storage; spooled rows are sent when W&B answers again, at the next start, or by
// `ember wandb sync DIR`. finalize drains within finalize_timeout_s and says what it could not send.
// Media (ember.media/1): the training thread copies an image's pixels (or PNG bytes), parses a
// table, or bins a histogram, and queues the row in the same order as metric rows; the worker
// encodes PNGs, hashes, names and uploads the run files (media/images/…, media/table/…).
#pragma once

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <ember/sdk/plugin.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "media.hpp"
#include "row_buffer.hpp"
#include "scheme.hpp"
#include "settings.hpp"
#include "wandb_console.hpp"
#include "wandb_summary.hpp"
#include "wandb_types.hpp"

namespace ember::wandb {
class Api;
class ApiError;
class Store;
}  // namespace ember::wandb

namespace ember::wandb_plugin {

using ember::plugin::str;
using ember::plugin::view;
using wb::Clock;

constexpr std::size_t kConsoleLogMax = 64u << 20;  // the run file output.log; file_stream has every line

// A file_stream "wandb-summary.json" entry: the whole summary at offset 0.
inline json::object summary_file(const std::string& text) {
  return json::object{{"offset", 0}, {"content", json::array{json::string(text)}}};
}

// While alive, marks a spool directory as the one of a running logger of this process, so that
// another logger's start-up sync leaves it alone (spool.cpp).
class LiveSpool {
 public:
  explicit LiveSpool(std::string dir);
  ~LiveSpool();
  LiveSpool(const LiveSpool&) = delete;
  LiveSpool& operator=(const LiveSpool&) = delete;
  static bool is_live(const std::string& dir);

 private:
  std::string dir_;
};

struct CheckpointIndex;  // model_checkpoint's checkpoints.json, as artifacts.cpp reads it

// One append-only stream of JSON lines (wandb-history.jsonl, wandb-events.jsonl, output.log):
// lines in memory after those already spooled; offsets are line indices.
struct Stream {
  Stream(const char* f, const char* k) : file(f), kind(k) {}
  const char* file;  // file_stream name
  const char* kind;  // spool segment prefix
  std::int64_t next = 0;                 // offset the next new line gets
  std::int64_t mem_first = 0;            // offset of lines.front()
  std::deque<std::string> lines;         // not yet acknowledged, not spooled
  std::size_t mem_bytes = 0;
  std::vector<std::pair<std::int64_t, std::string>> spooled;  // (first offset, segment URL), oldest first
  std::int64_t spooled_lines = 0;

  void push(std::string line) {
    if (lines.empty()) mem_first = next;
    mem_bytes += line.size();
    lines.push_back(std::move(line));
    ++next;
  }
  std::int64_t pending() const { return static_cast<std::int64_t>(lines.size()) + spooled_lines; }
};

// A checkpoint to log as a model artifact.
struct ArtifactJob {
  std::string url;        // checkpoint URL; empty for the end-of-run scan (log_model=true)
  std::string index_dir;  // directory holding checkpoints.json
  std::int64_t step = 0;
};

// The offline run's run-<id>.wandb: records framed into the log's blocks in a buffer, written out
// past 1 MiB and at flush(). The file is closed by close() or, on any other path, the destructor.
class TxLogFile {
 public:
  void open(const std::string& path);  // creates the file; the log's header is the first bytes
  void append(std::string_view record);
  void flush();
  void close();  // flush, then close; throws when either fails

 private:
  struct Fclose {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Fclose> file_;
  std::string path_, buf_;
  std::uint64_t offset_ = 0;  // the file offset buf_ starts at plus buf_'s size: where framing is
};

class WandbLogger final : public ember::plugin::Plugin,
                          public ember::plugin::Callbacks,
                          public ember::plugin::Logger,
                          public ember::plugin::Media,
                          public ArtifactScheme {
 public:
  WandbLogger(const ember_host_t* host, std::string_view config_json);
  ~WandbLogger() override;

  // --- the training thread (wandb.cpp) ------------------------------------------------------------
  void setup(const ember_hook_args_t&) override { start(); }
  void log_hyperparams(std::string_view params_json) override;
  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) override;
  void after_save_checkpoint(std::string_view url) override;
  void on_train_batch_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_train_epoch_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_validation_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_train_end(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void teardown(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void save() override;
  void finalize(std::string_view status) override;

  // --- ember.media/1, the training thread (media_capture.cpp) ---------------------------------------
  void log_image(const ember_log_context_t& ctx, std::string_view key, const ember_image_t* images, size_t count) override;
  void log_table(const ember_log_context_t& ctx, std::string_view key, std::string_view columns_json,
                 std::string_view rows_json) override;
  void log_histogram(const ember_log_context_t& ctx, std::string_view key, const DLTensor& values,
                     int32_t num_bins) override;

 protected:
  // --- ember.storage/1: the wandb:// scheme (scheme.cpp) --------------------------------------------
  const Settings& scheme_settings() const override { return opt_; }
  void scheme_info(const std::string& message) const override { say(EMBER_LOG_INFO, message); }

 private:
  // Every message the plugin logs: no URL query string (pre-signed URLs carry signatures there,
  // and console capture would copy the line into output.log). Any thread.
  void say(ember_log_level_t level, const std::string& msg) const;

  // [train-thread] wandb.cpp
  bool enabled() const { return opt_.enabled(); }
  void start();
  void hand_over_checkpoints();
  void finish(std::string_view status);
  // [train-thread] media_capture.cpp
  std::string media_key(std::string_view key, const char* what) const;
  void queue_media(const ember_log_context_t& ctx, MediaItem item);
  void flush_histograms();
  void push_media_row(const ember_log_context_t& ctx, double runtime, double ts, MediaRow row);

  // [worker] worker.cpp
  void run_worker();
  bool wait_until(Clock::time_point t);
  bool drain(bool& finishing);
  double post_interval() const;
  json::object wandb_config_block() const;
  json::object full_config() const;
  std::string config_wire() const;
  std::string summary_text(bool final);
  std::string metadata_json() const;
  void sample_stats();
  // [worker] media_files.cpp
  json::value media_value(MediaItem& item, std::int64_t step);
  void add_media_file(const std::string& path, std::string bytes);
  void send_media_files();
  // [worker] online.cpp
  void run_online();
  std::chrono::milliseconds remaining_ms() const;
  void on_failure(const wb::ApiError& e);
  bool network_step(bool finishing);
  wb::RunMeta upsert_meta() const;
  void create_run();
  void resume_from(const json::object& bucket);
  void append_history_line(std::string& body, std::int64_t offset, const std::string& line);
  void post(const json::object& body);
  void heartbeat();
  std::int64_t wire(const Stream& s, std::int64_t local) const;
  void post_lines();
  // [worker] spool.cpp
  void send_spooled(Stream& s);
  void spill();
  void write_spool_meta();
  void leave_in_spool();
  void sync_leftover_spools();
  // [worker] artifacts.cpp
  void run_artifact_job(const ArtifactJob& job);
  void log_checkpoint(const std::string& url, std::int64_t step, const CheckpointIndex* ix);
  // [worker] offline.cpp
  void run_offline();
  void offline_history(const std::string& line, std::int64_t step);
  void write_record(const std::string& rec) { txlog_.append(rec); }
  void write_file(const std::string& name, const std::string& bytes);
  // console.cpp: started and stopped by the training thread, its lines taken by the worker.
  void start_console();
  void take_console();
  void report_console();

  // Settings: read-only after construction, any thread.
  const Settings opt_;

  // Training thread only.
  bool started_ = false;
  Clock::time_point t0_{};
  double start_unix_ = 0;
  std::vector<ArtifactJob> saved_;
  std::string index_dir_;
  MediaRow pending_hist_;  // histograms of hist_ctx_'s step, not yet queued
  ember_log_context_t hist_ctx_{};
  double hist_runtime_ = 0, hist_ts_ = 0;

  // Shared, under mu_.
  std::mutex mu_;
  std::condition_variable cv_;
  RowBuffer rows_;
  json::object config_;
  bool config_dirty_ = false, flush_now_ = false, finishing_ = false, finish_seen_ = false;
  std::deque<ArtifactJob> jobs_;
  int exit_code_ = 0;
  Clock::time_point deadline_{};
  std::thread worker_;
  std::string report_;  // set by the worker before it ends; read after join
  // Started by the training thread before the worker, stopped in finish(); take() is thread-safe.
  std::unique_ptr<wb::ConsoleCapture> console_;

  // Worker only.
  RowBuffer spare_rows_;
  std::string post_body_;
  std::unique_ptr<wb::Api> api_;
  std::unique_ptr<wb::Store> store_;  // checkpoints (any scheme the host has)
  std::unique_ptr<wb::Store> spool_;  // the spool: LocalStore (private) for a local spool_dir
  std::optional<wb::RunRef> run_;
  json::object cfg_config_;
  wb::Summary summary_;
  Stream history_{"wandb-history.jsonl", "hist"}, events_{"wandb-events.jsonl", "events"}, output_{"output.log", "output"};
  std::deque<ArtifactJob> my_jobs_;
  std::deque<std::pair<std::string, std::string>> media_files_;    // (run file path, bytes) to upload
  std::deque<std::pair<std::string, std::string>> spooled_files_;  // (run file path, spool URL)
  std::size_t media_bytes_ = 0;                                    // bytes in media_files_
  std::vector<std::string> uploaded_;
  std::string net_disabled_, final_summary_;
  bool down_ = false, completed_ = false, config_changed_ = false, spool_synced_ = false, meta_written_ = false,
       spill_warned_ = false, in_artifact_ = false;
  int failures_ = 0, finish_stage_ = 0;
  std::int64_t starting_step_ = 0, base_history_ = 0, base_events_ = 0, base_output_ = 0, stats_lines_ = 0,
               shift_until_ = 0;
  bool resume_checked_ = false;  // RunResumeStatus answered (or no resume was asked)
  std::vector<wb::ConsoleLine> console_lines_;
  std::string console_log_;
  bool console_log_cut_ = false;
  double runtime_offset_ = 0, last_cpu_s_ = 0;
  Clock::time_point backoff_until_{}, last_post_{}, last_config_{}, last_stats_{}, last_spill_{};
  // Worker, offline mode.
  std::string offline_dir_;
  TxLogFile txlog_;
};

// The spool through the host's URL space (any scheme the host has: file://, s3://, memory://).
std::unique_ptr<wb::Store> make_host_store(const ember_host_t& host);

}  // namespace ember::wandb_plugin
