// csv_logger's sinks. Local files (bare paths, file://) on the training thread: the first write
// creates metrics.csv atomically through the host, later ones append with O_APPEND, and a wider
// header rewrites it atomically. Object stores on a background worker (DESIGN, ABI rule 7): each
// pass rewrites the whole object; a failed pass keeps every row for the next. See csv_logger.cpp
// for when each runs, and csv_logger.hpp for the state each thread owns.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ember/csv.hpp>
#include <ember/sdk/plugin_io.hpp>
#include <ember/sdk/plugin_yaml.hpp>

#include "csv_logger.hpp"

namespace ember::csv_logger_plugin {

using ember::csv::record;
using ember::plugin::host_error;
using ember::plugin::local_path;
using ember::plugin::str;
using ember::plugin::write_object;

// --- the host's storage, with errors naming the plugin and the URL ------------------------------
std::string CsvLogger::read_all(const std::string& url) {
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

std::optional<ember_stat_t> CsvLogger::stat(const std::string& url) {
  ember_stat_t st{};
  st.struct_size = sizeof st;
  ember_status_t rc = host().stat(host().ctx, str(url), &st);
  if (rc == EMBER_E_NOT_FOUND) return std::nullopt;
  if (rc != EMBER_OK) throw_error("cannot stat " + url + ": " + host_error(host()));
  return st;
}

// The header of an existing metrics.csv (a version chosen by the user, a resumed run); pos
// moves past it. It is continued if this plugin can: in the long layout exactly our header,
// in the wide one any header with a "step" column (Lightning's own file included). Anything
// else is refused rather than mixed with.
Keys CsvLogger::existing_header(std::string_view text, size_t& pos) {
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
void CsvLogger::write_local() {
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

// --- the object-store worker ---------------------------------------------------------------------
// [train-thread]: queue the new rows (and hparams.yaml) for the worker and wake it. A refusal
// the worker met (a foreign metrics.csv) is reported here, on the training thread.
void CsvLogger::hand_to_worker(Table rows) {
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
std::string CsvLogger::stop_worker() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!worker_.joinable()) return {};
  stop_ = true;
  wake_.notify_one();
  lock.unlock();
  worker_.join();
  lock.lock();
  return error_;
}

void CsvLogger::run_worker() {
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
void CsvLogger::write_remote(Table rows, std::optional<std::string> hparams) {
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

}  // namespace ember::csv_logger_plugin
