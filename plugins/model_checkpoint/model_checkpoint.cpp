// model_checkpoint: Lightning's ModelCheckpoint, writing through the host's URL space.
//
// Differences from Lightning, on purpose: save_last defaults to true and always writes
// last.ckpt; an index object (checkpoints.json) next to the files records best / last / top-k
// with their scores, so ckpt_path="best"/"last" never depends on modification times. Every
// write is atomic (the host commits checkpoints by rename or multipart completion); the index is
// written after the checkpoints it names and before evicted ones are removed, so a crash at any
// point leaves an index whose every checkpoint exists and loads.
#include <ember/plugin.hpp>
#include <ember/plugin_config.hpp>
#include <ember/plugin_io.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace json = boost::json;
using ember::plugin::host_error;
using ember::plugin::join_url;
using ember::plugin::str;
using ember::plugin::view;

constexpr const char* kId = "model_checkpoint";

constexpr const char* kSchema = R"({
  "type": "object", "additionalProperties": false,
  "properties": {
    "dirpath": {"type": ["string", "null"], "default": null},
    "filename": {"type": "string", "minLength": 1, "default": "{epoch}-{step}"},
    "monitor": {"type": ["string", "null"], "default": null},
    "mode": {"enum": ["min", "max"], "default": "min"},
    "save_top_k": {"type": "integer", "minimum": -1, "maximum": 9007199254740991, "default": 1},
    "save_last": {"type": "boolean", "default": true},
    "every_n_train_steps": {"type": "integer", "minimum": 0, "maximum": 9007199254740991, "default": 0},
    "every_n_epochs": {"type": "integer", "minimum": 0, "maximum": 9007199254740991, "default": 1},
    "save_weights_only": {"type": "boolean", "default": false},
    "auto_insert_metric_name": {"type": "boolean", "default": true},
    "verbose": {"type": "boolean", "default": false}
  }
})";

struct Saved {
  std::string url;
  double score;  // NaN when there is no monitor
  std::int64_t epoch, step;
};

class ModelCheckpoint : public ember::plugin::Plugin,
                        public ember::plugin::Callbacks,
                        public ember::plugin::State {
 public:
  ModelCheckpoint(const ember_host_t* host, std::string_view config) : Plugin(host) {
    const ember::plugin::Config cfg(config, kId);
    dirpath_ = cfg.optional_string("dirpath");
    filename_ = cfg.string("filename", "{epoch}-{step}");
    monitor_ = cfg.optional_string("monitor");
    max_mode_ = cfg.one_of("mode", "min", {"min", "max"}) == "max";
    top_k_ = cfg.integer("save_top_k", top_k_, -1);
    save_last_ = cfg.boolean("save_last", save_last_);
    every_n_steps_ = cfg.integer("every_n_train_steps", every_n_steps_, 0);
    every_n_epochs_ = cfg.integer("every_n_epochs", every_n_epochs_, 0);
    weights_only_ = cfg.boolean("save_weights_only", weights_only_);
    auto_insert_ = cfg.boolean("auto_insert_metric_name", auto_insert_);
    verbose_ = cfg.boolean("verbose", verbose_);
    if (!monitor_ && top_k_ > 1)
      throw std::invalid_argument(
          "save_top_k=" + std::to_string(top_k_) +
          " needs a monitor (config key monitor); without one only the latest can be kept");
  }

  void on_train_batch_end(const ember_hook_args_t& a) override {
    if (every_n_steps_ <= 0 || a.global_step == 0 || a.global_step % every_n_steps_ != 0) return;
    if (a.global_step == last_step_saved_) return;
    save(a);
  }
  void on_train_epoch_end(const ember_hook_args_t& a) override {
    if (every_n_epochs_ <= 0 || every_n_steps_ > 0) return;
    if ((a.epoch + 1) % every_n_epochs_ != 0) return;
    if (a.global_step == last_step_saved_) return;
    save(a);
  }

  std::string state_dict() override {
    return json::serialize(json::object{{"monitor", monitor_json()},
                                        {"best_model_path", best_url()},
                                        {"best_model_score", best_score_json()},
                                        {"last_model_path", last_url_},
                                        {"top_k", top_k_json()},
                                        {"last_step_saved", last_step_saved_}});
  }
  void load_state_dict(std::string_view text) override {
    auto v = json::parse(text).as_object();
    saved_.clear();
    for (auto& e : v["top_k"].as_array()) {
      auto& o = e.as_object();
      double score = o.at("score").is_null() ? std::nan("") : o.at("score").to_number<double>();
      saved_.push_back({std::string(o.at("url").as_string()), score, o.at("epoch").to_number<std::int64_t>(),
                        o.at("step").to_number<std::int64_t>()});
    }
    last_url_ = std::string(v["last_model_path"].as_string());
    last_step_saved_ = v["last_step_saved"].to_number<std::int64_t>();
  }

 private:
  static json::value score_json(double s) { return std::isfinite(s) ? json::value(s) : json::value(); }

  std::string dir() {
    if (dirpath_) return *dirpath_;
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    host().get_state(host().ctx, &st);
    std::string root(view(st.default_root_dir));
    if (root.empty()) root = ".";
    return join_url(root, "checkpoints");
  }

  // "{epoch}-{val_loss:.2f}" -> "epoch=3-val_loss=0.52" (auto_insert_metric_name).
  std::string format_name(const ember_hook_args_t& a) {
    std::string out;
    std::size_t i = 0;
    while (i < filename_.size()) {
      char ch = filename_[i];
      if (ch != '{') {
        out += ch;
        ++i;
        continue;
      }
      auto close = filename_.find('}', i);
      if (close == std::string::npos)
        throw std::invalid_argument("filename '" + filename_ + "' has an unclosed '{'");
      std::string field = filename_.substr(i + 1, close - i - 1);
      std::string spec;
      if (auto colon = field.find(':'); colon != std::string::npos) spec = field.substr(colon + 1), field = field.substr(0, colon);
      double value;
      bool integral = false;
      if (field == "epoch") value = static_cast<double>(a.epoch), integral = true;
      else if (field == "step") value = static_cast<double>(a.global_step), integral = true;
      else {
        double v;
        if (host().get_metric(host().ctx, str(field), &v) != EMBER_OK) v = std::nan("");
        value = v;
      }
      char buf[64];
      if (!spec.empty()) {
        std::string f = "%" + spec;
        if (spec.back() == 'd') std::snprintf(buf, sizeof buf, f.c_str(), static_cast<long long>(value));
        else std::snprintf(buf, sizeof buf, f.c_str(), value);
      } else if (integral) {
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(value));
      } else {
        std::snprintf(buf, sizeof buf, "%.4f", value);
      }
      if (auto_insert_) out += field + "=";
      out += buf;
      i = close + 1;
    }
    return out;
  }

  const Saved* best() const {
    const Saved* b = nullptr;
    for (auto& s : saved_)
      if (std::isfinite(s.score) && (!b || better(s.score, b->score))) b = &s;
    return b;
  }
  std::string best_url() const {
    if (const Saved* b = best()) return b->url;
    return saved_.empty() ? std::string() : saved_.back().url;
  }
  bool better(double x, double y) const { return max_mode_ ? x > y : x < y; }

  std::optional<double> monitored() {
    if (!monitor_) return std::nullopt;
    double v;
    if (host().get_metric(host().ctx, str(*monitor_), &v) == EMBER_OK) return v;
    std::string names;
    host().list_metrics(
        host().ctx,
        [](void* u, ember_str_t n, double) -> int32_t {
          auto* s = static_cast<std::string*>(u);
          *s += (s->empty() ? "" : ", ") + std::string(view(n));
          return 0;
        },
        &names);
    throw std::runtime_error("monitor='" + *monitor_ +
                             "' was never logged; logged metrics are: " + (names.empty() ? "(none)" : names));
  }

  void write_checkpoint(const std::string& url) {
    if (host().save_checkpoint(host().ctx, str(url), weights_only_ ? 1 : 0) != EMBER_OK)
      throw std::runtime_error("cannot save " + url + ": " + host_error(host()));
    if (verbose_) log(EMBER_LOG_INFO, "saved " + url);
  }
  void remove(const std::string& url) {
    ember_status_t rc = host().remove(host().ctx, str(url));
    if (rc != EMBER_OK && rc != EMBER_E_NOT_FOUND)
      log(EMBER_LOG_WARN, "cannot remove " + url + ": " + host_error(host()));
  }

  void save(const ember_hook_args_t& a) {
    ember_trainer_state_t st{};
    st.struct_size = sizeof st;
    host().get_state(host().ctx, &st);
    if (st.sanity_checking) return;
    const std::string d = dir();
    std::optional<double> score = monitored();
    const double s = score ? *score : std::nan("");
    if (top_k_ != 0) {
      bool keep;
      if (!monitor_) {
        keep = true;
      } else if (!std::isfinite(s)) {
        keep = false;  // a NaN/inf score is never best and never enters the top-k
        log(EMBER_LOG_WARN, "monitor " + *monitor_ + " is not finite; not saving a top-k checkpoint");
      } else if (top_k_ < 0 || static_cast<std::int64_t>(saved_.size()) < top_k_) {
        keep = true;
      } else {
        keep = better(s, worst()->score);
      }
      if (keep) {
        std::string url = unique_url(d, format_name(a));
        write_checkpoint(url);
        saved_.push_back({url, s, a.epoch, a.global_step});
        trim();
      }
    }
    if (save_last_) {
      last_url_ = join_url(d, "last.ckpt");
      write_checkpoint(last_url_);
    }
    last_step_saved_ = a.global_step;
    // The index first, then the evicted files: a crash in between leaves an orphan file, never
    // an index naming a removed checkpoint.
    write_index(d);
    for (const auto& url : evicted_) remove(url);
    evicted_.clear();
  }

  std::string unique_url(const std::string& d, const std::string& name) {
    std::string url = join_url(d, name + ".ckpt");
    for (int v = 1; std::any_of(saved_.begin(), saved_.end(), [&](const Saved& x) { return x.url == url; }); ++v)
      url = join_url(d, name + "-v" + std::to_string(v) + ".ckpt");
    return url;
  }

  const Saved* worst() const {
    const Saved* w = nullptr;
    for (auto& s : saved_)
      if (!w || better(w->score, s.score)) w = &s;
    return w;
  }

  // Keep top_k: without a monitor the newest; with one the best scores.
  void trim() {
    if (top_k_ < 0) return;
    while (static_cast<std::int64_t>(saved_.size()) > top_k_) {
      auto victim = saved_.begin();
      if (monitor_)
        for (auto it = saved_.begin(); it != saved_.end(); ++it)
          if (better(victim->score, it->score)) victim = it;
      evicted_.push_back(victim->url);
      saved_.erase(victim);
    }
  }

  // Parts shared by the checkpoint state and the index.
  json::value monitor_json() const { return monitor_ ? json::value(*monitor_) : json::value(); }
  json::value best_score_json() const { return best() ? score_json(best()->score) : json::value(); }
  json::array top_k_json() const {
    json::array top;
    for (auto& s : saved_)
      top.push_back(json::object{{"url", s.url}, {"score", score_json(s.score)}, {"epoch", s.epoch}, {"step", s.step}});
    return top;
  }

  void write_index(const std::string& d) {
    json::object index{{"best", best_url()},
                       {"best_score", best_score_json()},
                       {"last", last_url_},
                       {"monitor", monitor_json()},
                       {"mode", max_mode_ ? "max" : "min"},
                       {"top_k", top_k_json()}};
    ember::plugin::write_object(host(), join_url(d, "checkpoints.json"), json::serialize(index));
  }

  std::optional<std::string> dirpath_, monitor_;
  std::string filename_, last_url_;
  bool max_mode_ = false, save_last_ = true, weights_only_ = false, auto_insert_ = true, verbose_ = false;
  std::int64_t top_k_ = 1, every_n_steps_ = 0, every_n_epochs_ = 1, last_step_saved_ = -1;
  std::vector<Saved> saved_;
  std::vector<std::string> evicted_;  // removed after the index no longer names them
};

}  // namespace

EMBER_PLUGIN(ModelCheckpoint, "model_checkpoint", "1.0.0",
             "Lightning's ModelCheckpoint: top-k by a monitored metric, last.ckpt, an index of best/last",
             kSchema)
