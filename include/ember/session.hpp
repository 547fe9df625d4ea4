// A run assembled from the JSON config: plugins (storage, loggers, callbacks), data, the
// trainer; the model comes from the caller (embedded), a model plugin or a TorchScript file.
// host/ uses it for `ember fit`; an application that embeds Ember can use it the same way.
#pragma once

#include <ember/loader.hpp>
#include <ember/sdk/model_plugin.hpp>
#include <ember/plugin_backend.hpp>
#include <ember/run_config.hpp>
#include <ember/schemes.hpp>
#include <ember/storage_options.hpp>
#include <ember/script_module.hpp>
#include <ember/trainer.hpp>

#include <boost/json.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ember {

// What entry point fn needs from the config's data section, checked before anything is created
// (a logger that has started writes its version directory): the split it runs on, and the number
// of URLs each split's format takes. Throws ConfigError naming source and the key.
inline void check_data_config(const boost::json::value& cfg, ember_stage_t fn, const std::string& source) {
  const auto* d = cfg.as_object().if_contains("data");
  const boost::json::object empty;
  const auto& o = d && d->is_object() ? d->as_object() : empty;
  const std::string format = o.contains("format") ? std::string(o.at("format").as_string()) : "idx";
  auto count = [&](const char* k) -> std::size_t {
    const auto* v = o.if_contains(k);
    return v && v->is_array() ? v->as_array().size() : 0;
  };
  for (const char* k : {"train", "val", "test", "predict"}) {
    const std::size_t n = count(k);
    if (n == 0) continue;
    if (format == "idx" && n > 2)
      throw ConfigError(source + ": data." + k + ": format idx takes [images] or [images, labels], got " + std::to_string(n) + " URLs");
    if (format != "idx" && n != 1)
      throw ConfigError(source + ": data." + k + ": format " + format + " takes one URL per split, got " + std::to_string(n));
  }
  const bool val_split = count("train") > 0 && o.contains("val_fraction") && config::number_of(o.at("val_fraction")) > 0;
  switch (fn) {
    case EMBER_STAGE_FIT:
      if (!count("train")) throw ConfigError(source + ": fit: no training data (config key data.train)");
      break;
    case EMBER_STAGE_VALIDATE:
      if (!count("val") && !val_split)
        throw ConfigError(source + ": validate: no validation data (config key data.val or data.val_fraction)");
      break;
    case EMBER_STAGE_TEST:
      if (!count("test")) throw ConfigError(source + ": test: no test data (config key data.test)");
      break;
    case EMBER_STAGE_PREDICT:
      if (!count("predict")) throw ConfigError(source + ": predict: no data (config key data.predict)");
      break;
    default:
      break;
  }
}

class Session {
 public:
  // cfg: a config already loaded and checked (load_run_config); source names it in messages.
  Session(boost::json::value cfg, const Catalog& catalog, std::string source)
      : cfg_(std::move(cfg)), catalog_(catalog), source_(std::move(source)) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Plugins go first, newest first (storage plugins last), while the trainer and the data they
  // may still ask about (a logger flushing in destroy reads the trainer's state) are alive.
  ~Session() {
    while (!plugins_.empty()) plugins_.pop_back();
  }

  // Build everything. module may be null: then the config's model section provides it. stage:
  // the one entry point the caller will run (as `ember fit` does), so that only the data splits
  // it uses are read (fit: train and val; validate: val, from train for val_fraction; test;
  // predict); EMBER_STAGE_NONE reads every split the config names, for a caller that runs
  // several (fit, then test).
  // dist: the data-parallel strategy (include/ember/ddp/strategy.hpp) when this process is one
  // rank of several; it must outlive the session. Each rank then reads its shard of the data,
  // and loggers and the progress bar act on rank 0 only.
  Trainer& build(Module* module = nullptr, ember_stage_t stage = EMBER_STAGE_NONE, Distributed* dist = nullptr) {
    const auto& root = cfg_.as_object();
    const auto& tcfg = root.at("trainer").as_object();
    auto opts = TrainerOptions::from_json(tcfg, root.contains("seed_everything") ? root.at("seed_everything") : boost::json::value());
    if (opts.seed) torch::manual_seed(*opts.seed);
    module_ = module ? module : make_model();
    trainer_ = std::make_unique<Trainer>(std::move(opts), *module_);
    trainer_->set_distributed(dist);
    // Storage first: later plugins may write through it.
    for (auto& ref : plugin_refs(cfg_, "plugins", "storage")) {
      auto& inst = instantiate(ref);
      if (inst.interface<ember_storage_v1_t>(EMBER_STORAGE_V1) == nullptr)
        throw ConfigError(source_ + ": " + ref.where + ": plugin '" + ref.id + "' offers no " EMBER_STORAGE_V1);
    }
    // Schemes the config uses that no configured plugin serves: the plugin that claims each,
    // with its default config (credentials from the environment), for storage only.
    for (const auto& id : auto_storage_plugins(cfg_, catalog_, source_, extra_urls_)) {
      auto lib = catalog_.require(id, source_ + ": a URL scheme of plugin '" + id + "'");
      storage_only_.push_back(std::make_unique<PluginInstance>(lib, boost::json::object(), *trainer_,
                                                               source_ + ": plugin " + id + " (loaded for its URL scheme)"));
      register_storage(*storage_only_.back(), trainer_->urls());
    }
    // storage_options: one instance per distinct option set, routed by URL prefix or scheme
    // ahead of the above (include/ember/storage_options.hpp).
    apply_storage_options(storage_options(cfg_, catalog_, source_), catalog_, *trainer_, trainer_->urls(), storage_only_,
                          source_);
    // Data next (it may live on a storage plugin's scheme): a missing file or a bad row is
    // reported before any logger or callback exists.
    build_data(stage);
    // The plugins a bare config gets come from the config's defaults (plugins.default_logger,
    // plugins.default_progress_bar), not from names in the host.
    const auto* pcfg = root.if_contains("plugins");
    auto default_of = [&](const char* key) -> const boost::json::value* {
      return pcfg && pcfg->is_object() ? pcfg->as_object().if_contains(key) : nullptr;
    };
    const auto* logger = tcfg.if_contains("logger");
    if (logger && logger->is_bool() && logger->as_bool())
      if (const auto* d = default_of("default_logger"); d && d->is_array())
        for (const auto& id : d->as_array())
          if (id.is_string() && catalog_.find(std::string(id.as_string()))) {
            instantiate({"trainer.logger (default: plugins.default_logger)", std::string(id.as_string()), boost::json::object()});
            break;
          }
    for (auto& ref : plugin_refs(cfg_, "trainer", "logger")) instantiate(ref);
    for (auto& ref : plugin_refs(cfg_, "trainer", "callbacks")) instantiate(ref);
    const bool progress = tcfg.contains("enable_progress_bar") && tcfg.at("enable_progress_bar").as_bool();
    if (const auto* d = default_of("default_progress_bar"); progress && d && d->is_string() && trainer_->is_global_zero()) {
      std::string id(d->as_string());
      if (!has(id) && catalog_.find(id))
        instantiate({"trainer.enable_progress_bar (plugins.default_progress_bar)", id, boost::json::object()});
    }
    for (auto& p : plugins_) trainer_->add_plugin(*p);
    trainer_->set_data(train_.get(), val_.get(), test_.get(), predict_.get());
    return *trainer_;
  }

  // A URL the run will use that is not in the config (`--ckpt-path`), so that its scheme is
  // checked, and its plugin loaded, with the config's. Call before build.
  void uses_url(std::string key, std::string url) { extra_urls_.emplace_back(std::move(key), std::move(url)); }

  Trainer& trainer() { return *trainer_; }
  Module& module() { return *module_; }

  // "last" / "best" resolve through the plugins that keep checkpoints (ember.checkpoints/1,
  // model_checkpoint's index): the first that knows the name answers; anything else is a URL.
  std::string resolve_ckpt(const std::string& path) {
    if (path.empty() || (path != "last" && path != "best")) return path;
    std::string why;
    if (auto url = find_ckpt(path, &why)) return *url;
    throw ConfigError("ckpt_path=\"" + path + "\": " + why);
  }

  // The checkpoint "last" / "best" names, or nullopt with the reason in *why (every plugin that
  // keeps an index answered that it has no such checkpoint, or none keeps one).
  std::optional<std::string> find_ckpt(const std::string& which, std::string* why = nullptr) {
    std::string reasons;
    for (auto& p : plugins_) {
      const auto* t = p->interface<ember_checkpoints_v1_t>(EMBER_CHECKPOINTS_V1);
      if (!t) continue;
      std::string url;
      ember_sink_t sink{&url, [](void* ctx, const void* data, size_t n) -> ember_status_t {
                          static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), n);
                          return EMBER_OK;
                        }};
      ember_status_t rc = t->resolve(p->self(), cstr(which), &sink);
      if (rc == EMBER_OK && !url.empty()) return url;
      std::string failure = p->failure("resolve " + which, rc);
      if (rc != EMBER_E_NOT_FOUND) throw ConfigError("ckpt_path=\"" + which + "\": " + failure);
      reasons += (reasons.empty() ? "" : "; ") + failure;
    }
    if (reasons.empty())
      reasons = "no plugin keeps a checkpoint index (" EMBER_CHECKPOINTS_V1 "); add model_checkpoint to trainer.callbacks";
    if (why) *why = reasons;
    return std::nullopt;
  }

 private:
  bool has(const std::string& id) const {
    for (auto& p : plugins_)
      if (p->id() == id) return true;
    return false;
  }

  PluginInstance& instantiate(const PluginRef& ref) {
    auto lib = catalog_.require(ref.id, source_ + ": " + ref.where + ".plugin");
    if (lib->entry().build_tag.size)
      throw ConfigError(source_ + ": " + ref.where + ": plugin '" + ref.id + "' is a model plugin; use it as model.plugin");
    plugins_.push_back(std::make_unique<PluginInstance>(lib, ref.config, *trainer_, source_ + ": plugin " + ref.id + " at " + ref.where));
    auto& inst = *plugins_.back();
    register_storage(inst, trainer_->urls());
    return inst;
  }

  Module* make_model() {
    const auto* m = cfg_.as_object().if_contains("model");
    if (!m) throw ConfigError(source_ + ": model: required (model.plugin or model.torchscript)");
    const auto& mo = m->as_object();
    if (auto* p = mo.if_contains("plugin")) {
      std::string id(p->as_string());
      auto lib = catalog_.require(id, source_ + ": model.plugin");
      std::string tag(sv(lib->entry().build_tag));
      if (tag.empty())
        throw ConfigError(source_ + ": model.plugin: '" + id + "' (" + lib->path() + ") is not a model plugin (no build tag)");
      if (tag != kBuildTag)
        throw ConfigError(source_ + ": model.plugin: '" + id + "' (" + lib->path() + ") was built for '" + tag +
                          "' but this host is '" + std::string(kBuildTag) + "'; rebuild the plugin against this libtorch");
      for (const char* k : {"optimizer", "lr_scheduler", "torchscript", "loss"})
        if (mo.contains(k))
          throw ConfigError(source_ + ": model." + k + ": applies to model.torchscript; the model plugin '" + id +
                            "' configures this itself (set its model.config)");
      boost::json::value c = mo.contains("config") ? mo.at("config") : boost::json::value(boost::json::object());
      model_plugin_ = std::make_unique<PluginInstance>(lib, c, services_, source_ + ": model");
      auto* table = model_plugin_->interface<ModelTable>(EMBER_MODEL_V1);
      if (!table) throw ConfigError(source_ + ": model.plugin: '" + id + "' offers no " EMBER_MODEL_V1);
      return table->module(model_plugin_->self());
    }
    if (auto* ts = mo.if_contains("torchscript")) {
      OptimizerSpec spec;
      auto num = [](const boost::json::object& o, const char* k, double def) {
        return o.contains(k) ? config::number_of(o.at(k)) : def;
      };
      if (auto* o = mo.if_contains("optimizer")) {
        const auto& oo = o->as_object();
        if (auto* n = oo.if_contains("name")) spec.name = std::string(n->as_string());
        spec.lr = num(oo, "lr", spec.lr);
        spec.momentum = num(oo, "momentum", 0);
        spec.weight_decay = num(oo, "weight_decay", 0);
      }
      if (auto* l = mo.if_contains("lr_scheduler")) {
        const auto& lo = l->as_object();
        if (auto* n = lo.if_contains("name")) spec.scheduler = std::string(n->as_string());
        if (auto* i = lo.if_contains("interval")) spec.interval = std::string(i->as_string());
        spec.step_size = static_cast<unsigned>(num(lo, "step_size", 1));
        spec.gamma = num(lo, "gamma", 0.1);
        spec.t_max = static_cast<unsigned>(num(lo, "t_max", 10));
        spec.eta_min = num(lo, "eta_min", 0);
      }
      std::string loss = mo.contains("loss") ? std::string(mo.at("loss").as_string()) : "cross_entropy";
      script_ = std::make_unique<ScriptModule>(services_.urls(), std::string(ts->as_string()), loss, spec);
      return script_.get();
    }
    throw ConfigError(source_ + ": model: expected model.plugin or model.torchscript");
  }

  void build_data(ember_stage_t stage) {
    const auto* d = cfg_.as_object().if_contains("data");
    if (!d) return;
    const auto& o = d->as_object();
    auto str = [&](const char* k, const char* def) { return o.contains(k) ? std::string(o.at(k).as_string()) : std::string(def); };
    auto num = [&](const char* k, double def) { return o.contains(k) ? config::number_of(o.at(k)) : def; };
    auto flag = [&](const char* k, bool def) { return o.contains(k) ? o.at(k).as_bool() : def; };
    const std::string format = str("format", "idx");
    const auto batch = static_cast<std::int64_t>(num("batch_size", 32));
    const bool shuffle = flag("shuffle", true), normalize = flag("normalize", true);
    const std::uint64_t seed = trainer_->options().seed.value_or(0);
    // An integer by the schema; kept in int64 (a huge value is out of range for any file, and
    // read_csv says so with the file and line) rather than cast to int.
    const double lc = num("label_column", -1);
    const std::int64_t label_column = std::fabs(lc) < 9.0e18 ? static_cast<std::int64_t>(lc) : INT64_MAX;
    auto files = [&](const char* k) {
      std::vector<std::string> out;
      if (auto* v = o.if_contains(k))
        for (const auto& f : v->as_array()) out.emplace_back(f.as_string());
      return out;
    };
    auto load = [&](const std::vector<std::string>& f) -> data::Dataset {
      if (format == "idx") return data::read_idx(trainer_->urls(), f, normalize);
      if (f.size() != 1) throw ConfigError(source_ + ": data: format " + format + " takes one URL per split");
      if (format == "csv")
        return data::read_csv(trainer_->urls(), f[0], label_column, flag("has_header", true));
      return data::read_tensors(trainer_->urls(), f[0]);
    };
    auto wants = [&](ember_stage_t s) { return stage == EMBER_STAGE_NONE || stage == s; };
    const bool wants_val = wants(EMBER_STAGE_FIT) || wants(EMBER_STAGE_VALIDATE);
    if (auto f = files("train"); !f.empty() && (wants(EMBER_STAGE_FIT) || (wants(EMBER_STAGE_VALIDATE) && files("val").empty()))) {
      data::Dataset train = load(f);
      data::Dataset val;
      if (auto vf = files("val"); !vf.empty()) {
        val = load(vf);
      } else if (double frac = num("val_fraction", 0); frac > 0) {
        // The last fraction of the training set, before any shuffling: a fixed split.
        std::int64_t n_val = static_cast<std::int64_t>(static_cast<double>(train.size()) * frac);
        std::int64_t n_tr = train.size() - n_val;
        val.x = train.x.narrow(0, n_tr, n_val);
        val.y = train.y.defined() ? train.y.narrow(0, n_tr, n_val) : torch::Tensor();
        train.x = train.x.narrow(0, 0, n_tr);
        if (train.y.defined()) train.y = train.y.narrow(0, 0, n_tr);
      }
      train_ = std::make_unique<data::Loader>(std::move(train), batch, shuffle, seed);
      if (val.size()) val_ = std::make_unique<data::Loader>(std::move(val), batch, false, seed);
    } else if (auto vf = files("val"); !vf.empty() && wants_val) {
      val_ = std::make_unique<data::Loader>(load(vf), batch, false, seed);
    }
    if (auto f = files("test"); !f.empty() && wants(EMBER_STAGE_TEST)) test_ = std::make_unique<data::Loader>(load(f), batch, false, seed);
    if (auto f = files("predict"); !f.empty() && wants(EMBER_STAGE_PREDICT)) predict_ = std::make_unique<data::Loader>(load(f), batch, false, seed);
    if (Distributed* dist = trainer_->distributed()) {
      const bool drop_last = flag("drop_last", false);
      for (auto* l : {train_.get(), val_.get(), test_.get(), predict_.get()})
        if (l) l->set_shard(dist->global_rank(), dist->world_size(), drop_last);
    }
  }

  boost::json::value cfg_;
  const Catalog& catalog_;
  std::string source_;
  Services services_;  // for the model plugin, created before the trainer
  std::unique_ptr<PluginInstance> model_plugin_;
  std::unique_ptr<ScriptModule> script_;
  Module* module_ = nullptr;
  std::unique_ptr<Trainer> trainer_;
  std::vector<std::unique_ptr<PluginInstance>> plugins_;
  // Storage plugins loaded for a scheme the config uses (never callbacks or loggers); destroyed
  // after plugins_ (emptied first in ~Session), before the trainer.
  std::vector<std::unique_ptr<PluginInstance>> storage_only_;
  std::vector<std::pair<std::string, std::string>> extra_urls_;
  std::unique_ptr<data::Loader> train_, val_, test_, predict_;
};

}  // namespace ember
