// Reading a whole run back for `ember wandb sync` and the plugin's start-up sync: a spool
// directory (read_spool_dir) or an offline run directory with its run-<id>.wandb transaction log
// (read_offline_dir). Both are untrusted input: regular files only, no symlinks, nothing outside
// the directory.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "wandb_api_runs.hpp"
#include "wandb_console.hpp"
#include "wandb_records.hpp"
#include "wandb_spool.hpp"
#include "wandb_types.hpp"

namespace ember::wandb {

// Read a spool directory into RunData; `used` gets the names of the files it read.
inline RunData read_spool_dir(Store& store, const std::string& dir, std::vector<std::string>* used,
                              std::string* base_url) {
  RunData d;
  auto meta_text = store.read(join_url(dir, "meta.json"));
  if (!meta_text) throw std::runtime_error(dir + ": no meta.json; not a wandb spool directory");
  json::object meta = json::parse(*meta_text).as_object();
  d.meta = RunMeta::from_json(meta);
  if (auto* c = meta.if_contains("config"); c && c->is_string()) d.config_json = std::string(c->as_string());
  if (base_url)
    if (auto* b = meta.if_contains("base_url"); b && b->is_string()) *base_url = std::string(b->as_string());
  if (used) used->push_back("meta.json");
  for (const auto& name : store.list(dir)) {
    auto load = [&](const char* prefix, std::map<std::int64_t, std::string>& into) {
      std::string p = std::string(prefix) + "-";
      if (name.compare(0, p.size(), p) != 0) return;
      std::int64_t first = std::stoll(name.substr(p.size()));
      if (auto text = store.read(join_url(dir, name))) {
        for (auto& kv : split_segment(first, *text)) into[kv.first] = std::move(kv.second);
        if (used) used->push_back(name);
      }
    };
    load("hist", d.history);
    load("events", d.events);
    load("output", d.output);
    if (std::string path = spooled_file_path(name); !path.empty())
      if (auto bytes = store.read(join_url(dir, name))) {
        d.files[path] = std::move(*bytes);
        if (used) used->push_back(name);
      }
  }
  if (auto s = store.read(join_url(dir, "summary.json"))) {
    d.summary_json = *s;
    if (used) used->push_back("summary.json");
  }
  if (auto e = store.read(join_url(dir, "exit.json"))) {
    d.exit_code = static_cast<int>(json::parse(*e).at("exitcode").to_number<std::int64_t>());
    if (used) used->push_back("exit.json");
  }
  // Lines are spooled with local offsets (and, before the run reached W&B, local steps); the
  // meta says where they go on the server.
  auto num = [&](const char* k) -> std::int64_t {
    auto* v = meta.if_contains(k);
    return v && v->is_number() ? v->to_number<std::int64_t>() : 0;
  };
  if (auto* r = meta.if_contains("resume"); r && r->is_string()) d.resume = std::string(r->as_string());
  if (auto* k = meta.if_contains("base_known"); k && k->is_bool() && !k->as_bool() && !d.resume.empty()) {
    d.base_unknown = true;
    return d;
  }
  const std::int64_t hb = num("history_base"), eb = num("events_base"), ob = num("output_base");
  const std::int64_t shift_until = num("shift_until");
  const std::int64_t step_shift = num("step_shift");
  double rt_shift = 0;
  if (auto* v = meta.if_contains("runtime_shift"); v && v->is_number()) rt_shift = v->to_number<double>();
  for (auto it = d.history.begin(); it != d.history.end() && it->first < shift_until; ++it)
    it->second = shift_history_line(it->second, step_shift, rt_shift);
  move_offsets(d.history, hb);
  move_offsets(d.events, eb);
  move_offsets(d.output, ob);
  return d;
}

// An offline run directory (offline-run-<ts>-<id>/): the one run-*.wandb file and files/.
inline RunData read_offline_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> logs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".wandb") {
      if (e.is_symlink()) throw std::runtime_error(e.path().string() + ": a symlink; refused (sync reads regular files only)");
      logs.push_back(e.path());
    }
  if (ec) throw std::runtime_error("cannot read directory " + dir.string() + ": " + ec.message());
  if (logs.size() != 1)
    throw std::runtime_error(dir.string() + ": expected exactly one *.wandb file, found " + std::to_string(logs.size()));
  // Regular files only, never through a symlink: the directory may be someone else's.
  auto slurp = [&](const fs::path& p) {
    auto bytes = read_regular_file_under(dir.string(), p.filename().string(), "sync:");
    if (!bytes) throw std::runtime_error("cannot read " + p.string());
    return std::move(*bytes);
  };
  RunData d;
  bool have_run = false;
  std::int64_t next = 0;
  std::int64_t run_start_s = 0;     // the run record's start_time, for the stats lines' _runtime
  std::vector<std::string> listed;  // files records' paths
  std::map<std::string, json::value> summary;
  for (const auto& rec : txlog::read_all(slurp(logs[0]), logs[0].string())) {
    Decoded r = decode_record(rec);
    switch (r.type) {
      case kRun: {
        have_run = true;
        run_start_s = r.run.start_time_s;
        d.meta.run_id = r.run.run_id, d.meta.entity = r.run.entity, d.meta.project = r.run.project;
        d.meta.display_name = r.run.display_name, d.meta.group = r.run.group, d.meta.job_type = r.run.job_type;
        d.meta.notes = r.run.notes, d.meta.host = r.run.host, d.meta.tags = r.run.tags;
        json::object cfg;
        for (const auto& [k, v] : r.run.config) cfg[k] = json::object{{"desc", nullptr}, {"value", parse_line(v)}};
        if (!cfg.empty()) d.config_json = json::serialize(cfg);
        break;
      }
      case kConfig: {
        json::object cfg = d.config_json.empty() ? json::object{} : json::parse(d.config_json).as_object();
        for (const auto& [k, v] : r.items) cfg[k] = json::object{{"desc", nullptr}, {"value", parse_line(v)}};
        d.config_json = json::serialize(cfg);
        break;
      }
      case kHistory: d.history[next++] = line_of_items(r.items); break;
      case kStats: {
        // As W&B's sender flattens a StatsRecord (and the plugin does online): the items plus
        // _wandb, _timestamp (the record's own) and _runtime since the run's start.
        Items items = r.items;
        items.emplace_back("_wandb", "true");
        items.emplace_back("_timestamp", number_text(static_cast<double>(r.timestamp_s)));
        items.emplace_back("_runtime", number_text(static_cast<double>(std::max<std::int64_t>(0, r.timestamp_s - run_start_s))));
        d.events[static_cast<std::int64_t>(d.events.size())] = line_of_items(items);
        break;
      }
      case kSummary:
        for (const auto& [k, v] : r.items) summary[k] = parse_line(v);
        break;
      case kExit: d.exit_code = r.exit_code; break;
      case kOutputRaw:
        if (auto l = decode_output_raw(rec)) d.output[static_cast<std::int64_t>(d.output.size())] = console_wire_line(*l);
        break;
      case kFiles:
        for (const auto& f : r.files) listed.push_back(f);
        break;
      default: break;
    }
  }
  if (!have_run) throw std::runtime_error(logs[0].string() + ": no run record; cannot sync");
  if (!summary.empty()) {
    std::string s = "{";
    bool first = true;
    for (const auto& [k, v] : summary) {
      if (!first) s += ", ";
      first = false;
      append_json_string(s, k);
      s += ": " + line_text(v);
    }
    d.summary_json = s + "}";
  }
  // The run files: the three every run has, and those files records name (media/…).
  for (const char* f : {"wandb-metadata.json", "wandb-summary.json", "config.yaml"}) listed.emplace_back(f);
  // A files record names a path under files/: an absolute path, "..", a symlink or anything but a
  // regular file is refused (it would upload a file from outside the run directory).
  for (const auto& f : listed) {
    if (d.files.count(f)) continue;
    if (auto bytes = read_regular_file_under((dir / "files").string(), f, logs[0].string() + ": files record"))
      d.files[f] = std::move(*bytes);
  }
  return d;
}

}  // namespace ember::wandb
