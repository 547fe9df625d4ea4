// The plain data the W&B client and the plugin share, without networking: what identifies a run
// (RunMeta, never the key), where the server put it (RunRef), and a whole run read back from a
// spool or offline directory (RunData).
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ember::wandb {

namespace json = boost::json;

using Clock = std::chrono::steady_clock;

// What identifies and describes a run (never the key).
struct RunMeta {
  std::string entity, project, run_id, display_name, group, job_type, notes, host, program;
  std::vector<std::string> tags;

  json::object to_json() const {
    json::array t;
    for (const auto& s : tags) t.emplace_back(s);
    return {{"entity", entity}, {"project", project}, {"run_id", run_id}, {"display_name", display_name},
            {"group", group}, {"job_type", job_type}, {"notes", notes}, {"host", host},
            {"program", program}, {"tags", t}};
  }
  static RunMeta from_json(const json::object& o) {
    RunMeta m;
    auto s = [&](const char* k) {
      auto* v = o.if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    m.entity = s("entity"), m.project = s("project"), m.run_id = s("run_id"), m.display_name = s("display_name");
    m.group = s("group"), m.job_type = s("job_type"), m.notes = s("notes"), m.host = s("host"), m.program = s("program");
    if (auto* t = o.if_contains("tags"); t && t->is_array())
      for (const auto& x : t->as_array())
        if (x.is_string()) m.tags.emplace_back(x.as_string());
    return m;
  }
};

// Where the server put the run (the entity is the viewer's when we sent none).
struct RunRef {
  std::string entity, project, run_id, storage_id;
};

struct RunData {
  RunMeta meta;
  std::string config_json;  // wrapped config as JSON text; empty: none
  std::map<std::int64_t, std::string> history, events;  // line offset -> JSON line
  std::map<std::int64_t, std::string> output;            // line offset -> output.log wire line
  std::string summary_json;                              // empty: none
  std::optional<int> exit_code;
  std::map<std::string, std::string> files;  // run files to upload (config.yaml, ...)
  // A spooled run that asked to resume but never reached W&B: its rows are numbered from 0, and
  // upload_run moves them after what the server has (offsets, _step, _runtime).
  std::string resume;
  bool base_unknown = false;
};

}  // namespace ember::wandb
