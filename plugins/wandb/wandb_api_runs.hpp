// Runs through W&B's API: creating or updating one (UpsertBucket), where a resumed run goes on
// (RunResumeStatus), run files (CreateRunFiles + PUT), and uploading a whole run read from a spool
// or offline directory (upload_run).
#pragma once

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "wandb_api_client.hpp"
#include "wandb_console.hpp"
#include "wandb_types.hpp"

namespace ember::wandb {

constexpr const char* kUpsertBucket =
    "mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, "
    "$description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, "
    "$host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, "
    "$sweep: String, $tags: [String!], $summaryMetrics: JSONString) { upsertBucket(input: {id: $id, name: $name, "
    "groupName: $groupName, modelName: $project, entityName: $entity, description: $description, "
    "displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, "
    "jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, "
    "summaryMetrics: $summaryMetrics}) { bucket { id name displayName description config sweepName "
    "project { id name entity { id name } } historyLineCount } inserted } }";

inline json::value str_or_null(const std::string& s) { return s.empty() ? json::value() : json::value(s); }

// The first call sends everything; later ones (config updates) only name, project, entity, config.
inline RunRef upsert_bucket(Api& api, const RunMeta& m, const std::string* config_json, bool first,
                            const std::string* summary_json = nullptr) {
  json::object v{{"name", m.run_id}, {"project", str_or_null(m.project)}, {"entity", str_or_null(m.entity)}};
  if (config_json) v["config"] = *config_json;
  if (first) {
    json::array tags;
    for (const auto& t : m.tags) tags.emplace_back(t);
    v["tags"] = tags;
    v["displayName"] = str_or_null(m.display_name);
    v["groupName"] = str_or_null(m.group);
    v["jobType"] = str_or_null(m.job_type);
    v["notes"] = str_or_null(m.notes);
    v["host"] = str_or_null(m.host);
    v["program"] = str_or_null(m.program);
    v["debug"] = false;
  }
  if (summary_json) v["summaryMetrics"] = *summary_json;
  json::object d = api.graphql(kUpsertBucket, std::move(v));
  RunRef ref{m.entity, m.project, m.run_id, ""};
  try {
    const auto& b = d.at("upsertBucket").at("bucket").as_object();
    ref.storage_id = std::string(b.at("id").as_string());
    ref.run_id = std::string(b.at("name").as_string());
    const auto& p = b.at("project").as_object();
    ref.project = std::string(p.at("name").as_string());
    ref.entity = std::string(p.at("entity").at("name").as_string());
  } catch (const std::exception& e) {
    throw ApiError(Failure::fatal, 200, "W&B UpsertBucket: unexpected answer (" + std::string(e.what()) +
                                            "); expected upsertBucket.bucket with id, name, project.name, project.entity.name");
  }
  return ref;
}

// RunResumeStatus: the existing run's bucket, or null when the run does not exist.
inline json::value resume_status(Api& api, const RunMeta& m) {
  json::object d = api.graphql(
      "query RunResumeStatus($project: String, $entity: String, $name: String!) { model(name: $project, "
      "entityName: $entity) { id name entity { id name } bucket(name: $name, missingOk: true) { id name "
      "summaryMetrics displayName logLineCount historyLineCount eventsLineCount historyTail eventsTail config tags } } }",
      json::object{{"project", str_or_null(m.project)}, {"entity", str_or_null(m.entity)}, {"name", m.run_id}});
  auto* model = d.if_contains("model");
  if (!model || !model->is_object()) return nullptr;
  auto* b = model->as_object().if_contains("bucket");
  return b ? *b : json::value();
}

// Where a resumed run continues (from RunResumeStatus's bucket): after the server's history and
// events lines, at the _step after its last history row, with _runtime going on from that row's.
struct ResumeBase {
  std::int64_t history_lines = 0, events_lines = 0, log_lines = 0, next_step = 0;
  double runtime = 0;
};
inline ResumeBase resume_base(const json::object& bucket) {
  ResumeBase r;
  auto count = [&](const char* k) -> std::int64_t {
    auto* v = bucket.if_contains(k);
    return v && v->is_number() ? v->to_number<std::int64_t>() : 0;
  };
  r.history_lines = count("historyLineCount");
  r.events_lines = count("eventsLineCount");
  r.log_lines = count("logLineCount");
  if (auto* tail = bucket.if_contains("historyTail"); tail && tail->is_string()) {
    try {
      json::value arr = json::parse(tail->as_string());
      if (arr.is_array() && !arr.as_array().empty() && arr.as_array().back().is_string()) {
        json::value last = parse_line(arr.as_array().back().as_string());
        if (auto* s = last.as_object().if_contains("_step"); s && s->is_number())
          r.next_step = s->to_number<std::int64_t>() + 1;
        if (auto* t = last.as_object().if_contains("_runtime"); t && t->is_number()) r.runtime = t->to_number<double>();
      }
    } catch (const std::exception&) {
      // A tail we cannot read: continue at the line count, which _step follows when every row
      // was logged by one client.
    }
  }
  if (r.next_step == 0) r.next_step = r.history_lines;
  return r;
}

// Lines keyed by local offset, moved to start `by` lines later (after what the server has).
inline void move_offsets(std::map<std::int64_t, std::string>& lines, std::int64_t by) {
  if (by == 0) return;
  std::map<std::int64_t, std::string> moved;
  for (auto& [k, line] : lines) moved.emplace_hint(moved.end(), k + by, std::move(line));
  lines.swap(moved);
}

// A history line (or the summary) rendered before the resume base was known: its _step and
// _runtime (the last occurrences: the plugin writes them at the end of every row) moved on.
inline std::string shift_history_line(std::string_view line, std::int64_t step, double runtime) {
  std::string out(line);
  // The number after the last `"key":`, rewritten by f; nothing happens when the key is absent.
  auto rewrite = [&](std::string_view key, auto f) {
    std::size_t k = out.rfind(key);
    if (k == std::string::npos) return;
    std::size_t begin = k + key.size();
    while (begin < out.size() && out[begin] == ' ') ++begin;
    std::size_t end = out.find_first_of(",}", begin);
    if (end == std::string::npos) return;
    std::string text = f(out.substr(begin, end - begin));
    if (!text.empty()) out.replace(begin, end - begin, text);
  };
  rewrite("\"_step\":", [&](const std::string& v) {
    std::string t;
    char* e = nullptr;
    long long n = std::strtoll(v.c_str(), &e, 10);
    if (e != v.c_str()) append_int(t, n + step);
    return t;
  });
  rewrite("\"_runtime\":", [&](const std::string& v) {
    std::string t;
    char* e = nullptr;
    double d = std::strtod(v.c_str(), &e);
    if (e != v.c_str()) append_number(t, d + runtime);
    return t;
  });
  return out;
}

// "uploadHeaders" of CreateRunFiles / CreateArtifactFiles / CreateArtifactManifest: a list of
// "Name:Value" strings the storage signed the upload URL over (Content-MD5 among them); W&B's
// clients send them back with the PUT, and the storage refuses the upload without them.
inline std::vector<std::pair<std::string, std::string>> upload_headers(const json::value* h) {
  std::vector<std::pair<std::string, std::string>> out;
  if (h && h->is_array())
    for (const auto& x : h->as_array())
      if (x.is_string()) {
        std::string s(x.as_string());
        auto c = s.find(':');
        if (c == std::string::npos || has_control_chars(s)) continue;
        std::string v = s.substr(c + 1);
        while (!v.empty() && v.front() == ' ') v.erase(v.begin());
        out.emplace_back(s.substr(0, c), v);
      }
  return out;
}

// CreateRunFiles for one file, then PUT its bytes (a null uploadUrl means the server has it).
inline void upload_run_file(Api& api, const RunRef& run, const std::string& name, const std::string& bytes) {
  json::object d = api.retry([&] {
    return api.graphql(
        "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { "
        "createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { "
        "runID uploadHeaders files { name uploadUrl } } }",
        json::object{{"entity", run.entity}, {"project", run.project}, {"run", run.run_id}, {"files", json::array{name}}});
  });
  const json::object* crf = d.if_contains("createRunFiles") ? d.at("createRunFiles").if_object() : nullptr;
  if (!crf || crf->at("runID").is_null())
    throw ApiError(Failure::fatal, 200, "W&B CreateRunFiles " + name + ": no runID in the answer");
  std::vector<std::pair<std::string, std::string>> headers = upload_headers(crf->if_contains("uploadHeaders"));
  for (const auto& f : crf->at("files").as_array()) {
    const auto& o = f.as_object();
    if (o.at("name").as_string() != name || o.at("uploadUrl").is_null()) continue;
    std::string url(o.at("uploadUrl").as_string());
    api.retry([&] { api.put(url, bytes, headers); });
  }
}


// UpsertBucket, run files (output.log made from the console lines unless there is one),
// file_stream history/events/console/summary in batches of at most 10000 lines, then
// complete/exitcode when the run had exited. Each request retried per W&B's policy.
inline RunRef upload_run(Api& api, RunData d) {
  if (d.base_unknown && !d.resume.empty()) {
    json::value b = api.retry([&] { return resume_status(api, d.meta); });
    if (b.is_null() && d.resume == "must")
      throw ApiError(Failure::fatal, 0, "resume='must' but run " + d.meta.run_id + " does not exist in project " + d.meta.project);
    if (!b.is_null() && d.resume == "never")
      throw ApiError(Failure::fatal, 0, "resume='never' but run " + d.meta.run_id + " already exists");
    if (b.is_object()) {
      ResumeBase base = resume_base(b.as_object());
      for (auto& kv : d.history) kv.second = shift_history_line(kv.second, base.next_step, base.runtime);
      move_offsets(d.history, base.history_lines);
      move_offsets(d.events, base.events_lines);
      move_offsets(d.output, base.log_lines);
      if (!d.summary_json.empty()) d.summary_json = shift_history_line(d.summary_json, base.next_step, base.runtime);
    }
    d.base_unknown = false;
  }
  const std::string* cfg = d.config_json.empty() ? nullptr : &d.config_json;
  RunRef run = api.retry([&] { return upsert_bucket(api, d.meta, cfg, true); });
  std::map<std::string, std::string> files = d.files;
  if (!d.output.empty() && !files.count("output.log")) {
    std::string text;
    for (const auto& kv : d.output) text.append(console_text(kv.second)).push_back('\n');
    files["output.log"] = std::move(text);
  }
  for (const auto& [name, bytes] : files) upload_run_file(api, run, name, bytes);
  auto batches = [&](const char* file, const std::map<std::int64_t, std::string>& lines) {
    auto it = lines.begin();
    while (it != lines.end()) {
      std::int64_t first = it->first;
      json::array content;
      std::size_t bytes = 0;
      while (it != lines.end() && it->first == first + static_cast<std::int64_t>(content.size()) &&
             content.size() < 10000 && bytes < (8u << 20)) {
        bytes += it->second.size();
        content.emplace_back(it->second);
        ++it;
      }
      json::object files{{file, json::object{{"offset", first}, {"content", content}}}};
      if (!d.summary_json.empty())
        files["wandb-summary.json"] = json::object{{"offset", 0}, {"content", json::array{json::string(d.summary_json)}}};
      std::string body = json::serialize(json::object{{"files", files}, {"dropped", 0}});
      api.retry([&] { return api.file_stream(run.entity, run.project, run.run_id, body); });
    }
  };
  batches("wandb-history.jsonl", d.history);
  batches("wandb-events.jsonl", d.events);
  batches("output.log", d.output);
  if (d.history.empty() && !d.summary_json.empty()) {
    std::string body = json::serialize(json::object{
        {"files", json::object{{"wandb-summary.json", json::object{{"offset", 0}, {"content", json::array{json::string(d.summary_json)}}}}}},
        {"dropped", 0}});
    api.retry([&] { return api.file_stream(run.entity, run.project, run.run_id, body); });
  }
  if (d.exit_code) {
    json::array uploaded;
    for (const auto& f : files) uploaded.emplace_back(f.first);
    std::string body = json::serialize(
        json::object{{"complete", true}, {"exitcode", *d.exit_code}, {"dropped", 0}, {"uploaded", uploaded}});
    api.retry([&] { return api.file_stream(run.entity, run.project, run.run_id, body); });
  }
  return run;
}

}  // namespace ember::wandb
