// The run configuration file (`ember fit --config run.json`): its JSON Schema and loading.
// Names follow Lightning's Trainer arguments and LightningCLI's layout.
#pragma once

#include <ember/config.hpp>
#include <ember/error.hpp>

#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace ember {

// A plugin reference: {"plugin": "<id>", "config": {...}}.
inline constexpr const char* kPluginRefSchema = R"({
  "type": "object", "additionalProperties": false, "required": ["plugin"],
  "properties": {
    "plugin": {"type": "string", "minLength": 1, "description": "plugin id"},
    "config": {"type": "object", "description": "the plugin's config, checked against its schema"}
  }
})";

// The largest count a run config takes (batches, steps, epochs, sizes): 2^53-1, the largest
// integer a double holds exactly, since the trainer reads numbers through double; it also keeps
// sums like `rows + batch_size` far from int64's limit. Numbers are finite (config::parse).
inline constexpr const char* kMaxCount = "9007199254740991";

inline std::string run_config_schema() {
  const std::string ref = kPluginRefSchema;
  const std::string kCount = kMaxCount;
  return R"({
  "type": "object", "additionalProperties": false,
  "properties": {
    "$schema": {"type": "string"},
    "seed_everything": {"type": ["integer", "null"], "minimum": 0, "maximum": 4294967295, "default": null,
                        "description": "Lightning's seed_everything range: 0 to 2^32-1"},
    "ckpt_path": {"type": ["string", "null"], "default": null,
                  "description": "checkpoint URL to resume from, or \"last\" / \"best\""},
    "storage_options": {"type": "object", "additionalProperties": {"type": "object"},
                        "description": "per-URL storage plugin configs, as fsspec's storage_options: a scheme (\"s3\") or URL prefix (\"s3://bucket-a/\") -> that scheme's plugin config; the longest matching prefix wins, then the scheme; see include/ember/storage_options.hpp"},
    "plugins": {"type": "object", "additionalProperties": false, "properties": {
      "dirs": {"type": "array", "items": {"type": "string"}, "default": []},
      "storage": {"type": "array", "items": )" + ref + R"(, "default": []},
      "default_logger": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": ["csv_logger"],
                         "description": "trainer.logger: true uses the first of these plugins found; Lightning uses TensorBoardLogger, else CSVLogger"},
      "default_progress_bar": {"type": ["string", "null"], "default": "progress_bar",
                               "description": "the plugin trainer.enable_progress_bar adds when no callback of that id is listed; null: none"}
    }},
    "trainer": {"type": "object", "additionalProperties": false, "properties": {
      "max_epochs": {"type": ["integer", "null"], "minimum": -1, "maximum": )" + kCount + R"(, "default": null},
      "min_epochs": {"type": ["integer", "null"], "minimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "max_steps": {"type": "integer", "minimum": -1, "maximum": )" + kCount + R"(, "default": -1},
      "val_check_interval": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "check_val_every_n_epoch": {"type": ["integer", "null"], "minimum": 1, "maximum": )" + kCount + R"(, "default": 1},
      "limit_train_batches": {"type": ["number", "null"], "minimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "limit_val_batches": {"type": ["number", "null"], "minimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "limit_test_batches": {"type": ["number", "null"], "minimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "limit_predict_batches": {"type": ["number", "null"], "minimum": 0, "maximum": )" + kCount + R"(, "default": null},
      "num_sanity_val_steps": {"type": "integer", "minimum": -1, "maximum": )" + kCount + R"(, "default": 2},
      "accumulate_grad_batches": {"type": "integer", "minimum": 1, "maximum": )" + kCount + R"(, "default": 1},
      "gradient_clip_val": {"type": ["number", "null"], "minimum": 0, "default": null},
      "gradient_clip_algorithm": {"enum": ["norm", "value"], "default": "norm"},
      "log_every_n_steps": {"type": "integer", "minimum": 1, "maximum": )" + kCount + R"(, "default": 50},
      "default_root_dir": {"type": "string", "default": "."},
      "deterministic": {"type": "boolean", "default": false},
      "fast_dev_run": {"type": ["boolean", "integer"], "minimum": 0, "maximum": )" + kCount + R"(, "default": false},
      "enable_checkpointing": {"type": "boolean", "default": true},
      "enable_progress_bar": {"type": "boolean", "default": true},
      "num_threads": {"type": ["integer", "null"], "minimum": 1, "maximum": 65536, "default": null},
      "strategy": {"enum": ["auto", "ddp", "single_device"], "default": "auto",
                   "description": "ddp: one process per rank on c10d (Gloo); auto: ddp when devices * num_nodes > 1 or a launcher (torchrun, srun) started this process"},
      "devices": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 1,
                  "description": "processes (ranks) per machine; Ember starts them itself when no launcher did"},
      "num_nodes": {"type": "integer", "minimum": 1, "maximum": 65536, "default": 1},
      "ddp_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800, "default": 1800,
                        "description": "init_process_group's timeout: how long a rank waits for a peer that never arrives or stops answering"},
      "find_unused_parameters": {"type": "boolean", "default": false},
      "gradient_as_bucket_view": {"type": "boolean", "default": false},
      "broadcast_buffers": {"type": "boolean", "default": true},
      "bucket_cap_mb": {"type": "number", "exclusiveMinimum": 0, "maximum": 65536, "default": 25},
      "ddp_comm_hook": {"enum": ["none", "fp16_compress"], "default": "none"},
      "watch": {"type": ["object", "null"], "additionalProperties": false, "default": null,
                "description": "WandbLogger.watch for every logger that takes media: histograms of gradients/parameters",
                "properties": {
        "log": {"enum": ["gradients", "parameters", "all"], "default": "gradients"},
        "log_freq": {"type": "integer", "minimum": 1, "maximum": )" + kCount + R"(, "default": 100}
      }},
      "logger": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": )" + ref + R"(}], "default": true},
      "callbacks": {"type": "array", "items": )" + ref + R"(, "default": []}
    }},
    "model": {"type": "object", "additionalProperties": false, "properties": {
      "plugin": {"type": "string", "minLength": 1},
      "torchscript": {"type": "string", "minLength": 1},
      "loss": {"enum": ["cross_entropy", "mse", "l1", "nll"], "description": "TorchScript models; default cross_entropy"},
      "config": {"type": "object"},
      "optimizer": {"type": "object", "additionalProperties": false, "properties": {
        "name": {"enum": ["sgd", "adam", "adamw"], "default": "adam"},
        "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001},
        "momentum": {"type": "number", "minimum": 0, "default": 0},
        "weight_decay": {"type": "number", "minimum": 0, "default": 0}
      }},
      "lr_scheduler": {"type": "object", "additionalProperties": false, "properties": {
        "name": {"enum": ["step", "cosine"]},
        "interval": {"enum": ["step", "epoch"], "default": "epoch"},
        "step_size": {"type": "integer", "minimum": 1, "maximum": 2147483647, "default": 1},
        "gamma": {"type": "number", "default": 0.1},
        "t_max": {"type": "integer", "minimum": 1, "maximum": 2147483647, "default": 10},
        "eta_min": {"type": "number", "default": 0}
      }}
    }},
    "lambda": {"type": "object", "additionalProperties": false,
               "description": "`ember lambda`, the AWS Lambda runtime: samples/lambda/README.md", "properties": {
      "deadline_margin_ms": {"type": "integer", "minimum": 0, "maximum": 900000, "default": 10000,
                             "description": "fit stops at the first batch boundary past the invocation's deadline minus this"},
      "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 16777216}, "default": [],
                      "description": "one predict input's shape without the batch dimension; [] takes any"},
      "predict_ckpt_path": {"type": ["string", "null"], "default": null,
                            "description": "weights for predict: a URL, last or best, or a path relative to the config; null: the model as built"},
      "class_names": {"type": "array", "items": {"type": "string"}, "default": [],
                      "description": "predict replies name class k as class_names[k]"},
      "max_predict_inputs": {"type": "integer", "minimum": 1, "maximum": 1048576, "default": 1024}
    }},
    "data": {"type": "object", "additionalProperties": false, "properties": {
      "format": {"enum": ["idx", "csv", "tensors"], "default": "idx"},
      "train": {"type": "array", "items": {"type": "string"}},
      "val": {"type": "array", "items": {"type": "string"}},
      "test": {"type": "array", "items": {"type": "string"}},
      "predict": {"type": "array", "items": {"type": "string"}},
      "val_fraction": {"type": "number", "minimum": 0, "maximum": 0.9, "default": 0},
      "batch_size": {"type": "integer", "minimum": 1, "maximum": )" + kCount + R"(, "default": 32},
      "shuffle": {"type": "boolean", "default": true},
      "normalize": {"type": "boolean", "default": true},
      "label_column": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647, "default": -1},
      "has_header": {"type": "boolean", "default": true},
      "drop_last": {"type": "boolean", "default": false,
                    "description": "under ddp: cut each rank's shard to floor(N / world_size) instead of padding to ceil"}
    }}
  }
})";
}

// A plugin reference found in the config: where it sits (for messages), its id and config.
struct PluginRef {
  std::string where;  // e.g. "trainer.logger[0]"
  std::string id;
  boost::json::value config;
};

// The references in cfg[section][key] (a list of {"plugin", "config"}), in list order.
inline std::vector<PluginRef> plugin_refs(const boost::json::value& cfg, const char* section, const char* key) {
  std::vector<PluginRef> out;
  const auto* s = cfg.as_object().if_contains(section);
  if (!s || !s->is_object()) return out;
  const auto* list = s->as_object().if_contains(key);
  if (!list || !list->is_array()) return out;
  std::size_t i = 0;
  for (const auto& v : list->as_array()) {
    const auto& o = v.as_object();
    out.push_back({std::string(section) + "." + key + "[" + std::to_string(i++) + "]",
                   std::string(o.at("plugin").as_string()),
                   o.contains("config") ? o.at("config") : boost::json::value(boost::json::object())});
  }
  return out;
}

// Every plugin reference of a run: storage, then loggers, then callbacks (the load order).
inline std::vector<PluginRef> all_plugin_refs(const boost::json::value& cfg) {
  std::vector<PluginRef> out;
  for (auto [section, key] : {std::pair{"plugins", "storage"}, std::pair{"trainer", "logger"},
                              std::pair{"trainer", "callbacks"}}) {
    auto part = plugin_refs(cfg, section, key);
    out.insert(out.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return out;
}

// Load FILE, apply `--set` overrides, check against the schema and fill defaults.
// Throws ConfigError with FILE:LINE:COL for bad JSON, key paths for bad values.
inline boost::json::value load_run_config(const std::string& path,
                                          const std::vector<std::string>& overrides) {
  boost::json::value cfg = config::load_file(path);
  for (const auto& o : overrides) config::apply_override(cfg, o);
  if (!cfg.is_object()) throw ConfigError(path + ": (root): expected a JSON object");
  static const boost::json::value schema = config::parse(run_config_schema(), "run config schema");
  config::check(cfg, schema, path, "", /*fill_defaults=*/true);
  // Fill the sections' defaults too, so `ember config` shows what will run.
  auto& obj = cfg.as_object();
  for (const char* section : {"plugins", "trainer"})
    if (!obj.contains(section)) {
      obj[section] = boost::json::object();
      config::check(cfg, schema, path, "", true);
    }
  return cfg;
}

}  // namespace ember
