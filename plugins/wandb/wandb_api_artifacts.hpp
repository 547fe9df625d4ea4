// Model artifacts through W&B's API: logging one as W&B's clients do (CreateArtifact, manifest,
// files, commit) and resolving/downloading one by ENTITY/PROJECT/NAME[:ALIAS] (ArtifactByName,
// the manifest, the file URLs; every file MD5-checked).
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "wandb_api_client.hpp"
#include "wandb_api_runs.hpp"

namespace ember::wandb {

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

}  // namespace ember::wandb
