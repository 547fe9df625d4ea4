// webhdfs: the "hdfs://namenode:port/path", "webhdfs://" and "swebhdfs://" schemes
// (ember.storage/1) over Hadoop's WebHDFS REST API (the NameNode's /webhdfs/v1), with
// ember/net/http.hpp (Beast + OpenSSL, TLS verified).
//
// Writes stream with bounded memory: bytes fill a part buffer of part_size; the first full part
// is a CREATE of a temporary name beside the target (".<name>.tmp-<random>"), each further part
// an APPEND to it, one part in flight while the next fills (memory: 2 x part_size). Each CREATE
// and APPEND is WebHDFS's two steps: the NameNode answers 307 with a DataNode's Location, the
// bytes go there. Commit checks the temporary file's length, then RENAMEs it over the target
// (renameoptions=OVERWRITE: one atomic NameNode operation); closing without commit DELETEs it, so
// a failed upload leaves the previous file. An APPEND whose answer was lost is not sent twice:
// before a retry the file's length says whether it already landed.
// Reads: GETFILESTATUS for the size, then OPEN with offset/length in chunks of read_chunk_size
// (the NameNode's 307 followed to the DataNode), the next chunk fetched while one is consumed.
// Failures: a RemoteException body becomes one line (exception, message, URL); 5xx answers,
// resets, StandbyException and RetriableException are retried with backoff. The delegation token
// never appears in a message: URLs are shown without their query, and server text is scrubbed.
//
// The parts, one file each: webhdfs_service.hpp (what they share), webhdfs_settings.cpp (the
// config), webhdfs_service.cpp (requests, redirects, the connection pool, retries),
// webhdfs_reader.cpp, webhdfs_writer.cpp; this file is the plugin's entry and its listing
// operations (stat, list, remove).
#include "webhdfs_service.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ember::webhdfs {
namespace {

class WebHdfsPlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "hdfs,webhdfs,swebhdfs";

  WebHdfsPlugin(const ember_host_t* host, std::string_view config) : Plugin(host), s_(Settings::from_json(config)) {
    if (!s_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning("every WebHDFS endpoint", "the webhdfs config key verify_tls"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return open_reader(s_, s_.locate(url), offset, length);
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    return open_writer(s_, s_.locate(url));
  }
  Entry stat(std::string_view url) override {
    Location loc = s_.locate(url);
    bool found = false;
    auto fs = file_status(s_, loc, &found);
    if (!found) throw NotFound("webhdfs: no such file or directory: " + loc.url);
    return to_entry(fs, loc.url);
  }
  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override {
    Location loc = s_.locate(prefix);
    std::string dir_url = loc.root + (loc.path == "/" ? "" : loc.path);
    std::string after;
    bool batch = s_.settings().list_batch && !no_batch_;
    std::vector<Entry> entries;
    for (;;) {
      Call c{batch ? "LISTSTATUS_BATCH" : "LISTSTATUS", &loc, "GET", {}, {404}};
      if (batch && !after.empty()) c.params.emplace_back("startAfter", after);
      http::Response r;
      try {
        r = s_.call(c);
      } catch (const Error& e) {
        // A server without LISTSTATUS_BATCH (before Hadoop 3.0, some gateways) calls the op invalid.
        if (!batch || e.status() != EMBER_E_INVALID) throw;
        no_batch_ = true;
        batch = false;
        continue;
      }
      if (r.status == 404) return;  // absent: nothing under it, as for s3:// and file://
      json::value v = parse_answer(r.body, s_.prefix(c));
      const json::value* statuses = nullptr;
      std::int64_t remaining = 0;
      if (batch) {
        const auto* dl = v.is_object() ? v.as_object().if_contains("DirectoryListing") : nullptr;
        if (dl && dl->is_object()) {
          if (const auto* pl = dl->as_object().if_contains("partialListing"); pl && pl->is_object())
            statuses = pl->as_object().if_contains("FileStatuses");
          if (const auto* rem = dl->as_object().if_contains("remainingEntries"); rem && rem->is_number())
            remaining = rem->to_number<std::int64_t>();
        }
      } else if (v.is_object()) {
        statuses = v.as_object().if_contains("FileStatuses");
      }
      const json::value* arr = statuses && statuses->is_object() ? statuses->as_object().if_contains("FileStatus") : nullptr;
      if (!arr || !arr->is_array()) throw Error(s_.prefix(c) + ": the answer has no FileStatuses.FileStatus list", EMBER_E_IO);
      std::string last_name;
      for (const auto& item : arr->as_array()) {
        if (!item.is_object()) continue;
        const auto& fs = item.as_object();
        std::string name;
        if (const auto* n = fs.if_contains("pathSuffix"); n && n->is_string()) name = std::string(n->as_string());
        last_name = name;
        // A file lists as itself, with an empty suffix.
        if (name.empty()) {
          entries.push_back(to_entry(fs, loc.url));
          continue;
        }
        // Temporary names of writes in progress (or abandoned) are not entries, as for file://.
        if (name.front() == '.' && name.find(".tmp-") != std::string::npos) continue;
        entries.push_back(to_entry(fs, dir_url + "/" + name));
      }
      if (!batch || remaining <= 0 || last_name.empty()) break;
      if (last_name == after) throw Error(s_.prefix(c) + ": the listing did not advance past " + after, EMBER_E_IO);
      after = last_name;
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.url < b.url; });
    for (const auto& e : entries)
      if (!fn(e)) break;
  }
  void remove(std::string_view url) override {
    Location loc = s_.locate(url);
    if (loc.path == "/") throw Error("webhdfs: refusing to remove the root directory of " + loc.url, EMBER_E_INVALID);
    http::Response r = s_.call({"DELETE", &loc, "DELETE", {{"recursive", "false"}}});
    // {"boolean": false}: nothing was there.
    if (r.body.find("false") != std::string::npos) throw NotFound("webhdfs: no such file or directory: " + loc.url);
  }

 private:
  Service s_;
  std::atomic<bool> no_batch_{false};
};

}  // namespace
}  // namespace ember::webhdfs

EMBER_PLUGIN(ember::webhdfs::WebHdfsPlugin, "webhdfs", "1.0.0",
             "hdfs://, webhdfs://, swebhdfs:// storage over the WebHDFS REST API: streamed two-step writes, "
             "atomic rename on commit, ranged reads, retries",
             ember::webhdfs::kSchema)
