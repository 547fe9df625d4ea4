// azure: the "az://container/blob", "abfs://container@account.dfs.core.windows.net/path" and
// "abfss://" schemes (ember.storage/1, as adlfs maps them) over the Azure Blob REST API — Azure
// Storage, or Azurite and any other custom blob endpoint.
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified). Requests are authorized by Shared
// Key (shared_key.hpp), a SAS token, or an Entra ID bearer token from the client-credentials flow;
// see Credentials below for where each comes from. abfs URLs go to the account's Blob endpoint
// (the Blob API serves hierarchical-namespace accounts too). Blob names are taken literally from
// the URL: no percent-decoding, no normalisation.
//
// Writes stream: bytes fill one block buffer; each full block goes up with Put Block in the
// background (at most max_concurrency in flight, so memory is bounded by (max_concurrency + 1) x
// block_size). Nothing is visible until commit's Put Block List names the blocks (the atomic
// publish); a blob smaller than one block is one Put Blob at commit. Every Put Block and Put Blob
// carries Content-MD5, which the service verifies. Closing without commit leaves the uncommitted
// blocks to the service, which discards them (at the blob's next commit, or after a week); the
// previous blob is untouched either way.
// Reads stream: ranged Get Blobs of read_chunk_size, up to max_concurrency prefetched, each pinned
// to the blob's ETag (If-Match) and, for ranges up to 4 MiB, checked against the MD5 the service
// computes for the range (x-ms-range-get-content-md5). A read of a whole blob that has a
// Content-MD5 property is also checked against it.
//
// The parts, one file each: azure_service.hpp (what they share), azure_settings.cpp (the
// config), azure_service.cpp (requests, the connection pool, retries), azure_credentials.cpp
// (credentials, the endpoint, Entra ID tokens), azure_reader.cpp, azure_writer.cpp; this file is
// the plugin's entry and its listing operations (stat, list, remove).
#include "azure_service.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ember::azure {
namespace {

class AzurePlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "az,abfs,abfss,adl";

  AzurePlugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the azure config key verify_tls") +
                              (service_.tls() ? "" : " (the endpoint is plain http; this applies to any https it is changed to)"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return open_reader(service_, parse_location(url), offset, length);
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    return open_writer(service_, parse_location(url));
  }

  Entry stat(std::string_view url) override {
    Location loc = parse_location(url);
    Entry out;
    out.url = std::string(url);
    if (!loc.blob.empty() && loc.blob.back() != '/') {
      http::Response r = service_.call({"GetBlobProperties", &loc, "HEAD", {}, {}, "", {404}});
      if (r.status != 404) {
        std::string len = r.header("Content-Length");
        out.size = len.empty() ? 0 : std::stoull(len);
        out.mtime_ns = parse_http_date_ns(r.header("Last-Modified"));
        return out;
      }
    }
    // Not a blob: a "directory" when some blob's name starts with blob + "/".
    std::string dir = loc.blob.empty() || loc.blob.back() == '/' ? loc.blob : loc.blob + "/";
    Params q{{"restype", "container"}, {"comp", "list"}, {"prefix", dir}, {"maxresults", "1"}};
    Service::Call c{"ListBlobs", &loc, "GET", q, {}, "", {}, true, loc.base + dir};
    Tree t = parse_xml(service_.call(std::move(c)).body);
    bool any = false;
    if (auto blobs = t.get_child_optional("EnumerationResults.Blobs"))
      for (const auto& kv : *blobs) any = any || kv.first == "Blob" || kv.first == "BlobPrefix";
    if (!any && !dir.empty()) throw plugin::NotFound("no such blob or prefix: " + std::string(url));
    out.is_dir = true;
    return out;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.blob.empty() || loc.blob.back() == '/' ? loc.blob : loc.blob + "/";
    std::string marker;
    std::set<std::string> seen;  // markers already followed
    std::vector<Entry> entries;
    std::set<std::string> prefixes;
    for (;;) {
      Params q{{"restype", "container"}, {"comp", "list"}, {"prefix", dir}, {"delimiter", "/"},
               {"maxresults", std::to_string(service_.settings().max_results)}};
      if (!marker.empty()) q.emplace_back("marker", marker);
      Service::Call c{"ListBlobs", &loc, "GET", q, {}, "", {}, true, loc.base + dir};
      Tree t = parse_xml(service_.call(std::move(c)).body);
      auto res = t.get_child_optional("EnumerationResults");
      if (!res)
        throw AzureError("azure ListBlobs " + loc.base + dir + ": the answer is not an EnumerationResults" + service_.context(),
                         EMBER_E_IO);
      if (auto blobs = res->get_child_optional("Blobs")) {
        for (const auto& kv : *blobs) {
          std::string name = kv.second.get<std::string>("Name", "");
          if (kv.first == "Blob") {
            if (name == dir) continue;  // a "directory marker" blob, not an entry
            Entry e;
            e.url = loc.base + name;
            e.size = kv.second.get<std::uint64_t>("Properties.Content-Length", 0);
            e.mtime_ns = parse_http_date_ns(kv.second.get<std::string>("Properties.Last-Modified", ""));
            entries.push_back(std::move(e));
          } else if (kv.first == "BlobPrefix") {
            if (!name.empty() && name.back() == '/') name.pop_back();
            prefixes.insert(name);
            Entry e;
            e.url = loc.base + name;
            e.is_dir = true;
            entries.push_back(std::move(e));
          }
        }
      }
      marker = res->get<std::string>("NextMarker", "");
      if (marker.empty()) break;
      if (!seen.insert(marker).second)
        throw AzureError("azure ListBlobs " + loc.base + dir + ": the service repeated a marker; the listing would never end" +
                             service_.context(),
                         EMBER_E_IO);
    }
    // A hierarchical-namespace account lists a folder both as a zero-length blob and as a prefix.
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const Entry& e) {
                                   return !e.is_dir && e.size == 0 && prefixes.count(e.url.substr(loc.base.size()));
                                 }),
                  entries.end());
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.blob.empty() || loc.blob.back() == '/')
      throw AzureError("cannot remove " + std::string(url) + ": not a blob name", EMBER_E_INVALID);
    http::Response r = service_.call({"DeleteBlob", &loc, "DELETE", {}, {}, "", {404}});
    if (r.status == 404) {
      // A missing container is a 404 too, and an error of its own (not "the blob is absent").
      if (r.header("x-ms-error-code") == "ContainerNotFound")
        throw AzureError("azure DeleteBlob " + loc.url() + ": ContainerNotFound: the container " + loc.container +
                             " does not exist" + service_.context(),
                         EMBER_E_NOT_FOUND);
      throw plugin::NotFound("no such blob: " + loc.url());
    }
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::azure

EMBER_PLUGIN(ember::azure::AzurePlugin, "azure", "1.0.0",
             "az://, abfs://, abfss:// storage (Azure Blob Storage, Azurite): Shared Key, SAS, Entra ID; "
             "streaming block uploads, retries",
             ember::azure::kSchema)
