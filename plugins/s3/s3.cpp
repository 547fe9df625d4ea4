// s3: the "s3://bucket/key" scheme (ember.storage/1) over S3's REST API — AWS, or any
// S3-compatible endpoint (MinIO, Ceph, GCS's XML API with HMAC keys, a local server).
//
// HTTP(S) is ember/net/http.hpp (Beast + OpenSSL, TLS verified); requests are signed with SigV4
// (sigv4.hpp) with the payload hash signed, never UNSIGNED-PAYLOAD. Keys are taken literally
// from the URL: no percent-decoding and no "..", "." or "//" normalisation, so every key
// round-trips and nothing written under a prefix lands outside it.
//
// Writes stream: bytes fill one part buffer; each full part is uploaded in the background
// (multipart upload, at most max_concurrency parts in flight, so memory is bounded by
// (max_concurrency + 1) x part_size); an object smaller than one part is one PutObject at commit.
// Every PutObject and UploadPart carries its checksum (x-amz-checksum-crc32c by default,
// Content-MD5 with checksum "md5"), which S3 verifies; commit completes the upload (listing
// each part's checksum) and checks the final size; closing without commit aborts it.
// Reads stream: ranged GETs of read_chunk_size, up to max_concurrency prefetched.
//
// The parts, one file each: s3_service.hpp (what they share), s3_settings.cpp (the config),
// s3_service.cpp (signing, the connection pool, retries), s3_reader.cpp, s3_writer.cpp; this
// file is the plugin's entry and its listing operations (stat, list, remove).
#include "s3_service.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ember::s3 {
namespace {

class S3Plugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "s3";

  S3Plugin(const ember_host_t* host, std::string_view config) : Plugin(host), service_(Settings::from_json(config)) {
    if (!service_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning(service_.endpoint_text(), "the s3 config key verify_tls") +
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
    if (!loc.key.empty() && loc.key.back() != '/') {
      http::Response r = service_.call({"HeadObject", &loc, "HEAD", {}, {}, "", {404}});
      if (r.status != 404) {
        std::string len = r.header("Content-Length");
        out.size = len.empty() ? 0 : std::stoull(len);
        out.mtime_ns = parse_http_date_ns(r.header("Last-Modified"));
        return out;
      }
    }
    // Not an object: a "directory" when some key starts with key + "/".
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    Location bucket{loc.bucket, ""};
    http::Response r = service_.call({"ListObjectsV2", &bucket, "GET",
                                      {{"list-type", "2"}, {"prefix", dir}, {"max-keys", "1"}}, {}, "", {},
                                      "s3://" + loc.bucket + "/" + dir});
    Tree t = parse_xml(r.body);
    auto* res = t.get_child_optional("ListBucketResult").get_ptr();
    bool any = false;
    if (res)
      for (const auto& kv : *res)
        if (kv.first == "Contents" || kv.first == "CommonPrefixes") any = true;
    if (!any && !dir.empty()) throw plugin::NotFound("no such object or prefix: " + out.url);
    out.is_dir = true;
    return out;
  }

  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = parse_location(prefix);
    std::string dir = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
    Location bucket{loc.bucket, ""};
    std::string token;
    std::set<std::string> seen;  // continuation tokens already followed
    std::vector<Entry> entries;
    for (;;) {
      Params q{{"list-type", "2"}, {"prefix", dir}, {"delimiter", "/"},
               {"max-keys", std::to_string(service_.settings().max_keys)}};
      if (!token.empty()) q.emplace_back("continuation-token", token);
      http::Response r = service_.call({"ListObjectsV2", &bucket, "GET", q, {}, "", {}, "s3://" + loc.bucket + "/" + dir});
      Tree t = parse_xml(r.body);
      auto res = t.get_child_optional("ListBucketResult");
      if (!res)
        throw S3Error("S3 ListObjectsV2 s3://" + loc.bucket + "/" + dir + ": the answer is not a ListBucketResult" +
                          service_.context(),
                      EMBER_E_IO);
      for (const auto& kv : *res) {
        if (kv.first == "Contents") {
          std::string key = kv.second.get<std::string>("Key", "");
          if (key == dir) continue;  // a "directory marker" object, not an entry
          std::int64_t mtime = parse_iso8601(kv.second.get<std::string>("LastModified", "")) * 1000000000;
          entries.push_back({"s3://" + loc.bucket + "/" + key, false, kv.second.get<std::uint64_t>("Size", 0),
                             mtime > 0 ? mtime : 0});
        } else if (kv.first == "CommonPrefixes") {
          std::string pre = kv.second.get<std::string>("Prefix", "");
          if (!pre.empty() && pre.back() == '/') pre.pop_back();
          entries.push_back({"s3://" + loc.bucket + "/" + pre, true, 0, 0});
        }
      }
      bool truncated = res->get<std::string>("IsTruncated", "false") == "true";
      token = res->get<std::string>("NextContinuationToken", "");
      if (!truncated || token.empty()) break;
      // A server that hands back a token it gave before would keep this loop (and the list)
      // growing forever; botocore's paginator refuses it too.
      if (!seen.insert(token).second)
        throw S3Error("S3 ListObjectsV2 s3://" + loc.bucket + "/" + dir +
                          ": the server repeated a continuation token; the listing would never end" + service_.context(),
                      EMBER_E_IO);
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }

  void remove(std::string_view url) override {
    Location loc = parse_location(url);
    if (loc.key.empty()) throw S3Error("cannot remove " + std::string(url) + ": no object key", EMBER_E_INVALID);
    // DeleteObject answers 204 for an absent key too; the ABI wants NOT_FOUND then.
    http::Response h = service_.call({"HeadObject", &loc, "HEAD", {}, {}, "", {404}});
    if (h.status == 404) throw plugin::NotFound("no such object: " + loc.url());
    service_.call({"DeleteObject", &loc, "DELETE", {}, {}, "", {}});
  }

 private:
  Service service_;
};

}  // namespace
}  // namespace ember::s3

EMBER_PLUGIN(ember::s3::S3Plugin, "s3", "1.0.0",
             "s3:// storage (AWS S3 and S3-compatible endpoints): SigV4, streaming multipart, retries",
             ember::s3::kSchema)
