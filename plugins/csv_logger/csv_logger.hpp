// The csv_logger plugin's one class (Lightning's CSVLogger; what it writes and when: csv_logger.cpp)
// and the CSV tables it lays rows out in. Its member functions are defined one file per part:
//
//   csv_logger.cpp  the entry, config, the hooks, where the files go, flushing   [train-thread]
//   table.cpp       CSV tables (header, re-layout, merge) and the rows buffered in the wide
//                   or long layout until a flush                                [train-thread]
//   storage.cpp     the sinks: the local file (create, append, widen) and the object-store
//                   worker (rewrite the whole object off the training thread)  [train-thread, worker]
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_io.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ember::csv_logger_plugin {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using Keys = std::vector<std::string>;

inline constexpr const char* kId = "csv_logger";

// The header of the long layout, which never changes.
inline const Keys kLongKeys = {"step", "epoch", "stage", "name", "value"};

[[noreturn]] void throw_error(const std::string& message);

// --- CSV tables (table.cpp) ----------------------------------------------------------------------
std::string header_line(const Keys& keys);

// CSV rows and the header they are laid out in.
struct Table {
  Keys keys;
  std::string rows;  // records, each ending in '\n'
};

// rows laid out in from re-laid in to (to holds every name of from): cells move to their
// column, new columns are empty.
std::string relayout(std::string_view rows, const Keys& from, const Keys& to);

// Rows of src after those of dst. Same header: appended. Else (the wide layout only: the long
// header never changes) both go to the sorted union of the headers, as Lightning sorts its keys.
void merge(Table& dst, Table src);

class CsvLogger : public ember::plugin::Plugin, public ember::plugin::Logger {
 public:
  CsvLogger(const ember_host_t* host, std::string_view config_json);
  ~CsvLogger() override;

  void log_hyperparams(std::string_view params_json) override;
  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics,
                   size_t count) override;
  void save() override { flush(true); }
  void finalize(std::string_view status) override;

 private:
  // --- buffering rows (table.cpp) ------------------------------------------------------------
  void add_long(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count);
  std::uint32_t intern(std::string_view name);
  void add_column(std::uint32_t id);
  void add_wide(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count);
  void close_open();
  bool buffered() const { return wide_ ? has_open_ || !closed_.empty() : !pending_.empty(); }
  const Keys& wide_keys();
  Table take_rows();

  // --- where the files go, and flushing (csv_logger.cpp) -------------------------------------
  bool local_known_or_local() const;
  // The next free version_N under root (Lightning's _get_next_version).
  std::int64_t next_version(const std::string& root) { return ember::plugin::next_version(host(), root, kId); }
  void resolve_save_dir();
  void resolve();
  void flush(bool all);

  // --- the sinks (storage.cpp) ---------------------------------------------------------------
  // The host's storage, with errors naming the plugin and the URL.
  std::string read_all(const std::string& url);
  std::optional<ember_stat_t> stat(const std::string& url);
  Keys existing_header(std::string_view text, size_t& pos);
  void write_local();
  void hand_to_worker(Table rows);
  std::string stop_worker();
  void run_worker();
  void write_remote(Table rows, std::optional<std::string> hparams);

  // Config.
  std::optional<std::string> save_dir_;
  std::string name_ = "lightning_logs";
  std::optional<std::string> version_;
  bool wide_ = true;
  std::int64_t flush_steps_ = 100;
  double flush_seconds_ = 5;
  Clock::duration flush_interval_{};

  // Where, resolved at the first flush (for an object store the URLs by the worker).
  bool save_dir_resolved_ = false, resolved_ = false, local_ = true;
  std::string log_dir_, metrics_url_, hparams_url_;

  // Rows not yet flushed. Long layout: formatted text. Wide: the row of the latest step (open,
  // later calls at that step join it) and the finished ones, with metric names as ids into
  // names_ (0 "epoch", 1 "step"); keys_ is the header (the names of finished rows, sorted),
  // column_of_ an id's column in it.
  struct Row {
    std::int64_t step = 0, epoch = 0;
    std::vector<std::pair<std::uint32_t, double>> values;
  };
  std::string pending_;
  Row open_;
  bool has_open_ = false;
  std::vector<Row> closed_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::uint32_t> ids_;
  std::vector<std::uint32_t> call_ids_;
  std::vector<bool> in_header_;  // by id
  Keys keys_;
  std::vector<size_t> column_of_;
  bool columns_dirty_ = false;
  json::object hparams_;
  bool hparams_dirty_ = false;

  // Local files: rows flushed and not yet written, the file's header (unset: not looked at
  // yet; empty: an empty file), and the descriptor rows are appended through.
  Table local_rows_;
  std::optional<Keys> file_keys_;
  bool newline_first_ = false;  // the existing file's last line has no line end
  int fd_ = -1;

  // Flush triggers.
  std::int64_t flush_mark_ = -1, last_step_ = -1;
  bool waiting_ = false, wrote_once_ = false;
  Clock::time_point waiting_since_{}, last_write_{};

  // The object-store worker. Guarded by mu_: the queue (rows and hparams.yaml handed over and
  // not yet taken), work_/stop_, and what the last pass reported.
  struct Refusal : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread worker_;
  Table queued_rows_;
  std::optional<std::string> queued_hparams_;
  bool work_ = false, stop_ = false;
  std::string error_;     // the last pass's failure, "" after a pass that wrote everything
  bool refused_ = false;  // the existing metrics.csv is not ours: nothing more is written
  // The worker's own: the object's whole content as last written (or to be), and what a
  // failed pass left to write.
  Table all_, unwritten_rows_;
  std::optional<std::string> unwritten_hparams_;
  bool remote_started_ = false, metrics_unwritten_ = false;
  int failures_ = 0;
};

}  // namespace ember::csv_logger_plugin
