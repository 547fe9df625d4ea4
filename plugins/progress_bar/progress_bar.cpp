// progress_bar — Lightning's TQDMProgressBar look, on stderr:
//
//   Epoch 1/3:  45%|████▌     | 380/844 [00:04<00:05, 93.1it/s, train_loss=0.42, val_accuracy=0.86]
//
// On a terminal (isatty(stderr)) the line is redrawn in place with '\r', at most every
// refresh_rate seconds and always at the end of an epoch. Anywhere else (a CI log, a file) it
// prints whole lines: a few per epoch (plain_every_n_batches), one at each epoch end, and one
// "validation: ..." line after each validation run.
//
// The per-batch hook is the hot path: it reads a steady clock (terminal) or compares a counter
// (plain) and returns; it formats nothing and calls nothing in the host until a line is due.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using ember::plugin::str;
using ember::plugin::view;
using Clock = std::chrono::steady_clock;

constexpr const char* kId = "progress_bar";

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "enabled": {"type": "boolean", "default": true,
                "description": "false: print nothing"},
    "refresh_rate": {"type": "number", "minimum": 0, "maximum": 86400, "default": 0.1,
                     "description": "terminal: least seconds between redraws"},
    "plain_every_n_batches": {"type": "integer", "minimum": 0, "maximum": 9007199254740991, "default": 0,
                              "description": "not a terminal: a line every N batches; 0: four lines per epoch"},
    "max_metrics": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 6,
                    "description": "at most this many metrics on a line"},
    "metrics": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                "description": "names of the metrics to show, in order; empty: the callback metrics as logged"}
  }
})";

constexpr int kBarWidth = 10;
// When the epoch length is unknown and plain_every_n_batches is 0.
constexpr std::int64_t kPlainEveryUnknown = 100;

// tqdm's format_interval: MM:SS, or H:MM:SS from an hour on.
std::string format_interval(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  auto total = static_cast<long long>(seconds);
  long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buf[32];
  if (h)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, s);
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", m, s);
  return buf;
}

std::string format_rate(double per_second) {
  char buf[32];
  if (!(per_second > 0) || !std::isfinite(per_second)) return "?it/s";
  if (per_second < 1)
    std::snprintf(buf, sizeof buf, "%.2fs/it", 1.0 / per_second);
  else if (per_second < 10)
    std::snprintf(buf, sizeof buf, "%.2fit/s", per_second);
  else if (per_second < 100)
    std::snprintf(buf, sizeof buf, "%.1fit/s", per_second);
  else
    std::snprintf(buf, sizeof buf, "%.0fit/s", per_second);
  return buf;
}

// A bar of kBarWidth cells with eighth-block resolution, as tqdm draws it.
std::string format_bar(double fraction) {
  static const char* const partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  fraction = std::min(1.0, std::max(0.0, fraction));
  int eighths = static_cast<int>(fraction * kBarWidth * 8);
  int full = eighths / 8, rest = eighths % 8;
  std::string out;
  for (int i = 0; i < full; ++i) out += "█";
  int used = full;
  if (full < kBarWidth && rest) out += partial[rest], ++used;
  out.append(static_cast<size_t>(kBarWidth - used), ' ');
  return out;
}

// Display columns of UTF-8 text (every code point used here is one column wide).
size_t columns(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// The prefix of s that fits in width columns, cut on a code point boundary.
std::string_view fit(std::string_view s, size_t width) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == width) return s.substr(0, i);
      ++n;
    }
  }
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class ProgressBar : public ember::plugin::Plugin, public ember::plugin::Callbacks {
 public:
  ProgressBar(const ember_host_t* host, std::string_view config_json) : Plugin(host) {
    const ember::plugin::Config cfg(config_json, kId);
    enabled_ = cfg.boolean("enabled", enabled_);
    // Lightning's TQDMProgressBar disables itself on every rank but global rank 0.
    if (!is_global_zero()) enabled_ = false;
    refresh_rate_ = cfg.number("refresh_rate", refresh_rate_, 0);
    plain_every_cfg_ = cfg.integer("plain_every_n_batches", plain_every_cfg_, 0);
    max_metrics_ = cfg.integer("max_metrics", max_metrics_, 0);
    wanted_ = cfg.strings("metrics");
    refresh_ = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::min(refresh_rate_, 1e9)));
    tty_ = ::isatty(STDERR_FILENO) == 1;
  }

  // --- training ------------------------------------------------------------------------------
  void on_train_epoch_start(const ember_hook_args_t& args) override {
    if (!enabled_) return;
    ember_trainer_state_t st = state();
    epoch_ = args.epoch;
    max_epochs_ = st.max_epochs;
    total_ = st.num_training_batches;
    n_ = 0;
    seen_ = 0;
    start_ = Clock::now();
    in_epoch_ = true;
    if (plain_every_cfg_ > 0)
      plain_every_ = plain_every_cfg_;
    else if (total_ > 0)
      plain_every_ = std::max<std::int64_t>(1, (total_ + 3) / 4);
    else
      plain_every_ = kPlainEveryUnknown;
    if (tty_) {
      width_ = terminal_width();
      draw(train_line(start_), false);
      next_draw_ = start_ + refresh_;
    }
  }

  void on_train_batch_end(const ember_hook_args_t& args) override {
    if (!enabled_ || !in_epoch_) return;
    n_ = args.batch_idx + 1;
    ++seen_;
    if (tty_) {
      Clock::time_point now = Clock::now();
      if (now < next_draw_) return;
      next_draw_ = now + refresh_;
      draw(train_line(now), false);
    } else {
      if (n_ % plain_every_ != 0 || n_ == total_) return;
      draw(train_line(Clock::now()), true);
    }
  }

  void on_train_epoch_end(const ember_hook_args_t&) override {
    if (!enabled_ || !in_epoch_) return;
    in_epoch_ = false;
    draw(train_line(Clock::now()), true);
  }

  // --- validation and test -------------------------------------------------------------------
  void on_validation_start(const ember_hook_args_t& args) override { eval_start(args); }
  void on_test_start(const ember_hook_args_t& args) override { eval_start(args); }
  void on_validation_batch_end(const ember_hook_args_t& args) override {
    eval_batch(args, "Validation");
  }
  void on_test_batch_end(const ember_hook_args_t& args) override { eval_batch(args, "Testing"); }

  void on_validation_end(const ember_hook_args_t&) override {
    if (!enabled_ || !eval_active_) return;
    eval_active_ = false;
    if (tty_ && in_epoch_) {
      // Lightning folds validation results into the training bar's metrics.
      draw(train_line(Clock::now()), false);
      return;
    }
    draw("validation: " + metrics_text("val"), true);
  }

  void on_test_end(const ember_hook_args_t&) override {
    if (!enabled_ || !eval_active_) return;
    eval_active_ = false;
    draw("test: " + metrics_text("test"), true);
  }

  // A failure message should start on a line of its own.
  void on_exception(const ember_hook_args_t&) override {
    if (!enabled_ || !tty_ || last_len_ == 0) return;
    std::fputc('\n', stderr);
    std::fflush(stderr);
    last_len_ = 0;
  }

 private:
  ember_trainer_state_t state() const {
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    if (host().get_state(host().ctx, &st) != EMBER_OK) {
      st.max_epochs = st.num_training_batches = st.num_val_batches = -1;
    }
    return st;
  }

  static size_t terminal_width() {
    struct winsize ws {};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    if (const char* c = std::getenv("COLUMNS")) {
      long n = std::strtol(c, nullptr, 10);
      if (n > 0) return static_cast<size_t>(n);
    }
    return 80;
  }

  void eval_start(const ember_hook_args_t& args) {
    if (!enabled_) return;
    ember_trainer_state_t st = state();
    // Lightning's bar shows the sanity check too; here it stays quiet: its metrics are discarded.
    eval_active_ = !(st.sanity_checking || args.stage == EMBER_STAGE_SANITY_CHECK);
    if (!eval_active_) return;
    eval_total_ = args.stage == EMBER_STAGE_TEST ? st.num_test_batches : st.num_val_batches;
    eval_seen_ = 0;
    eval_start_ = Clock::now();
    eval_next_draw_ = eval_start_ + refresh_;
    if (tty_ && !in_epoch_) width_ = terminal_width();
  }

  void eval_batch(const ember_hook_args_t& args, const char* label) {
    if (!enabled_ || !eval_active_ || !tty_) return;
    ++eval_seen_;
    Clock::time_point now = Clock::now();
    if (now < eval_next_draw_) return;
    eval_next_draw_ = now + refresh_;
    std::string line = std::string(label) + ": ";
    line += progress(args.batch_idx + 1, eval_total_, eval_seen_, now - eval_start_);
    line += "]";
    draw(line, false);
  }

  // "45%|████▌     | 380/844 [00:04<00:05, 93.1it/s" (no closing bracket), or without a known
  // total "380it [00:04, 93.1it/s".
  static std::string progress(std::int64_t n, std::int64_t total, std::int64_t seen,
                              Clock::duration elapsed_d) {
    const double elapsed = std::chrono::duration<double>(elapsed_d).count();
    const double rate = elapsed > 0 && seen > 0 ? static_cast<double>(seen) / elapsed : 0;
    char buf[64];
    std::string out;
    if (total > 0) {
      const double frac = static_cast<double>(n) / static_cast<double>(total);
      std::snprintf(buf, sizeof buf, "%3d%%|",
                    static_cast<int>(std::floor(std::min(frac, 1.0) * 100)));
      out += buf;
      out += format_bar(frac);
      std::snprintf(buf, sizeof buf, "| %lld/%lld [", static_cast<long long>(n),
                    static_cast<long long>(total));
      out += buf;
      out += format_interval(elapsed);
      out += '<';
      out += rate > 0
                 ? format_interval(static_cast<double>(std::max<std::int64_t>(0, total - n)) / rate)
                 : std::string("?");
    } else {
      std::snprintf(buf, sizeof buf, "%lldit [", static_cast<long long>(n));
      out += buf;
      out += format_interval(elapsed);
    }
    out += ", ";
    out += format_rate(rate);
    return out;
  }

  std::string train_line(Clock::time_point now) const {
    std::string line = "Epoch " + std::to_string(epoch_ + 1);
    if (max_epochs_ > 0) line += "/" + std::to_string(max_epochs_);
    line += ": ";
    line += progress(n_, total_, seen_, now - start_);
    std::string m = metrics_text("");
    if (!m.empty()) line += ", " + m;
    line += "]";
    return line;
  }

  // "name=value, ..." of the metrics to show: the configured names, or else the callback
  // metrics whose names start with prefix (all when none does), without the _step/_epoch twins
  // of a metric shown under its own name. Values with 4 significant digits.
  std::string metrics_text(std::string_view prefix) const {
    std::vector<std::pair<std::string, double>> shown;
    if (!wanted_.empty()) {
      for (const auto& name : wanted_) {
        double v;
        if (host().get_metric(host().ctx, str(name), &v) == EMBER_OK) shown.emplace_back(name, v);
      }
    } else {
      std::vector<std::pair<std::string, double>> all;
      // The training bar shows the metrics logged with prog_bar=True, as Lightning's; the
      // validation/test summary lines show that stage's metrics. A host without the prog_bar
      // list (an older table) gets all callback metrics.
      const bool use_progress_list =
          prefix.empty() &&
          host().struct_size >= offsetof(ember_host_t, list_progress_metrics) + sizeof(void*) &&
          host().list_progress_metrics;
      (use_progress_list ? host().list_progress_metrics : host().list_metrics)(
          host().ctx,
          [](void* user, ember_str_t name, double value) -> int32_t {
            static_cast<std::vector<std::pair<std::string, double>>*>(user)->emplace_back(
                std::string(view(name)), value);
            return 0;
          },
          &all);
      auto has = [&](std::string_view n) {
        for (const auto& kv : all)
          if (kv.first == n) return true;
        return false;
      };
      auto twin = [&](std::string_view n) {
        for (std::string_view suffix : {"_step", "_epoch"})
          if (ends_with(n, suffix) && has(n.substr(0, n.size() - suffix.size()))) return true;
        return false;
      };
      bool any_prefixed = false;
      if (!prefix.empty())
        for (const auto& kv : all)
          if (kv.first.compare(0, prefix.size(), prefix) == 0) any_prefixed = true;
      for (const auto& kv : all) {
        if (twin(kv.first)) continue;
        if (any_prefixed && kv.first.compare(0, prefix.size(), prefix) != 0) continue;
        shown.push_back(kv);
      }
    }
    std::string out;
    char buf[32];
    std::int64_t count = 0;
    for (const auto& kv : shown) {
      if (count++ == max_metrics_) break;
      if (!out.empty()) out += ", ";
      std::snprintf(buf, sizeof buf, "%.4g", kv.second);
      out += kv.first + "=" + buf;
    }
    return out;
  }

  // Terminal: redraw the current line in place (newline ends it). Otherwise: a whole line.
  void draw(const std::string& text, bool newline) {
    std::string out;
    if (tty_) {
      std::string_view shown = width_ > 1 ? fit(text, width_ - 1) : std::string_view(text);
      size_t len = columns(shown);
      out += '\r';
      out += shown;
      if (len < last_len_) out.append(last_len_ - len, ' ');
      last_len_ = newline ? 0 : len;
    } else {
      out = text;
    }
    if (newline || !tty_) out += '\n';
    std::fwrite(out.data(), 1, out.size(), stderr);
    std::fflush(stderr);
  }

  // Config.
  bool enabled_ = true;
  double refresh_rate_ = 0.1;
  std::int64_t plain_every_cfg_ = 0, max_metrics_ = 6;
  std::vector<std::string> wanted_;
  Clock::duration refresh_{};
  bool tty_ = false;
  size_t width_ = 80;

  // The training bar.
  bool in_epoch_ = false;
  std::int64_t epoch_ = 0, max_epochs_ = -1, total_ = -1, n_ = 0, seen_ = 0, plain_every_ = 1;
  Clock::time_point start_{}, next_draw_{};
  size_t last_len_ = 0;

  // The validation / test bar (terminal only) and its end line.
  bool eval_active_ = false;
  std::int64_t eval_total_ = -1, eval_seen_ = 0;
  Clock::time_point eval_start_{}, eval_next_draw_{};
};

}  // namespace

EMBER_PLUGIN(ProgressBar, "progress_bar", "1.0.0",
             "Lightning's TQDMProgressBar: epoch, step/total, it/s, ETA and metrics on stderr",
             kSchema)
