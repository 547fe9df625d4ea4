// Model artifacts (worker): with log_model, checkpoints the trainer saved are read back through
// the host's storage and logged as versions of the artifact model-<run id> (aliases latest, and
// best for model_checkpoint's best), with the score and step from its checkpoints.json.
#include <algorithm>
#include <optional>
#include <tuple>

#include "logger.hpp"
#include "wandb_api_artifacts.hpp"
#include "wandb_spool.hpp"

namespace ember::wandb_plugin {

// model_checkpoint's index (checkpoints.json) as far as artifacts need it.
struct CheckpointIndex {
  std::string best, last, monitor;
  json::value best_score;
  std::vector<std::tuple<std::string, json::value, std::int64_t>> top;  // url, score, step
};

namespace {

std::string read_url(wb::Store& store, const std::string& url) {
  auto bytes = store.read(url);
  if (!bytes) throw std::runtime_error("no such object: " + url);
  return *bytes;
}

std::optional<CheckpointIndex> read_index(wb::Store& store, const std::string& dir) {
  auto text = store.read(wb::join_url(dir, "checkpoints.json"));
  if (!text) return std::nullopt;
  json::object o = json::parse(*text).as_object();
  CheckpointIndex ix;
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

}  // namespace

void WandbLogger::log_checkpoint(const std::string& url, std::int64_t step, const CheckpointIndex* ix) {
  std::string bytes;
  try {
    bytes = read_url(*store_, url);
  } catch (const std::exception& e) {
    say(EMBER_LOG_WARN, "model artifact skipped: cannot read checkpoint " + url + ": " + e.what());
    return;
  }
  wb::ArtifactSpec spec;
  spec.name = opt_.artifact_name;
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
  say(EMBER_LOG_INFO, "logged " + url + " as artifact " + opt_.artifact_name + (best ? " (aliases latest, best)" : " (alias latest)") +
                          (a.deduplicated ? ", already stored" : ""));
}

void WandbLogger::run_artifact_job(const ArtifactJob& j) {
  std::optional<CheckpointIndex> ix = read_index(*store_, j.index_dir);
  if (!j.url.empty()) {
    log_checkpoint(j.url, j.step, ix ? &*ix : nullptr);
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
  for (const auto& [st, u] : order) log_checkpoint(u, st, &*ix);
}

}  // namespace ember::wandb_plugin
