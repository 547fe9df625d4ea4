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
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <condition_variable>
#include <cstring>
#include <ember/csv.hpp>
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <ember/sdk/plugin_io.hpp>
#include <ember/sdk/plugin_yaml.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

namespace json = boost::json;
using ember::plugin::host_error;
using ember::plugin::is_local_url;
using ember::plugin::join_url;
using ember::plugin::local_path;
using ember::plugin::str;
using ember::plugin::view;
using ember::plugin::write_object;
using Clock = std::chrono::steady_clock;
using Keys = std::vector<std::string>;

constexpr const char* kId = "csv_logger";

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

const Keys kLongKeys = {"step", "epoch", "stage", "name", "value"};

[[noreturn]] void throw_error(const std::string& message) {
  throw std::runtime_error(std::string(kId) + ": " + message);
}

const char* stage_name(std::int32_t stage) {
  switch (stage) {
    case EMBER_STAGE_NONE:
      return "none";
    case EMBER_STAGE_FIT:
      return "fit";
    case EMBER_STAGE_VALIDATE:
      return "validate";
    case EMBER_STAGE_TEST:
      return "test";
    case EMBER_STAGE_PREDICT:
      return "predict";
    case EMBER_STAGE_SANITY_CHECK:
      return "sanity_check";
    default:
      return nullptr;
  }
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest text that parses back to the same double ("nan", "inf", "-inf" for non-finite,
// which Python's float() and pandas read).
void append_double(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

using ember::csv::append_field;
using ember::csv::record;

std::string header_line(const Keys& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ',';
    append_field(out, keys[i]);
  }
  out += '\n';
  return out;
}

// CSV rows and the header they are laid out in.
struct Table {
  Keys keys;
  std::string rows;  // records, each ending in '\n'
};

// rows laid out in from re-laid in to (to holds every name of from): cells move to their
// column, new columns are empty.
std::string relayout(std::string_view rows, const Keys& from, const Keys& to) {
  std::unordered_map<std::string_view, size_t> where;
  for (size_t i = 0; i < to.size(); ++i) where.emplace(to[i], i);
  std::vector<size_t> column(from.size());
  for (size_t i = 0; i < from.size(); ++i) column[i] = where.at(from[i]);
  std::string out;
  out.reserve(rows.size() + rows.size() / 8);
  std::vector<std::string> cells(to.size());
  for (size_t pos = 0; pos < rows.size();) {
    auto fields = record(rows, pos);
    for (auto& c : cells) c.clear();
    for (size_t i = 0; i < fields.size() && i < column.size(); ++i) cells[column[i]] = std::move(fields[i]);
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i) out += ',';
      append_field(out, cells[i]);
    }
    out += '\n';
  }
  return out;
}

// Rows of src after those of dst. Same header: appended. Else (the wide layout only: the long
// header never changes) both go to the sorted union of the headers, as Lightning sorts its keys.
void merge(Table& dst, Table src) {
  if (src.rows.empty()) return;
  if (dst.keys.empty() && dst.rows.empty()) {
    dst = std::move(src);
    return;
  }
  if (dst.keys != src.keys) {
    Keys u = dst.keys;
    for (auto& k : src.keys)
      if (std::find(u.begin(), u.end(), k) == u.end()) u.push_back(k);
    std::sort(u.begin(), u.end());
    if (dst.keys != u) dst.rows = relayout(dst.rows, dst.keys, u);
    if (src.keys != u) src.rows = relayout(src.rows, src.keys, u);
    dst.keys = std::move(u);
  }
  dst.rows += src.rows;
}

class CsvLogger : public ember::plugin::Plugin, public ember::plugin::Logger {
 public:
  CsvLogger(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
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

  ~CsvLogger() override {
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

  void log_hyperparams(std::string_view params_json) override {
    for (auto& kv : ember::plugin::parse_object(params_json, kId, "log_hyperparams"))
      hparams_[kv.key()] = kv.value();
    hparams_dirty_ = true;
  }

  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics,
                   size_t count) override {
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

  void save() override { flush(true); }

  void finalize(std::string_view /*status*/) override {
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

 private:
  // --- buffering rows --------------------------------------------------------------------------
  void add_long(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) {
    const char* stage = stage_name(ctx.stage);
    for (size_t i = 0; i < count; ++i) {
      append_int(pending_, ctx.step);
      pending_ += ',';
      append_int(pending_, ctx.epoch);
      pending_ += ',';
      if (stage)
        pending_ += stage;
      else
        append_int(pending_, ctx.stage);
      pending_ += ',';
      append_field(pending_, view(metrics[i].name));
      pending_ += ',';
      append_double(pending_, metrics[i].value);
      pending_ += '\n';
    }
  }

  // The id of a metric name.
  std::uint32_t intern(std::string_view name) {
    auto it = ids_.find(std::string(name));
    if (it != ids_.end()) return it->second;
    auto id = static_cast<std::uint32_t>(names_.size());
    names_.emplace_back(name);
    ids_.emplace(names_.back(), id);
    in_header_.push_back(false);
    return id;
  }

  // A name becomes a column when a row that holds it is finished (the header widens at the
  // flush that writes that row).
  void add_column(std::uint32_t id) {
    if (in_header_[id]) return;
    in_header_[id] = true;
    columns_dirty_ = true;
  }

  void add_wide(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) {
    // The trainer logs the same names in the same order step after step: check the cached id
    // of position i before hashing the name.
    if (call_ids_.size() < count) call_ids_.resize(count, UINT32_MAX);
    for (size_t i = 0; i < count; ++i) {
      std::string_view n = view(metrics[i].name);
      std::uint32_t& id = call_ids_[i];
      if (id == UINT32_MAX || names_[id] != n) id = intern(n);
    }
    bool fresh = !has_open_ || open_.step != ctx.step || open_.epoch != ctx.epoch;
    for (size_t i = 0; i < count && !fresh; ++i)
      for (const auto& [id, v] : open_.values)
        if (id == call_ids_[i]) fresh = true;  // a name twice at one step: a row each
    if (fresh) {
      close_open();
      open_.step = ctx.step;
      open_.epoch = ctx.epoch;
      has_open_ = true;
    }
    for (size_t i = 0; i < count; ++i) open_.values.emplace_back(call_ids_[i], metrics[i].value);
  }

  void close_open() {
    if (!has_open_) return;
    for (const auto& [id, v] : open_.values) add_column(id);
    closed_.push_back(std::move(open_));
    open_ = Row{};
    has_open_ = false;
  }

  bool buffered() const { return wide_ ? has_open_ || !closed_.empty() : !pending_.empty(); }

  // The header of the wide layout: every name so far, sorted.
  const Keys& wide_keys() {
    if (columns_dirty_) {
      keys_.clear();
      for (size_t id = 0; id < names_.size(); ++id)
        if (in_header_[id]) keys_.push_back(names_[id]);
      std::sort(keys_.begin(), keys_.end());
      column_of_.assign(names_.size(), 0);
      for (size_t c = 0; c < keys_.size(); ++c) column_of_[ids_.at(keys_[c])] = c;
      columns_dirty_ = false;
    }
    return keys_;
  }

  // The rows to write now, laid out in their header, and the buffer emptied.
  Table take_rows() {
    if (!wide_) {
      Table t{kLongKeys, std::move(pending_)};
      pending_.clear();
      return t;
    }
    Table t{wide_keys(), {}};
    const size_t n = keys_.size(), epoch_col = column_of_[0], step_col = column_of_[1];
    std::vector<const double*> cell(n);
    for (const Row& r : closed_) {
      std::fill(cell.begin(), cell.end(), nullptr);
      for (const auto& [id, v] : r.values) cell[column_of_[id]] = &v;
      for (size_t c = 0; c < n; ++c) {
        if (c) t.rows += ',';
        if (c == step_col)
          append_int(t.rows, r.step);
        else if (c == epoch_col && !cell[c])
          append_int(t.rows, r.epoch);
        else if (cell[c])
          append_double(t.rows, *cell[c]);
      }
      t.rows += '\n';
    }
    closed_.clear();
    return t;
  }

  // --- the host's storage, with errors naming the plugin and the URL ------------------------
  std::string read_all(const std::string& url) {
    ember_file_t* f = nullptr;
    if (host().open_read(host().ctx, str(url), 0, UINT64_MAX, &f) != EMBER_OK)
      throw_error("cannot read " + url + ": " + host_error(host()));
    std::string out;
    char buf[1 << 16];
    for (;;) {
      size_t got = 0;
      if (host().read(host().ctx, f, buf, sizeof buf, &got) != EMBER_OK) {
        std::string why = host_error(host());
        host().close(host().ctx, f);
        throw_error("cannot read " + url + ": " + why);
      }
      if (got == 0) break;
      out.append(buf, got);
    }
    host().close(host().ctx, f);
    return out;
  }

  std::optional<ember_stat_t> stat(const std::string& url) {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    ember_status_t rc = host().stat(host().ctx, str(url), &st);
    if (rc == EMBER_E_NOT_FOUND) return std::nullopt;
    if (rc != EMBER_OK) throw_error("cannot stat " + url + ": " + host_error(host()));
    return st;
  }

  // --- where the files go --------------------------------------------------------------------
  bool local_known_or_local() const {
    if (save_dir_resolved_) return local_;
    // Not resolved yet: decide from the configured save_dir (default_root_dir is resolved at the
    // first flush; until then treat it as local so the first flush is never delayed).
    return !save_dir_ || is_local_url(*save_dir_);
  }

  // The next free version_N under root (Lightning's _get_next_version).
  std::int64_t next_version(const std::string& root) { return ember::plugin::next_version(host(), root, kId); }

  // Where save_dir is ([train-thread]: the default comes from the trainer state), and so
  // whether the files are local.
  void resolve_save_dir() {
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
  void resolve() {
    if (resolved_) return;
    std::string root = join_url(*save_dir_, name_);
    std::string version = version_ ? *version_ : "version_" + std::to_string(next_version(root));
    log_dir_ = join_url(root, version);
    metrics_url_ = join_url(log_dir_, "metrics.csv");
    hparams_url_ = join_url(log_dir_, "hparams.yaml");
    resolved_ = true;
    log(EMBER_LOG_INFO, "writing metrics to " + metrics_url_);
  }

  // --- flushing ------------------------------------------------------------------------------
  // Writes the rows of finished steps; all: the row of the latest step too (save, finalize).
  void flush(bool all) {
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

  // --- the object-store worker ----------------------------------------------------------------
  // [train-thread]: queue the new rows (and hparams.yaml) for the worker and wake it. A refusal
  // the worker met (a foreign metrics.csv) is reported here, on the training thread.
  void hand_to_worker(Table rows) {
    std::lock_guard<std::mutex> lock(mu_);
    if (refused_) throw std::runtime_error(error_);
    merge(queued_rows_, std::move(rows));
    if (hparams_dirty_) {
      queued_hparams_ = ember::plugin::to_yaml(hparams_);
      hparams_dirty_ = false;
    }
    work_ = true;
    if (!worker_.joinable()) worker_ = std::thread([this] { run_worker(); });
    wake_.notify_one();
  }

  // Wait until the worker has written everything handed to it (one more attempt if the last
  // one failed), stop it, and return the error of that last attempt ("" when it succeeded, or
  // when there is no worker running).
  std::string stop_worker() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!worker_.joinable()) return {};
    stop_ = true;
    wake_.notify_one();
    lock.unlock();
    worker_.join();
    lock.lock();
    return error_;
  }

  void run_worker() {
    std::unique_lock<std::mutex> lock(mu_);
    bool retried_at_stop = false;
    for (;;) {
      wake_.wait(lock, [&] { return work_ || stop_; });
      if (!work_) {
        // Stopping with nothing new: done, unless the last pass failed (it may have been the
        // first try of the last rows); then one more pass before giving up.
        if (error_.empty() || refused_ || retried_at_stop) return;
        retried_at_stop = true;
      }
      work_ = false;
      Table rows = std::move(queued_rows_);
      queued_rows_ = Table{};
      std::optional<std::string> hparams;
      hparams.swap(queued_hparams_);
      const bool refused = refused_;
      lock.unlock();
      std::string error;
      bool refusal = false;
      if (!refused) {
        try {
          write_remote(std::move(rows), std::move(hparams));
        } catch (const Refusal& e) {
          error = e.what(), refusal = true;
        } catch (const std::exception& e) {
          error = e.what();
        } catch (...) {
          error = std::string(kId) + ": unknown error writing to " + *save_dir_;
        }
      }
      if (!error.empty() && (failures_++ == 0 || refusal))
        log(EMBER_LOG_WARN, error + (refusal ? "" : "; the rows are kept and written again at the next flush"));
      if (error.empty() && failures_ > 0 && !refused) {
        log(EMBER_LOG_INFO, "wrote " + metrics_url_ + " again after " + std::to_string(failures_) +
                                " failed attempt(s)");
        failures_ = 0;
      }
      lock.lock();
      if (!refused) error_ = error;
      refused_ = refused_ || refusal;
    }
  }

  // [worker]: add rows to the object and rewrite it; whatever fails is kept for the next pass.
  void write_remote(Table rows, std::optional<std::string> hparams) {
    merge(unwritten_rows_, std::move(rows));
    if (hparams) unwritten_hparams_ = std::move(hparams);
    resolve();
    if (unwritten_hparams_) {
      write_object(host(), hparams_url_, *unwritten_hparams_, kId);
      unwritten_hparams_.reset();
    }
    if (!remote_started_) {
      if (stat(metrics_url_)) {
        std::string text = read_all(metrics_url_);
        size_t pos = 0;
        Keys keys;
        try {
          keys = existing_header(text, pos);
        } catch (const std::exception& e) {
          throw Refusal(e.what());
        }
        all_ = Table{std::move(keys), text.substr(pos)};
        if (!all_.rows.empty() && all_.rows.back() != '\n') all_.rows += '\n';
      }
      remote_started_ = true;
    }
    if (!unwritten_rows_.rows.empty()) {
      merge(all_, std::move(unwritten_rows_));
      unwritten_rows_ = Table{};
      metrics_unwritten_ = true;
    }
    if (metrics_unwritten_) {
      write_object(host(), metrics_url_, header_line(all_.keys) + all_.rows, kId);
      metrics_unwritten_ = false;
    }
  }

  // The header of an existing metrics.csv (a version chosen by the user, a resumed run); pos
  // moves past it. It is continued if this plugin can: in the long layout exactly our header,
  // in the wide one any header with a "step" column (Lightning's own file included). Anything
  // else is refused rather than mixed with.
  Keys existing_header(std::string_view text, size_t& pos) {
    if (text.empty()) return {};
    Keys keys = record(text, pos);
    const std::string again = "; choose another version (config key version) or name";
    if (!wide_ && keys != kLongKeys)
      throw_error(metrics_url_ + " exists and does not start with the header '" + header_line(kLongKeys).substr(0, header_line(kLongKeys).size() - 1) +
                  "' (config key format is \"long\")" + again);
    if (wide_ && keys == kLongKeys)
      throw_error(metrics_url_ + " exists in the long layout (step,epoch,stage,name,value); set the config key format to \"long\" to continue it" + again);
    if (wide_ && std::find(keys.begin(), keys.end(), "step") == keys.end())
      throw_error(metrics_url_ + " exists and its header has no \"step\" column, so it is not a metrics.csv of this logger or of Lightning's CSVLogger" + again);
    return keys;
  }

  // [train-thread] local files: the first write creates the file atomically; later ones
  // append, unless the header widened: then the file is rewritten atomically with the union.
  void write_local() {
    if (!file_keys_) {
      if (stat(metrics_url_)) {
        std::string text = read_all(metrics_url_);
        size_t pos = 0;
        file_keys_ = existing_header(text, pos);
        // The existing columns become ours, so that later rows are laid out like the file.
        if (wide_)
          for (const auto& k : *file_keys_) add_column(intern(k));
        newline_first_ = !text.empty() && text.back() != '\n';
      } else {
        write_object(host(), metrics_url_, header_line(local_rows_.keys) + local_rows_.rows, kId);
        file_keys_ = local_rows_.keys;
        local_rows_ = Table{};
        return;
      }
    }
    if (local_rows_.keys != *file_keys_) {
      Table all{*file_keys_, {}};
      if (!file_keys_->empty()) {
        std::string text = read_all(metrics_url_);
        size_t pos = 0;
        record(text, pos);
        all.rows = text.substr(pos);
        if (!all.rows.empty() && all.rows.back() != '\n') all.rows += '\n';
      }
      Keys before = all.keys;
      merge(all, local_rows_);
      if (all.keys != before) {
        if (fd_ >= 0) ::close(fd_), fd_ = -1;  // it is about to be replaced
        write_object(host(), metrics_url_, header_line(all.keys) + all.rows, kId);
        file_keys_ = all.keys;
        local_rows_ = Table{};
        newline_first_ = false;
        return;
      }
      // The file already has every column (a resumed run): lay the new rows out like it.
      local_rows_.rows = relayout(local_rows_.rows, local_rows_.keys, *file_keys_);
      local_rows_.keys = *file_keys_;
    }
    if (fd_ < 0) {
      std::string path = local_path(metrics_url_);
      fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
      if (fd_ < 0)
        throw_error("cannot open " + metrics_url_ + " to append: " + std::strerror(errno));
    }
    if (newline_first_) local_rows_.rows.insert(0, "\n"), newline_first_ = false;
    std::string& out = local_rows_.rows;
    while (!out.empty()) {
      ssize_t n = ::write(fd_, out.data(), out.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_error("cannot append to " + metrics_url_ + ": " + std::strerror(errno));
      out.erase(0, static_cast<size_t>(n));
    }
  }

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

}  // namespace

EMBER_PLUGIN(CsvLogger, "csv_logger", "1.1.0",
             "Lightning's CSVLogger: metrics.csv (Lightning's wide layout, or long) and hparams.yaml per version",
             kSchema)
