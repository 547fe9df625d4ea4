// wandb — Lightning's WandbLogger speaking W&B's own protocol (see plugins/wandb/README.md).
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
// The plugin also serves the read-only wandb:// scheme (ember.storage/1) to resume from artifacts.
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <ember/media.hpp>
#include <ember/media_table.hpp>
#include <ember/plugin.hpp>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "wandb_api.hpp"
#include "wandb_png.hpp"

namespace {

namespace json = boost::json;
namespace wb = ember::wandb;
using ember::plugin::str;
using ember::plugin::view;
using wb::Clock;

constexpr const char* kId = "wandb";
constexpr const char* kStepMetric = "trainer/global_step";
constexpr std::size_t kConsoleLogMax = 64u << 20;  // the run file output.log; file_stream has every line

constexpr const char* kSchema = R"JSON({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "project": {"type": ["string", "null"], "description": "W&B project; env WANDB_PROJECT; default lightning_logs"},
    "entity": {"type": ["string", "null"], "description": "W&B entity; env WANDB_ENTITY; default: the key's default entity"},
    "name": {"type": ["string", "null"], "description": "display name; env WANDB_NAME"},
    "id": {"type": ["string", "null"], "description": "run id; env WANDB_RUN_ID; default: 8 random [a-z0-9]"},
    "version": {"type": ["string", "null"], "description": "Lightning's alias of id"},
    "resume": {"type": ["string", "boolean", "null"], "enum": ["allow", "must", "never", "auto", true, false, null],
               "description": "env WANDB_RESUME"},
    "tags": {"type": ["array", "string", "null"], "items": {"type": "string"}, "description": "env WANDB_TAGS (a,b)"},
    "group": {"type": ["string", "null"]},
    "job_type": {"type": ["string", "null"]},
    "notes": {"type": ["string", "null"]},
    "mode": {"type": ["string", "null"], "enum": ["online", "offline", "disabled", "dryrun", "run", null],
             "description": "env WANDB_MODE; default online"},
    "save_dir": {"type": ["string", "null"], "description": "root of wandb/ for offline runs; env WANDB_DIR; default /tmp"},
    "dir": {"type": ["string", "null"], "description": "Lightning's alias of save_dir"},
    "log_model": {"type": ["boolean", "string"], "enum": [true, false, "all"], "default": false},
    "prefix": {"type": "string", "default": "", "description": "prepended to every metric name with '-'"},
    "checkpoint_name": {"type": ["string", "null"], "description": "artifact name; default model-<run id>"},
    "base_url": {"type": ["string", "null"], "description": "env WANDB_BASE_URL; default https://api.wandb.ai"},
    "define_metric": {"type": ["object", "null"], "description": "{\"val_accuracy\": {\"summary\": \"max\", \"goal\": \"maximize\"}}"},
    "config": {"type": ["object", "null"], "description": "extra run config merged with the hyper-parameters"},
    "spool_dir": {"type": ["string", "null"], "description": "URL of the spool root; default $TMPDIR/ember-wandb-spool-<uid> (0700, checked)"},
    "finalize_timeout_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 30},
    "http_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400, "default": 30},
    "retry_initial_s": {"type": "number", "minimum": 0, "maximum": 3600, "default": 2},
    "retry_max_s": {"type": "number", "minimum": 0, "maximum": 3600, "default": 60},
    "post_interval_s": {"type": ["number", "null"], "minimum": 0, "maximum": 3600, "description": "fixed file_stream cadence; default W&B's (2 s, 10 s, 30 s)"},
    "stats_interval_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 30, "description": "system metrics period; 0: off"},
    "max_queue_mb": {"type": "number", "exclusiveMinimum": 0, "maximum": 1048576, "default": 256, "description": "rows kept in memory before spooling"},
    "verify_tls": {"type": "boolean", "default": true},
    "ca_file": {"type": ["string", "null"]},
    "allow_insecure_http": {"type": "boolean", "default": false, "description": "allow an http:// base_url to a non-loopback host (the API key travels in clear)"},
    "sync_spool_on_start": {"type": "boolean", "default": true, "description": "send runs left in the spool by earlier processes"},
    "console": {"type": ["string", "null"], "enum": ["auto", "redirect", "off", null],
                "description": "capture stdout/stderr into the run's output.log (teed: the terminal still gets everything); env WANDB_CONSOLE; default auto"}
  }
})JSON";

[[noreturn]] void config_error(const std::string& message) {
  throw std::invalid_argument(std::string(kId) + ": " + message);
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id() {
  static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 8; ++i) s += chars[rd() % 36];
  return s;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// Lightning's rank_zero_only: the process rank from the launcher's environment.
int process_rank() {
  for (const char* v : {"RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"}) {
    std::string s = env(v);
    if (!s.empty()) return std::atoi(s.c_str());
  }
  return 0;
}

// /proc readings for system.* metrics.
struct ProcSample {
  double cpu_s = 0;          // process user+system CPU seconds
  double rss_mb = 0;
  double mem_total_mb = 0, mem_avail_mb = 0;
  int threads = 0;
};

ProcSample sample_proc() {
  ProcSample s;
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[4096];
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    // Fields after the ")" of comm: state(3) ... utime(14) stime(15) ... num_threads(20).
    if (const char* p = std::strrchr(buf, ')')) {
      std::vector<std::string> fields;
      std::string cur;
      for (const char* q = p + 2; *q; ++q) {
        if (*q == ' ') fields.push_back(cur), cur.clear();
        else cur += *q;
      }
      fields.push_back(cur);
      double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
      if (fields.size() > 17 && tick > 0) {
        s.cpu_s = (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) / tick;
        s.threads = std::atoi(fields[17].c_str());
      }
    }
  }
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmRSS:", 6) == 0) s.rss_mb = std::atof(line + 6) / 1024.0;
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "MemTotal:", 9) == 0) s.mem_total_mb = std::atof(line + 9) / 1024.0;
      if (std::strncmp(line, "MemAvailable:", 13) == 0) s.mem_avail_mb = std::atof(line + 13) / 1024.0;
    }
    std::fclose(f);
  }
  return s;
}

// Spool directories of wandb loggers alive in this process: a directory named by our own pid is
// left over only when its logger has finished.
std::mutex& live_mu() {
  static std::mutex m;
  return m;
}
std::set<std::string>& live_spools() {
  static std::set<std::string> s;
  return s;
}

// The spool through the host's URL space (any scheme the host has: file://, s3://, memory://).
class HostStore final : public wb::Store {
 public:
  explicit HostStore(const ember_host_t& h) : h_(h) {}
  std::optional<std::string> read(const std::string& url) override {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    if (h_.stat(h_.ctx, str(url), &st) != EMBER_OK) return std::nullopt;
    ember_file_t* f = nullptr;
    if (h_.open_read(h_.ctx, str(url), 0, UINT64_MAX, &f) != EMBER_OK) throw_host("cannot read", url);
    std::string out;
    char buf[1 << 16];
    for (;;) {
      size_t got = 0;
      if (h_.read(h_.ctx, f, buf, sizeof buf, &got) != EMBER_OK) {
        std::string why(view(h_.last_error(h_.ctx)));
        h_.close(h_.ctx, f);
        throw std::runtime_error("wandb: cannot read " + url + ": " + why);
      }
      if (got == 0) break;
      out.append(buf, got);
    }
    h_.close(h_.ctx, f);
    return out;
  }
  void write(const std::string& url, std::string_view bytes) override {
    ember_file_t* f = nullptr;
    if (h_.open_write(h_.ctx, str(url), &f) != EMBER_OK) throw_host("cannot write", url);
    ember_status_t rc = h_.write(h_.ctx, f, bytes.data(), bytes.size());
    if (rc == EMBER_OK) rc = h_.commit(h_.ctx, f);
    std::string why = rc == EMBER_OK ? "" : std::string(view(h_.last_error(h_.ctx)));
    h_.close(h_.ctx, f);
    if (rc != EMBER_OK) throw std::runtime_error("wandb: cannot write " + url + ": " + why);
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> names;
    h_.list(
        h_.ctx, str(dir),
        [](void* u, const ember_stat_t* e) -> int32_t {
          std::string url(view(e->url));
          while (!url.empty() && url.back() == '/') url.pop_back();
          auto s = url.rfind('/');
          static_cast<std::vector<std::string>*>(u)->push_back(s == std::string::npos ? url : url.substr(s + 1));
          return 0;
        },
        &names);
    std::sort(names.begin(), names.end());
    return names;
  }
  void remove(const std::string& url) override { h_.remove(h_.ctx, str(url)); }

 private:
  [[noreturn]] void throw_host(const char* what, const std::string& url) {
    throw std::runtime_error(std::string("wandb: ") + what + " " + url + ": " + std::string(view(h_.last_error(h_.ctx))));
  }
  const ember_host_t& h_;
};

// One append-only stream of JSON lines (wandb-history.jsonl, wandb-events.jsonl): lines in
// memory after those already spooled; offsets are line indices.
struct Stream {
  Stream(const char* f, const char* k) : file(f), kind(k) {}
  const char* file;   // file_stream name
  const char* kind;   // spool segment prefix
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

// An open wandb:// reader: the checkpoint file's bytes (downloaded whole and MD5-checked), the
// window [pos, end) still to read.
}  // namespace
struct ember_file {
  std::shared_ptr<const std::string> bytes;
  std::size_t pos = 0, end = 0;
};
namespace {

class StorageError : public std::runtime_error {
 public:
  StorageError(ember_status_t status, const std::string& what) : std::runtime_error(what), status_(status) {}
  ember_status_t status() const { return status_; }

 private:
  ember_status_t status_;
};

// A row of media values, queued by the training thread in order with metric rows (a metric-row
// header with kMediaRow as its count marks its place in the row buffer).
constexpr std::uint32_t kMediaRow = 0xFFFFFFFFu;

struct MediaItem {
  enum class Kind { images, table, histogram };
  struct Picture {
    std::vector<std::uint8_t> pixels;  // packed HWC rows; empty when png holds the file
    std::string png;
    std::uint32_t width = 0, height = 0, channels = 0;
    std::string caption;
  };
  Kind kind = Kind::images;
  std::string key;
  std::vector<Picture> images;
  json::array columns, rows;  // table
  ember::media::Histogram hist;
};

struct MediaRow {
  std::vector<MediaItem> items;
};

// A run file's name from a metric key: W&B keeps '/' as directories; other characters outside
// [A-Za-z0-9._-] and empty, "." or ".." segments become '_' so the name stays inside media/.
std::string file_stem(std::string_view key) {
  std::string out, seg;
  auto flush = [&] {
    if (seg.empty() || seg == "." || seg == "..") seg = std::string(std::max<std::size_t>(seg.size(), 1), '_');
    if (!out.empty()) out += '/';
    out += seg;
    seg.clear();
  };
  for (char c : key) {
    if (c == '/') {
      flush();
      continue;
    }
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    seg += ok ? c : '_';
  }
  flush();
  return out;
}

struct ArtifactJob {
  std::string url;        // checkpoint URL; empty for the end-of-run scan (log_model=true)
  std::string index_dir;  // directory holding checkpoints.json
  std::int64_t step = 0;
};

class WandbLogger final : public ember::plugin::Plugin,
                          public ember::plugin::Callbacks,
                          public ember::plugin::Logger,
                          public ember::plugin::Media {
 public:
  WandbLogger(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    json::value cfg;
    try {
      cfg = json::parse(config_json);
    } catch (const std::exception& e) {
      config_error("config is not valid JSON: " + std::string(e.what()));
    }
    if (!cfg.is_object()) config_error("config: expected a JSON object");
    const json::object& o = cfg.as_object();
    auto s = [&](const char* key, const char* env_name, std::string fallback = {}) -> std::string {
      if (auto* v = o.if_contains(key); v && !v->is_null()) {
        if (!v->is_string()) config_error(std::string("config key ") + key + ": expected a string");
        return std::string(v->as_string());
      }
      if (env_name) {
        std::string e = env(env_name);
        if (!e.empty()) return e;
      }
      return fallback;
    };
    auto num = [&](const char* key, double fallback) {
      auto* v = o.if_contains(key);
      if (!v || v->is_null()) return fallback;
      if (!v->is_number()) config_error(std::string("config key ") + key + ": expected a number");
      return v->to_number<double>();
    };

    std::string mode = s("mode", "WANDB_MODE", "online");
    if (mode == "run") mode = "online";
    if (mode == "dryrun") mode = "offline";
    if (mode != "online" && mode != "offline" && mode != "disabled")
      config_error("config key mode (or WANDB_MODE): expected online, offline or disabled, got '" + mode + "'");
    if (process_rank() > 0) mode = "disabled";  // rank_zero_only: other ranks send nothing
    online_ = mode == "online";
    offline_ = mode == "offline";
    silent_ = env("WANDB_SILENT") == "true" || env("WANDB_SILENT") == "1";

    meta_.project = s("project", "WANDB_PROJECT", "lightning_logs");
    meta_.entity = s("entity", "WANDB_ENTITY");
    meta_.display_name = s("name", "WANDB_NAME");
    meta_.run_id = s("id", "WANDB_RUN_ID", s("version", nullptr));
    if (meta_.run_id.empty()) meta_.run_id = random_id();
    for (char c : meta_.run_id)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
        config_error("config key id (or WANDB_RUN_ID): '" + meta_.run_id + "' may hold only letters, digits, '-' and '_'");
    // They become URL path segments (file_stream) and header-adjacent text: no control characters.
    for (auto [key, value] : {std::pair<const char*, const std::string*>{"project (or WANDB_PROJECT)", &meta_.project},
                              {"entity (or WANDB_ENTITY)", &meta_.entity}})
      if (wb::has_control_chars(*value))
        config_error(std::string("config key ") + key + ": control characters (CR, LF, ...) are not allowed in '" +
                     wb::strip_query_strings(*value) + "'");
    meta_.group = s("group", "WANDB_RUN_GROUP");
    meta_.job_type = s("job_type", "WANDB_JOB_TYPE");
    meta_.notes = s("notes", "WANDB_NOTES");
    meta_.host = hostname();
    meta_.program = program_path();
    if (auto* t = o.if_contains("tags"); t && !t->is_null()) {
      if (t->is_string()) split_tags(std::string(t->as_string()));
      else
        for (const auto& x : t->as_array()) meta_.tags.emplace_back(x.as_string());
    } else {
      split_tags(env("WANDB_TAGS"));
    }
    if (auto* r = o.if_contains("resume"); r && !r->is_null()) {
      resume_ = r->is_bool() ? (r->as_bool() ? "auto" : "") : std::string(r->as_string());
    } else {
      resume_ = env("WANDB_RESUME");
      if (resume_ == "true" || resume_ == "True") resume_ = "auto";
    }
    if (!resume_.empty() && resume_ != "allow" && resume_ != "must" && resume_ != "never" && resume_ != "auto")
      config_error("config key resume (or WANDB_RESUME): expected allow, must, never or auto, got '" + resume_ + "'");

    save_dir_ = s("save_dir", "WANDB_DIR", s("dir", nullptr));
    base_url_ = s("base_url", "WANDB_BASE_URL", "https://api.wandb.ai");
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
    if (base_url_.rfind("http://", 0) != 0 && base_url_.rfind("https://", 0) != 0)
      config_error("config key base_url (or WANDB_BASE_URL): expected an http:// or https:// URL, got '" + base_url_ + "'");
    prefix_ = s("prefix", nullptr);
    if (auto* lm = o.if_contains("log_model")) {
      if (lm->is_bool()) log_model_ = lm->as_bool() ? 1 : 0;
      else if (lm->is_string() && lm->as_string() == "all") log_model_ = 2;
      else config_error("config key log_model: expected false, true or \"all\"");
    }
    artifact_name_ = s("checkpoint_name", nullptr, "model-" + meta_.run_id);
    try {
      defs_ = wb::parse_metric_defs(o.if_contains("define_metric"), kStepMetric);
    } catch (const std::invalid_argument& e) {
      config_error(e.what());
    }
    if (auto* c = o.if_contains("config"); c && c->is_object()) config_ = c->as_object();
    spool_root_ = s("spool_dir", nullptr);
    if (spool_root_.empty()) {
      // Per user: a shared /tmp/ember-wandb-spool let others read the rows and plant runs that the
      // next start would upload with this user's key. Created 0700 and checked (wandb_safety.hpp).
      std::string tmp = env("TMPDIR");
      spool_root_ = (tmp.empty() ? std::string("/tmp") : tmp) + "/ember-wandb-spool-" + std::to_string(::geteuid());
    }
    finalize_timeout_ = num("finalize_timeout_s", 30);
    http_timeout_ = num("http_timeout_s", 30);
    retry_initial_ = num("retry_initial_s", 2);
    retry_max_ = num("retry_max_s", 60);
    post_interval_ = num("post_interval_s", -1);
    stats_interval_ = num("stats_interval_s", 30);
    max_queue_bytes_ = static_cast<std::size_t>(num("max_queue_mb", 256) * 1024 * 1024);
    if (auto* v = o.if_contains("verify_tls"); v && v->is_bool()) verify_tls_ = v->as_bool();
    ca_file_ = s("ca_file", nullptr);
    if (auto* v = o.if_contains("allow_insecure_http"); v && v->is_bool()) allow_insecure_http_ = v->as_bool();
    try {
      wb::check_key_transport(base_url_, ember::http::Url::parse(base_url_).host, allow_insecure_http_,
                              "config key allow_insecure_http: true");
    } catch (const std::invalid_argument& e) {
      config_error(std::string("config key base_url (or WANDB_BASE_URL): ") + e.what());
    } catch (const std::exception& e) {
      config_error(std::string("config key base_url (or WANDB_BASE_URL): ") + wb::strip_query_strings(e.what()));
    }
    if (!verify_tls_)
      log(EMBER_LOG_WARN, "verify_tls is false: the TLS certificate of " + wb::strip_query_strings(base_url_) +
                              " is NOT checked; anyone on the network path can impersonate W&B and read the API key "
                              "and the run. Use ca_file for a private CA instead.");
    if (auto* v = o.if_contains("sync_spool_on_start"); v && v->is_bool()) sync_spool_ = v->as_bool();
    console_mode_ = s("console", "WANDB_CONSOLE", "auto");
    if (console_mode_ != "auto" && console_mode_ != "redirect" && console_mode_ != "off")
      config_error("config key console (or WANDB_CONSOLE): expected auto, redirect or off, got '" + console_mode_ + "'");

    // Looked up in every mode: the wandb:// scheme (resume from an artifact) reads with it even
    // when this logger is offline, disabled or on a rank > 0.
    api_key_ = env("WANDB_API_KEY");
    if (api_key_.empty()) {
      std::string host = ember::http::Url::parse(base_url_).host;
      api_key_ = wb::netrc_key(host, &netrc_path_);
    }
    if (std::string local = wb::local_path_of(spool_root_); !local.empty()) spool_root_ = local;
    spool_dir_ = wb::join_url(spool_root_, "run-" + meta_.run_id + "-" + std::to_string(::getpid()));
    summary_ = wb::Summary(defs_);
  }

  ~WandbLogger() override {
    if (worker_.joinable()) {
      try {
        say(EMBER_LOG_WARN, "destroyed without finalize; finishing the run as failed");
        finish("failed");
      } catch (...) {
      }
    }
  }

  // --- the training thread ------------------------------------------------------------------
  void setup(const ember_hook_args_t&) override { start(); }

  void log_hyperparams(std::string_view params_json) override {
    if (!enabled()) return;
    json::value v = json::parse(params_json);
    if (!v.is_object()) throw std::invalid_argument("wandb: log_hyperparams: expected a JSON object");
    start();
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& kv : v.as_object()) config_[kv.key()] = kv.value();
    config_dirty_ = true;
  }

  // The hot path: a few appends to a byte buffer under the mutex.
  void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics, size_t count) override {
    if (!enabled() || count == 0) return;
    if (!started_) start();
    if (!pending_hist_.items.empty()) flush_histograms();
    const double runtime = std::chrono::duration<double>(Clock::now() - t0_).count();
    const double ts = unix_now();
    std::lock_guard<std::mutex> lk(mu_);
    auto put = [&](const void* p, std::size_t n) { rows_.append(static_cast<const char*>(p), n); };
    std::int64_t head[2] = {ctx.step, ctx.epoch};
    double times[2] = {runtime, ts};
    auto n = static_cast<std::uint32_t>(count);
    put(head, sizeof head);
    put(times, sizeof times);
    put(&n, sizeof n);
    for (size_t i = 0; i < count; ++i) {
      auto len = static_cast<std::uint16_t>(std::min<size_t>(metrics[i].name.size, 65535));
      put(&len, sizeof len);
      put(metrics[i].name.data, len);
      put(&metrics[i].value, sizeof(double));
    }
    ++queued_rows_;
  }

  // --- ember.media/1: the training thread copies, checks and queues; the worker encodes ------------
  void log_image(const ember_log_context_t& ctx, std::string_view key, const ember_image_t* images, size_t count) override {
    if (!enabled()) return;
    if (!images || count == 0) throw std::invalid_argument("log_image '" + std::string(key) + "': no images");
    MediaItem item;
    item.kind = MediaItem::Kind::images;
    item.key = media_key(key, "log_image");
    item.images.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const ember_image_t& im = images[i];
      MediaItem::Picture& pic = item.images[i];
      pic.caption = std::string(view(im.caption));
      if (im.tensor) {
        // The view is borrowed: its pixels are copied (as 8-bit) before returning.
        ember::media::ImageLayout l = ember::media::check_image(*im.tensor, key, i);
        pic.pixels = ember::media::to_pixels(*im.tensor, l);
        pic.width = static_cast<std::uint32_t>(l.width), pic.height = static_cast<std::uint32_t>(l.height);
        pic.channels = static_cast<std::uint32_t>(l.channels);
      } else if (im.png && im.png_size > 0) {
        wb::png::Info info;
        try {
          info = wb::png::read_info(im.png, im.png_size);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) + ": " + e.what());
        }
        pic.png.assign(static_cast<const char*>(im.png), im.png_size);
        pic.width = info.width, pic.height = info.height, pic.channels = info.channels;
      } else {
        throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) +
                                    " has neither a tensor nor PNG bytes");
      }
    }
    queue_media(ctx, std::move(item));
  }

  void log_table(const ember_log_context_t& ctx, std::string_view key, std::string_view columns_json,
                 std::string_view rows_json) override {
    if (!enabled()) return;
    MediaItem item;
    item.kind = MediaItem::Kind::table;
    item.key = media_key(key, "log_table");
    ember::media::Table t = ember::media::parse_table(key, columns_json, rows_json);
    item.columns = std::move(t.columns);
    item.rows = std::move(t.rows);
    queue_media(ctx, std::move(item));
  }

  // Histograms of one step (watch logs one per parameter) become one history row, as
  // wandb.watch's do: they are held until a call for another step or any other row.
  void log_histogram(const ember_log_context_t& ctx, std::string_view key, const DLTensor& values,
                     int32_t num_bins) override {
    if (!enabled()) return;
    MediaItem item;
    item.kind = MediaItem::Kind::histogram;
    item.key = media_key(key, "log_histogram");
    item.hist = ember::media::histogram(values, num_bins, key);
    if (item.hist.finite == 0) return;  // all NaN/inf: nothing to draw (wandb.watch skips it too)
    if (!started_) start();
    if (!pending_hist_.items.empty() && (ctx.step != hist_ctx_.step || ctx.stage != hist_ctx_.stage)) flush_histograms();
    if (pending_hist_.items.empty()) {
      hist_ctx_ = ctx;
      hist_runtime_ = std::chrono::duration<double>(Clock::now() - t0_).count();
      hist_ts_ = unix_now();
    }
    pending_hist_.items.push_back(std::move(item));
  }

  void after_save_checkpoint(std::string_view url) override {
    if (!enabled() || log_model_ == 0) return;
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    host().get_state(host().ctx, &st);
    std::string u(url);
    auto slash = u.rfind('/');
    index_dir_ = slash == std::string::npos ? "." : u.substr(0, slash);
    // model_checkpoint writes its index after the checkpoints: the job waits for the next hook.
    if (log_model_ == 2) saved_.push_back({u, index_dir_, st.global_step});
  }

  void on_train_batch_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_train_epoch_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_validation_start(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void on_train_end(const ember_hook_args_t&) override { hand_over_checkpoints(); }
  void teardown(const ember_hook_args_t&) override { hand_over_checkpoints(); }

  void save() override {
    if (!enabled() || !started_) return;
    if (!pending_hist_.items.empty()) flush_histograms();
    std::lock_guard<std::mutex> lk(mu_);
    flush_now_ = true;
    cv_.notify_one();
  }

  void finalize(std::string_view status) override {
    if (!enabled()) return;
    start();
    finish(status);
  }

  // ---- ember.storage/1: a read-only wandb:// scheme ----------------------------------------------
  // wandb://ENTITY/PROJECT/NAME[:ALIAS][/FILE] is FILE of that artifact version (default: its only
  // file, else model.ckpt), resolved as W&B's clients do (ArtifactByName, the manifest, the file
  // URLs) and MD5-checked; so `ckpt_path: "wandb://me/proj/model-abc123:best"` resumes through the
  // host's normal restore. Served in every mode (online, offline, disabled, any rank): reading a
  // checkpoint the user named is not logging; it needs the key and base_url, as online mode does.
  static const void* extra_interface(WandbLogger*, std::string_view id) {
    static const ember_storage_v1_t table = {sizeof(ember_storage_v1_t), str("wandb"), &st_open_read, &st_read,
                                             &st_open_write, &st_write, &st_commit, &st_close, &st_stat, &st_list,
                                             &st_remove};
    return id == EMBER_STORAGE_V1 ? &table : nullptr;
  }

 private:
  static WandbLogger* me(void* s) { return static_cast<WandbLogger*>(static_cast<ember::plugin::Plugin*>(s)); }

  template <class F>
  static ember_status_t st_guarded(void* s, F&& f) noexcept {
    WandbLogger* p = me(s);
    try {
      f(*p);
      return EMBER_OK;
    } catch (const StorageError& e) {
      return p->fail(e.status(), e.what());
    } catch (const wb::ApiError& e) {
      return p->fail(e.status() == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO, std::string("wandb: ") + e.what());
    } catch (const std::bad_alloc&) {
      return p->fail(EMBER_E_NOMEM, "wandb: out of memory");
    } catch (const std::exception& e) {
      return p->fail(EMBER_E_INVALID, std::string("wandb: ") + e.what());
    } catch (...) {
      return p->fail(EMBER_E_FAILED, "wandb: unknown exception");
    }
  }

  [[noreturn]] static void read_only(const char* what, std::string_view url) {
    throw StorageError(EMBER_E_UNSUPPORTED, std::string("wandb: ") + what + " " + std::string(url) +
                                                ": wandb:// is read-only (model artifacts to resume from); the wandb "
                                                "logger uploads checkpoints itself with log_model");
  }

  // "wandb://E/P/NAME[:ALIAS][/FILE]" -> ("E/P/NAME:ALIAS", FILE or "").
  static std::pair<std::string, std::string> parse_wandb_url(std::string_view url) {
    constexpr std::string_view pre = "wandb://";
    std::string_view rest = url.substr(0, pre.size()) == pre ? url.substr(pre.size()) : url;
    std::size_t a = rest.find('/');
    std::size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
    if (a == std::string_view::npos || b == std::string_view::npos || a == 0 || b == a + 1 || b + 1 >= rest.size())
      throw StorageError(EMBER_E_INVALID, "wandb: " + std::string(url) +
                                              ": expected wandb://ENTITY/PROJECT/NAME[:ALIAS][/FILE], e.g. "
                                              "wandb://me/proj/model-abc123:best");
    std::string_view name = rest.substr(b + 1);
    std::string file;
    if (auto c = name.find('/'); c != std::string_view::npos) file = std::string(name.substr(c + 1)), name = name.substr(0, c);
    std::string path = std::string(rest.substr(0, b + 1)) + std::string(name);
    if (name.find(':') == std::string_view::npos) path += ":latest";
    return {path, file};
  }

  wb::Api storage_api() {
    if (api_key_.empty())
      throw StorageError(EMBER_E_INVALID, "wandb: reading wandb:// needs a W&B API key: " + key_hint());
    return wb::Api(api_options(5));
  }

  // Where a key is looked for, for the messages that say none was found.
  std::string key_hint() const {
    return "set WANDB_API_KEY or add 'machine " + ember::http::Url::parse(base_url_).host + " login user password KEY' to " +
           (netrc_path_.empty() ? std::string("~/.netrc") : netrc_path_) + " (or $NETRC)";
  }

  // The HTTP and retry settings from the config, for the worker's Api and the wandb:// reader's.
  wb::ApiOptions api_options(int max_attempts) const {
    wb::ApiOptions ao;
    ao.base_url = base_url_;
    ao.api_key = api_key_;
    ao.http.verify_tls = verify_tls_;
    ao.http.ca_file = ca_file_;
    ao.http.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(http_timeout_ * 1000));
    ao.retry_initial_s = retry_initial_;
    ao.retry_max_s = retry_max_;
    ao.max_attempts = max_attempts;
    return ao;
  }

  // Which file of the artifact a URL without /FILE means.
  static std::string pick_file(const wb::ResolvedArtifact& a, const std::string& url, const std::string& file) {
    if (!file.empty()) {
      if (!a.contents.contains(file))
        throw StorageError(EMBER_E_NOT_FOUND, "wandb: " + url + ": artifact " + a.path + " (" + a.version + ") has no file " + file);
      return file;
    }
    if (a.contents.size() == 1) return std::string(a.contents.begin()->key());
    if (a.contents.contains("model.ckpt")) return "model.ckpt";
    std::string names;
    for (const auto& kv : a.contents) names += (names.empty() ? "" : ", ") + std::string(kv.key());
    throw StorageError(EMBER_E_INVALID, "wandb: " + url + ": artifact " + a.path + " holds several files (" + names +
                                            "); name one: " + url + "/FILE");
  }

  wb::ResolvedArtifact resolve_or_throw(wb::Api& api, const std::string& url, const std::string& path) {
    auto a = wb::resolve_artifact(api, path);
    if (!a) throw StorageError(EMBER_E_NOT_FOUND, "wandb: " + url + ": no artifact " + path + " on " + base_url_);
    return std::move(*a);
  }

  static ember_status_t st_open_read(void* s, ember_str_t url, uint64_t offset, uint64_t length, ember_file_t** out) noexcept {
    *out = nullptr;
    return st_guarded(s, [&](WandbLogger& p) {
      std::string u(view(url));
      auto [path, file] = parse_wandb_url(u);
      wb::Api api = p.storage_api();
      wb::ResolvedArtifact a = p.resolve_or_throw(api, u, path);
      std::string f = pick_file(a, u, file);
      // Aliases move; the bytes of a version's file do not: cached by artifact id and file.
      std::string key = a.id + "/" + f;
      std::shared_ptr<const std::string> bytes;
      {
        std::lock_guard<std::mutex> lk(p.cache_mu_);
        if (p.cache_key_ == key) bytes = p.cache_bytes_;
      }
      if (!bytes) {
        bytes = std::make_shared<const std::string>(wb::fetch_artifact_file(api, a, f));
        std::lock_guard<std::mutex> lk(p.cache_mu_);
        p.cache_key_ = key, p.cache_bytes_ = bytes;
        p.say(EMBER_LOG_INFO, "read " + u + " (" + a.path + " = " + a.name.substr(0, a.name.find(':')) + ":" + a.version +
                                  ", " + f + ", " + std::to_string(bytes->size()) + " bytes, MD5 checked)");
      }
      auto h = std::make_unique<ember_file>();
      h->bytes = bytes;
      h->pos = static_cast<std::size_t>(std::min<uint64_t>(offset, bytes->size()));
      h->end = length == UINT64_MAX ? bytes->size()
                                    : static_cast<std::size_t>(std::min<uint64_t>(bytes->size(), offset + length));
      *out = h.release();
    });
  }
  static ember_status_t st_read(void* s, ember_file_t* f, void* buf, size_t cap, size_t* got) noexcept {
    *got = 0;
    return st_guarded(s, [&](WandbLogger&) {
      if (!f->bytes) throw StorageError(EMBER_E_INVALID, "wandb: read on a file not opened for reading");
      std::size_t n = std::min(cap, f->end > f->pos ? f->end - f->pos : 0);
      std::memcpy(buf, f->bytes->data() + f->pos, n);
      f->pos += n;
      *got = n;
    });
  }
  static ember_status_t st_open_write(void* s, ember_str_t url, ember_file_t** out) noexcept {
    *out = nullptr;
    return st_guarded(s, [&](WandbLogger&) { read_only("cannot write", view(url)); });
  }
  static ember_status_t st_write(void* s, ember_file_t*, const void*, size_t) noexcept {
    return st_guarded(s, [&](WandbLogger&) { read_only("cannot write", "wandb://"); });
  }
  static ember_status_t st_commit(void* s, ember_file_t*) noexcept {
    return st_guarded(s, [&](WandbLogger&) { read_only("cannot commit", "wandb://"); });
  }
  static void st_close(void*, ember_file_t* f) noexcept { delete f; }
  static ember_status_t st_stat(void* s, ember_str_t url, ember_stat_t* out) noexcept {
    return st_guarded(s, [&](WandbLogger& p) {
      static thread_local std::string stat_url;
      stat_url = std::string(view(url));
      auto [path, file] = parse_wandb_url(stat_url);
      wb::Api api = p.storage_api();
      wb::ResolvedArtifact a = p.resolve_or_throw(api, stat_url, path);
      std::string f = pick_file(a, stat_url, file);
      const auto& entry = a.contents.at(f);
      out->url = str(stat_url);
      out->is_dir = 0;
      out->size = entry.is_object() && entry.as_object().contains("size") ? entry.at("size").to_number<std::uint64_t>() : 0;
      out->mtime_ns = 0;
    });
  }
  static ember_status_t st_list(void* s, ember_str_t prefix, ember_list_fn, void*) noexcept {
    return st_guarded(s, [&](WandbLogger&) { read_only("cannot list", view(prefix)); });
  }
  static ember_status_t st_remove(void* s, ember_str_t url) noexcept {
    return st_guarded(s, [&](WandbLogger&) { read_only("cannot remove", view(url)); });
  }

  bool enabled() const { return online_ || offline_; }

  void split_tags(const std::string& text) {
    std::size_t p = 0;
    while (p < text.size()) {
      std::size_t q = text.find(',', p);
      if (q == std::string::npos) q = text.size();
      std::string t = text.substr(p, q - p);
      if (!t.empty()) meta_.tags.push_back(t);
      p = q + 1;
    }
  }

  static std::string program_path() {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  // Every message the plugin logs: no URL query string (pre-signed URLs carry signatures there,
  // and console capture would copy the line into output.log).
  void say(ember_log_level_t level, const std::string& msg) const {
    if (silent_ && level < EMBER_LOG_WARN) return;
    log(level, wb::strip_query_strings(msg));
  }

  void start() {
    if (started_ || !enabled()) return;
    started_ = true;
    t0_ = Clock::now();
    start_unix_ = unix_now();
    if (online_ && api_key_.empty()) {
      say(EMBER_LOG_ERROR, "no W&B API key: " + key_hint() + "; mode offline needs no key. Rows are kept in " + spool_dir_ +
                               " for `ember wandb sync`");
      net_disabled_ = "no API key";
    }
    start_console();
    worker_ = std::thread([this] { run_worker(); });
  }

  std::string media_key(std::string_view key, const char* what) const {
    if (key.empty()) throw std::invalid_argument(std::string(what) + ": empty key");
    return prefix_.empty() ? std::string(key) : prefix_ + "-" + std::string(key);
  }

  // Queue a media row after any held histograms, in order with the metric rows.
  void queue_media(const ember_log_context_t& ctx, MediaItem item) {
    if (!started_) start();
    if (!pending_hist_.items.empty()) flush_histograms();
    MediaRow row;
    row.items.push_back(std::move(item));
    push_media_row(ctx, std::chrono::duration<double>(Clock::now() - t0_).count(), unix_now(), std::move(row));
  }

  void flush_histograms() {
    MediaRow row;
    row.items.swap(pending_hist_.items);
    push_media_row(hist_ctx_, hist_runtime_, hist_ts_, std::move(row));
  }

  void push_media_row(const ember_log_context_t& ctx, double runtime, double ts, MediaRow row) {
    std::lock_guard<std::mutex> lk(mu_);
    std::int64_t head[2] = {ctx.step, ctx.epoch};
    double times[2] = {runtime, ts};
    rows_.append(reinterpret_cast<const char*>(head), sizeof head);
    rows_.append(reinterpret_cast<const char*>(times), sizeof times);
    rows_.append(reinterpret_cast<const char*>(&kMediaRow), sizeof kMediaRow);
    media_rows_.push_back(std::move(row));
    ++queued_rows_;
  }

  void hand_over_checkpoints() {
    if (saved_.empty()) return;
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& j : saved_) jobs_.push_back(std::move(j));
    saved_.clear();
    cv_.notify_one();
  }

  void finish(std::string_view status) {
    hand_over_checkpoints();
    if (started_ && !pending_hist_.items.empty()) flush_histograms();
    if (console_) console_->stop();  // every captured line is queued before the worker's last drain
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (finishing_) return;
      if (log_model_ == 1 && !index_dir_.empty()) jobs_.push_back({"", index_dir_, 0});
      exit_code_ = status == "success" ? 0 : 1;
      finishing_ = true;
      deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(finalize_timeout_));
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

  // --- the worker -----------------------------------------------------------------------------
  // Wait until t or until finishing/flush; false once past the finalize deadline.
  bool wait_until(Clock::time_point t) {
    std::unique_lock<std::mutex> lk(mu_);
    if (finishing_ && t > deadline_) t = deadline_;
    cv_.wait_until(lk, t, [&] { return flush_now_ || (finishing_ && !finish_seen_); });
    if (finishing_ && !finish_seen_) finish_seen_ = true;  // wake once for the finish request
    return !(finishing_ && Clock::now() >= deadline_);
  }

  double post_interval() const {
    if (post_interval_ >= 0) return post_interval_;
    double rt = std::chrono::duration<double>(Clock::now() - t0_).count();
    return rt < 60 ? 2.0 : rt < 300 ? 10.0 : 30.0;
  }

  static bool is_live(const std::string& dir) {
    std::lock_guard<std::mutex> lk(live_mu());
    return live_spools().count(dir) > 0;
  }

  void run_worker() {
    {
      std::lock_guard<std::mutex> lk(live_mu());
      live_spools().insert(spool_dir_);
    }
    struct Unlive {
      std::string dir;
      ~Unlive() {
        std::lock_guard<std::mutex> lk(live_mu());
        live_spools().erase(dir);
      }
    } unlive{spool_dir_};
    try {
      if (offline_) run_offline();
      else run_online();
    } catch (const std::exception& e) {
      report_ = std::string("worker stopped: ") + e.what();
    }
  }

  // Move queued rows into history lines and the summary; pick up config changes and jobs.
  bool drain(bool& finishing) {
    // Double buffering: the training thread gets back the capacity of the buffer drained last
    // time, so its appends do not reallocate once both buffers have grown.
    std::string& rows = spare_rows_;
    rows.clear();
    bool cfg_changed = false;
    std::deque<MediaRow> media;
    {
      std::lock_guard<std::mutex> lk(mu_);
      rows.swap(rows_);
      media.swap(media_rows_);
      flush_now_ = false;
      finishing = finishing_;
      if (config_dirty_) cfg_config_ = config_, config_dirty_ = false, cfg_changed = true;
      for (auto& j : jobs_) my_jobs_.push_back(std::move(j));
      jobs_.clear();
    }
    std::size_t p = 0;
    std::string line;
    while (p < rows.size()) {
      std::int64_t head[2];
      double times[2];
      std::uint32_t n;
      std::memcpy(head, rows.data() + p, sizeof head), p += sizeof head;
      std::memcpy(times, rows.data() + p, sizeof times), p += sizeof times;
      std::memcpy(&n, rows.data() + p, sizeof n), p += sizeof n;
      line.clear();
      line += '{';
      bool has_epoch = false;
      if (n == kMediaRow) {
        const std::int64_t step = starting_step_ + history_.next;
        for (auto& item : media.front().items) {
          json::value v = media_value(item, step);
          wb::append_json_string(line, item.key);
          line += ": ";
          line += json::serialize(v);
          line += ", ";
          summary_.set(item.key, std::move(v));
        }
        media.pop_front();
        n = 0;  // the common tail below: epoch, trainer/global_step, _step, _runtime, _timestamp
      }
      for (std::uint32_t i = 0; i < n; ++i) {
        std::uint16_t len;
        double v;
        std::memcpy(&len, rows.data() + p, sizeof len), p += sizeof len;
        std::string_view raw(rows.data() + p, len);
        p += len;
        std::memcpy(&v, rows.data() + p, sizeof v), p += sizeof v;
        std::string name = prefix_.empty() ? std::string(raw) : prefix_ + "-" + std::string(raw);
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
        wb::append_int(line, head[1]);
        line += ", ";
        summary_.update("epoch", static_cast<double>(head[1]));
      }
      line += "\"trainer/global_step\": ";
      wb::append_int(line, head[0]);
      summary_.update(kStepMetric, static_cast<double>(head[0]));
      const std::int64_t step = starting_step_ + history_.next;
      line += ", \"_step\": ";
      wb::append_int(line, step);
      line += ", \"_runtime\": ";
      wb::append_number(line, times[0] + runtime_offset_);
      line += ", \"_timestamp\": ";
      wb::append_number(line, times[1]);
      line += '}';
      summary_.update("_step", static_cast<double>(step));
      summary_.update("_runtime", times[0] + runtime_offset_);
      summary_.update("_timestamp", times[1]);
      if (offline_) offline_history(line, step);
      history_.push(line);
    }
    if (console_) take_console();
    return cfg_changed;
  }

  // ---- media (worker) ------------------------------------------------------------------------------
  // The history value of one media item at history step `step`, as W&B's clients write it; the
  // files it names are queued for upload (online) or written under files/ (offline).
  json::value media_value(MediaItem& item, std::int64_t step) {
    const std::string stem = file_stem(item.key) + "_" + std::to_string(step) + "_";
    switch (item.kind) {
      case MediaItem::Kind::histogram: {
        json::array values, bins;
        for (auto c : item.hist.counts) values.emplace_back(c);
        for (auto e : item.hist.edges) bins.emplace_back(e);
        return json::object{{"_type", "histogram"}, {"values", std::move(values)}, {"bins", std::move(bins)}};
      }
      case MediaItem::Kind::table: {
        std::string text = json::serialize(json::object{{"columns", item.columns}, {"data", item.rows}});
        std::string sha = wb::sha256_hex(text);
        std::string path = "media/table/" + stem + sha.substr(0, 20) + ".table.json";
        json::object v{{"_type", "table-file"}, {"path", path},        {"sha256", sha},
                       {"size", text.size()},   {"ncols", item.columns.size()}, {"nrows", item.rows.size()}};
        add_media_file(path, std::move(text));
        return v;
      }
      case MediaItem::Kind::images: break;
    }
    // One image is an "image-file" (wandb.Image); several are one "images/separated" value with
    // a file each, named by index as W&B's clients name a list's files.
    const bool one = item.images.size() == 1;
    json::array filenames, captions;
    bool any_caption = false;
    json::object single;
    for (std::size_t i = 0; i < item.images.size(); ++i) {
      MediaItem::Picture& pic = item.images[i];
      std::string bytes = pic.pixels.empty() ? std::move(pic.png) : wb::png::encode(pic.pixels.data(), pic.width, pic.height, pic.channels);
      std::string sha = wb::sha256_hex(bytes);
      std::string path = "media/images/" + stem + (one ? sha.substr(0, 20) : std::to_string(i)) + ".png";
      if (one) {
        single = json::object{{"_type", "image-file"}, {"path", path},       {"sha256", sha},          {"size", bytes.size()},
                              {"format", "png"},       {"width", pic.width}, {"height", pic.height}};
        if (!pic.caption.empty()) single["caption"] = pic.caption;
      }
      filenames.emplace_back(path);
      any_caption = any_caption || !pic.caption.empty();
      captions.emplace_back(pic.caption.empty() ? json::value() : json::value(pic.caption));
      add_media_file(path, std::move(bytes));
    }
    if (one) return single;
    json::object v{{"_type", "images/separated"}, {"width", item.images[0].width}, {"height", item.images[0].height},
                   {"format", "png"},             {"count", item.images.size()},  {"filenames", std::move(filenames)}};
    if (any_caption) v["captions"] = std::move(captions);
    return v;
  }

  void add_media_file(const std::string& path, std::string bytes) {
    if (offline_) {
      write_file(path, bytes);
      write_record(wb::files_record({path}, 0));
      return;
    }
    media_bytes_ += bytes.size();
    media_files_.emplace_back(path, std::move(bytes));
  }

  // Upload the media files: the spooled ones first (older), then those in memory.
  void send_media_files() {
    while (!spooled_files_.empty()) {
      const auto& [path, url] = spooled_files_.front();
      if (auto bytes = spool_->read(url)) {
        wb::upload_run_file(*api_, *run_, path, *bytes);
        uploaded_.push_back(path);
      }
      spool_->remove(url);
      spooled_files_.pop_front();
    }
    while (!media_files_.empty()) {
      auto& [path, bytes] = media_files_.front();
      wb::upload_run_file(*api_, *run_, path, bytes);
      uploaded_.push_back(path);
      media_bytes_ -= bytes.size();
      media_files_.pop_front();
    }
  }

  json::object wandb_config_block() const {
    return json::object{{"cli_version", nullptr},
                        {"ember_version", std::string(view(host().host_version))},
                        {"is_jupyter_run", false},
                        {"is_kaggle_kernel", false},
                        {"start_time", start_unix_},
                        {"t", json::object{}},
                        {"m", wb::encode_metric_defs(kStepMetric, defs_)}};
  }
  json::object full_config() const {
    json::object c = cfg_config_;
    c["_wandb"] = wandb_config_block();
    return c;
  }
  std::string config_wire() const { return json::serialize(wb::wrap_config(full_config())); }

  std::string summary_text(bool final) {
    if (final) {
      double rt = std::chrono::duration<double>(Clock::now() - t0_).count() + runtime_offset_;
      summary_.set("_wandb", json::object{{"runtime", static_cast<std::int64_t>(rt)}});
    }
    return wb::line_text(summary_.to_json());
  }

  std::string metadata_json() const {
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
        {"program", meta_.program},
        {"codePathLocal", nullptr},
        {"host", meta_.host},
        {"username", env("USER")},
        {"executable", meta_.program},
        {"cpu_count", static_cast<std::int64_t>(std::thread::hardware_concurrency())},
        {"cpu_count_logical", static_cast<std::int64_t>(std::thread::hardware_concurrency())},
        {"memory", json::object{{"total", s.mem_total_mb / 1024.0}}}});
  }

  // One system-metrics line (wandb-events.jsonl), as W&B's sender flattens StatsRecords.
  void sample_stats() {
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
    if (offline_) {
      write_record(wb::stats_record(items, static_cast<std::int64_t>(unix_now())));
      return;
    }
    items.emplace_back("_wandb", "true");
    items.emplace_back("_timestamp", wb::number_text(unix_now()));
    items.emplace_back("_runtime", wb::number_text(rt));
    events_.push(wb::line_of_items(items));
    ++stats_lines_;
  }

  // ---- online ---------------------------------------------------------------------------------
  void run_online() {
    wb::ApiOptions ao = api_options(3);  // inner retries (artifact steps, run files); the loop retries the rest
    ao.wait = [this](Clock::time_point t) { return wait_until(t); };
    api_ = std::make_unique<wb::Api>(ao);
    store_ = std::make_unique<HostStore>(host());
    // A local spool (the default) is private: 0700 directories checked to be ours, 0600 files.
    // Another scheme (s3://…) is the user's choice; its access control is the bucket's.
    if (wb::local_path_of(spool_root_).empty()) spool_ = std::make_unique<HostStore>(host());
    else spool_ = std::make_unique<wb::LocalStore>(true);
    last_post_ = last_stats_ = Clock::now();
    last_cpu_s_ = sample_proc().cpu_s;

    bool finishing = false;
    for (;;) {
      auto next = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                     std::max(0.05, std::min(post_interval(), 1.0))));
      if (backoff_until_ > Clock::now()) next = std::min(next, backoff_until_);
      wait_until(next);
      if (drain(finishing)) config_changed_ = true;
      auto now = Clock::now();
      if (stats_interval_ > 0 && now - last_stats_ >= std::chrono::duration<double>(stats_interval_)) sample_stats();
      if (finishing && stats_interval_ > 0 && stats_lines_ == 0) sample_stats();
      const bool past_deadline = finishing && now >= deadline_;
      if (past_deadline) break;
      if (!net_disabled_.empty()) {
        if (history_.mem_bytes + events_.mem_bytes + media_bytes_ + output_.mem_bytes > 0 && (finishing || now - last_spill_ > std::chrono::seconds(2))) spill();
        if (finishing) break;
        continue;
      }
      if (now < backoff_until_) {
        if (now - last_spill_ > std::chrono::seconds(2) || history_.mem_bytes + media_bytes_ > max_queue_bytes_) spill();
        continue;
      }
      try {
        if (finishing) api_->set_timeout(remaining_ms());
        if (network_step(finishing)) break;  // everything sent and the run completed
        failures_ = 0;
        if (down_) {
          down_ = false;
          say(EMBER_LOG_INFO, "W&B at " + base_url_ + " answers again; sending what was kept");
        }
      } catch (const wb::ApiError& e) {
        on_failure(e);
      } catch (const std::exception& e) {
        on_failure(wb::ApiError(wb::Failure::fatal, 0, e.what()));
      }
    }
    // Whatever could not be sent goes to the spool, and finalize says so.
    if (!completed_) leave_in_spool();
  }

  std::chrono::milliseconds remaining_ms() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    auto cap = std::chrono::milliseconds(static_cast<std::int64_t>(http_timeout_ * 1000));
    return std::max(std::chrono::milliseconds(50), std::min(left, cap));
  }

  void on_failure(const wb::ApiError& e) {
    if (e.kind() == wb::Failure::auth) {
      net_disabled_ = "the API key was refused";
      say(EMBER_LOG_ERROR, "W&B at " + base_url_ + " refused the API key (HTTP 401); no more requests this run. "
                           "Metrics are kept in " + spool_dir_ + "; send them with `ember wandb sync " + spool_dir_ +
                           "` once WANDB_API_KEY is right");
      spill();
      return;
    }
    if (e.kind() == wb::Failure::fatal) {
      if (in_artifact_) {
        in_artifact_ = false;
        say(EMBER_LOG_ERROR, "model artifact not logged: " + std::string(e.what()));
        if (!my_jobs_.empty()) my_jobs_.pop_front();
        return;
      }
      net_disabled_ = e.what();
      say(EMBER_LOG_ERROR, std::string(e.what()) + "; no more requests this run; metrics are kept in " + spool_dir_);
      spill();
      return;
    }
    ++failures_;
    backoff_until_ = Clock::now() + api_->backoff(failures_ - 1);
    if (!down_) {
      down_ = true;
      say(EMBER_LOG_WARN, std::string(e.what()) + "; retrying with backoff, metrics are kept (spooled to " + spool_dir_ + ")");
    }
    spill();
  }

  // One pass of network work; true when the run is complete.
  bool network_step(bool finishing) {
    if (!run_) create_run();
    send_media_files();
    send_spooled(history_);
    send_spooled(events_);
    send_spooled(output_);
    auto now = Clock::now();
    bool due = finishing || now - last_post_ >= std::chrono::duration<double>(post_interval()) ||
               history_.mem_bytes > (4u << 20);
    while (due && (!history_.lines.empty() || !events_.lines.empty() || !output_.lines.empty())) {
      post_lines();
      if (!finishing && history_.mem_bytes < (4u << 20)) break;
    }
    if (config_changed_ && (finishing || now - last_config_ >= std::chrono::seconds(30))) {
      std::string cfg = config_wire();
      wb::upsert_bucket(*api_, upsert_meta(), &cfg, false);
      config_changed_ = false;
      last_config_ = now;
    }
    while (!my_jobs_.empty()) {
      in_artifact_ = true;
      run_artifact_job(my_jobs_.front());
      in_artifact_ = false;
      my_jobs_.pop_front();
    }
    if (!finishing) {
      if (now - last_post_ >= std::chrono::seconds(30)) heartbeat();
      return false;
    }
    // The end: run files, the last data with the final summary, the uploaded notice, complete.
    if (finish_stage_ == 0) {
      std::string cfg = config_wire();
      wb::upsert_bucket(*api_, upsert_meta(), &cfg, false);
      finish_stage_ = 1;
    }
    if (finish_stage_ == 1) {
      final_summary_ = summary_text(true);
      wb::upload_run_file(*api_, *run_, "wandb-summary.json", final_summary_);
      wb::upload_run_file(*api_, *run_, "config.yaml", wb::config_yaml(wb::wrap_config(full_config())));
      uploaded_.push_back("wandb-summary.json");
      uploaded_.push_back("config.yaml");
      if (!console_log_.empty()) {
        wb::upload_run_file(*api_, *run_, "output.log", console_log_);
        uploaded_.push_back("output.log");
      }
      finish_stage_ = 2;
    }
    if (finish_stage_ == 2) {
      post(json::object{{"files", json::object{{"wandb-summary.json", summary_file(final_summary_)}}}, {"dropped", 0}});
      finish_stage_ = 3;
    }
    if (finish_stage_ == 3) {
      json::array up;
      for (auto& u : uploaded_) up.emplace_back(u);
      post(json::object{{"complete", false}, {"failed", false}, {"dropped", 0}, {"uploaded", up}});
      uploaded_.clear();
      finish_stage_ = 4;
    }
    post(json::object{{"complete", true}, {"exitcode", exit_code_}, {"dropped", 0}, {"uploaded", json::array{}}});
    completed_ = true;
    say(EMBER_LOG_INFO, "run " + run_->entity + "/" + run_->project + "/" + run_->run_id + " finished on " + base_url_ +
                            " (" + std::to_string(history_.next) + " history rows)");
    return true;
  }

  wb::RunMeta upsert_meta() const {
    wb::RunMeta m = meta_;
    if (run_) m.entity = run_->entity, m.project = run_->project;
    return m;
  }

  void create_run() {
    json::object v = api_->graphql(
        "query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }", {});
    (void)v;
    if (sync_spool_ && !spool_synced_) {
      spool_synced_ = true;
      sync_leftover_spools();
    }
    if (!resume_.empty()) {
      json::value b = wb::resume_status(*api_, meta_);
      if (b.is_null() && resume_ == "must")
        throw wb::ApiError(wb::Failure::fatal, 0, "resume='must' but run " + meta_.run_id + " does not exist in project " +
                                                      meta_.project + " on " + base_url_);
      if (!b.is_null() && resume_ == "never")
        throw wb::ApiError(wb::Failure::fatal, 0, "resume='never' but run " + meta_.run_id + " already exists on " + base_url_);
      if (!resume_checked_ && b.is_object()) resume_from(b.as_object());
      resume_checked_ = true;
    }
    std::string cfg = config_wire();
    config_changed_ = false;
    last_config_ = Clock::now();
    run_ = wb::upsert_bucket(*api_, meta_, &cfg, true);
    say(EMBER_LOG_INFO, "logging run " + run_->entity + "/" + run_->project + "/" + run_->run_id + " to " + base_url_);
    wb::upload_run_file(*api_, *run_, "wandb-metadata.json", metadata_json());
    uploaded_.push_back("wandb-metadata.json");
  }

  // A resumed run continues after the lines and the step the server has. Rows rendered before
  // W&B answered (it was unreachable at the start) were numbered from 0: they keep their local
  // offsets and get _step and _runtime moved on when they are sent (shift_until_).
  void resume_from(const json::object& b) {
    wb::ResumeBase base = wb::resume_base(b);
    base_history_ = base.history_lines;
    base_events_ = base.events_lines;
    base_output_ = base.log_lines;
    starting_step_ = base.next_step;
    runtime_offset_ = base.runtime;
    shift_until_ = history_.next;
    if (shift_until_ > 0) summary_.update("_step", static_cast<double>(starting_step_ + history_.next - 1));
    if (meta_written_) write_spool_meta();
    say(EMBER_LOG_INFO, "resuming run " + meta_.run_id + " at _step " + std::to_string(starting_step_));
  }
  void append_history_line(std::string& body, std::int64_t offset, const std::string& line) {
    if (offset < shift_until_) wb::append_json_string(body, wb::shift_history_line(line, starting_step_, runtime_offset_));
    else wb::append_json_string(body, line);
  }

  json::object summary_file(const std::string& text) {
    return json::object{{"offset", 0}, {"content", json::array{json::string(text)}}};
  }

  void post(const json::object& body) {
    api_->file_stream(run_->entity, run_->project, run_->run_id, json::serialize(body));
    last_post_ = Clock::now();
  }

  void heartbeat() { post(json::object{{"complete", false}, {"failed", false}, {"dropped", 0}, {"uploaded", json::array{}}}); }

  std::int64_t wire(const Stream& s, std::int64_t local) const {
    return local + (&s == &history_ ? base_history_ : &s == &events_ ? base_events_ : base_output_);
  }

  // Post up to 10000 lines of each stream from memory, with the full summary. The body is written
  // directly (each line escaped once into it) rather than through a JSON tree of copies.
  void post_lines() {
    std::string& body = post_body_;
    body.clear();
    body += "{\"files\": {";
    auto chunk = [&](Stream& s, std::size_t max) -> std::size_t {
      std::size_t i = 0, bytes = 0;
      body += '"';
      body += s.file;
      body += "\": {\"offset\": ";
      wb::append_int(body, wire(s, s.mem_first));
      body += ", \"content\": [";
      for (; i < max && bytes < (8u << 20); ++i) {
        if (i) body += ", ";
        bytes += s.lines[i].size();
        if (&s == &history_) append_history_line(body, s.mem_first + static_cast<std::int64_t>(i), s.lines[i]);
        else wb::append_json_string(body, s.lines[i]);
      }
      body += "]}, ";
      return i;
    };
    std::size_t nh = std::min<std::size_t>(history_.lines.size(), 10000);
    std::size_t ne = std::min<std::size_t>(events_.lines.size(), 10000);
    if (nh) nh = chunk(history_, nh);
    if (ne) ne = chunk(events_, ne);
    std::size_t no = std::min<std::size_t>(output_.lines.size(), 10000);
    if (no) no = chunk(output_, no);
    body += "\"wandb-summary.json\": {\"offset\": 0, \"content\": [";
    wb::append_json_string(body, summary_text(false));
    body += "]}}, \"dropped\": 0}";
    api_->file_stream(run_->entity, run_->project, run_->run_id, body);
    last_post_ = Clock::now();
    auto pop = [](Stream& s, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) s.mem_bytes -= s.lines.front().size(), s.lines.pop_front(), ++s.mem_first;
    };
    pop(history_, nh);
    pop(events_, ne);
    pop(output_, no);
  }

  // The oldest spooled segments first, so the server receives lines in order.
  void send_spooled(Stream& s) {
    while (!s.spooled.empty()) {
      auto [first, url] = s.spooled.front();
      auto text = spool_->read(url);
      json::array content;
      if (text)
        for (auto& kv : wb::split_segment(first, *text))
          content.emplace_back(&s == &history_ && kv.first < shift_until_
                                   ? wb::shift_history_line(kv.second, starting_step_, runtime_offset_)
                                   : kv.second);
      if (!content.empty())
        post(json::object{{"files", json::object{{s.file, json::object{{"offset", wire(s, first)}, {"content", content}}},
                                                 {"wandb-summary.json", summary_file(summary_text(false))}}},
                          {"dropped", 0}});
      spool_->remove(url);
      s.spooled_lines -= static_cast<std::int64_t>(content.size());
      s.spooled.erase(s.spooled.begin());
    }
  }

  // Move the in-memory lines to spool segments (host storage) with the run's meta and summary.
  void spill() {
    last_spill_ = Clock::now();
    try {
      bool any = false;
      for (Stream* s : {&history_, &events_, &output_}) {
        if (s->lines.empty()) continue;
        std::string text;
        text.reserve(s->mem_bytes + s->lines.size());
        for (auto& l : s->lines) text += l, text += '\n';
        std::string url = wb::join_url(spool_dir_, wb::spool_segment_name(s->kind, s->mem_first));
        spool_->write(url, text);
        s->spooled.emplace_back(s->mem_first, url);
        s->spooled_lines += static_cast<std::int64_t>(s->lines.size());
        s->mem_first += static_cast<std::int64_t>(s->lines.size());
        s->lines.clear();
        s->mem_bytes = 0;
        any = true;
      }
      // Media files: "file-<path with / as %2F>", uploaded as run files when W&B answers again.
      while (!media_files_.empty()) {
        auto& [path, bytes] = media_files_.front();
        std::string url = wb::join_url(spool_dir_, wb::spool_file_name(path));
        spool_->write(url, bytes);
        spooled_files_.emplace_back(path, url);
        media_bytes_ -= bytes.size();
        media_files_.pop_front();
        any = true;
      }
      if (any || !meta_written_) write_spool_meta();
      if (any) spool_->write(wb::join_url(spool_dir_, "summary.json"), summary_text(false));
    } catch (const std::exception& e) {
      if (!spill_warned_) say(EMBER_LOG_ERROR, std::string("cannot spool to ") + spool_dir_ + ": " + e.what() + "; rows stay in memory");
      spill_warned_ = true;
    }
  }

  void write_spool_meta() {
    wb::RunMeta m = upsert_meta();
    json::object meta = m.to_json();
    meta["base_url"] = base_url_;
    meta["config"] = config_wire();
    meta["pid"] = static_cast<std::int64_t>(::getpid());
    meta["hostname"] = meta_.host;
    meta["history_base"] = base_history_;
    meta["events_base"] = base_events_;
    meta["output_base"] = base_output_;
    // Offsets in the segments are local; a run that asked to resume but has not reached W&B yet
    // does not know where it continues: `sync` asks the server. Lines below shift_until were
    // numbered before that answer and need step_shift and runtime_shift added.
    meta["resume"] = resume_;
    meta["base_known"] = resume_.empty() || resume_checked_;
    meta["shift_until"] = shift_until_;
    meta["step_shift"] = starting_step_;
    meta["runtime_shift"] = runtime_offset_;
    spool_->write(wb::join_url(spool_dir_, "meta.json"), json::serialize(meta));
    meta_written_ = true;
  }

  void leave_in_spool() {
    if (!spool_) return;
    spill();
    std::int64_t rows = history_.pending();
    std::int64_t events = events_.pending();
    std::int64_t output = output_.pending();
    try {
      write_spool_meta();
      spool_->write(wb::join_url(spool_dir_, "summary.json"), summary_text(true));
      spool_->write(wb::join_url(spool_dir_, "exit.json"), json::serialize(json::object{{"exitcode", exit_code_}}));
    } catch (const std::exception& e) {
      report_ = std::string("could not send the run to W&B and cannot spool it: ") + e.what();
      return;
    }
    std::string why = !net_disabled_.empty() ? net_disabled_ : "W&B at " + base_url_ + " did not answer within finalize_timeout_s=" +
                                                                    wb::number_text(finalize_timeout_);
    std::string lost_art;
    if (!my_jobs_.empty()) lost_art = "; " + std::to_string(my_jobs_.size()) + " model artifact upload(s) were not done";
    std::string files = spooled_files_.empty() ? "" : std::to_string(spooled_files_.size()) + " media files, ";
    report_ = "not sent (" + why + "): " + std::to_string(rows) + " history rows, " + std::to_string(events) +
              " system-metric rows, " + std::to_string(output) + " console lines, " + files + "the summary and the exit code" +
              lost_art + ". They are kept in " + spool_dir_ + " and sent at the next start of a wandb logger with spool_dir " +
              spool_root_ + ", or by `ember wandb sync " +
              spool_dir_ + "`";
  }

  // Runs other processes left in the spool root (a W&B outage, a wrong key): upload them now.
  void sync_leftover_spools() {
    std::vector<std::string> dirs;
    const bool local = !wb::local_path_of(spool_root_).empty();
    // Only a spool root that is ours and private: anything in a shared one may have been planted
    // to be uploaded with this user's key.
    if (local && !wb::is_private_dir(spool_root_)) return;
    try {
      dirs = spool_->list(spool_root_);
    } catch (const std::exception&) {
      return;
    }
    for (const auto& name : dirs) {
      if (name.rfind("run-", 0) != 0) continue;
      std::string dir = wb::join_url(spool_root_, name);
      if (dir == spool_dir_) continue;
      if (local && !wb::is_private_dir(dir)) {
        say(EMBER_LOG_WARN, "skipping spool directory " + dir + ": not a directory of yours with mode 0700; not sent");
        continue;
      }
      try {
        auto meta_text = spool_->read(wb::join_url(dir, "meta.json"));
        if (!meta_text) continue;
        json::object meta = json::parse(*meta_text).as_object();
        std::string base = meta.if_contains("base_url") ? std::string(meta.at("base_url").as_string()) : "";
        if (base != base_url_) continue;
        auto pid = static_cast<pid_t>(meta.at("pid").to_number<std::int64_t>());
        // EPERM: the process exists but is another user's; it is alive, not a leftover.
        bool alive = pid == ::getpid() ? is_live(dir) : (::kill(pid, 0) == 0 || errno == EPERM);
        if (meta.at("hostname").as_string() == meta_.host && alive) continue;  // still running
        std::vector<std::string> used;
        wb::RunData d = wb::read_spool_dir(*spool_, dir, &used, nullptr);
        const std::size_t rows = d.history.size();
        const std::string id = d.meta.run_id;
        wb::upload_run(*api_, std::move(d));
        for (const auto& f : used) spool_->remove(wb::join_url(dir, f));
        say(EMBER_LOG_INFO, "sent run " + id + " left in the spool " + dir + " (" + std::to_string(rows) +
                                " history rows)");
      } catch (const wb::ApiError& e) {
        if (e.kind() == wb::Failure::auth) throw;
        say(EMBER_LOG_WARN, "could not send the spooled run in " + dir + ": " + e.what() + "; it stays there");
        if (e.kind() == wb::Failure::retryable) throw;
      } catch (const std::exception& e) {
        say(EMBER_LOG_WARN, "skipping spool directory " + dir + ": " + e.what());
      }
    }
  }

  // ---- model artifacts ------------------------------------------------------------------------
  std::string read_url(const std::string& url) {
    auto bytes = store_->read(url);
    if (!bytes) throw std::runtime_error("no such object: " + url);
    return *bytes;
  }

  struct Index {
    std::string best, last, monitor;
    json::value best_score;
    std::vector<std::tuple<std::string, json::value, std::int64_t>> top;  // url, score, step
  };
  std::optional<Index> read_index(const std::string& dir) {
    auto text = store_->read(wb::join_url(dir, "checkpoints.json"));
    if (!text) return std::nullopt;
    json::object o = json::parse(*text).as_object();
    Index ix;
    auto s = [&](const char* k) {
      auto* v = o.if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    ix.best = s("best"), ix.last = s("last"), ix.monitor = s("monitor");
    if (auto* b = o.if_contains("best_score")) ix.best_score = *b;
    if (auto* t = o.if_contains("top_k"); t && t->is_array())
      for (const auto& e : t->as_array())
        ix.top.emplace_back(std::string(e.at("url").as_string()), e.at("score"), e.at("step").to_number<std::int64_t>());
    return ix;
  }

  void log_checkpoint(const std::string& url, std::int64_t step, const std::optional<Index>& ix) {
    std::string bytes;
    try {
      bytes = read_url(url);
    } catch (const std::exception& e) {
      say(EMBER_LOG_WARN, "model artifact skipped: cannot read checkpoint " + url + ": " + e.what());
      return;
    }
    wb::ArtifactSpec spec;
    spec.name = artifact_name_;
    spec.files["model.ckpt"] = std::move(bytes);
    json::value score;
    bool best = false;
    if (ix) {
      best = ix->best == url;
      for (const auto& [u, sc, st] : ix->top)
        if (u == url || (url == ix->last && st == step && score.is_null())) score = sc;
      if (best) score = ix->best_score;
    }
    if (best) spec.aliases.push_back("best");
    auto slash = url.rfind('/');
    spec.metadata = json::object{{"score", score},
                                 {"monitor", ix && !ix->monitor.empty() ? json::value(ix->monitor) : json::value()},
                                 {"original_filename", slash == std::string::npos ? url : url.substr(slash + 1)},
                                 {"global_step", step},
                                 {"ModelCheckpoint", json::object{{"monitor", ix ? json::value(ix->monitor) : json::value()}}}};
    wb::LoggedArtifact a = wb::log_artifact(*api_, *run_, spec);
    uploaded_.push_back("model.ckpt");
    say(EMBER_LOG_INFO, "logged " + url + " as artifact " + artifact_name_ + (best ? " (aliases latest, best)" : " (alias latest)") +
                            (a.deduplicated ? ", already stored" : ""));
  }

  void run_artifact_job(const ArtifactJob& j) {
    std::optional<Index> ix = read_index(j.index_dir);
    if (!j.url.empty()) {
      log_checkpoint(j.url, j.step, ix);
      return;
    }
    // log_model=true: the top-k and last checkpoints at the end, oldest first, so that
    // "latest" lands on the newest and "best" on the best-scoring one.
    if (!ix) {
      say(EMBER_LOG_WARN, "log_model: no checkpoints.json in " + j.index_dir + "; no model artifact logged");
      return;
    }
    std::vector<std::pair<std::int64_t, std::string>> order;
    for (const auto& [u, sc, st] : ix->top) order.emplace_back(st, u);
    std::sort(order.begin(), order.end());
    if (!ix->last.empty()) {
      std::int64_t st = order.empty() ? 0 : order.back().first;
      bool dup = std::any_of(order.begin(), order.end(), [&](auto& p) { return p.second == ix->last; });
      if (!dup) order.emplace_back(st, ix->last);
    }
    // The best one last among equals would steal "latest"; log it before same-step siblings.
    for (const auto& [st, u] : order) log_checkpoint(u, st, ix);
  }

  // ---- console capture (wandb_console.hpp) -------------------------------------------------------
  // The training thread starts it with the run and stops it in finish(); the worker takes the lines.
  void start_console() {
    if (console_mode_ == "off") return;
    wb::ConsoleCapture::Options co;
    co.max_queue_bytes = max_queue_bytes_;
    std::string why;
    console_ = wb::ConsoleCapture::start(co, why);
    if (!console_) say(console_mode_ == "redirect" ? EMBER_LOG_WARN : EMBER_LOG_INFO, "console not captured: " + why);
  }

  // Lines become file_stream "output.log" lines (online) or OutputRawRecords (offline); online,
  // their text is also kept for the run file output.log, up to kConsoleLogMax.
  void take_console() {
    console_lines_.clear();
    console_->take(console_lines_);
    for (auto& l : console_lines_) {
      l.text = wb::strip_query_strings(l.text);  // a pre-signed URL printed by anyone stays out of W&B
      if (offline_) {
        write_record(wb::output_raw_record(l));
        continue;
      }
      output_.push(wb::console_wire_line(l));
      if (console_log_.size() + l.text.size() < kConsoleLogMax) console_log_.append(l.text).push_back('\n');
      else console_log_cut_ = true;
    }
  }

  void report_console() {
    if (!console_) return;
    if (auto d = console_->dropped_lines())
      log(EMBER_LOG_WARN, "console: " + std::to_string(d) + " of " + std::to_string(console_->captured_lines()) +
                              " captured lines dropped (not sent to W&B; the terminal got them): they came faster than the "
                              "worker took them, past max_queue_mb=" + wb::number_text(static_cast<double>(max_queue_bytes_) / (1 << 20)));
    if (console_log_cut_)
      log(EMBER_LOG_WARN, "console: the run file output.log stops at " + std::to_string(kConsoleLogMax >> 20) +
                              " MiB; file_stream carried every line");
  }

  // ---- offline ----------------------------------------------------------------------------------
  void run_offline() {
    std::string root = save_dir_.empty() ? (env("TMPDIR").empty() ? std::string("/tmp") : env("TMPDIR")) : save_dir_;
    if (root.rfind("file://", 0) == 0) root = root.substr(7);
    if (root.find("://") != std::string::npos)
      throw std::runtime_error("mode offline writes a local run directory; config key save_dir (or WANDB_DIR) must be a local path, got " + root);
    char ts[32];
    std::time_t t = static_cast<std::time_t>(start_unix_);
    std::strftime(ts, sizeof ts, "%Y%m%d_%H%M%S", std::localtime(&t));
    offline_dir_ = root + "/wandb/offline-run-" + ts + "-" + meta_.run_id;
    std::string files = offline_dir_ + "/files";
    std::error_code ec;
    std::filesystem::create_directories(files, ec);
    if (ec) throw std::runtime_error("cannot create " + files + ": " + ec.message());
    log_path_ = offline_dir_ + "/run-" + meta_.run_id + ".wandb";
    log_fd_ = std::fopen(log_path_.c_str(), "wb");
    if (!log_fd_) throw std::runtime_error("cannot create " + log_path_ + ": " + std::strerror(errno));
    buf_ = wb::txlog::file_header();
    file_offset_ = buf_.size();
    write_record(wb::empty_record(wb::kHeader));
    wb::RunInfo ri;
    ri.run_id = meta_.run_id, ri.entity = meta_.entity, ri.project = meta_.project, ri.group = meta_.group;
    ri.job_type = meta_.job_type, ri.display_name = meta_.display_name, ri.notes = meta_.notes, ri.host = meta_.host;
    ri.tags = meta_.tags;
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
    flush_log();
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
      if (stats_interval_ > 0 && Clock::now() - last_stats_ >= std::chrono::duration<double>(stats_interval_)) sample_stats();
      if (finishing) break;
      flush_log();
    }
    if (stats_interval_ > 0) sample_stats();
    double rt = std::chrono::duration<double>(Clock::now() - t0_).count();
    write_record(wb::exit_record(exit_code_, static_cast<std::int64_t>(rt)));
    std::string summary = summary_text(true);
    json::object so = wb::parse_line(summary).as_object();
    wb::Items items;
    for (const auto& kv : so) items.emplace_back(std::string(kv.key()), wb::line_text(kv.value()));
    write_record(wb::summary_record(items));
    write_record(wb::empty_record(wb::kFinal));
    write_record(wb::empty_record(wb::kFooter));
    flush_log();
    std::fclose(log_fd_);
    log_fd_ = nullptr;
    write_file("wandb-summary.json", summary);
    write_file("config.yaml", wb::config_yaml(wb::wrap_config(full_config())));
    completed_ = true;
    say(EMBER_LOG_INFO, "offline run " + meta_.run_id + " written to " + offline_dir_ + " (" + std::to_string(history_.next) +
                            " history rows); upload it with `ember wandb sync " + offline_dir_ + "`");
  }

  void offline_history(const std::string& line, std::int64_t step) {
    write_record(wb::history_record(wb::items_of_line(line), step));
  }

  void write_record(const std::string& rec) {
    wb::txlog::frame(buf_, file_offset_, rec);
    if (buf_.size() > (1u << 20)) flush_log();
  }

  void flush_log() {
    if (!log_fd_ || buf_.empty()) return;
    if (std::fwrite(buf_.data(), 1, buf_.size(), log_fd_) != buf_.size() || std::fflush(log_fd_) != 0)
      throw std::runtime_error("cannot write " + log_path_ + ": " + std::strerror(errno));
    buf_.clear();
  }

  void write_file(const std::string& name, const std::string& bytes) {
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

  // Config.
  bool online_ = false, offline_ = false, silent_ = false, verify_tls_ = true, sync_spool_ = true, allow_insecure_http_ = false;
  std::string console_mode_ = "auto";
  wb::RunMeta meta_;
  std::string resume_, save_dir_, base_url_, prefix_, artifact_name_, spool_root_, spool_dir_, ca_file_;
  std::string api_key_, netrc_path_;
  int log_model_ = 0;  // 0 false, 1 true, 2 "all"
  std::vector<wb::MetricDef> defs_;
  double finalize_timeout_ = 30, http_timeout_ = 30, retry_initial_ = 2, retry_max_ = 60, post_interval_ = -1,
         stats_interval_ = 30;
  std::size_t max_queue_bytes_ = 256u << 20;

  // wandb:// reads (any thread): the last file read, by artifact id and path.
  std::mutex cache_mu_;
  std::string cache_key_;
  std::shared_ptr<const std::string> cache_bytes_;

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
  std::string rows_;
  std::deque<MediaRow> media_rows_;  // one per kMediaRow header in rows_, in order
  std::uint64_t queued_rows_ = 0;
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
  std::string spare_rows_, post_body_;
  std::unique_ptr<wb::Api> api_;
  std::unique_ptr<HostStore> store_;  // checkpoints (any scheme the host has)
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
  // Offline.
  std::string offline_dir_, log_path_, buf_;
  std::uint64_t file_offset_ = 0;
  std::FILE* log_fd_ = nullptr;
};

}  // namespace

EMBER_PLUGIN(WandbLogger, "wandb", "1.1.0",
             "Weights & Biases logger (Lightning's WandbLogger): runs, metrics, media, summary, config, model artifacts, offline runs",
             kSchema)
