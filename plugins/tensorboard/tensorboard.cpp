// tensorboard — Lightning's TensorBoardLogger: event files TensorBoard reads, and hparams.yaml,
// under {save_dir}/{name}/version_N[/{sub_dir}]/, through the host's URL space (file://, memory://,
// s3://...).
//
// The training thread only builds records: log_metrics serializes an Event (cheap: a few fields),
// log_image copies the pixels (PNG encoding happens on the writer), log_histogram bins the values.
// It hands them to a queue under a mutex held for an append, and wakes the writer when max_queue
// events wait. Nothing on the training thread touches storage (DESIGN, ABI rule 7).
//
// The writer thread resolves the version directory (listing save_dir/name for the next free
// version_N), then every flush_secs (or when woken) takes the whole queue:
//  - local files (bare path or file://): the first flush creates the event file atomically through
//    the host (which makes the directories), later ones append with O_APPEND — one file per run,
//    as TensorBoard's own writer does;
//  - any other scheme: object stores have no append, so the records of one flush_secs period are
//    published as one whole event file, each starting with its own file_version record, named so
//    that they sort in write order (TensorBoard reads a run directory's event files in name
//    order). A published file is never rewritten; a failed publish keeps its bytes and its name
//    for the next attempt, so nothing is lost or duplicated.
// finalize drains the queue, makes a last attempt at whatever failed, and fails naming the URL.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ember/sdk/media.hpp>
#include <ember/sdk/media_table.hpp>
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <ember/sdk/plugin_io.hpp>
#include <ember/sdk/plugin_yaml.hpp>
#include <ember/sdk/png.hpp>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tfevents.hpp"

namespace {

namespace json = boost::json;
namespace tb = ember::tensorboard;
namespace f = ember::tensorboard::field;
using ember::plugin::host_error;
using ember::plugin::is_local_url;
using ember::plugin::join_url;
using ember::plugin::local_path;
using ember::plugin::str;
using ember::plugin::to_yaml;
using ember::plugin::view;
using ember::plugin::write_object;
using Clock = std::chrono::steady_clock;
using tb::Proto;

constexpr const char* kId = "tensorboard";

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "save_dir": {"type": "string", "minLength": 1,
                 "description": "directory URL; default: the trainer's default_root_dir"},
    "name": {"type": "string", "default": "lightning_logs",
             "description": "experiment name, a sub-directory of save_dir; empty: none"},
    "version": {"type": ["integer", "string", "null"], "minimum": 0, "default": null,
                "description": "integer N: version_N; string: the directory name; null: the next free version_N"},
    "sub_dir": {"type": ["string", "null"], "default": null,
                "description": "a sub-directory of the version directory for the event files and hparams.yaml"},
    "default_hp_metric": {"type": "boolean", "default": true,
                          "description": "log_hyperparams also logs hp_metric = -1 and the HParams plugin's session"},
    "prefix": {"type": "string", "default": "",
               "description": "put before every metric name, joined with '-'"},
    "flush_secs": {"type": "number", "exclusiveMinimum": 0, "default": 120,
                   "description": "write (or on object stores publish a new event file) at least this often"},
    "max_queue": {"type": "integer", "minimum": 1, "default": 10,
                  "description": "events waiting that wake the writer before flush_secs"},
    "log_graph": {"type": "boolean", "default": false,
                  "description": "not supported (libtorch cannot export a GraphDef): true only logs a warning"}
  }
})";

[[noreturn]] void throw_error(const std::string& message) {
  throw std::runtime_error(std::string(kId) + ": " + message);
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// The number TensorBoard's writers put last in an event file name: unique within the process.
std::atomic<std::int64_t> g_file_counter{0};

// --- events ------------------------------------------------------------------------------------
std::string event(double wall_time, std::int64_t step, const Proto& summary) {
  Proto e;
  e.float64(f::kEventWallTime, wall_time).int64(f::kEventStep, step).message(f::kEventSummary, summary);
  return e.str();
}

std::string file_version_record(double wall_time) {
  Proto e;
  e.float64(f::kEventWallTime, wall_time).bytes(f::kEventFileVersion, "brain.Event:2");
  std::string out;
  tb::append_record(out, e.str());
  return out;
}

Proto plugin_metadata(std::string_view plugin, std::string_view content, std::string_view description = {}) {
  Proto pd, md;
  pd.bytes(f::kPluginName, plugin);
  if (!content.empty()) pd.bytes(f::kPluginContent, content);
  md.message(f::kMetadataPluginData, pd);
  if (!description.empty()) md.bytes(f::kMetadataDescription, description);
  return md;
}

// --- hparams -------------------------------------------------------------------------------------
// Lightning's _flatten_dict ("/" between levels) and _sanitize_params (what is not a number,
// string or bool becomes its text).
void flatten(const json::object& o, const std::string& prefix, std::vector<std::pair<std::string, json::value>>& out) {
  for (const auto& kv : o) {
    std::string k = prefix.empty() ? std::string(kv.key()) : prefix + "/" + std::string(kv.key());
    if (kv.value().is_object() && !kv.value().as_object().empty())
      flatten(kv.value().as_object(), k, out);
    else if (kv.value().is_null())
      out.emplace_back(k, json::string("None"));
    else if (kv.value().is_array() || kv.value().is_object())
      out.emplace_back(k, json::string(json::serialize(kv.value())));
    else
      out.emplace_back(k, kv.value());
  }
}

// The three summaries of torch.utils.tensorboard's hparams(): the experiment (hparams and metric
// names), the session's start (hparam values) and its end (status).
Proto hparams_summary(const json::object& params, const std::vector<std::string>& metric_names, double now) {
  std::vector<std::pair<std::string, json::value>> flat;
  flatten(params, "", flat);
  Proto exp, start;
  for (const auto& [k, v] : flat) {
    Proto info, value, entry;
    info.bytes(f::kHparamInfoName, k);
    if (v.is_bool()) {
      info.varint(f::kHparamInfoType, f::kDataTypeBool);
      value.boolean(f::kValueBool, v.as_bool());
    } else if (v.is_number()) {
      info.varint(f::kHparamInfoType, f::kDataTypeFloat64);
      value.float64(f::kValueNumber, v.to_number<double>());
    } else {
      info.varint(f::kHparamInfoType, f::kDataTypeString);
      value.bytes(f::kValueString, v.as_string());
    }
    exp.message(f::kExpHparamInfos, info);
    entry.bytes(f::kMapKey, k).message(f::kMapValue, value);
    start.message(f::kStartHparams, entry);
  }
  for (const auto& m : metric_names) {
    Proto name, info;
    name.bytes(f::kMetricNameTag, m);
    info.message(f::kMetricInfoName, name);
    exp.message(f::kExpMetricInfos, info);
  }
  start.float64(f::kStartTimeSecs, now);
  Proto end;
  end.varint(f::kEndStatus, f::kStatusSuccess).float64(f::kEndTimeSecs, now);

  auto value = [](std::string_view tag, std::uint32_t which, const Proto& data) {
    Proto plugin_data, v;
    plugin_data.message(which, data);  // version 0: omitted
    v.bytes(f::kValueTag, tag).message(f::kValueMetadata, plugin_metadata("hparams", plugin_data.str()));
    return v;
  };
  Proto summary;
  summary.message(f::kSummaryValue, value("_hparams_/experiment", f::kHpExperiment, exp));
  summary.message(f::kSummaryValue, value("_hparams_/session_start_info", f::kHpSessionStart, start));
  summary.message(f::kSummaryValue, value("_hparams_/session_end_info", f::kHpSessionEnd, end));
  return summary;
}

// --- text ----------------------------------------------------------------------------------------
std::string cell_text(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_double()) {  // Boost.JSON writes 2.5 as 2.5E0
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v.as_double());
    return std::string(buf, r.ptr);
  }
  return json::serialize(v);
}

// A table as TensorBoard's text plugin shows it: one text as itself, anything else a Markdown table.
std::string table_markdown(const json::array& columns, const json::array& rows) {
  if (columns.size() == 1 && rows.size() == 1) return cell_text(rows[0].as_array()[0]);
  auto cell = [](std::string s) {
    std::string out;
    for (char c : s) {
      if (c == '|') out += '\\';
      out += c == '\n' ? ' ' : c;
    }
    return out;
  };
  std::string out = "|";
  for (const auto& c : columns) out += " " + cell(cell_text(c)) + " |";
  out += "\n|";
  for (size_t i = 0; i < columns.size(); ++i) out += "---|";
  out += '\n';
  for (const auto& r : rows) {
    out += '|';
    for (const auto& c : r.as_array()) out += " " + cell(cell_text(c)) + " |";
    out += '\n';
  }
  return out;
}

// --- histograms ------------------------------------------------------------------------------------
struct Moments {
  double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
  double sum = 0, sum_squares = 0;
};

template <class T>
void moments_of(Moments& m, const T* p, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = static_cast<double>(p[i]);
    if (!std::isfinite(v)) continue;
    m.min = std::min(m.min, v), m.max = std::max(m.max, v);
    m.sum += v, m.sum_squares += v * v;
  }
}

// min, max, sum and sum of squares of the finite values; the dtype was checked by
// ember::media::histogram before.
Moments moments(const DLTensor& t) {
  Moments m;
  const std::int64_t n = ember::media::numel(t);
  const void* base = static_cast<const char*>(t.data) + t.byte_offset;
  switch (t.dtype.code * 100 + t.dtype.bits) {
    case kDLFloat * 100 + 32: moments_of(m, static_cast<const float*>(base), n); break;
    case kDLFloat * 100 + 64: moments_of(m, static_cast<const double*>(base), n); break;
    case kDLInt * 100 + 8: moments_of(m, static_cast<const std::int8_t*>(base), n); break;
    case kDLInt * 100 + 16: moments_of(m, static_cast<const std::int16_t*>(base), n); break;
    case kDLInt * 100 + 32: moments_of(m, static_cast<const std::int32_t*>(base), n); break;
    case kDLInt * 100 + 64: moments_of(m, static_cast<const std::int64_t*>(base), n); break;
    case kDLUInt * 100 + 8: moments_of(m, static_cast<const std::uint8_t*>(base), n); break;
    case kDLUInt * 100 + 16: moments_of(m, static_cast<const std::uint16_t*>(base), n); break;
    case kDLUInt * 100 + 32: moments_of(m, static_cast<const std::uint32_t*>(base), n); break;
    default: moments_of(m, static_cast<const std::uint64_t*>(base), n); break;
  }
  return m;
}

// What the training thread hands the writer: a finished record, or an image event whose PNG
// encoding is left to the writer.
struct Picture {
  std::string tag, caption, png;      // png: given encoded, or empty
  std::vector<std::uint8_t> pixels;   // packed HWC rows when png is empty
  std::uint32_t width = 0, height = 0, channels = 0;
};
struct Item {
  std::string record;  // a framed record, or empty for an image event
  std::vector<Picture> pictures;
  double wall_time = 0;
  std::int64_t step = 0;
};

class TensorBoardLogger : public ember::plugin::Plugin, public ember::plugin::Logger, public ember::plugin::Media {
 public:
  TensorBoardLogger(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    const ember::plugin::Config cfg(config_json, kId);
    save_dir_ = cfg.optional_string("save_dir");
    name_ = cfg.string("name", name_);
    if (const json::value* v = cfg.find("version"); v && !v->is_null()) {
      if (v->is_string() && !v->as_string().empty())
        version_ = std::string(v->as_string());
      else if (v->is_number())
        version_ = "version_" + std::to_string(cfg.integer("version", 0, 0));
      else
        cfg.fail("version", "expected a non-empty string or an integer, got " + json::serialize(*v));
    }
    if (const json::value* v = cfg.find("sub_dir"); v && v->is_string()) sub_dir_ = std::string(v->as_string());
    default_hp_metric_ = cfg.boolean("default_hp_metric", default_hp_metric_);
    prefix_ = cfg.string("prefix", prefix_);
    const double secs = cfg.number("flush_secs", 120, 0);
    if (!(secs > 0)) cfg.fail("flush_secs", "expected a number of seconds > 0");
    flush_interval_ = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::min(secs, 1e9)));
    max_queue_ = static_cast<size_t>(cfg.integer("max_queue", 10, 1));
    if (cfg.boolean("log_graph", false))
      log(EMBER_LOG_WARN,
          "log_graph is not supported: libtorch cannot export a TensorFlow GraphDef, so no graph is written");
  }

  ~TensorBoardLogger() override {
    try {
      if (worker_.joinable()) {
        log(EMBER_LOG_WARN, "destroyed without finalize; writing what is queued now");
        if (std::string err = stop_worker(); !err.empty()) log(EMBER_LOG_ERROR, err);
      }
    } catch (...) {
    }
    if (fd_ >= 0) ::close(fd_);
  }

  // --- ember.logger/1 ------------------------------------------------------------------------------
  void log_hyperparams(std::string_view params_json) override {
    json::object params = ember::plugin::parse_object(params_json, kId, "log_hyperparams");
    for (auto& kv : params) hparams_[kv.key()] = kv.value();
    const double now = unix_now();
    std::string records;
    // Lightning: with no metrics given and default_hp_metric, hp_metric = -1 at step 0 and the
    // HParams summaries; without metrics, only hparams.yaml.
    if (default_hp_metric_) {
      const std::string name = prefixed("hp_metric");
      Proto v, summary;
      v.bytes(f::kValueTag, name).float32(f::kValueSimpleValue, -1.0f);
      summary.message(f::kSummaryValue, v);
      tb::append_record(records, event(now, 0, summary));
      Proto e;
      e.float64(f::kEventWallTime, now).message(f::kEventSummary, hparams_summary(params, {name}, now));
      tb::append_record(records, e.str());
    }
    std::string yaml = to_yaml(hparams_);
    std::lock_guard<std::mutex> lock(mu_);
    queued_yaml_ = std::move(yaml);
    if (!records.empty()) push_locked(Item{std::move(records), {}, 0, 0});
    start_locked();
  }

  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) override {
    if (count == 0) return;
    Proto summary;
    for (size_t i = 0; i < count; ++i) {
      Proto v;
      v.bytes(f::kValueTag, prefixed(view(metrics[i].name)))
          .float32(f::kValueSimpleValue, static_cast<float>(metrics[i].value));
      summary.message(f::kSummaryValue, v);
    }
    push(event(unix_now(), ctx.step, summary));
  }

  void save() override { request_flush(); }

  void finalize(std::string_view /*status*/) override {
    std::string err = stop_worker();
    if (fd_ >= 0) {
      if (::fsync(fd_) != 0 && err.empty()) err = std::string(kId) + ": cannot sync " + event_url_ + ": " + std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
    if (!err.empty()) throw std::runtime_error(err);
  }

  // --- ember.media/1 ---------------------------------------------------------------------------------
  void log_image(const ember_log_context_t& ctx, std::string_view key, const ember_image_t* images, size_t count) override {
    if (!images || count == 0) throw std::invalid_argument("log_image '" + std::string(key) + "': no images");
    Item item;
    item.wall_time = unix_now();
    item.step = ctx.step;
    for (size_t i = 0; i < count; ++i) {
      const ember_image_t& im = images[i];
      Picture p;
      // One image is the key itself; several are key/0, key/1, ... (TensorFlow's image summaries).
      p.tag = count == 1 ? std::string(key) : std::string(key) + "/" + std::to_string(i);
      p.caption = std::string(view(im.caption));
      if (im.tensor) {
        ember::media::ImageLayout l = ember::media::check_image(*im.tensor, key, i);
        p.pixels = ember::media::to_pixels(*im.tensor, l);  // the view is borrowed: copy now
        p.width = static_cast<std::uint32_t>(l.width), p.height = static_cast<std::uint32_t>(l.height);
        p.channels = static_cast<std::uint32_t>(l.channels);
      } else if (im.png && im.png_size > 0) {
        ember::png::Info info;
        try {
          info = ember::png::read_info(im.png, im.png_size);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) + ": " + e.what());
        }
        p.png.assign(static_cast<const char*>(im.png), im.png_size);
        p.width = info.width, p.height = info.height, p.channels = info.channels;
      } else {
        throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) +
                                    " has neither a tensor nor PNG bytes");
      }
      item.pictures.push_back(std::move(p));
    }
    push(std::move(item));
  }

  // Lightning's log_text / log_table: the text plugin's string tensor (tag key/text_summary, as
  // torch's SummaryWriter.add_text).
  void log_table(const ember_log_context_t& ctx, std::string_view key, std::string_view columns_json,
                 std::string_view rows_json) override {
    const ember::media::Table t = ember::media::parse_table(key, columns_json, rows_json);
    Proto dim, shape, tensor, v, summary;
    dim.int64(f::kDimSize, 1);
    shape.message(f::kShapeDim, dim);
    tensor.varint(f::kTensorDtype, f::kDtString).message(f::kTensorShape, shape)
        .bytes(f::kTensorStringVal, table_markdown(t.columns, t.rows));
    v.bytes(f::kValueTag, std::string(key) + "/text_summary")
        .message(f::kValueMetadata, plugin_metadata("text", {}))
        .message(f::kValueTensor, tensor);
    summary.message(f::kSummaryValue, v);
    push(event(unix_now(), ctx.step, summary));
  }

  void log_histogram(const ember_log_context_t& ctx, std::string_view key, const DLTensor& values,
                     int32_t num_bins) override {
    ember::media::Histogram h = ember::media::histogram(values, num_bins, key);
    if (h.finite == 0) return;  // all NaN/inf: nothing to draw
    Moments m = moments(values);
    Proto histo, v, summary;
    histo.float64(f::kHistoMin, m.min).float64(f::kHistoMax, m.max)
        .float64(f::kHistoNum, static_cast<double>(h.finite))
        .float64(f::kHistoSum, m.sum).float64(f::kHistoSumSquares, m.sum_squares);
    // bucket_limit[i] is bucket i's right edge (TensorBoard's convention).
    std::vector<double> limits(h.edges.begin() + 1, h.edges.end()), counts(h.counts.begin(), h.counts.end());
    histo.packed_doubles(f::kHistoBucketLimit, limits).packed_doubles(f::kHistoBucket, counts);
    v.bytes(f::kValueTag, key).message(f::kValueHisto, histo);
    summary.message(f::kSummaryValue, v);
    push(event(unix_now(), ctx.step, summary));
  }

 private:
  std::string prefixed(std::string_view name) const {
    return prefix_.empty() ? std::string(name) : prefix_ + "-" + std::string(name);
  }

  // --- the queue ([train-thread]) -------------------------------------------------------------------
  void push(const std::string& event_bytes) {
    Item item;
    tb::append_record(item.record, event_bytes);
    push(std::move(item));
  }
  void push(Item item) {
    std::lock_guard<std::mutex> lock(mu_);
    push_locked(std::move(item));
    start_locked();
  }
  void push_locked(Item item) {
    queue_.push_back(std::move(item));
    if (queue_.size() >= max_queue_) wake_.notify_one();
  }
  void request_flush() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_.joinable()) return;
    flush_now_ = true;
    wake_.notify_one();
  }

  // Start the writer at the first event: save_dir's default comes from the trainer state, which
  // only the training thread may read.
  void start_locked() {
    if (worker_.joinable() || stopped_) return;
    if (!save_dir_) {
      ember_trainer_state_t st{};
      st.struct_size = sizeof st;
      if (host().get_state(host().ctx, &st) != EMBER_OK)
        throw_error("config key save_dir is not set and the trainer state is unavailable: " + host_error(host()));
      save_dir_ = std::string(view(st.default_root_dir));
      if (save_dir_->empty()) save_dir_ = ".";
    }
    local_ = is_local_url(*save_dir_);
    worker_ = std::thread([this] { run_worker(); });
  }

  // Drain the queue, stop the writer and return its last error ("" when everything was written).
  std::string stop_worker() {
    std::unique_lock<std::mutex> lock(mu_);
    stopped_ = true;
    if (!worker_.joinable()) return error_;
    stop_ = true;
    wake_.notify_one();
    lock.unlock();
    worker_.join();
    lock.lock();
    return error_;
  }

  // --- the writer ([worker]) ---------------------------------------------------------------------
  void run_worker() {
    std::unique_lock<std::mutex> lock(mu_);
    Clock::time_point next_flush = Clock::now() + flush_interval_;
    for (;;) {
      wake_.wait_until(lock, next_flush, [&] { return stop_ || flush_now_ || queue_.size() >= max_queue_; });
      const bool stopping = stop_;
      const bool timed = Clock::now() >= next_flush;
      const bool publish = stopping || flush_now_ || timed;
      flush_now_ = false;
      std::vector<Item> items;
      items.swap(queue_);
      std::optional<std::string> yaml;
      yaml.swap(queued_yaml_);
      lock.unlock();
      std::string error;
      try {
        write(std::move(items), std::move(yaml), publish);
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = std::string(kId) + ": unknown error writing under " + *save_dir_;
      }
      if (!error.empty() && failures_++ == 0)
        log(EMBER_LOG_WARN, error + "; the events are kept and written again at the next flush");
      if (error.empty() && failures_ > 0) {
        log(EMBER_LOG_INFO, "wrote " + log_dir_ + " again after " + std::to_string(failures_) + " failed attempt(s)");
        failures_ = 0;
      }
      lock.lock();
      error_ = error;
      if (timed || publish) next_flush = Clock::now() + flush_interval_;
      if (stopping && queue_.empty() && !queued_yaml_) {
        if (error_.empty() || retried_at_stop_) return;
        retried_at_stop_ = true;  // one more attempt at what failed
      }
    }
  }

  // [worker]: frame what the training thread handed over and write it; whatever fails stays in
  // unwritten_ (and the current file name) for the next pass.
  void write(std::vector<Item> items, std::optional<std::string> yaml, bool publish) {
    for (auto& item : items) {
      if (!item.record.empty()) {
        unwritten_ += item.record;
        continue;
      }
      try {
        unwritten_ += image_record(item);
      } catch (const std::exception& e) {  // one image that cannot be encoded costs only itself
        log(EMBER_LOG_WARN, std::string("dropping an image event of step ") + std::to_string(item.step) + ": " + e.what());
      }
    }
    if (yaml) unwritten_yaml_ = std::move(yaml);
    resolve();
    if (local_) {
      if (!unwritten_.empty()) append_local();
    } else if (publish && !unwritten_.empty()) {
      publish_remote();
    }
    if (unwritten_yaml_ && (local_ || publish)) {
      write_object(host(), hparams_url_, *unwritten_yaml_, kId);
      unwritten_yaml_.reset();
    }
  }

  std::string image_record(Item& item) {
    Proto summary;
    for (auto& p : item.pictures) {
      if (p.png.empty()) p.png = ember::png::encode(p.pixels.data(), p.width, p.height, p.channels);
      Proto image, v;
      image.int64(f::kImageHeight, p.height).int64(f::kImageWidth, p.width)
          .int64(f::kImageColorspace, p.channels).bytes(f::kImageEncoded, p.png);
      v.bytes(f::kValueTag, p.tag);
      if (!p.caption.empty()) v.message(f::kValueMetadata, plugin_metadata("images", {}, p.caption));
      v.message(f::kValueImage, image);
      summary.message(f::kSummaryValue, v);
    }
    std::string out;
    tb::append_record(out, event(item.wall_time, item.step, summary));
    return out;
  }

  // The next free version_N under root (Lightning's _get_next_version).
  std::int64_t next_version(const std::string& root) { return ember::plugin::next_version(host(), root, kId); }

  void resolve() {
    if (!log_dir_.empty()) return;
    std::string root = join_url(*save_dir_, name_);
    std::string version = version_ ? *version_ : "version_" + std::to_string(next_version(root));
    std::string dir = join_url(root, version);
    if (sub_dir_ && !sub_dir_->empty()) dir = join_url(dir, *sub_dir_);
    hparams_url_ = join_url(dir, "hparams.yaml");
    log_dir_ = dir;
    log(EMBER_LOG_INFO, "writing TensorBoard event files to " + log_dir_);
  }

  // events.out.tfevents.<time>.<host>.<pid>.<n> (TensorBoard's writers). Rotated files take a
  // zero-padded n so that names of the same second still sort in write order.
  std::string new_event_url() {
    char head[32];
    std::snprintf(head, sizeof head, "%010lld", static_cast<long long>(unix_now()));
    std::string n = std::to_string(g_file_counter++);
    if (!local_ && n.size() < 9) n.insert(0, 9 - n.size(), '0');
    return join_url(log_dir_, std::string("events.out.tfevents.") + head + "." + hostname() + "." +
                                   std::to_string(::getpid()) + "." + n);
  }

  void append_local() {
    if (fd_ < 0) {
      if (event_url_.empty()) event_url_ = new_event_url();
      if (!created_) {
        // First write: created atomically through the host, which makes the directories.
        write_object(host(), event_url_, file_version_record(unix_now()) + unwritten_, kId);
        unwritten_.clear();
        created_ = true;
      }
      const std::string path = local_path(event_url_);
      fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd_ < 0) throw_error("cannot open " + event_url_ + " to append: " + std::strerror(errno));
    }
    while (!unwritten_.empty()) {
      ssize_t n = ::write(fd_, unwritten_.data(), unwritten_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_error("cannot append to " + event_url_ + ": " + std::strerror(errno));
      unwritten_.erase(0, static_cast<size_t>(n));
    }
  }

  // One whole event file per flush; a failed one keeps its name and bytes for the next attempt.
  void publish_remote() {
    if (event_url_.empty()) {
      event_url_ = new_event_url();
      file_head_ = file_version_record(unix_now());
    }
    write_object(host(), event_url_, file_head_ + unwritten_, kId);
    unwritten_.clear();
    event_url_.clear();
    ++published_;
  }

  // Config.
  std::optional<std::string> save_dir_;
  std::string name_ = "lightning_logs";
  std::optional<std::string> version_, sub_dir_;
  bool default_hp_metric_ = true;
  std::string prefix_;
  Clock::duration flush_interval_{};
  size_t max_queue_ = 10;

  // [train-thread]
  json::object hparams_;

  // Shared with the writer, under mu_.
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread worker_;
  std::vector<Item> queue_;
  std::optional<std::string> queued_yaml_;
  bool flush_now_ = false, stop_ = false, stopped_ = false, retried_at_stop_ = false;
  std::string error_;  // the last pass's failure, "" after a pass that wrote everything
  bool local_ = true;  // set before the writer starts

  // The writer's own.
  std::string log_dir_, hparams_url_, event_url_, file_head_;
  std::string unwritten_;
  std::optional<std::string> unwritten_yaml_;
  int fd_ = -1;
  bool created_ = false;  // the local event file exists (then it is only appended to)
  int failures_ = 0;
  std::int64_t published_ = 0;
};

}  // namespace

EMBER_PLUGIN(TensorBoardLogger, "tensorboard", "1.0.0",
             "Lightning's TensorBoardLogger: tfevents files (scalars, hparams, images, histograms, text) and hparams.yaml",
             kSchema)
