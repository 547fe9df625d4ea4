// W&B's client protocol over ember::http (Boost.Beast + OpenSSL): GraphQL with W&B's retry
// policy, run creation (UpsertBucket), run files (CreateRunFiles + PUT), file_stream, model
// artifacts (CreateArtifact / Manifest / Files / PUT / Commit) and their download (ArtifactByName +
// manifest + file URLs), and uploading a whole run from a spool directory or an offline .wandb
// directory. Shared by the wandb plugin (on its worker thread) and `ember wandb`.
//
// The API key only ever goes into the Authorization header; no message built here contains it.
#pragma once

#include <ember/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "wandb_console.hpp"
#include "wandb_proto.hpp"
#include "wandb_safety.hpp"

namespace ember::wandb {

using Clock = std::chrono::steady_clock;

enum class Failure { retryable, auth, fatal };

class ApiError : public std::runtime_error {
 public:
  ApiError(Failure kind, int status, const std::string& what)
      : std::runtime_error(what), kind_(kind), status_(status) {}
  Failure kind() const { return kind_; }
  int status() const { return status_; }

 private:
  Failure kind_;
  int status_;
};

struct ApiOptions {
  std::string base_url = "https://api.wandb.ai";  // no trailing '/'
  std::string api_key;
  http::Options http;
  double retry_initial_s = 2, retry_max_s = 60;
  int max_attempts = 30;  // per operation under Api::retry
  // Sleep until t; false means give up now (a finalize deadline, shutdown). Default: sleep.
  std::function<bool(Clock::time_point)> wait;
};

// One attempt per call; retry() wraps an operation in W&B's backoff. Not thread-safe: one Api
// per thread.
class Api {
 public:
  explicit Api(ApiOptions o) : o_(std::move(o)) {
    while (!o_.base_url.empty() && o_.base_url.back() == '/') o_.base_url.pop_back();
    base_ = http::Url::parse(o_.base_url);
    if (base_.target == "/") base_.target.clear();
    if (!o_.wait) o_.wait = [](Clock::time_point t) {
      std::this_thread::sleep_until(t);
      return true;
    };
  }
  const ApiOptions& options() const { return o_; }
  const std::string& base_url() const { return o_.base_url; }
  void set_timeout(std::chrono::milliseconds t) {
    if (t == o_.http.timeout) return;
    o_.http.timeout = t;
    clients_.clear();
  }

  // POST {base}/graphql; returns "data". GraphQL errors are fatal (the request was understood).
  json::object graphql(std::string_view query, json::object variables) {
    std::string op = op_name(query);
    std::string body = json::serialize(json::object{{"query", query}, {"variables", std::move(variables)}});
    http::Response r = send(base_, "POST", base_.target + "/graphql", body, true, "graphql " + op);
    const std::string what = "W&B " + o_.base_url + "/graphql " + op;
    check_status(r, what, {400, 403, 404, 409, 410, 413, 422, 501}, true);
    json::value v;
    try {
      v = json::parse(r.body);
    } catch (const std::exception&) {
      throw ApiError(Failure::retryable, r.status, what + ": the answer is not JSON: " + snippet(r.body));
    }
    if (!v.is_object()) throw ApiError(Failure::fatal, r.status, what + ": the answer is not a JSON object");
    auto& o = v.as_object();
    if (auto* e = o.if_contains("errors"); e && e->is_array() && !e->as_array().empty())
      throw ApiError(Failure::fatal, r.status, what + ": " + snippet(json::serialize(*e)));
    auto* d = o.if_contains("data");
    if (!d || !d->is_object()) throw ApiError(Failure::fatal, r.status, what + ": the answer has no \"data\" object");
    return d->as_object();
  }

  // POST {base}/files/{entity}/{project}/{run}/file_stream.
  json::value file_stream(const std::string& entity, const std::string& project, const std::string& run,
                          const std::string& body) {
    // Each segment percent-encoded: a project named "a b\r\nX: y" must stay one path segment of
    // one request line, not become a header.
    std::string target = base_.target + "/files/" + encode_path_segment(entity) + "/" + encode_path_segment(project) + "/" +
                         encode_path_segment(run) + "/file_stream";
    http::Response r = send(base_, "POST", target, body, true, "file_stream");
    check_status(r, "W&B " + o_.base_url + target, {400, 403, 404, 409}, true);
    try {
      return json::parse(r.body);
    } catch (const std::exception&) {
      return json::object{};  // only logged by W&B's clients
    }
  }

  // PUT to a pre-signed upload URL: no auth header (W&B's clients treat these URLs as signed).
  void put(const std::string& url, const std::string& bytes,
           const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::Url u = absolute(url);
    http::Response r = send(u, "PUT", u.target, bytes, false, "upload", headers);
    if (r.status >= 200 && r.status < 300) return;
    static const int retry[] = {308, 408, 409, 429, 500, 502, 503, 504};
    bool again = std::find(std::begin(retry), std::end(retry), r.status) != std::end(retry);
    throw ApiError(again ? Failure::retryable : Failure::fatal, r.status,
                   "upload to " + redact_query(url) + ": HTTP " + std::to_string(r.status) + " " + snippet(r.body));
  }

  std::string get(const std::string& url) {
    http::Url u = absolute(url);
    http::Response r = send(u, "GET", u.target, "", false, "download");
    if (r.status >= 200 && r.status < 300) return std::move(r.body);
    bool again = r.status >= 500 || r.status == 429 || r.status == 408;
    throw ApiError(again ? Failure::retryable : Failure::fatal, r.status,
                   "download " + redact_query(url) + ": HTTP " + std::to_string(r.status) + " " + snippet(r.body));
  }

  // The delay before attempt n+1 (n >= 0): initial * 2^n, capped, plus 0-25 % jitter.
  Clock::duration backoff(int n) {
    double s = o_.retry_initial_s * std::pow(2.0, std::min(n, 30));
    s = std::min(s, o_.retry_max_s);
    std::uniform_real_distribution<double> jitter(0.0, 0.25);
    s *= 1.0 + jitter(rng_);
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  // Run f until it succeeds, fails for good (auth, fatal), runs out of attempts or wait() says
  // stop; the last ApiError propagates.
  template <class F>
  auto retry(F&& f) -> decltype(f()) {
    for (int n = 0;; ++n) {
      try {
        return f();
      } catch (const ApiError& e) {
        if (e.kind() != Failure::retryable || n + 1 >= o_.max_attempts) throw;
        if (!o_.wait(Clock::now() + backoff(n))) throw;
      }
    }
  }

  static std::string op_name(std::string_view query) {
    for (std::string_view kw : {"query", "mutation"}) {
      std::size_t p = query.find(kw);
      if (p == std::string_view::npos) continue;
      p += kw.size();
      while (p < query.size() && std::isspace(static_cast<unsigned char>(query[p]))) ++p;
      std::size_t e = p;
      while (e < query.size() && (std::isalnum(static_cast<unsigned char>(query[e])) || query[e] == '_')) ++e;
      if (e > p) return std::string(query.substr(p, e - p));
    }
    return "(anonymous)";
  }

 private:
  static std::string snippet(const std::string& s) {
    std::string t = s.substr(0, 300);
    for (char& c : t)
      if (c == '\n' || c == '\r') c = ' ';
    return t.size() < s.size() ? t + "..." : t;
  }
  static std::string redact_query(const std::string& url) {
    auto q = url.find('?');
    return q == std::string::npos ? url : url.substr(0, q) + "?...";
  }

  // Run-file URLs that start with '/' are relative to the base URL (as W&B's Python client does).
  http::Url absolute(const std::string& url) {
    if (!url.empty() && url.front() == '/') {
      http::Url u = base_;
      u.target = url;
      return u;
    }
    try {
      return http::Url::parse(url);
    } catch (const http::Error&) {  // its message quotes the URL, query (signature) included
      throw ApiError(Failure::fatal, 0, "W&B: '" + redact_query(url) + "' is not a valid http(s) URL");
    }
  }

  void check_status(const http::Response& r, const std::string& what, std::initializer_list<int> no_retry,
                    bool json_body) {
    (void)json_body;
    if (r.status >= 200 && r.status < 300) return;
    std::string msg = what + ": HTTP " + std::to_string(r.status) + " " + snippet(r.body);
    if (r.status == 401)
      throw ApiError(Failure::auth, 401, what + ": HTTP 401: the API key was refused");
    if (std::find(no_retry.begin(), no_retry.end(), r.status) != no_retry.end())
      throw ApiError(Failure::fatal, r.status, msg);
    throw ApiError(Failure::retryable, r.status, msg);
  }

  http::Response send(const http::Url& u, const char* method, const std::string& target, const std::string& body,
                      bool auth, const std::string& what,
                      const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    http::Request req{method, target, {}, body};
    req.headers.emplace_back("User-Agent", "ember-wandb/1");
    if (auth) {
      req.headers.emplace_back("Content-Type", "application/json");
      req.headers.emplace_back("Authorization", "Basic " + base64("api:" + o_.api_key));
    }
    for (const auto& h : extra) req.headers.push_back(h);
    try {
      return client(u).send(req);
    } catch (const http::Error& e) {
      // http::Error may quote the request target, whose query is a pre-signed URL's signature.
      throw ApiError(Failure::retryable, 0, "W&B " + what + ": " + strip_query_strings(e.what()));
    }
  }

  http::Client& client(const http::Url& u) {
    std::string key = u.scheme + "://" + u.host + ":" + u.port;
    auto& c = clients_[key];
    if (!c) c = std::make_unique<http::Client>(u.scheme, u.host, u.port, o_.http);
    return *c;
  }

  ApiOptions o_;
  http::Url base_;
  std::map<std::string, std::unique_ptr<http::Client>> clients_;
  std::mt19937 rng_{std::random_device{}()};
};

// ---- the API key -------------------------------------------------------------------------------

inline std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// The key for base_url's host in a netrc file ($NETRC, else ~/.netrc): "machine H ... password K".
inline std::string netrc_key(const std::string& host, std::string* where) {
  std::string path = getenv_str("NETRC");
  if (path.empty()) {
    std::string home = getenv_str("HOME");
    if (home.empty()) return {};
    path = home + "/.netrc";
  }
  if (where) *where = path;
  std::ifstream in(path);
  if (!in) return {};
  std::vector<std::string> tok;
  for (std::string t; in >> t;) tok.push_back(t);
  bool ours = false;
  for (std::size_t i = 0; i + 1 < tok.size(); ++i) {
    if (tok[i] == "machine") ours = tok[i + 1] == host;
    else if (tok[i] == "default") ours = true;
    else if (ours && tok[i] == "password") return tok[i + 1];
  }
  return {};
}

// ---- runs ----------------------------------------------------------------------------------------

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

// ---- artifacts -------------------------------------------------------------------------------------

struct ArtifactSpec {
  std::string name, type = "model", description;
  std::vector<std::string> aliases;  // "latest" is added
  json::object metadata;
  std::map<std::string, std::string> files;  // path in the artifact -> bytes
};

struct LoggedArtifact {
  std::string id, digest;
  bool deduplicated = false;  // the server already had this content (aliases moved to it)
};

inline std::string client_id() {
  static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::mt19937_64 g(rd());
  std::string s;
  for (int i = 0; i < 128; ++i) s += chars[g() % 36];
  return s;
}

// The manifest file (wandb_manifest.json, version 1), entries sorted by path.
inline std::string manifest_json(const std::map<std::string, std::string>& digests,
                                 const std::map<std::string, std::size_t>& sizes, const std::string& birth_id) {
  json::object contents;
  for (const auto& [path, d] : digests)
    contents[path] = json::object{{"digest", d}, {"birthArtifactID", birth_id}, {"size", sizes.at(path)}};
  return json::serialize(json::object{{"version", 1},
                                      {"storagePolicy", "wandb-storage-policy-v1"},
                                      {"storagePolicyConfig", json::object{{"storageLayout", "V2"}}},
                                      {"contents", contents}});
}

// log_artifact as W&B's client does: CreateArtifact, CreateArtifactManifest (no upload),
// CreateArtifactFiles, PUT each file, CreateArtifactManifest (with upload) + PUT manifest, Commit.
inline LoggedArtifact log_artifact(Api& api, const RunRef& run, const ArtifactSpec& spec) {
  std::map<std::string, std::string> digests;
  std::map<std::string, std::size_t> sizes;
  for (const auto& [path, bytes] : spec.files) digests[path] = md5_b64(bytes), sizes[path] = bytes.size();
  LoggedArtifact out;
  out.digest = manifest_digest(digests);
  std::vector<std::string> aliases = spec.aliases;
  if (std::find(aliases.begin(), aliases.end(), "latest") == aliases.end()) aliases.push_back("latest");
  json::array alias_input;
  for (const auto& a : aliases) alias_input.push_back(json::object{{"artifactCollectionName", spec.name}, {"alias", a}});

  json::object created = api.retry([&] {
    return api.graphql(
        "mutation CreateArtifact($artifactTypeName: String!, $artifactCollectionNames: [String!], $entityName: String!, "
        "$projectName: String!, $runName: String, $description: String, $digest: String!, $aliases: [ArtifactAliasInput!], "
        "$metadata: JSONString, $clientID: ID, $sequenceClientID: ID, $enableDigestDeduplication: Boolean) { "
        "createArtifact(input: {artifactTypeName: $artifactTypeName, artifactCollectionNames: $artifactCollectionNames, "
        "entityName: $entityName, projectName: $projectName, runName: $runName, description: $description, digest: $digest, "
        "digestAlgorithm: MANIFEST_MD5, aliases: $aliases, metadata: $metadata, clientID: $clientID, "
        "sequenceClientID: $sequenceClientID, enableDigestDeduplication: $enableDigestDeduplication}) { "
        "artifact { id state artifactSequence { id latestArtifact { id versionIndex } } } } }",
        json::object{{"artifactTypeName", spec.type},
                     {"artifactCollectionNames", json::array{spec.name}},
                     {"entityName", run.entity},
                     {"projectName", run.project},
                     {"runName", run.run_id},
                     {"description", str_or_null(spec.description)},
                     {"digest", out.digest},
                     {"aliases", alias_input},
                     {"metadata", json::serialize(spec.metadata)},
                     {"clientID", client_id()},
                     {"sequenceClientID", client_id()},
                     {"enableDigestDeduplication", true}});
  });
  const auto& art = created.at("createArtifact").at("artifact").as_object();
  out.id = std::string(art.at("id").as_string());
  if (art.at("state").as_string() == "COMMITTED") {
    out.deduplicated = true;
    return out;
  }
  json::value base_id;
  if (auto* seq = art.if_contains("artifactSequence"); seq && seq->is_object())
    if (auto* la = seq->as_object().if_contains("latestArtifact"); la && la->is_object())
      base_id = la->as_object().at("id");

  auto manifest_call = [&](bool include_upload, const std::string& digest) {
    return api.retry([&] {
      return api.graphql(
          "mutation CreateArtifactManifest($name: String!, $digest: String!, $artifactID: ID!, $baseArtifactID: ID, "
          "$entityName: String!, $projectName: String!, $runName: String!, $includeUpload: Boolean!) { "
          "createArtifactManifest(input: {name: $name, digest: $digest, artifactID: $artifactID, baseArtifactID: "
          "$baseArtifactID, entityName: $entityName, projectName: $projectName, runName: $runName}) { "
          "artifactManifest { id file { id name displayName uploadUrl @include(if: $includeUpload) uploadHeaders "
          "@include(if: $includeUpload) } } } }",
          json::object{{"name", "wandb_manifest.json"}, {"digest", digest}, {"artifactID", out.id},
                       {"baseArtifactID", base_id}, {"entityName", run.entity}, {"projectName", run.project},
                       {"runName", run.run_id}, {"includeUpload", include_upload}});
    });
  };
  json::object m = manifest_call(false, "");
  std::string manifest_id(m.at("createArtifactManifest").at("artifactManifest").at("id").as_string());

  json::array specs;
  for (const auto& [path, d] : digests)
    specs.push_back(json::object{{"artifactID", out.id}, {"artifactManifestID", manifest_id}, {"name", path}, {"md5", d}});
  json::object files = api.retry([&] {
    return api.graphql(
        "mutation CreateArtifactFiles($storageLayout: ArtifactStorageLayout!, $artifactFiles: [CreateArtifactFileSpecInput!]!) { "
        "createArtifactFiles(input: {artifactFiles: $artifactFiles, storageLayout: $storageLayout}) { files { edges { node { "
        "id name displayName uploadUrl uploadHeaders artifact { id } } } } } }",
        json::object{{"storageLayout", "V2"}, {"artifactFiles", specs}});
  });
  std::string birth_id = out.id;
  for (const auto& e : files.at("createArtifactFiles").at("files").at("edges").as_array()) {
    const auto& node = e.at("node").as_object();
    std::string name(node.at("displayName").is_string() ? node.at("displayName").as_string() : node.at("name").as_string());
    if (auto* a = node.if_contains("artifact"); a && a->is_object()) birth_id = std::string(a->at("id").as_string());
    if (node.at("uploadUrl").is_null()) continue;  // already stored
    auto it = spec.files.find(name);
    if (it == spec.files.end()) continue;
    std::string url(node.at("uploadUrl").as_string());
    auto headers = upload_headers(node.if_contains("uploadHeaders"));
    api.retry([&] { api.put(url, it->second, headers); });
  }
  std::string manifest = manifest_json(digests, sizes, birth_id);
  json::object m2 = manifest_call(true, md5_b64(manifest));
  const auto& mf = m2.at("createArtifactManifest").at("artifactManifest").at("file").as_object();
  if (auto* u = mf.if_contains("uploadUrl"); u && u->is_string()) {
    std::string url(u->as_string());
    auto headers = upload_headers(mf.if_contains("uploadHeaders"));
    api.retry([&] { api.put(url, manifest, headers); });
  }
  api.retry([&] {
    return api.graphql("mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { "
                       "artifact { id digest } } }",
                       json::object{{"artifactID", out.id}});
  });
  return out;
}

struct DownloadedArtifact {
  std::string id, name, version;  // version "vN"
  json::value metadata;
  std::map<std::string, std::string> files;  // path -> bytes, MD5-checked against the manifest
};

// "entity/project/name:alias" -> parts; throws naming what was expected.
inline void split_artifact_path(const std::string& path, std::string& entity, std::string& project, std::string& name) {
  auto a = path.find('/');
  auto b = a == std::string::npos ? a : path.find('/', a + 1);
  if (a == std::string::npos || b == std::string::npos || a == 0 || b == a + 1 || b + 1 >= path.size())
    throw std::invalid_argument("artifact '" + path + "': expected ENTITY/PROJECT/NAME[:ALIAS], e.g. me/proj/model-abc123:best");
  entity = path.substr(0, a), project = path.substr(a + 1, b - a - 1), name = path.substr(b + 1);
  if (name.find(':') == std::string::npos) name += ":latest";
}

// An artifact version as ArtifactByName names it, with its manifest and file download URLs.
struct ResolvedArtifact {
  std::string path, id, name, version;  // path as asked; version "vN"
  json::value metadata;
  json::object contents;                     // the manifest's contents: file path -> {digest, size, ...}
  std::map<std::string, std::string> direct;  // file path -> download URL
};

// ArtifactByName, GET the manifest, ArtifactFileURLs; nullopt when the artifact (or alias) does
// not exist.
inline std::optional<ResolvedArtifact> resolve_artifact(Api& api, const std::string& path) {
  std::string entity, project, name;
  split_artifact_path(path, entity, project, name);
  json::object d = api.retry([&] {
    return api.graphql(
        "query ArtifactByName($entityName: String!, $projectName: String!, $name: String!) { project(name: $projectName, "
        "entityName: $entityName) { artifact(name: $name) { id versionIndex artifactType { name } description metadata "
        "aliases { artifactCollection { name } alias } state digest currentManifest { file { directUrl } } } } }",
        json::object{{"entityName", entity}, {"projectName", project}, {"name", name}});
  });
  const json::value* art = nullptr;
  if (auto* p = d.if_contains("project"); p && p->is_object()) art = p->as_object().if_contains("artifact");
  if (!art || !art->is_object()) return std::nullopt;
  ResolvedArtifact out;
  out.path = path;
  const auto& a = art->as_object();
  out.id = std::string(a.at("id").as_string());
  out.name = name;
  if (a.at("versionIndex").is_int64()) out.version = "v" + std::to_string(a.at("versionIndex").as_int64());
  if (auto* md = a.if_contains("metadata"); md && md->is_string()) {
    try {
      out.metadata = json::parse(md->as_string());
    } catch (const std::exception&) {
      out.metadata = *md;
    }
  }
  std::string manifest_url(a.at("currentManifest").at("file").at("directUrl").as_string());
  std::string manifest_text = api.retry([&] { return api.get(manifest_url); });
  json::value manifest;
  try {
    manifest = json::parse(manifest_text);
    out.contents = manifest.at("contents").as_object();
  } catch (const std::exception& e) {
    throw ApiError(Failure::fatal, 200, "W&B artifact " + path + ": the manifest is not a v1 manifest (" + e.what() + ")");
  }
  json::object urls = api.retry([&] {
    return api.graphql(
        "query ArtifactFileURLs($id: ID!, $cursor: String, $perPage: Int) { artifact(id: $id) { files(after: $cursor, "
        "first: $perPage) { pageInfo { hasNextPage endCursor } edges { node { name directUrl } } } } }",
        json::object{{"id", out.id}, {"cursor", nullptr}, {"perPage", 5000}});
  });
  for (const auto& e : urls.at("artifact").at("files").at("edges").as_array())
    out.direct[std::string(e.at("node").at("name").as_string())] = std::string(e.at("node").at("directUrl").as_string());
  return out;
}

// GET one file of a resolved artifact and check its MD5 against the manifest.
inline std::string fetch_artifact_file(Api& api, const ResolvedArtifact& a, const std::string& file) {
  auto c = a.contents.find(file);
  if (c == a.contents.end()) throw ApiError(Failure::fatal, 404, "W&B artifact " + a.path + " has no file " + file);
  auto it = a.direct.find(file);
  if (it == a.direct.end()) throw ApiError(Failure::fatal, 200, "W&B artifact " + a.path + ": no download URL for " + file);
  std::string bytes = api.retry([&] { return api.get(it->second); });
  std::string want(c->value().at("digest").as_string());
  if (md5_b64(bytes) != want)
    throw ApiError(Failure::fatal, 200, "W&B artifact " + a.path + ": " + file + " has MD5 " + md5_b64(bytes) +
                                            ", the manifest says " + want);
  return bytes;
}

// ArtifactByName + manifest + file URLs, then every file, MD5-checked.
inline DownloadedArtifact download_artifact(Api& api, const std::string& path) {
  auto a = resolve_artifact(api, path);
  if (!a) throw ApiError(Failure::fatal, 404, "W&B artifact " + path + " not found on " + api.base_url());
  DownloadedArtifact out;
  out.id = a->id, out.name = a->name, out.version = a->version, out.metadata = a->metadata;
  for (const auto& kv : a->contents) {
    std::string p(kv.key());
    out.files[p] = fetch_artifact_file(api, *a, p);
  }
  return out;
}

// ---- uploading a whole run (spool directory, offline directory) -------------------------------------

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

// Storage for the spool: the plugin backs it with the host's URL space, `ember wandb` with the
// local filesystem.
class Store {
 public:
  virtual ~Store() = default;
  virtual std::optional<std::string> read(const std::string& url) = 0;
  virtual void write(const std::string& url, std::string_view bytes) = 0;  // atomic
  virtual std::vector<std::string> list(const std::string& dir) = 0;      // entry names
  virtual void remove(const std::string& url) = 0;
};

// The spool on the local filesystem. Reads open regular files only and never follow a symlink
// (a spool directory may come from someone else: `ember wandb sync DIR`). A private store (the
// plugin's own spool) also creates its directories 0700 after checking that an existing one is
// ours and closed to others (ensure_private_dir), and its files 0600 (O_EXCL|O_NOFOLLOW, then an
// atomic rename).
class LocalStore final : public Store {
 public:
  explicit LocalStore(bool private_dirs) : private_(private_dirs) {}
  std::optional<std::string> read(const std::string& url) override {
    auto [dir, name] = split(url);
    return read_regular_file_under(dir, name, "spool file");
  }
  void write(const std::string& url, std::string_view bytes) override {
    auto [dir, name] = split(url);
    if (private_ && checked_.insert(dir).second) {
      auto [root, run] = split(dir);
      if (checked_.insert(root).second) ensure_private_dir(root);
      ensure_private_dir(dir);
    }
    std::string tmp = name + ".tmp-" + std::to_string(::getpid());
    Fd d = open_root_dir(dir);
    ::unlinkat(d.get(), tmp.c_str(), 0);
    {
      Fd f(::openat(d.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, private_ ? 0600 : 0644));
      if (f.get() < 0) throw std::runtime_error("cannot write " + dir + "/" + tmp + ": " + errno_text(errno));
      write_all(f.get(), bytes, dir + "/" + tmp);
    }
    if (::renameat(d.get(), tmp.c_str(), d.get(), name.c_str()) != 0)
      throw std::runtime_error("cannot rename " + dir + "/" + tmp + " to " + name + ": " + errno_text(errno));
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  void remove(const std::string& url) override { ::unlink(url.c_str()); }

 private:
  static std::pair<std::string, std::string> split(std::string url) {
    while (url.size() > 1 && url.back() == '/') url.pop_back();
    auto s = url.rfind('/');
    if (s == std::string::npos) return {".", url};
    return {s == 0 ? "/" : url.substr(0, s), url.substr(s + 1)};
  }
  bool private_;
  std::set<std::string> checked_;
};

inline std::string join_url(std::string a, std::string_view b) {
  if (!a.empty() && a.back() != '/') a += '/';
  return a + std::string(b);
}

// Spool layout, one directory per run:  meta.json (RunMeta, base_url, config, pid),
// hist-<offset>.jsonl / events-<offset>.jsonl / output-<offset>.jsonl (console wire lines; one
// line each, zero-padded offsets: lexical order = offset order),
// summary.json, exit.json ({"exitcode": N}) once the run ended.
inline std::string spool_segment_name(const char* kind, std::int64_t offset) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%015lld.jsonl", kind, static_cast<long long>(offset));
  return buf;
}

// A media file (run file path "media/images/k_3_ab.png") spooled while W&B was away:
// "file-media%2Fimages%2Fk_3_ab.png" ('%' and '/' escaped), so the spool stays one flat directory.
inline std::string spool_file_name(std::string_view path) {
  std::string out = "file-";
  for (char c : path) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2F";
    else out += c;
  }
  return out;
}

// The run file path of a spooled file's name, or "" when name is not one.
inline std::string spooled_file_path(std::string_view name) {
  if (name.substr(0, 5) != "file-") return {};
  std::string out;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] == '%' && name.substr(i, 3) == "%2F") out += '/', i += 2;
    else if (name[i] == '%' && name.substr(i, 3) == "%25") out += '%', i += 2;
    else out += name[i];
  }
  return out;
}

inline std::map<std::int64_t, std::string> split_segment(std::int64_t first, const std::string& text) {
  std::map<std::int64_t, std::string> out;
  std::size_t p = 0;
  std::int64_t i = first;
  while (p < text.size()) {
    std::size_t q = text.find('\n', p);
    if (q == std::string::npos) q = text.size();
    if (q > p) out[i++] = text.substr(p, q - p);
    p = q + 1;
  }
  return out;
}

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
