// The wandb plugin's settings: its config keys (kSchema, plugins/wandb/README.md) with W&B's
// environment variables as fallbacks, checked once when the plugin is created and read-only after
// (so every thread may read them without a lock).
#pragma once

#include <boost/json.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "wandb_summary.hpp"
#include "wandb_types.hpp"

namespace ember::wandb {
struct ApiOptions;
}

namespace ember::wandb_plugin {

namespace json = boost::json;
namespace wb = ember::wandb;

constexpr const char* kId = "wandb";
constexpr const char* kStepMetric = "trainer/global_step";

// The JSON Schema of the config (the entry's config_schema).
extern const char* const kSchema;

struct Settings {
  // Throws std::invalid_argument "wandb: config key …: expected …" for a bad config or variable.
  static Settings parse(std::string_view config_json);

  bool enabled() const { return online || offline; }
  // Where a key is looked for, for the messages that say none was found.
  std::string key_hint() const;
  // The HTTP and retry settings, for the worker's Api and the wandb:// reader's (settings.cpp).
  wb::ApiOptions api_options(int max_attempts) const;

  bool online = false, offline = false;  // neither: disabled (or a rank > 0)
  bool silent = false, verify_tls = true, sync_spool = true, allow_insecure_http = false;
  std::string console_mode = "auto";
  wb::RunMeta meta;
  std::string resume, save_dir, base_url, prefix, artifact_name, spool_root, spool_dir, ca_file;
  std::string api_key, netrc_path;
  int log_model = 0;  // 0 false, 1 true, 2 "all"
  std::vector<wb::MetricDef> defs;
  double finalize_timeout = 30, http_timeout = 30, retry_initial = 2, retry_max = 60, post_interval = -1,
         stats_interval = 30;
  std::size_t max_queue_bytes = 256u << 20;
  json::object config;  // the config key: extra run config, merged with the hyper-parameters
};

}  // namespace ember::wandb_plugin
