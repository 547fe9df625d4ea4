// csv_logger — Lightning's CSVLogger: metrics.csv and hparams.json under
// {save_dir}/{name}/version_N/, through the host's URL space (file://, memory://, s3://...).
//
// metrics.csv is in a long format, one row per metric: `step,epoch,stage,name,value`. A metric
// that first appears mid-run is just another row, so the file never needs a new header and is
// never rewritten to add a column (Lightning's wide format rewrites the whole file then).
//
// I/O happens only at a flush: when flush_logs_every_n_steps steps have passed since the last
// one, when rows have waited flush_every_seconds, at save() and at finalize(). log_metrics
// otherwise only formats rows into a buffer. The first flush creates the file atomically through
// the host (open_write/commit, which also creates the directories); after that a local file
// (bare path or file://) is appended to with O_APPEND, and fsync'ed at finalize. An object store
// has no append, so there the whole object is rewritten atomically at each flush, at most once
// every flush_every_seconds: that bounds the quadratic cost of rewriting by time.
//
// Object-store I/O (the version lookup, reading an existing file, every rewrite, hparams.json)
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
#include <ember/plugin.hpp>
#include <ember/plugin_config.hpp>
#include <ember/plugin_io.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
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
    "flush_logs_every_n_steps": {"type": "integer", "minimum": 1, "maximum": 9007199254740991, "default": 100,
                                 "description": "flush when the step advanced this much since the last flush"},
    "flush_every_seconds": {"type": "number", "minimum": 0, "maximum": 86400, "default": 5,
                            "description": "flush rows that waited this long; on object stores also the least time between rewrites; 0: off"}
  }
})";

constexpr std::string_view kHeader = "step,epoch,stage,name,value\n";

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

// One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF; quotes doubled.
void append_field(std::string& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(s);
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
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
    flush_steps_ = cfg.integer("flush_logs_every_n_steps", flush_steps_, 1);
    flush_seconds_ = cfg.number("flush_every_seconds", flush_seconds_, 0);
    // Clamped so that a huge value cannot overflow the clock's duration.
    flush_interval_ = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::min(flush_seconds_, 1e9)));
  }

  ~CsvLogger() override {
    // A host that never called finalize still gets the buffered rows, best effort.
    try {
      if (!pending_.empty() || hparams_dirty_) {
        log(EMBER_LOG_WARN, "destroyed with unflushed rows and no finalize; flushing them now");
        flush();
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
    flush();
  }

  void save() override { flush(); }

  void finalize(std::string_view /*status*/) override {
    flush();
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
    hparams_url_ = join_url(log_dir_, "hparams.json");
    resolved_ = true;
    log(EMBER_LOG_INFO, "writing metrics to " + metrics_url_);
  }

  // --- flushing ------------------------------------------------------------------------------
  void flush() {
    if (pending_.empty() && !hparams_dirty_) return;
    resolve_save_dir();
    const bool rows = !pending_.empty();
    if (local_) {
      resolve();
      if (hparams_dirty_) {
        write_object(host(), hparams_url_, json::serialize(hparams_) + "\n", kId);
        hparams_dirty_ = false;
      }
      if (rows) append_local();
    } else {
      hand_to_worker();
    }
    if (rows) {
      last_write_ = Clock::now();
      wrote_once_ = true;
    }
    waiting_ = false;
    flush_mark_ = last_step_;
  }

  // --- the object-store worker ----------------------------------------------------------------
  // [train-thread]: queue the new rows (and hparams.json) for the worker and wake it. A refusal
  // the worker met (a foreign metrics.csv) is reported here, on the training thread.
  void hand_to_worker() {
    std::lock_guard<std::mutex> lock(mu_);
    if (refused_) throw std::runtime_error(error_);
    if (queued_rows_.empty())
      queued_rows_.swap(pending_);
    else
      queued_rows_ += pending_;
    pending_.clear();
    if (hparams_dirty_) {
      queued_hparams_ = json::serialize(hparams_) + "\n";
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
      std::string rows;
      rows.swap(queued_rows_);
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
  void write_remote(std::string rows, std::optional<std::string> hparams) {
    unwritten_rows_ += rows;
    if (hparams) unwritten_hparams_ = std::move(hparams);
    resolve();
    if (unwritten_hparams_) {
      write_object(host(), hparams_url_, *unwritten_hparams_, kId);
      unwritten_hparams_.reset();
    }
    if (!remote_started_) {
      if (stat(metrics_url_)) {
        all_ = read_all(metrics_url_);
        try {
          check_existing(all_.substr(0, kHeader.size()));
        } catch (const std::exception& e) {
          throw Refusal(e.what());
        }
        if (!all_.empty() && all_.back() != '\n') all_ += '\n';
      }
      if (all_.empty()) all_ = kHeader;
      remote_started_ = true;
    }
    if (!unwritten_rows_.empty()) {
      all_ += unwritten_rows_;
      unwritten_rows_.clear();
      metrics_unwritten_ = true;
    }
    if (metrics_unwritten_) {
      write_object(host(), metrics_url_, all_, kId);
      metrics_unwritten_ = false;
    }
  }

  // An existing metrics.csv (a version chosen by the user, a resumed run) is continued if it is
  // ours; anything else is refused rather than mixed with.
  void check_existing(const std::string& head) {
    if (head.empty()) return;
    if (head.compare(0, kHeader.size(), kHeader) != 0)
      throw_error(metrics_url_ + " exists and does not start with the header '" +
                  std::string(kHeader.substr(0, kHeader.size() - 1)) +
                  "'; choose another version (config key version) or name");
  }

  void append_local() {
    if (fd_ < 0) {
      if (!stat(metrics_url_)) {
        // First write: atomic create through the host (makes the directories too).
        std::string first(kHeader);
        first += pending_;
        write_object(host(), metrics_url_, first, kId);
        pending_.clear();
        return;
      }
      std::string path = local_path(metrics_url_);
      fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
      if (fd_ < 0)
        throw_error("cannot open " + metrics_url_ + " to append: " + std::strerror(errno));
      if (!header_checked_) {
        std::string head(kHeader.size(), '\0');
        ssize_t n = ::pread(fd_, head.data(), head.size(), 0);
        if (n < 0) throw_error("cannot read " + metrics_url_ + ": " + std::strerror(errno));
        head.resize(static_cast<size_t>(n));
        check_existing(head);
        if (head.empty()) pending_.insert(0, kHeader);
        header_checked_ = true;
      }
    }
    while (!pending_.empty()) {
      ssize_t n = ::write(fd_, pending_.data(), pending_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_error("cannot append to " + metrics_url_ + ": " + std::strerror(errno));
      pending_.erase(0, static_cast<size_t>(n));
    }
  }

  // Config.
  std::optional<std::string> save_dir_;
  std::string name_ = "lightning_logs";
  std::optional<std::string> version_;
  std::int64_t flush_steps_ = 100;
  double flush_seconds_ = 5;
  Clock::duration flush_interval_{};

  // Where, resolved at the first flush (for an object store the URLs by the worker).
  bool save_dir_resolved_ = false, resolved_ = false, local_ = true;
  std::string log_dir_, metrics_url_, hparams_url_;

  // Rows not yet flushed.
  std::string pending_;
  bool header_checked_ = false;
  int fd_ = -1;
  json::object hparams_;
  bool hparams_dirty_ = false;

  // Flush triggers.
  std::int64_t flush_mark_ = -1, last_step_ = -1;
  bool waiting_ = false, wrote_once_ = false;
  Clock::time_point waiting_since_{}, last_write_{};

  // The object-store worker. Guarded by mu_: the queue (rows and hparams.json handed over and
  // not yet taken), work_/stop_, and what the last pass reported.
  struct Refusal : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread worker_;
  std::string queued_rows_;
  std::optional<std::string> queued_hparams_;
  bool work_ = false, stop_ = false;
  std::string error_;     // the last pass's failure, "" after a pass that wrote everything
  bool refused_ = false;  // the existing metrics.csv is not ours: nothing more is written
  // The worker's own: the object's whole content as last written (or to be), and what a
  // failed pass left to write.
  std::string all_, unwritten_rows_;
  std::optional<std::string> unwritten_hparams_;
  bool remote_started_ = false, metrics_unwritten_ = false;
  int failures_ = 0;
};

}  // namespace

EMBER_PLUGIN(CsvLogger, "csv_logger", "1.0.0",
             "Lightning's CSVLogger: metrics.csv (long format) and hparams.json per version",
             kSchema)
