// csv_logger — Lightning's CSVLogger: metrics.csv and hparams.yaml under
// {save_dir}/{name}/version_N/, through the host's URL space (file://, memory://, s3://...).
//
// metrics.csv is in Lightning's wide layout by default: a header of every column name sorted
// (Lightning sorts its keys, "epoch" and "step" among them), one row per logged step (calls at
// the same step and epoch are merged into one row unless a name repeats), empty cells for
// metrics not logged at that step. A metric that first appears mid-run widens the header, so
// the file is rewritten then (as Lightning's _rewrite_with_new_header does). "format": "long"
// keeps the append-only layout `step,epoch,stage,name,value`, one row per value.
//
// The row of the latest step stays in memory until the step changes (or save/finalize), so
// that metrics logged later at the same step (validation at the end of an epoch) join it.
//
// I/O happens only at a flush: when flush_logs_every_n_steps steps have passed since the last
// one, when rows have waited flush_every_seconds, at save() and at finalize(). log_metrics
// otherwise only buffers. The first flush creates the file atomically through the host
// (open_write/commit, which also creates the directories); after that a local file (bare path
// or file://) is appended to with O_APPEND, and fsync'ed at finalize; a wider header rewrites it
// atomically (read, re-lay, write + rename). An object store has no append, so there the whole
// object is rewritten atomically at each flush, at most once every flush_every_seconds: that
// bounds the quadratic cost of rewriting by time, and a new column costs nothing extra there.
//
// Object-store I/O (the version lookup, reading an existing file, every rewrite, hparams.yaml)
// runs on a background worker, never on the training thread (DESIGN, ABI rule 7): a flush
// hands the new rows over and returns. The hand-over is a queue of at most one pending
// rewrite — rows flushed while a rewrite is in progress join the next one, which writes
// everything anyway. A failed rewrite keeps every row (it is logged as a warning and tried
// again at the next flush); finalize waits for the worker, makes the last rewrite with all rows
// and fails, naming the URL, if that one fails.
//
// The parts, one file each: this file (the entry, the hooks, where the files go, flushing),
// table.cpp (the CSV layouts and the rows buffered in them), storage.cpp (the local file and the
// object-store worker); csv_logger.hpp declares the class and says which thread owns what.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ember/sdk/plugin_config.hpp>
#include <ember/sdk/plugin_io.hpp>
#include <ember/sdk/plugin_yaml.hpp>

#include "csv_logger.hpp"

namespace ember::csv_logger_plugin {

namespace {

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "save_dir": {"type": "string", "minLength": 1,
                 "description": "directory URL; default: the trainer's default_root_dir"},
    "name": {"type": "string", "default": "lightning_logs",
             "description": "experiment name, a sub-directory of save_dir; empty: none"},
    "version": {"type": ["integer", "string", "null"], "minimum": 0, "maximum": 9007199254740991, "default": null,
                "description": "integer N: version_N; string: the directory name; null: the next free version_N"},
    "format": {"enum": ["wide", "long"], "default": "wide",
               "description": "wide: Lightning's metrics.csv (epoch, step and one sorted column per metric, a row per step); long: step,epoch,stage,name,value, a row per value"},
    "flush_logs_every_n_steps": {"type": "integer", "minimum": 1, "maximum": 9007199254740991, "default": 100,
                                 "description": "flush when the step advanced this much since the last flush"},
    "flush_every_seconds": {"type": "number", "minimum": 0, "maximum": 86400, "default": 5,
                            "description": "flush rows that waited this long; on object stores also the least time between rewrites; 0: off"}
  }
})";


}  // namespace

using ember::plugin::host_error;
using ember::plugin::is_local_url;
using ember::plugin::join_url;
using ember::plugin::view;
using ember::plugin::write_object;

[[noreturn]] void throw_error(const std::string& message) {
  throw std::runtime_error(std::string(kId) + ": " + message);
}

CsvLogger::CsvLogger(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
  const ember::plugin::Config cfg(config_json, kId);
  save_dir_ = cfg.optional_string("save_dir");
  name_ = cfg.string("name", name_);
  if (const json::value* v = cfg.find("version")) {
    if (v->is_string() && !v->as_string().empty())
      version_ = std::string(v->as_string());
    else if (v->is_number())
      version_ = "version_" + std::to_string(cfg.integer("version", 0, 0));
    else
      cfg.fail("version",
               "expected a non-empty string or an integer, got " + json::serialize(*v));
  }
  wide_ = cfg.one_of("format", "wide", {"wide", "long"}) == "wide";
  flush_steps_ = cfg.integer("flush_logs_every_n_steps", flush_steps_, 1);
  flush_seconds_ = cfg.number("flush_every_seconds", flush_seconds_, 0);
  // Clamped so that a huge value cannot overflow the clock's duration.
  flush_interval_ = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::min(flush_seconds_, 1e9)));
  // Columns 0 and 1 of every wide row: a metric logged under either name lands in them
  // (Lightning: a logged "epoch" wins, "step" is always the step).
  add_column(intern("epoch"));
  add_column(intern("step"));
}

CsvLogger::~CsvLogger() {
  // A host that never called finalize still gets the buffered rows, best effort.
  try {
    if (buffered() || hparams_dirty_) {
      log(EMBER_LOG_WARN, "destroyed with unflushed rows and no finalize; flushing them now");
      flush(true);
    }
  } catch (const std::exception& e) {
    log(EMBER_LOG_ERROR, e.what());
  } catch (...) {
  }
  if (std::string err = stop_worker(); !err.empty()) log(EMBER_LOG_ERROR, err);
  if (fd_ >= 0) ::close(fd_);
}

void CsvLogger::log_hyperparams(std::string_view params_json) {
  for (auto& kv : ember::plugin::parse_object(params_json, kId, "log_hyperparams"))
    hparams_[kv.key()] = kv.value();
  hparams_dirty_ = true;
}

void CsvLogger::log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics,
                            size_t count) {
  if (count == 0) return;
  if (wide_)
    add_wide(ctx, metrics, count);
  else
    add_long(ctx, metrics, count);
  last_step_ = ctx.step;
  const bool steps_due = ctx.step - flush_mark_ >= flush_steps_;
  bool time_due = false;
  Clock::time_point now{};
  if (flush_seconds_ > 0) {
    now = Clock::now();
    if (!waiting_) waiting_since_ = now, waiting_ = true;
    time_due = now - waiting_since_ >= flush_interval_;
  }
  if (!steps_due && !time_due) return;
  // An object store rewrites the whole object: at most once every flush_every_seconds.
  if (!local_known_or_local() && flush_seconds_ > 0 && wrote_once_ &&
      now - last_write_ < flush_interval_)
    return;
  flush(false);
}

void CsvLogger::finalize(std::string_view /*status*/) {
  flush(true);
  if (std::string err = stop_worker(); !err.empty()) throw std::runtime_error(err);
  if (fd_ >= 0) {
    if (::fsync(fd_) != 0) {
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      throw_error("cannot sync " + metrics_url_ + ": " + std::strerror(err));
    }
    ::close(fd_);
    fd_ = -1;
  }
}

// --- where the files go --------------------------------------------------------------------------
bool CsvLogger::local_known_or_local() const {
  if (save_dir_resolved_) return local_;
  // Not resolved yet: decide from the configured save_dir (default_root_dir is resolved at the
  // first flush; until then treat it as local so the first flush is never delayed).
  return !save_dir_ || is_local_url(*save_dir_);
}

// Where save_dir is ([train-thread]: the default comes from the trainer state), and so
// whether the files are local.
void CsvLogger::resolve_save_dir() {
  if (save_dir_resolved_) return;
  if (!save_dir_) {
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    if (host().get_state(host().ctx, &st) != EMBER_OK)
      throw_error("config key save_dir is not set and the trainer state is unavailable: " +
                  host_error(host()));
    save_dir_ = std::string(view(st.default_root_dir));
    if (save_dir_->empty()) save_dir_ = ".";
  }
  local_ = is_local_url(*save_dir_);
  save_dir_resolved_ = true;
}

// The version directory and the file URLs: lists save_dir/name for the next version, so for
// an object store this runs on the worker.
void CsvLogger::resolve() {
  if (resolved_) return;
  std::string root = join_url(*save_dir_, name_);
  std::string version = version_ ? *version_ : "version_" + std::to_string(next_version(root));
  log_dir_ = join_url(root, version);
  metrics_url_ = join_url(log_dir_, "metrics.csv");
  hparams_url_ = join_url(log_dir_, "hparams.yaml");
  resolved_ = true;
  log(EMBER_LOG_INFO, "writing metrics to " + metrics_url_);
}

// --- flushing ------------------------------------------------------------------------------------
// Writes the rows of finished steps; all: the row of the latest step too (save, finalize).
void CsvLogger::flush(bool all) {
  if (all) close_open();
  Table rows = take_rows();
  if (rows.rows.empty() && !hparams_dirty_ && local_rows_.rows.empty()) return;
  resolve_save_dir();
  const bool any = !rows.rows.empty();
  if (local_) {
    merge(local_rows_, std::move(rows));  // kept until written: a failed write loses nothing
    resolve();
    if (hparams_dirty_) {
      write_object(host(), hparams_url_, ember::plugin::to_yaml(hparams_), kId);
      hparams_dirty_ = false;
    }
    if (!local_rows_.rows.empty()) write_local();
  } else {
    hand_to_worker(std::move(rows));
  }
  if (any) {
    last_write_ = Clock::now();
    wrote_once_ = true;
  }
  waiting_ = has_open_;
  if (waiting_) waiting_since_ = Clock::now();
  flush_mark_ = last_step_;
}

}  // namespace ember::csv_logger_plugin

EMBER_PLUGIN(ember::csv_logger_plugin::CsvLogger, "csv_logger", "1.1.0",
             "Lightning's CSVLogger: metrics.csv (Lightning's wide layout, or long) and hparams.yaml per version",
             ember::csv_logger_plugin::kSchema)
