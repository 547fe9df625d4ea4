// The config keys and environment variables of the wandb plugin, checked at creation (settings.hpp).
#include "settings.hpp"

#include <unistd.h>

#include <cctype>
#include <stdexcept>

#include "sysinfo.hpp"
#include "wandb_api_client.hpp"
#include "wandb_safety.hpp"
#include "wandb_spool.hpp"

namespace ember::wandb_plugin {

const char* const kSchema = R"JSON({
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

namespace {

[[noreturn]] void config_error(const std::string& message) {
  throw std::invalid_argument(std::string(kId) + ": " + message);
}

}  // namespace

Settings Settings::parse(std::string_view config_json) {
  json::value cfg;
  try {
    cfg = json::parse(config_json);
  } catch (const std::exception& e) {
    config_error("config is not valid JSON: " + std::string(e.what()));
  }
  if (!cfg.is_object()) config_error("config: expected a JSON object");
  Settings out;
  auto split_tags = [&](const std::string& text) {
    std::size_t p = 0;
    while (p < text.size()) {
      std::size_t q = text.find(',', p);
      if (q == std::string::npos) q = text.size();
      std::string t = text.substr(p, q - p);
      if (!t.empty()) out.meta.tags.push_back(t);
      p = q + 1;
    }
  };
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
  out.online = mode == "online";
  out.offline = mode == "offline";
  out.silent = env("WANDB_SILENT") == "true" || env("WANDB_SILENT") == "1";

  out.meta.project = s("project", "WANDB_PROJECT", "lightning_logs");
  out.meta.entity = s("entity", "WANDB_ENTITY");
  out.meta.display_name = s("name", "WANDB_NAME");
  out.meta.run_id = s("id", "WANDB_RUN_ID", s("version", nullptr));
  if (out.meta.run_id.empty()) out.meta.run_id = random_id();
  for (char c : out.meta.run_id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      config_error("config key id (or WANDB_RUN_ID): '" + out.meta.run_id + "' may hold only letters, digits, '-' and '_'");
  // They become URL path segments (file_stream) and header-adjacent text: no control characters.
  for (auto [key, value] : {std::pair<const char*, const std::string*>{"project (or WANDB_PROJECT)", &out.meta.project},
                            {"entity (or WANDB_ENTITY)", &out.meta.entity}})
    if (wb::has_control_chars(*value))
      config_error(std::string("config key ") + key + ": control characters (CR, LF, ...) are not allowed in '" +
                   wb::strip_query_strings(*value) + "'");
  out.meta.group = s("group", "WANDB_RUN_GROUP");
  out.meta.job_type = s("job_type", "WANDB_JOB_TYPE");
  out.meta.notes = s("notes", "WANDB_NOTES");
  out.meta.host = hostname();
  out.meta.program = program_path();
  if (auto* t = o.if_contains("tags"); t && !t->is_null()) {
    if (t->is_string()) split_tags(std::string(t->as_string()));
    else
      for (const auto& x : t->as_array()) out.meta.tags.emplace_back(x.as_string());
  } else {
    split_tags(env("WANDB_TAGS"));
  }
  if (auto* r = o.if_contains("resume"); r && !r->is_null()) {
    out.resume = r->is_bool() ? (r->as_bool() ? "auto" : "") : std::string(r->as_string());
  } else {
    out.resume = env("WANDB_RESUME");
    if (out.resume == "true" || out.resume == "True") out.resume = "auto";
  }
  if (!out.resume.empty() && out.resume != "allow" && out.resume != "must" && out.resume != "never" && out.resume != "auto")
    config_error("config key resume (or WANDB_RESUME): expected allow, must, never or auto, got '" + out.resume + "'");

  out.save_dir = s("save_dir", "WANDB_DIR", s("dir", nullptr));
  out.base_url = s("base_url", "WANDB_BASE_URL", "https://api.wandb.ai");
  while (!out.base_url.empty() && out.base_url.back() == '/') out.base_url.pop_back();
  if (out.base_url.rfind("http://", 0) != 0 && out.base_url.rfind("https://", 0) != 0)
    config_error("config key base_url (or WANDB_BASE_URL): expected an http:// or https:// URL, got '" + out.base_url + "'");
  out.prefix = s("prefix", nullptr);
  if (auto* lm = o.if_contains("log_model")) {
    if (lm->is_bool()) out.log_model = lm->as_bool() ? 1 : 0;
    else if (lm->is_string() && lm->as_string() == "all") out.log_model = 2;
    else config_error("config key log_model: expected false, true or \"all\"");
  }
  out.artifact_name = s("checkpoint_name", nullptr, "model-" + out.meta.run_id);
  try {
    out.defs = wb::parse_metric_defs(o.if_contains("define_metric"), kStepMetric);
  } catch (const std::invalid_argument& e) {
    config_error(e.what());
  }
  if (auto* c = o.if_contains("config"); c && c->is_object()) out.config = c->as_object();
  out.spool_root = s("spool_dir", nullptr);
  if (out.spool_root.empty()) {
    // Per user: a shared /tmp/ember-wandb-spool let others read the rows and plant runs that the
    // next start would upload with this user's key. Created 0700 and checked (wandb_safety.hpp).
    std::string tmp = env("TMPDIR");
    out.spool_root = (tmp.empty() ? std::string("/tmp") : tmp) + "/ember-wandb-spool-" + std::to_string(::geteuid());
  }
  out.finalize_timeout = num("finalize_timeout_s", 30);
  out.http_timeout = num("http_timeout_s", 30);
  out.retry_initial = num("retry_initial_s", 2);
  out.retry_max = num("retry_max_s", 60);
  out.post_interval = num("post_interval_s", -1);
  out.stats_interval = num("stats_interval_s", 30);
  out.max_queue_bytes = static_cast<std::size_t>(num("max_queue_mb", 256) * 1024 * 1024);
  if (auto* v = o.if_contains("verify_tls"); v && v->is_bool()) out.verify_tls = v->as_bool();
  out.ca_file = s("ca_file", nullptr);
  if (auto* v = o.if_contains("allow_insecure_http"); v && v->is_bool()) out.allow_insecure_http = v->as_bool();
  try {
    wb::check_key_transport(out.base_url, ember::http::Url::parse(out.base_url).host, out.allow_insecure_http,
                            "config key allow_insecure_http: true");
  } catch (const std::invalid_argument& e) {
    config_error(std::string("config key base_url (or WANDB_BASE_URL): ") + e.what());
  } catch (const std::exception& e) {
    config_error(std::string("config key base_url (or WANDB_BASE_URL): ") + wb::strip_query_strings(e.what()));
  }
  if (auto* v = o.if_contains("sync_spool_on_start"); v && v->is_bool()) out.sync_spool = v->as_bool();
  out.console_mode = s("console", "WANDB_CONSOLE", "auto");
  if (out.console_mode != "auto" && out.console_mode != "redirect" && out.console_mode != "off")
    config_error("config key console (or WANDB_CONSOLE): expected auto, redirect or off, got '" + out.console_mode + "'");

  // Looked up in every mode: the wandb:// scheme (resume from an artifact) reads with it even
  // when this logger is offline, disabled or on a rank > 0.
  out.api_key = env("WANDB_API_KEY");
  if (out.api_key.empty()) {
    std::string host = ember::http::Url::parse(out.base_url).host;
    out.api_key = wb::netrc_key(host, &out.netrc_path);
  }
  if (std::string local = wb::local_path_of(out.spool_root); !local.empty()) out.spool_root = local;
  out.spool_dir = wb::join_url(out.spool_root, "run-" + out.meta.run_id + "-" + std::to_string(::getpid()));
  return out;
}

std::string Settings::key_hint() const {
  return "set WANDB_API_KEY or add 'machine " + ember::http::Url::parse(base_url).host + " login user password KEY' to " +
         (netrc_path.empty() ? std::string("~/.netrc") : netrc_path) + " (or $NETRC)";
}

wb::ApiOptions Settings::api_options(int max_attempts) const {
  wb::ApiOptions ao;
  ao.base_url = base_url;
  ao.api_key = api_key;
  ao.http.verify_tls = verify_tls;
  ao.http.ca_file = ca_file;
  ao.http.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(http_timeout * 1000));
  ao.retry_initial_s = retry_initial;
  ao.retry_max_s = retry_max;
  ao.max_attempts = max_attempts;
  return ao;
}

}  // namespace ember::wandb_plugin
