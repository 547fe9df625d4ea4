// model_checkpoint: Lightning's ModelCheckpoint, writing through the host's URL space.
//
// Differences from Lightning, on purpose: save_last defaults to true and always writes
// last.ckpt; an index object (checkpoints.json) next to the files records best / last / top-k
// with their scores, so ckpt_path="best"/"last" never depends on modification times. Every
// write is atomic (the host commits checkpoints by rename or multipart completion); the index is
// written after the checkpoints it names and before evicted ones are removed, so a crash at any
// point leaves an index whose every checkpoint exists and loads.
#include <ember/sdk/plugin.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <ember/sdk/plugin_io.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
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

// --- the filename template -----------------------------------------------------------------
// "{epoch}-{val_loss:.2f}" is parsed once, at config time. A field's spec is a subset of
// Python's format-spec mini-language, [[fill]align][sign][0][width][.precision][type] with type
// d, f, e, g or %, checked against that grammar and formatted here: the user's text never
// reaches printf (a spec used to become a printf format, so "%s%n" crashed or wrote memory).
struct FieldSpec {
  bool given = false;  // false: "{name}" (integers as such, metrics with 4 decimals)
  char fill = ' ';
  char align = 0;  // '<' '>' '^' '=' or 0 (right)
  char sign = '-';
  int width = 0;
  int precision = -1;
  char type = 0;  // 'd' 'f' 'e' 'g' '%' or 0
};

struct TemplatePart {
  std::string literal;  // text before the field
  std::string field;    // empty: no field (the template's tail)
  FieldSpec spec;
};

constexpr int kMaxWidth = 100, kMaxPrecision = 30;

// Throws std::invalid_argument naming the config key, the spec and what was expected.
FieldSpec parse_spec(const std::string& spec, const std::string& field, const std::string& tmpl) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument(
        "config key filename: format spec '" + spec + "' of field '" + field + "' in '" + tmpl +
        "' is not allowed (" + why + "); expected [[fill]align][sign][0][width][.precision][type] with type d, f, e, g or %, "
        "width <= " + std::to_string(kMaxWidth) + ", precision <= " + std::to_string(kMaxPrecision) +
        ", as in Python's format()");
  };
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  auto digits = [&](std::size_t& i, int max, const char* what) {
    std::size_t start = i;
    long v = 0;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
      v = v * 10 + (spec[i] - '0');
      if (v > max) throw bad(std::string(what) + " above " + std::to_string(max));
      ++i;
    }
    return i == start ? -1 : static_cast<int>(v);
  };
  FieldSpec f;
  f.given = true;
  std::size_t i = 0;
  if (spec.size() >= 2 && is_align(spec[1])) {
    f.fill = spec[0];
    // A fill character lands in the file name: printable, and no path separator.
    if (f.fill < 0x20 || f.fill > 0x7e || f.fill == '/' || f.fill == '\\')
      throw bad("fill must be a printable character other than '/' and '\\'");
    f.align = spec[1];
    i = 2;
  } else if (!spec.empty() && is_align(spec[0])) {
    f.align = spec[0];
    i = 1;
  }
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) f.sign = spec[i++];
  if (i < spec.size() && spec[i] == '0') {  // Python's '0': zero padding after the sign
    if (!f.align) f.fill = '0', f.align = '=';
    ++i;
  }
  if (int w = digits(i, kMaxWidth, "width"); w >= 0) f.width = w;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    f.precision = digits(i, kMaxPrecision, "precision");
    if (f.precision < 0) throw bad("'.' must be followed by a precision");
  }
  if (i < spec.size() && spec[i] != '\0' && std::strchr("dfeg%", spec[i])) f.type = spec[i++];
  if (i != spec.size()) throw bad("unexpected '" + spec.substr(i) + "'");
  if (f.type == 'd' && f.precision >= 0) throw bad("type d takes no precision");
  return f;
}

std::vector<TemplatePart> parse_template(const std::string& tmpl) {
  std::vector<TemplatePart> parts(1);
  std::size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] != '{') {
      parts.back().literal += tmpl[i++];
      continue;
    }
    auto close = tmpl.find('}', i);
    if (close == std::string::npos)
      throw std::invalid_argument("config key filename: '" + tmpl + "' has an unclosed '{'");
    std::string field = tmpl.substr(i + 1, close - i - 1);
    std::string spec;
    bool has_spec = false;
    if (auto colon = field.find(':'); colon != std::string::npos)
      spec = field.substr(colon + 1), field.resize(colon), has_spec = true;
    if (field.empty())
      throw std::invalid_argument("config key filename: '" + tmpl + "' has a field without a name");
    if (field.find('{') != std::string::npos)
      throw std::invalid_argument("config key filename: field name '" + field + "' in '" + tmpl + "' holds a '{'");
    parts.back().field = field;
    if (has_spec) parts.back().spec = parse_spec(spec, field, tmpl);
    parts.emplace_back();
    i = close + 1;
  }
  return parts;
}

// printf of one double with a constant format (never user text) into a string of any length.
std::string print_double(const char* fmt, int precision, double v) {
  int n = std::snprintf(nullptr, 0, fmt, precision, v);
  std::string out(static_cast<std::size_t>(std::max(n, 0)) + 1, '\0');
  std::snprintf(out.data(), out.size(), fmt, precision, v);
  out.resize(static_cast<std::size_t>(std::max(n, 0)));
  return out;
}

// A value formatted as Python's format(value, spec) would for the accepted subset; a NaN or an
// infinity prints as nan / inf whatever the type (Python's float does the same for f/e/g/%).
std::string format_value(double v, bool integral, const FieldSpec& s) {
  if (!s.given) return integral ? print_double("%.*f", 0, v) : print_double("%.*f", 4, v);
  char type = s.type ? s.type : integral ? 'd' : s.precision >= 0 ? 'g' : 'f';
  const int prec = s.precision >= 0 ? s.precision : (s.type ? 6 : 4);
  const bool negative = std::signbit(v) && !std::isnan(v);
  const double mag = std::fabs(v);
  std::string body;
  if (!std::isfinite(mag)) body = std::isnan(mag) ? "nan" : "inf";
  else if (type == 'd') body = print_double("%.*f", 0, std::trunc(mag));
  else if (type == 'f') body = print_double("%.*f", prec, mag);
  else if (type == 'e') body = print_double("%.*e", prec, mag);
  else if (type == 'g') body = print_double("%.*g", prec == 0 ? 1 : prec, mag);
  else body = print_double("%.*f", prec, mag * 100) + "%";
  std::string sign = negative ? "-" : s.sign == '+' ? "+" : s.sign == ' ' ? " " : "";
  const std::size_t len = sign.size() + body.size();
  if (static_cast<std::size_t>(s.width) <= len) return sign + body;
  const std::size_t pad = static_cast<std::size_t>(s.width) - len;
  switch (s.align) {
    case '<': return sign + body + std::string(pad, s.fill);
    case '^': return std::string(pad / 2, s.fill) + sign + body + std::string(pad - pad / 2, s.fill);
    case '=': return sign + std::string(pad, s.fill) + body;
    default: return std::string(pad, s.fill) + sign + body;
  }
}

class ModelCheckpoint : public ember::plugin::Plugin,
                        public ember::plugin::Callbacks,
                        public ember::plugin::State,
                        public ember::plugin::CheckpointIndex {
 public:
  ModelCheckpoint(const ember_host_t* host, std::string_view config) : Plugin(host) {
    const ember::plugin::Config cfg(config, kId);
    dirpath_ = cfg.optional_string("dirpath");
    filename_ = cfg.string("filename", "{epoch}-{step}");
    filename_parts_ = parse_template(filename_);
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

  // ckpt_path "last" / "best": from this instance's own index (dirpath, or
  // default_root_dir/checkpoints), readable before fit starts.
  std::string resolve_checkpoint(std::string_view which) override {
    if (which != "last" && which != "best")
      throw ember::plugin::Error("no checkpoint named '" + std::string(which) + "' (known: last, best)", EMBER_E_INVALID);
    const std::string url = join_url(dir(), "checkpoints.json");
    std::string err;
    auto text = read_text(url, &err);
    if (!text) throw ember::plugin::NotFound("no checkpoint index at " + url + " (" + err + ")");
    json::value index;
    try {
      index = json::parse(*text);
    } catch (const std::exception& e) {
      throw ember::plugin::Error("the index " + url + " is not JSON: " + e.what(), EMBER_E_INVALID);
    }
    const json::value* v = index.is_object() ? index.as_object().if_contains(which) : nullptr;
    if (!v || !v->is_string() || v->as_string().empty())
      throw ember::plugin::NotFound("the index " + url + " has no '" + std::string(which) + "' checkpoint");
    return std::string(v->as_string());
  }

  std::string state_dict() override {
    return json::serialize(json::object{{"dirpath", dir()},
                                        {"monitor", monitor_json()},
                                        {"best_model_path", best_url()},
                                        {"best_model_score", best_score_json()},
                                        {"last_model_path", last_url_},
                                        {"top_k", entries_json(saved_)},
                                        {"history", entries_json(history_)},
                                        {"last_step_saved", last_step_saved_}});
  }

  // Lightning's rule (ModelCheckpoint.load_state_dict): the top-k list is taken back only when
  // the checkpoint was written with this dirpath. Stricter here, because a checkpoint is input
  // and its URLs are deleted when they fall out of the top-k: an entry is taken back (and may
  // later be removed) only if it is a .ckpt directly inside this dirpath *and* this dirpath's own
  // index (checkpoints.json, written by the instance that saved it) lists it. Everything else
  // (another run's directory, an edited state naming any other file) is kept as history: shown
  // in the index, never best, never removed.
  void load_state_dict(std::string_view text) override {
    auto v = ember::plugin::parse_object(text, kId, "load_state_dict");
    const std::string d = dir();
    const json::value* from = v.if_contains("dirpath");
    const bool same_dir = !from || !from->is_string() || from->as_string() == d;
    const std::set<std::string> indexed = same_dir ? indexed_urls(d) : std::set<std::string>();
    saved_.clear();
    history_.clear();
    auto take = [&](const json::value& list, bool may_adopt) {
      if (!list.is_array()) return;
      for (auto& e : list.as_array()) {
        Saved s = parse_entry(e);
        if (may_adopt && inside(d, s.url) && indexed.count(s.url)) {
          saved_.push_back(s);
          owned_.insert(s.url);
        } else if (std::none_of(history_.begin(), history_.end(), [&](const Saved& h) { return h.url == s.url; })) {
          history_.push_back(std::move(s));
        }
      }
    };
    if (const json::value* top = v.if_contains("top_k")) take(*top, same_dir);
    if (const json::value* old = v.if_contains("history")) take(*old, false);
    last_url_.clear();
    if (const json::value* last = v.if_contains("last_model_path"); last && last->is_string() && same_dir &&
                                                                       inside(d, std::string(last->as_string())))
      last_url_ = std::string(last->as_string());
    if (const json::value* step = v.if_contains("last_step_saved"); step && step->is_number())
      last_step_saved_ = step->to_number<std::int64_t>();
    if (!history_.empty()) {
      std::string names;
      for (auto& h : history_) names += (names.empty() ? "" : ", ") + h.url;
      log(EMBER_LOG_WARN, "the checkpoint names " + std::to_string(history_.size()) +
                              " checkpoint(s) this model_checkpoint did not write under dirpath " + d +
                              "; kept as history, never removed: " + names);
    }
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
    for (const auto& part : filename_parts_) {
      out += part.literal;
      if (part.field.empty()) continue;
      double value;
      bool integral = false;
      if (part.field == "epoch") value = static_cast<double>(a.epoch), integral = true;
      else if (part.field == "step") value = static_cast<double>(a.global_step), integral = true;
      else if (host().get_metric(host().ctx, str(part.field), &value) != EMBER_OK) value = std::nan("");
      if (auto_insert_) out += part.field + "=";
      out += format_value(value, integral, part.spec);
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
    // Under ddp rank 0's score decides on every rank, so all keep the same top-k and call
    // save_checkpoint (a collective) together.
    struct {
      double value;
      std::int32_t found;
    } seen{0, 0};
    seen.found = host().get_metric(host().ctx, str(*monitor_), &seen.value) == EMBER_OK ? 1 : 0;
    broadcast_from_zero(seen);
    if (seen.found) return seen.value;
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
  // Only what this instance wrote (or took back from its own index): never a URL that merely
  // came from a checkpoint's state.
  void remove(const std::string& url) {
    if (!owned_.count(url)) {
      log(EMBER_LOG_WARN, "not removing " + url + ": this model_checkpoint did not write it");
      return;
    }
    owned_.erase(url);
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
        std::string name = format_name(a);
        broadcast_from_zero(name);  // metric values in the name: rank 0's
        std::string url = unique_url(d, name);
        write_checkpoint(url);
        owned_.insert(url);
        saved_.push_back({url, s, a.epoch, a.global_step});
        trim();
      }
    }
    if (save_last_) {
      last_url_ = join_url(d, "last.ckpt");
      write_checkpoint(last_url_);
    }
    last_step_saved_ = a.global_step;
    if (!is_global_zero()) {  // rank 0 writes the files, the index and removes the evicted
      evicted_.clear();
      return;
    }
    // The index first, then the evicted files: a crash in between leaves an orphan file, never
    // an index naming a removed checkpoint.
    write_index(d);
    for (const auto& url : evicted_) remove(url);
    evicted_.clear();
  }

  std::string unique_url(const std::string& d, const std::string& name) {
    std::string url = join_url(d, name + ".ckpt");
    // Never a name in the history either: writing over it would make another run's file ours.
    auto taken = [&](const std::string& u) {
      auto same = [&](const Saved& x) { return x.url == u; };
      return std::any_of(saved_.begin(), saved_.end(), same) || std::any_of(history_.begin(), history_.end(), same);
    };
    for (int v = 1; taken(url); ++v)
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
  static json::array entries_json(const std::vector<Saved>& list) {
    json::array out;
    for (auto& s : list)
      out.push_back(json::object{{"url", s.url}, {"score", score_json(s.score)}, {"epoch", s.epoch}, {"step", s.step}});
    return out;
  }
  static Saved parse_entry(const json::value& e) {
    const json::object& o = e.as_object();
    const json::value& score = o.at("score");
    return {std::string(o.at("url").as_string()), score.is_null() ? std::nan("") : score.to_number<double>(),
            o.at("epoch").to_number<std::int64_t>(), o.at("step").to_number<std::int64_t>()};
  }

  // url is a .ckpt under dir d: d + "/" + segments, none empty, "." or "..", no backslash and
  // no percent-escape (an object store may decode "%2e%2e").
  static bool inside(const std::string& d, const std::string& url) {
    std::string prefix = join_url(d, "");
    if (prefix.empty()) return false;
    if (prefix.back() != '/') prefix += '/';
    if (url.size() <= prefix.size() || url.compare(0, prefix.size(), prefix) != 0) return false;
    const std::string rest = url.substr(prefix.size());
    if (rest.size() < 6 || rest.compare(rest.size() - 5, 5, ".ckpt") != 0) return false;
    if (rest.find('\\') != std::string::npos) return false;
    for (std::size_t i = 0; i + 2 < rest.size(); ++i)
      if (rest[i] == '%' && std::isxdigit(static_cast<unsigned char>(rest[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(rest[i + 2])))
        return false;
    std::size_t start = 0;
    for (;;) {
      std::size_t slash = rest.find('/', start);
      std::string seg = rest.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (seg.empty() || seg == "." || seg == "..") return false;
      if (slash == std::string::npos) return true;
      start = slash + 1;
    }
  }

  // The whole object at url, or nullopt (why in *err) when it cannot be read.
  std::optional<std::string> read_text(const std::string& url, std::string* err) {
    ember_file_t* f = nullptr;
    if (ember_status_t rc = host().open_read(host().ctx, str(url), 0, UINT64_MAX, &f); rc != EMBER_OK) {
      if (err) *err = std::string(view(host().last_error(host().ctx)));
      return std::nullopt;
    }
    std::string text;
    char buf[1 << 14];
    size_t got = 0;
    bool ok = true;
    while ((ok = host().read(host().ctx, f, buf, sizeof buf, &got) == EMBER_OK) && got > 0) text.append(buf, got);
    if (!ok && err) *err = std::string(view(host().last_error(host().ctx)));
    host().close(host().ctx, f);
    if (!ok) return std::nullopt;
    return text;
  }

  // The top-k URLs of the index in d; empty when there is none (nothing is then taken back).
  std::set<std::string> indexed_urls(const std::string& d) {
    const std::string url = join_url(d, "checkpoints.json");
    std::set<std::string> out;
    auto read = read_text(url, nullptr);
    if (!read) return out;
    const std::string& text = *read;
    try {
      auto index = json::parse(text);
      if (const json::value* top = index.as_object().if_contains("top_k"))
        for (auto& e : top->as_array()) out.insert(std::string(e.as_object().at("url").as_string()));
    } catch (const std::exception& e) {
      log(EMBER_LOG_WARN, "ignoring unreadable index " + url + ": " + e.what());
      out.clear();
    }
    return out;
  }

  void write_index(const std::string& d) {
    json::object index{{"best", best_url()},
                       {"best_score", best_score_json()},
                       {"last", last_url_},
                       {"monitor", monitor_json()},
                       {"mode", max_mode_ ? "max" : "min"},
                       {"top_k", entries_json(saved_)},
                       {"history", entries_json(history_)}};
    ember::plugin::write_object(host(), join_url(d, "checkpoints.json"), json::serialize(index));
  }

  std::optional<std::string> dirpath_, monitor_;
  std::string filename_, last_url_;
  bool max_mode_ = false, save_last_ = true, weights_only_ = false, auto_insert_ = true, verbose_ = false;
  std::int64_t top_k_ = 1, every_n_steps_ = 0, every_n_epochs_ = 1, last_step_saved_ = -1;
  std::vector<TemplatePart> filename_parts_;
  std::vector<Saved> saved_;
  std::vector<Saved> history_;       // restored, not ours: listed, never best, never removed
  std::set<std::string> owned_;      // URLs this instance wrote or took back from its own index
  std::vector<std::string> evicted_;  // removed after the index no longer names them
};

}  // namespace

EMBER_PLUGIN(ModelCheckpoint, "model_checkpoint", "1.0.0",
             "Lightning's ModelCheckpoint: top-k by a monitored metric, last.ckpt, an index of best/last",
             kSchema)
