// gcs: the "gs://bucket/key" and "gcs://bucket/key" schemes (ember.storage/1) over the Cloud
// Storage JSON API (https://storage.googleapis.com/storage/v1), or an emulator
// (STORAGE_EMULATOR_HOST, as Google's client libraries read it).
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified). Credentials: gcs_auth.hpp (the order
// is in the README). Object names are taken literally from the URL and percent-encoded whole
// (a '/' in a name is %2F in the path), so every name round-trips.
//
// Writes stream and publish atomically: bytes fill one chunk buffer of chunk_size (a multiple of
// 256 KiB); an object smaller than one chunk is one multipart upload (metadata with its crc32c +
// media) at commit; a larger one opens a resumable upload session on the first full chunk, sends
// each chunk with Content-Range in the background while the next fills (one in flight, so memory
// is about 2 x chunk_size), and the final chunk, carrying the total size and X-Goog-Hash crc32c,
// at commit — the object exists under its name only then. A chunk that fails (5xx, 429, a reset)
// is retried after asking the session how much it holds (Content-Range: bytes */*, 308 with a
// Range). Closing without commit cancels the session (DELETE): the previous object stays.
// Reads: the object's metadata (size, generation, crc32c), then ranged media GETs of
// read_chunk_size pinned to that generation (ifGenerationMatch), up to max_concurrency
// prefetched; a whole-object read checks the crc32c of what it delivered at the end.
//
// The parts, one file each: gcs_service.hpp (what they share), gcs_settings.cpp (the config),
// gcs_service.cpp (requests, the connection pool, retries), gcs_token.cpp (credentials and
// access tokens), gcs_reader.cpp, gcs_writer.cpp; this file is the plugin's entry and its listing
// operations (stat, list, remove).
#include "gcs_service.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ember::gcs {
namespace {

class GcsPlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "gs,gcs";

  GcsPlugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the gcs config key verify_tls"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return open_reader(service_, parse_location(url), offset, length);
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    return open_writer(service_, parse_location(url));
  }

  Entry stat(std::string_view url) override {
    Location loc = parse_location(url);
    Entry e;
    e.url = std::string(url);
    if (!loc.key.empty() && loc.key.back() != '/') {
      http::Response r = service_.call({"objects.get", loc.url(), "GET", service_.object_path(loc), {}, "", {404}});
      if (r.status != 404) {
        Meta m = meta_of(parse_object(r.body));
        e.size = m.size;
        e.mtime_ns = parse_rfc3339_ns(m.updated);
        return e;
      }
    }
    // Not an object: a "directory" when some name starts with key + "/" (the bucket root is one).
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    std::string target = service_.bucket_path(loc) + "?" + query_string({{"prefix", dir}, {"maxResults", "1"}});
    http::Response r = service_.call({"objects.list", loc.scheme + "://" + loc.bucket + "/" + dir, "GET", target, {}, "", {}});
    json::object o = parse_object(r.body);
    bool any = (o.if_contains("items") && o["items"].is_array() && !o["items"].as_array().empty()) ||
               (o.if_contains("prefixes") && o["prefixes"].is_array() && !o["prefixes"].as_array().empty());
    if (!any && !dir.empty()) throw plugin::NotFound("no such object or prefix: " + std::string(url));
    e.is_dir = true;
    return e;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    const std::string root = loc.scheme + "://" + loc.bucket + "/";
    std::vector<Entry> entries;
    std::string token;
    std::set<std::string> seen;
    for (;;) {
      Params q{{"prefix", dir}, {"delimiter", "/"}, {"maxResults", std::to_string(service_.settings().max_results)}};
      if (!token.empty()) q.emplace_back("pageToken", token);
      http::Response r = service_.call({"objects.list", root + dir, "GET", service_.bucket_path(loc) + "?" + query_string(q), {}, "", {}});
      json::object o = parse_object(r.body);
      if (const auto* items = o.if_contains("items"); items && items->is_array())
        for (const auto& it : items->as_array()) {
          if (!it.is_object()) continue;
          const auto& io = it.as_object();
          std::string name = json_str(io, "name");
          if (name == dir) continue;  // a "directory marker" object, not an entry
          Meta m = meta_of(io);
          entries.push_back({root + name, false, m.size, parse_rfc3339_ns(m.updated)});
        }
      if (const auto* pre = o.if_contains("prefixes"); pre && pre->is_array())
        for (const auto& p : pre->as_array()) {
          if (!p.is_string()) continue;
          std::string name(p.as_string());
          if (!name.empty() && name.back() == '/') name.pop_back();
          entries.push_back({root + name, true, 0, 0});
        }
      token = json_str(o, "nextPageToken");
      if (token.empty()) break;
      if (!seen.insert(token).second)
        throw plugin::Error("gcs objects.list " + root + dir + ": the server repeated a pageToken; the listing would never end" +
                                service_.context(),
                            EMBER_E_IO);
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.key.empty()) throw plugin::Error("cannot remove " + std::string(url) + ": no object name", EMBER_E_INVALID);
    http::Response r = service_.call({"objects.delete", loc.url(), "DELETE", service_.object_path(loc), {}, "", {404}});
    if (r.status == 404) throw plugin::NotFound("no such object: " + loc.url());
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::gcs

EMBER_PLUGIN(ember::gcs::GcsPlugin, "gcs", "1.0.0",
             "gs:// and gcs:// storage (Google Cloud Storage JSON API): resumable chunked uploads, crc32c, "
             "service account / gcloud / metadata credentials, retries",
             ember::gcs::kSchema)
