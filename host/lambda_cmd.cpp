// `ember lambda`: the AWS Lambda custom runtime (provided.al2023 / provided.al2).
//
// Init (once per execution environment): the config ($LAMBDA_TASK_ROOT/$_HANDLER, or --config),
// the plugin catalog ($LAMBDA_TASK_ROOT/plugins, --plugin-dir, plugins.dirs), writability of
// every local location the config writes to, and the predict model with its weights. A failure
// here goes to /runtime/init/error and the process exits.
// Then one event at a time from /runtime/invocation/next (shapes: samples/lambda/README.md):
//   predict                   reuses the model loaded at init: inputs -> class + probabilities
//   fit / validate / test     a run built for the event (the config + the event's "set"
//                             overrides; the plugin libraries stay loaded), loggers finalized
//                             before the reply; fit stops at the deadline minus
//                             lambda.deadline_margin_ms and model_checkpoint saves where it stopped
//   ping                      answers at once (the Runtime API round trip, for benchmarks)
// Every failure of an event is an /error reply naming the problem; the runtime keeps serving.
#include "commands.hpp"

#include <ember/lambda/predict_inputs.hpp>
#include <ember/lambda/runtime_api.hpp>
#include <ember/session.hpp>
#include <ember/signals.hpp>
#include <ember/storage.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ember::cli {

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// An event the runtime cannot take (not JSON, no or an unknown command, an unknown key).
class BadEvent : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// Inside Lambda only /tmp is writable; $TMPDIR when set (the tests point it elsewhere).
std::string tmp_root() {
  std::string t = env("TMPDIR");
  return t.empty() ? "/tmp" : t;
}

bool in_lambda() { return !env("AWS_LAMBDA_FUNCTION_NAME").empty() || !env("LAMBDA_TASK_ROOT").empty(); }

// The locations a config writes to: the trainer's root and each plugin's directory keys.
// Local ones must be writable now (access(2) on the nearest existing ancestor: nothing is
// created); a read-only one fails init naming the key and the path.
void check_writable(const json::value& cfg, const std::string& source) {
  std::vector<std::pair<std::string, std::string>> targets;
  if (const auto* t = cfg.as_object().if_contains("trainer"); t && t->is_object())
    if (const auto* d = t->as_object().if_contains("default_root_dir"); d && d->is_string())
      targets.emplace_back("trainer.default_root_dir", std::string(d->as_string()));
  for (auto& ref : all_plugin_refs(cfg))
    if (ref.config.is_object())
      for (const char* k : {"save_dir", "dir", "dirpath", "spool_dir", "log_dir"})
        if (const auto* v = ref.config.as_object().if_contains(k); v && v->is_string())
          targets.emplace_back(ref.where + ".config." + k, std::string(v->as_string()));
  for (const auto& [key, url] : targets) {
    if (storage::scheme_of(url) != "file") continue;
    std::error_code ec;
    fs::path p = fs::absolute(storage::local_path(url), ec);
    while (!fs::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
    const int err = !fs::is_directory(p, ec) ? ENOTDIR : ::access(p.c_str(), W_OK) != 0 ? errno : 0;
    if (err)
      throw ConfigError(source + ": " + key + ": " + url + " is not writable (" + p.string() + ": " + std::strerror(err) +
                        ")" + (in_lambda() ? "; in AWS Lambda only /tmp is writable" : ""));
  }
}

struct Settings {
  std::int64_t deadline_margin_ms = 10000;
  lambda::InputSpec input;
  std::string predict_ckpt;
  std::vector<std::string> class_names;
};

Settings read_settings(const json::value& cfg) {
  Settings s;
  const auto& root = cfg.as_object();
  if (const auto* l = root.if_contains("lambda"); l && l->is_object()) {
    const auto& o = l->as_object();
    if (const auto* v = o.if_contains("deadline_margin_ms")) s.deadline_margin_ms = static_cast<std::int64_t>(config::number_of(*v));
    if (const auto* v = o.if_contains("input_shape"))
      for (const auto& d : v->as_array()) s.input.shape.push_back(static_cast<std::int64_t>(config::number_of(d)));
    if (const auto* v = o.if_contains("predict_ckpt_path"); v && v->is_string()) s.predict_ckpt = std::string(v->as_string());
    if (const auto* v = o.if_contains("class_names"))
      for (const auto& n : v->as_array()) s.class_names.emplace_back(n.as_string());
    if (const auto* v = o.if_contains("max_predict_inputs")) s.input.max_inputs = static_cast<std::int64_t>(config::number_of(*v));
  }
  if (const auto* d = root.if_contains("data"); d && d->is_object())
    if (const auto* n = d->as_object().if_contains("normalize"); n && n->is_bool()) s.input.normalize = n->as_bool();
  return s;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Runtime {
 public:
  Runtime(Options opt, std::string config_path) : opt_(std::move(opt)), config_path_(std::move(config_path)) {
    opt_.config = config_path_;
  }

  // Everything loaded once; throws ConfigError / RuntimeError for /init/error.
  void init() {
    // Lambda: defaults that would write into the (read-only) task root go under /tmp. The W&B
    // plugin's own defaults (save_dir, spool_dir) are already $TMPDIR or /tmp.
    json::value raw = config::load_file(config_path_);
    if (in_lambda()) {
      const json::value* root_dir = nullptr;
      if (raw.is_object())
        if (const auto* t = raw.as_object().if_contains("trainer"); t && t->is_object())
          root_dir = t->as_object().if_contains("default_root_dir");
      if (!root_dir) base_overrides_.push_back("trainer.default_root_dir=" + tmp_root() + "/ember");
    }
    base_overrides_.insert(base_overrides_.end(), opt_.overrides.begin(), opt_.overrides.end());
    cfg_ = load_run_config(config_path_, base_overrides_);
    catalog_ = scan_plugins(opt_, &cfg_);
    check_plugin_configs(opt_, cfg_, catalog_);
    for (const auto& r : catalog_.refusals) std::cerr << "ember lambda: warning: " << r << "\n";
    check_writable(cfg_, config_path_);
    settings_ = read_settings(cfg_);
    predict_ = make_predict(predict_urls_);
    if (!settings_.predict_ckpt.empty()) load_predict_weights(settings_.predict_ckpt, "lambda.predict_ckpt_path");
    predict_->module().train(false);
  }

  json::value handle(const lambda::Invocation& inv) {
    json::value ev;
    try {
      ev = config::parse(inv.body, "event");
    } catch (const ConfigError& e) {
      throw BadEvent(e.what());
    }
    if (!ev.is_object()) throw BadEvent("event: expected a JSON object with \"command\"");
    const auto& o = ev.as_object();
    const auto* c = o.if_contains("command");
    if (!c || !c->is_string())
      throw BadEvent("event.command: required, one of \"predict\", \"fit\", \"validate\", \"test\", \"ping\"");
    const std::string cmd(c->as_string());
    if (cmd == "predict") return predict(o);
    if (cmd == "fit") return run(Command::fit, o, inv.deadline_ms);
    if (cmd == "validate") return run(Command::validate, o, inv.deadline_ms);
    if (cmd == "test") return run(Command::test, o, inv.deadline_ms);
    if (cmd == "ping") {
      only_keys(o, {"command"});
      return json::object{{"pong", true}};
    }
    throw BadEvent("event.command: unknown command '" + cmd + "'; expected predict, fit, validate, test or ping");
  }

 private:
  static void only_keys(const json::object& o, std::initializer_list<const char*> keys) {
    for (const auto& kv : o) {
      bool known = false;
      std::string names;
      for (const char* k : keys) {
        known = known || kv.key() == k;
        names += (names.empty() ? "" : ", ") + std::string(k);
      }
      if (!known)
        throw BadEvent("event." + std::string(kv.key()) + ": unknown key for command '" +
                       std::string(o.at("command").as_string()) + "'; expected " + names);
    }
  }

  // A ckpt_path relative to the config's directory (the task root), unless a URL or last/best.
  std::string ckpt_url(Session& s, const std::string& path) {
    if (path == "last" || path == "best") return s.resolve_ckpt(path);
    if (storage::scheme_of(path) == "file" && !path.empty() && fs::path(storage::local_path(path)).is_relative())
      return (fs::path(config_path_).parent_path() / storage::local_path(path)).lexically_normal().string();
    return path;
  }

  // The predict model: the config's model without loggers, callbacks or data; with the storage
  // plugins of its URLs and of urls (an event's ckpt_path on a scheme the config does not name,
  // e.g. s3://, loads the plugin that claims it: load_predict_weights builds a new session).
  std::unique_ptr<Session> make_predict(const std::vector<std::pair<std::string, std::string>>& urls) {
    json::value pcfg = cfg_;
    auto& po = pcfg.as_object();
    po.erase("data");
    po.erase("ckpt_path");
    auto& t = po["trainer"].as_object();
    t["logger"] = false;
    t["callbacks"] = json::array();
    t["enable_progress_bar"] = false;
    auto s = std::make_unique<Session>(std::move(pcfg), catalog_, config_path_ + " (predict)");
    for (const auto& [key, url] : urls) s->uses_url(key, url);
    s->build(nullptr, EMBER_STAGE_PREDICT);
    return s;
  }

  void load_predict_weights(const std::string& path, const std::string& where) {
    std::string url;
    try {
      url = ckpt_url(*predict_, path);
    } catch (const ConfigError& e) {
      throw ConfigError(where + ": " + e.what());
    }
    if (url == predict_weights_) return;
    const auto schemes = predict_->trainer().urls().schemes();
    if (std::find(schemes.begin(), schemes.end(), storage::scheme_of(url)) == schemes.end()) {
      // A new session with that scheme's plugin, swapped in only once the weights are in it: a
      // failure (no plugin claims the scheme, the object is missing) leaves the model as it was.
      auto urls = predict_urls_;
      urls.emplace_back(where, url);
      auto s = make_predict(urls);
      s->trainer().restore(url, /*weights_only=*/true);
      s->module().train(false);
      predict_ = std::move(s);
      predict_urls_ = std::move(urls);
      predict_weights_ = url;
      return;
    }
    predict_->trainer().restore(url, /*weights_only=*/true);
    predict_weights_ = url;
  }

  json::value predict(const json::object& ev) {
    only_keys(ev, {"command", "inputs", "images_png_base64", "tensor", "ckpt_path"});
    if (const auto* c = ev.if_contains("ckpt_path")) {
      if (!c->is_string()) throw BadEvent("event.ckpt_path: expected a string (URL, \"last\" or \"best\")");
      load_predict_weights(std::string(c->as_string()), "event.ckpt_path");
    }
    torch::Tensor x = lambda::predict_batch(ev, settings_.input);
    torch::Tensor out;
    {
      torch::NoGradGuard ng;
      Module& m = predict_->module();
      m.train(false);
      try {
        out = m.predict_step(Batch{x, torch::Tensor()}, 0);
      } catch (const c10::Error& e) {
        // A shape the model cannot take: the input's fault when no input_shape was declared.
        throw lambda::BadInput("predict: the model refused inputs of shape " +
                               lambda::shape_text(std::vector<std::int64_t>(x.sizes().begin(), x.sizes().end())) + ": " +
                               std::string(e.what_without_backtrace()).substr(0, 300));
      }
    }
    out = out.to(torch::kFloat32).reshape({x.size(0), -1}).contiguous();
    auto cls = out.argmax(1);
    json::array preds;
    const float* p = out.data_ptr<float>();
    const std::int64_t k = out.size(1);
    for (std::int64_t i = 0; i < out.size(0); ++i) {
      json::array probs;
      probs.reserve(static_cast<std::size_t>(k));
      for (std::int64_t j = 0; j < k; ++j) probs.emplace_back(static_cast<double>(p[i * k + j]));
      const std::int64_t c = cls[i].item<std::int64_t>();
      json::object one{{"class", c}, {"probabilities", std::move(probs)}};
      if (c >= 0 && static_cast<std::size_t>(c) < settings_.class_names.size())
        one["label"] = settings_.class_names[static_cast<std::size_t>(c)];
      preds.emplace_back(std::move(one));
    }
    return json::object{{"predictions", std::move(preds)}};
  }

  json::value run(Command cmd, const json::object& ev, std::int64_t deadline_ms) {
    only_keys(ev, {"command", "set", "ckpt_path"});
    std::vector<std::string> overrides = base_overrides_;
    if (const auto* s = ev.if_contains("set")) {
      if (!s->is_object()) throw BadEvent("event.set: expected an object of config keys, e.g. {\"trainer.max_epochs\": 2}");
      for (const auto& kv : s->as_object())
        overrides.push_back(std::string(kv.key()) + "=" + json::serialize(kv.value()));
    }
    std::string ckpt;
    if (const auto* c = ev.if_contains("ckpt_path")) {
      if (!c->is_string()) throw BadEvent("event.ckpt_path: expected a string (URL, \"last\" or \"best\")");
      ckpt = std::string(c->as_string());
    }
    const std::string source = "event (" + config_path_ + " with event.set)";
    json::value cfg = load_run_config(config_path_, overrides);
    check_plugin_configs(opt_, cfg, catalog_);
    check_writable(cfg, source);
    const ember_stage_t stage = cmd == Command::fit ? EMBER_STAGE_FIT : cmd == Command::validate ? EMBER_STAGE_VALIDATE : EMBER_STAGE_TEST;
    check_data_config(cfg, stage, source);
    if (ckpt.empty())
      if (const auto* c = cfg.as_object().if_contains("ckpt_path"); c && c->is_string()) ckpt = std::string(c->as_string());
    const Settings settings = read_settings(cfg);  // the event's set may change lambda.*
    Session session(std::move(cfg), catalog_, source);
    // An event's ckpt_path URL on a scheme the config does not name (s3://…): its plugin is loaded.
    if (!ckpt.empty() && ckpt != "last" && ckpt != "best" && storage::scheme_of(ckpt) != "file")
      session.uses_url("event.ckpt_path", ckpt);
    Trainer& trainer = session.build(nullptr, stage);
    json::object reply{{"command", cmd == Command::fit ? "fit" : cmd == Command::validate ? "validate" : "test"}};
    std::string url, why;
    if ((ckpt == "last" || ckpt == "best") && cmd == Command::fit && !session.find_ckpt(ckpt, &why)) {
      // Lightning's rule for ckpt_path="last" with nothing saved yet: start afresh, say so.
      reply["warning"] = "ckpt_path \"" + ckpt + "\": " + why + "; started from scratch";
    } else if (!ckpt.empty()) {
      url = ckpt_url(session, ckpt);
    }
    reply["resumed_from"] = url.empty() ? json::value(nullptr) : json::value(url);
    if (deadline_ms > 0)
      trainer.set_fit_deadline(Clock::now() + std::chrono::milliseconds(deadline_ms - unix_ms() - settings.deadline_margin_ms));
    // Where a validation or test loop was cut by the deadline (after at least one batch).
    auto eval_cut = [&trainer]() -> json::value {
      const auto& c = trainer.eval_cut();
      if (!c) return nullptr;
      return json::object{{"stage", c->stage == EMBER_STAGE_TEST ? "test" : "validate"}, {"batches", c->batches}, {"of", c->of}};
    };
    switch (cmd) {
      case Command::fit: {
        trainer.fit(url);
        const auto& to = trainer.options();
        std::string by = trainer.stopped_by_deadline() ? "deadline"
                         : trainer.should_stop()       ? "callback"
                         : to.max_steps >= 0 && trainer.global_step() >= to.max_steps ? "max_steps"
                                                                                      : "max_epochs";
        reply["stopped_by"] = by;
        if (by == "callback") reply["stop_reason"] = trainer.stop_reason();
        reply["epoch"] = trainer.current_epoch();
        reply["global_step"] = trainer.global_step();
        json::value last = nullptr;
        if (auto u = session.find_ckpt("last")) last = json::value(*u);
        reply["checkpoint"] = last;
        if (trainer.eval_cut()) reply["validation_cut"] = eval_cut();
        break;
      }
      case Command::validate:
      case Command::test: {
        if (cmd == Command::validate) trainer.validate(url);
        else trainer.test(url);
        json::object metrics;
        for (const auto& m : trainer.last_eval_metrics()) metrics[m.name] = m.value;
        reply["metrics"] = std::move(metrics);
        reply["stopped_by"] = trainer.eval_cut() ? "deadline" : "end";
        if (const auto& c = trainer.eval_cut()) {
          reply["batches"] = c->batches;
          reply["of"] = c->of;
        }
        break;
      }
      case Command::predict:
        break;
    }
    return reply;
  }

  Options opt_;
  std::string config_path_;
  std::vector<std::string> base_overrides_;
  json::value cfg_;
  Catalog catalog_;
  Settings settings_;
  std::unique_ptr<Session> predict_;
  std::vector<std::pair<std::string, std::string>> predict_urls_;  // see make_predict
  std::string predict_weights_;
};

lambda::ErrorReply error_of(const std::exception& e) {
  const char* type = dynamic_cast<const BadEvent*>(&e)             ? "Ember.BadEvent"
                     : dynamic_cast<const lambda::BadInput*>(&e)   ? "Ember.BadInput"
                     : dynamic_cast<const ConfigError*>(&e)        ? "Ember.ConfigError"
                     : dynamic_cast<const PluginFailure*>(&e) || dynamic_cast<const HookError*>(&e) ? "Ember.PluginFailure"
                     : dynamic_cast<const Interrupted*>(&e)        ? "Ember.Interrupted"
                                                                   : "Ember.RuntimeError";
  return {type, e.what(), {}};
}

}  // namespace

int run_lambda(const Options& opt) {
  const std::string api_addr = env("AWS_LAMBDA_RUNTIME_API");
  if (api_addr.empty()) {
    std::cerr << "ember lambda: AWS_LAMBDA_RUNTIME_API is not set (HOST:PORT of the Lambda Runtime API); "
                 "this command runs inside AWS Lambda or against a local Runtime API\n";
    return 2;
  }
  std::unique_ptr<lambda::RuntimeApi> api;
  try {
    api = std::make_unique<lambda::RuntimeApi>(api_addr);
  } catch (const std::exception& e) {
    std::cerr << "ember lambda: " << e.what() << "\n";
    return 2;
  }
  // The config: --config, else $LAMBDA_TASK_ROOT/$_HANDLER (the function's handler setting
  // names the config file in the package).
  std::string config = opt.config;
  if (config.empty()) {
    const std::string handler = env("_HANDLER"), root = env("LAMBDA_TASK_ROOT");
    if (handler.empty()) {
      lambda::ErrorReply e{"Ember.ConfigError", "no config: set the function's handler (_HANDLER) to the config file, relative to LAMBDA_TASK_ROOT, or pass --config", {}};
      std::cerr << "ember lambda: " << e.message << "\n";
      try {
        api->init_error(e);
      } catch (const std::exception& x) {
        std::cerr << "ember lambda: " << x.what() << "\n";
      }
      return 2;
    }
    config = fs::path(handler).is_absolute() || root.empty() ? handler : (fs::path(root) / handler).string();
  }
  Options o = opt;
  if (const std::string root = env("LAMBDA_TASK_ROOT"); !root.empty())
    if (std::error_code ec; fs::is_directory(fs::path(root) / "plugins", ec))
      o.plugin_dirs.push_back((fs::path(root) / "plugins").string());

  // SIGTERM (Lambda's shutdown) stops a running fit at a batch boundary with loggers finalized.
  StopOnSignals stop_on_signals;
  api->set_cancel([] { return caught_stop_signal() != 0; });
  Runtime runtime(o, config);
  try {
    runtime.init();
  } catch (const std::exception& e) {
    lambda::ErrorReply reply = error_of(e);
    if (reply.type == "Ember.RuntimeError") reply.type = "Ember.InitError";
    std::cerr << "ember lambda: init failed: " << e.what() << "\n";
    try {
      api->init_error(reply);
    } catch (const std::exception& x) {
      std::cerr << "ember lambda: " << x.what() << "\n";
    }
    return dynamic_cast<const ConfigError*>(&e) ? 2 : 1;
  }
  for (;;) {
    lambda::Invocation inv;
    try {
      inv = api->next();
    } catch (const lambda::Cancelled&) {
      const int signo = caught_stop_signal();
      std::cerr << "ember lambda: " << signal_name(signo) << " received while waiting for an event; exiting\n";
      return 128 + signo;
    } catch (const std::exception& e) {
      std::cerr << "ember lambda: " << e.what() << "\n";
      return 1;
    }
    if (inv.trace_id.empty()) ::unsetenv("_X_AMZN_TRACE_ID");
    else ::setenv("_X_AMZN_TRACE_ID", inv.trace_id.c_str(), 1);
    std::optional<std::string> body;
    lambda::ErrorReply err;
    try {
      body = json::serialize(runtime.handle(inv));
    } catch (const std::exception& e) {
      err = error_of(e);
    } catch (...) {
      err = {"Ember.UnknownError", "an exception that is not a std::exception", {}};
    }
    try {
      if (body) {
        api->respond(inv.request_id, *body);
      } else {
        std::cerr << "ember lambda: request " << inv.request_id << ": " << err.type << ": " << err.message << "\n";
        api->error(inv.request_id, err);
      }
    } catch (const std::exception& e) {
      std::cerr << "ember lambda: " << e.what() << "\n";
      return 1;
    }
    if (int signo = caught_stop_signal()) {
      std::cerr << "ember lambda: " << signal_name(signo) << " received; exiting\n";
      return 128 + signo;
    }
  }
}

}  // namespace ember::cli
