// The webhdfs plugin's parts and what they share (see webhdfs.cpp for the plugin as a whole): its
// settings (webhdfs_settings.cpp), the Service that sends and retries every request
// (webhdfs_service.cpp), the streaming reader (webhdfs_reader.cpp) and the writer that publishes
// by rename (webhdfs_writer.cpp). Internal to the plugin.
#pragma once

#include <ember/net/connection_pool.hpp>
#include <ember/net/http.hpp>
#include <ember/net/retry.hpp>
#include <ember/net/store_settings.hpp>
#include <ember/net/uri.hpp>
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::webhdfs {

namespace json = boost::json;
using plugin::Error;
using plugin::NotFound;

inline constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "user": {"type": "string", "default": ""},
    "delegation_token": {"type": "string", "writeOnly": true, "default": ""},
    "endpoints": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
    "hdfs_transport": {"type": "string", "enum": ["http", "https"], "default": "http"},
    "overwrite": {"type": "string", "enum": ["rename_overwrite", "delete_then_rename"], "default": "rename_overwrite"},
    "list_batch": {"type": "boolean", "default": true},
    "part_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 8388608},
  )"
    EMBER_NET_STORE_SCHEMA_KEYS(5, 100, 20000, 8388608) R"(
  }
})";

// The common store keys (ca_bundle, verify_tls, allow_insecure_http, read_chunk_size, max_attempts,
// retry_*, timeout_ms, request_deadline_ms) and their reading: net::StoreSettings.
struct Settings : net::StoreSettings {
  std::string user, delegation_token, hdfs_transport = "http", overwrite = "rename_overwrite";
  std::map<std::string, std::string> endpoints;  // URL authority -> http(s)://host:port
  bool list_batch = true;
  std::size_t part_size = 8 << 20;

  // The plugin's config (kSchema); throws std::invalid_argument
  // "webhdfs: config key <key>: expected ..., got ..." (ember/sdk/plugin_config.hpp). The user
  // defaults as Hadoop's clients do (HADOOP_USER_NAME, else the login name), the delegation
  // token to WEBHDFS_DELEGATION_TOKEN.
  static Settings from_json(std::string_view text);
};

// A URL of ours split: the NameNode's base ("http://nn:9870") and the absolute HDFS path.
struct Location {
  std::string url;   // as given, for messages (it has no query: ours never do)
  std::string base;  // http(s)://host:port of the NameNode
  std::string root;  // scheme://authority of url, to build entry URLs
  std::string path;  // "/a/b", never empty; no trailing '/' except the root
};

std::string parent_of(const std::string& path);
inline std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Percent-encode for the request target: everything but unreserved characters (and '/' when
// keep_slash: a path). The shared encoder (ember/net/uri.hpp).
inline std::string encode(std::string_view s, bool keep_slash) { return net::uri_encode(s, !keep_slash); }

// The answer's JSON; throws Error naming what when it is not JSON.
json::value parse_answer(const std::string& body, const std::string& what);

// A FileStatus object as an entry named url.
plugin::Storage::Entry to_entry(const json::object& fs, std::string url);

// One request of a call, as sent.
struct Call {
  const char* op;                 // "GETFILESTATUS", for messages and the query
  const Location* loc;
  std::string method;
  std::vector<std::pair<std::string, std::string>> params;  // beyond op and auth
  std::vector<int> accept{};      // non-2xx statuses handed back instead of thrown
  std::uint64_t body_limit = 0;
};

// One WebHDFS service: settings, auth, a keep-alive connection pool per host, retries.
// Thread-safe.
class Service {
 public:
  explicit Service(Settings s);
  const Settings& settings() const { return s_; }

  // url split into the NameNode to ask and the HDFS path; throws Error (EMBER_E_INVALID) for a
  // URL that is not one of ours or a path HDFS refuses.
  Location locate(std::string_view url) const;

  // Send c to the NameNode (and, for an OPEN, follow its redirect to the DataNode); retry what
  // may pass later; a 2xx or accepted answer is returned, anything else thrown as one line.
  http::Response call(const Call& c);

  // CREATE or APPEND: the NameNode's 307 names a DataNode; the bytes go there. before_retry,
  // called before each attempt after the first, returns true when the data already landed
  // (the answer was lost, the operation was not).
  void send_data(const Call& c, std::string_view body, const std::function<bool()>& before_retry);

  std::string prefix(const Call& c) const { return "webhdfs " + std::string(c.op) + " " + c.loc->url; }
  std::string context(const Call& c) const { return " (namenode " + http::display_url(c.loc->base) + ")"; }

  // Server text may quote the request; never let the token through.
  std::string scrub(std::string text) const;

 private:
  // The request target of an operation on loc, with the auth parameters.
  std::string target(const Call& c) const;
  http::Url datanode(const Call& c, const http::Response& r);
  http::Response send(const http::Url& u, const http::Request& req);
  template <class F>
  http::Response retrying(const Call& c, F&& attempt_fn);

  Settings s_;
  std::optional<net::ConnectionPool> pool_;
};

// GETFILESTATUS of loc. With found, a 404 sets *found false (and returns {}); without, it is
// thrown with the server's message.
json::object file_status(Service& s, const Location& loc, bool* found);

// Streaming read of bytes [offset, offset + length) of loc (webhdfs_reader.cpp).
std::unique_ptr<plugin::Storage::File> open_reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length);

// Atomic streaming write of loc (webhdfs_writer.cpp).
std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc);

}  // namespace ember::webhdfs
