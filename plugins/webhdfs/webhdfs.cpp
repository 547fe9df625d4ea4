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
#include <ember/net/http.hpp>
#include <ember/net/uri.hpp>
#include <ember/sdk/plugin.hpp>

#include <boost/json.hpp>

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <chrono>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace ember::webhdfs {
namespace {

namespace json = boost::json;
using plugin::Error;
using plugin::NotFound;

constexpr const char* kSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "user": {"type": "string", "default": ""},
    "delegation_token": {"type": "string", "writeOnly": true, "default": ""},
    "endpoints": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
    "hdfs_transport": {"type": "string", "enum": ["http", "https"], "default": "http"},
    "overwrite": {"type": "string", "enum": ["rename_overwrite", "delete_then_rename"], "default": "rename_overwrite"},
    "list_batch": {"type": "boolean", "default": true},
    "ca_bundle": {"type": "string", "default": ""},
    "verify_tls": {"type": "boolean", "default": true},
    "allow_insecure_http": {"type": "boolean", "default": false},
    "part_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 8388608},
    "read_chunk_size": {"type": "integer", "minimum": 65536, "maximum": 1073741824, "default": 8388608},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
    "retry_base_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 100},
    "retry_max_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 20000},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 86400000, "default": 30000},
    "request_deadline_ms": {"type": "integer", "minimum": 0, "maximum": 86400000, "default": 600000}
  }
})";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct Settings {
  std::string user, delegation_token, hdfs_transport = "http", overwrite = "rename_overwrite", ca_bundle;
  std::map<std::string, std::string> endpoints;  // URL authority -> http(s)://host:port
  bool list_batch = true, verify_tls = true, allow_insecure_http = false;
  std::size_t part_size = 8 << 20, read_chunk_size = 8 << 20;
  int max_attempts = 5, retry_base_ms = 100, retry_max_ms = 20000, timeout_ms = 30000;
  std::int64_t request_deadline_ms = 600000;

  static Settings from_json(std::string_view text) {
    Settings s;
    boost::system::error_code ec;
    auto v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) throw std::invalid_argument("webhdfs config: not a JSON object");
    const auto& o = v.as_object();
    auto str = [&](const char* k, std::string& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_string()) throw std::invalid_argument(std::string("webhdfs config: ") + k + ": expected a string");
        out = std::string(x->as_string());
      }
    };
    auto flag = [&](const char* k, bool& out) {
      if (const auto* x = o.if_contains(k)) {
        if (!x->is_bool()) throw std::invalid_argument(std::string("webhdfs config: ") + k + ": expected true or false");
        out = x->as_bool();
      }
    };
    auto num = [&](const char* k, auto& out, std::int64_t lo) {
      if (const auto* x = o.if_contains(k)) {
        std::int64_t n = x->is_int64() ? x->as_int64() : x->is_uint64() ? static_cast<std::int64_t>(x->as_uint64()) : lo - 1;
        if (n < lo) throw std::invalid_argument(std::string("webhdfs config: ") + k + ": expected an integer >= " + std::to_string(lo));
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
      }
    };
    str("user", s.user);
    str("delegation_token", s.delegation_token);
    str("hdfs_transport", s.hdfs_transport);
    str("overwrite", s.overwrite);
    str("ca_bundle", s.ca_bundle);
    flag("list_batch", s.list_batch);
    flag("verify_tls", s.verify_tls);
    flag("allow_insecure_http", s.allow_insecure_http);
    num("part_size", s.part_size, 65536);
    num("read_chunk_size", s.read_chunk_size, 65536);
    num("max_attempts", s.max_attempts, 1);
    num("retry_base_ms", s.retry_base_ms, 1);
    num("retry_max_ms", s.retry_max_ms, 1);
    num("timeout_ms", s.timeout_ms, 1);
    num("request_deadline_ms", s.request_deadline_ms, 0);
    if (const auto* x = o.if_contains("endpoints")) {
      if (!x->is_object()) throw std::invalid_argument("webhdfs config: endpoints: expected an object of \"host:port\": \"http(s)://host:port\"");
      for (const auto& kv : x->as_object()) {
        if (!kv.value().is_string())
          throw std::invalid_argument("webhdfs config: endpoints." + std::string(kv.key()) + ": expected a string URL");
        std::string base(kv.value().as_string());
        try {
          http::Url::parse(base);
        } catch (const std::exception& e) {
          throw std::invalid_argument("webhdfs config: endpoints." + std::string(kv.key()) + ": " + e.what());
        }
        while (!base.empty() && base.back() == '/') base.pop_back();
        s.endpoints[std::string(kv.key())] = base;
      }
    }
    if (s.hdfs_transport != "http" && s.hdfs_transport != "https")
      throw std::invalid_argument("webhdfs config: hdfs_transport: expected http or https, not '" + s.hdfs_transport + "'");
    if (s.overwrite != "rename_overwrite" && s.overwrite != "delete_then_rename")
      throw std::invalid_argument("webhdfs config: overwrite: expected rename_overwrite or delete_then_rename, not '" +
                                  s.overwrite + "'");
    // As Hadoop's own clients: HADOOP_USER_NAME, else the login name.
    if (s.user.empty()) s.user = env("HADOOP_USER_NAME");
    if (s.user.empty()) {
      if (const passwd* pw = ::getpwuid(::geteuid())) s.user = pw->pw_name;
    }
    if (s.delegation_token.empty()) s.delegation_token = env("WEBHDFS_DELEGATION_TOKEN");
    return s;
  }
};

// A URL of ours split: the NameNode's base ("http://nn:9870") and the absolute HDFS path.
struct Location {
  std::string url;   // as given, for messages (it has no query: ours never do)
  std::string base;  // http(s)://host:port of the NameNode
  std::string root;  // scheme://authority of url, to build entry URLs
  std::string path;  // "/a/b", never empty; no trailing '/' except the root
};

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}
std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Percent-encode for the request target: everything but unreserved characters (and '/' when
// keep_slash: a path). The shared encoder (ember/net/uri.hpp).
std::string encode(std::string_view s, bool keep_slash) { return net::uri_encode(s, !keep_slash); }

// WebHDFS's errors: {"RemoteException": {"exception", "javaClassName", "message"}}.
struct Remote {
  std::string exception, message;
};
Remote parse_remote(const std::string& body) {
  Remote r;
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return r;
  const auto* re = v.as_object().if_contains("RemoteException");
  if (!re || !re->is_object()) return r;
  const auto& o = re->as_object();
  if (const auto* e = o.if_contains("exception"); e && e->is_string()) r.exception = std::string(e->as_string());
  if (const auto* m = o.if_contains("message"); m && m->is_string()) r.message = std::string(m->as_string());
  return r;
}

json::value parse_answer(const std::string& body, const std::string& what) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) throw Error(what + ": the answer is not JSON (" + ec.message() + ")", EMBER_E_IO);
  return v;
}

plugin::Storage::Entry to_entry(const json::object& fs, std::string url) {
  plugin::Storage::Entry e;
  e.url = std::move(url);
  if (const auto* t = fs.if_contains("type"); t && t->is_string()) e.is_dir = t->as_string() == "DIRECTORY";
  if (const auto* l = fs.if_contains("length"); l && l->is_number()) e.size = l->to_number<std::uint64_t>();
  if (const auto* m = fs.if_contains("modificationTime"); m && m->is_number())
    e.mtime_ns = m->to_number<std::int64_t>() * 1000000;
  return e;
}

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
  explicit Service(Settings s) : s_(std::move(s)) {
    http_.verify_tls = s_.verify_tls;
    http_.ca_file = s_.ca_bundle;
    http_.timeout = std::chrono::milliseconds(s_.timeout_ms);
    http_.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
    http_.max_body = 64 << 20;  // JSON answers; data reads set their own limit
  }
  const Settings& settings() const { return s_; }

  Location locate(std::string_view url) const {
    Location loc;
    loc.url = std::string(url);
    auto p = url.find("://");
    if (p == std::string_view::npos) throw Error("webhdfs: not a URL: " + loc.url, EMBER_E_INVALID);
    std::string scheme(url.substr(0, p));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view rest = url.substr(p + 3);
    auto slash = rest.find('/');
    std::string authority(rest.substr(0, slash));
    if (authority.empty())
      throw Error("webhdfs: no NameNode in " + loc.url + " (expected " + scheme + "://namenode:port/path)", EMBER_E_INVALID);
    if (authority.find('@') != std::string::npos || authority.find('?') != std::string::npos)
      throw Error("webhdfs: " + http::display_url(url) + ": user info and queries are not part of an HDFS URL; "
                  "set the user in the webhdfs config key user", EMBER_E_INVALID);
    loc.root = scheme + "://" + authority;
    std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (path.find('?') != std::string::npos || path.find('#') != std::string::npos)
      throw Error("webhdfs: " + http::display_url(url) + ": '?' and '#' are not allowed in an HDFS path", EMBER_E_INVALID);
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    // HDFS refuses "." and ".." components and "//"; say so before asking it.
    for (std::size_t start = 1; start < path.size();) {
      auto end = path.find('/', start);
      std::string seg = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (seg.empty() || seg == "." || seg == "..")
        throw Error("webhdfs: " + loc.url + ": the path has an empty, '.' or '..' component, which HDFS does not allow",
                    EMBER_E_INVALID);
      if (end == std::string::npos) break;
      start = end + 1;
    }
    loc.path = path;
    if (auto it = s_.endpoints.find(authority); it != s_.endpoints.end()) {
      loc.base = it->second;
      return loc;
    }
    std::string transport;
    if (scheme == "webhdfs") transport = "http";
    else if (scheme == "swebhdfs") transport = "https";
    else if (scheme == "hdfs") transport = s_.hdfs_transport;
    else throw Error("webhdfs: unsupported scheme in " + loc.url + " (expected hdfs, webhdfs or swebhdfs)", EMBER_E_INVALID);
    // The port of the URL is the NameNode's HTTP port; without one, Hadoop 3's defaults.
    std::size_t host_end = authority.front() == '[' ? authority.find(']') : 0;  // an IPv6 literal
    if (host_end == std::string::npos) throw Error("webhdfs: bad NameNode address in " + loc.url, EMBER_E_INVALID);
    bool has_port = authority.find(':', host_end) != std::string::npos;
    loc.base = transport + "://" + authority + (has_port ? "" : transport == "https" ? ":9871" : ":9870");
    return loc;
  }

  // The request target of an operation on loc, with the auth parameters.
  std::string target(const Call& c) const {
    std::string t = "/webhdfs/v1" + encode(c.loc->path, true) + "?op=" + c.op;
    for (const auto& kv : c.params) t += "&" + kv.first + "=" + encode(kv.second, false);
    if (!s_.delegation_token.empty()) t += "&delegation=" + encode(s_.delegation_token, false);
    else if (!s_.user.empty()) t += "&user.name=" + encode(s_.user, false);
    return t;
  }

  // Send c to the NameNode (and, for an OPEN, follow its redirect to the DataNode); retry what
  // may pass later; a 2xx or accepted answer is returned, anything else thrown as one line.
  http::Response call(const Call& c) {
    return retrying(c, [&](int) {
      http::Url nn = http::Url::parse(c.loc->base + target(c));
      http::Request req{c.method, nn.target, {}, {}, c.body_limit};
      http::Response r = send(nn, req);
      if (r.status == 307 && c.method == "GET") {
        http::Url dn = datanode(c, r);
        http::Request dreq{"GET", dn.target, {}, {}, c.body_limit};
        r = send(dn, dreq);
      }
      return r;
    });
  }

  // CREATE or APPEND: the NameNode's 307 names a DataNode; the bytes go there. before_retry,
  // called before each attempt after the first, returns true when the data already landed
  // (the answer was lost, the operation was not).
  void send_data(const Call& c, std::string_view body, const std::function<bool()>& before_retry) {
    retrying(c, [&](int attempt) -> http::Response {
      if (attempt > 1 && before_retry && before_retry()) return http::Response{200, {}, {}};
      http::Url nn = http::Url::parse(c.loc->base + target(c));
      http::Request req{c.method, nn.target, {}, {}, 0};
      http::Response r = send(nn, req);
      if (r.status != 307) {
        if (r.status >= 200 && r.status < 300)
          throw Error(prefix(c) + ": the NameNode answered HTTP " + std::to_string(r.status) +
                          " instead of a 307 redirect to a DataNode" + context(c),
                      EMBER_E_IO);
        return r;
      }
      http::Url dn = datanode(c, r);
      http::Request dreq{c.method, dn.target, {{"Content-Type", "application/octet-stream"}}, body, 0};
      dreq.idempotent = c.method == "PUT";  // an APPEND (POST) is retried only after the length check
      return send(dn, dreq);
    });
  }

  std::string prefix(const Call& c) const { return "webhdfs " + std::string(c.op) + " " + c.loc->url; }
  std::string context(const Call& c) const { return " (namenode " + http::display_url(c.loc->base) + ")"; }

  // Server text may quote the request; never let the token through.
  std::string scrub(std::string text) const {
    const std::string& t = s_.delegation_token;
    if (t.empty()) return text;
    for (auto p = text.find(t); p != std::string::npos; p = text.find(t, p)) text.replace(p, t.size(), "<token>");
    std::string enc = encode(t, false);
    for (auto p = text.find(enc); p != std::string::npos; p = text.find(enc, p)) text.replace(p, enc.size(), "<token>");
    return text;
  }

 private:
  http::Url datanode(const Call& c, const http::Response& r) {
    std::string location = r.header("Location");
    if (location.empty())
      throw Error(prefix(c) + ": the NameNode's 307 answer has no Location" + context(c), EMBER_E_IO);
    try {
      return http::Url::parse(location);
    } catch (const std::exception& e) {
      throw Error(prefix(c) + ": the NameNode redirected to a bad Location: " + scrub(e.what()) + context(c), EMBER_E_IO);
    }
  }

  http::Response send(const http::Url& u, const http::Request& req) {
    // A delegation token rides in the query: never in clear beyond this machine unless allowed.
    if (!s_.delegation_token.empty())
      http::require_secure_transport(u, s_.allow_insecure_http, "the webhdfs config key allow_insecure_http");
    Lease lease(*this, u);
    return lease->send(req);
  }

  template <class F>
  http::Response retrying(const Call& c, F&& attempt_fn) {
    std::string last;
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      ember_status_t status = EMBER_E_IO;
      try {
        http::Response r = attempt_fn(attempt);
        if ((r.status >= 200 && r.status < 300) || std::find(c.accept.begin(), c.accept.end(), r.status) != c.accept.end())
          return r;
        Remote re = parse_remote(r.body);
        retry = r.status >= 500 || r.status == 429 || re.exception == "StandbyException" ||
                re.exception == "RetriableException";
        if (re.exception == "FileNotFoundException" || (re.exception.empty() && r.status == 404)) status = EMBER_E_NOT_FOUND;
        if (re.exception == "IllegalArgumentException" || re.exception == "InvalidPathException") status = EMBER_E_INVALID;
        const std::string code = "HTTP " + std::to_string(r.status);
        last = prefix(c) + ": " + (re.exception.empty() ? code : re.exception) +
               (re.message.empty() ? "" : ": " + re.message) + " (" + (re.exception.empty() ? "" : code + ", ") + "namenode " +
               http::display_url(c.loc->base) + (s_.delegation_token.empty() ? ", user " + s_.user : ", delegation token") +
               ")";
        last = scrub(std::move(last));
        if (!retry) throw Error(last, status);
      } catch (const http::Error& e) {
        // An answer over its limit or a certificate that fails verification fails the same way
        // next time: only network trouble is retried.
        retry = e.retryable();
        last = scrub(prefix(c) + ": " + e.what() + context(c));
        if (!retry) throw Error(last, EMBER_E_IO);
      }
      if (attempt >= s_.max_attempts)
        throw Error(last + (attempt > 1 ? " (gave up after " + std::to_string(attempt) + " attempts)" : ""), status);
      // Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^n)].
      double cap = std::min<double>(s_.retry_max_ms, static_cast<double>(s_.retry_base_ms) * double(1u << std::min(attempt, 20)));
      std::uniform_real_distribution<double> dist(0.0, cap);
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(dist(rng) * 1000)));
    }
  }

  // A pooled connection to one scheme://host:port, returned to the pool at scope exit.
  class Lease {
   public:
    Lease(Service& s, const http::Url& u) : s_(s), key_(u.scheme + "://" + u.host + ":" + u.port) {
      {
        std::lock_guard<std::mutex> lock(s_.pool_mu_);
        auto& idle = s_.pool_[key_];
        if (!idle.empty()) {
          client_ = std::move(idle.back());
          idle.pop_back();
        }
      }
      if (!client_) client_ = std::make_unique<http::Client>(u.scheme, u.host, u.port, s_.http_);
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(s_.pool_mu_);
      auto& idle = s_.pool_[key_];
      if (idle.size() < 4) idle.push_back(std::move(client_));
    }
    http::Client* operator->() { return client_.get(); }

   private:
    Service& s_;
    std::string key_;
    std::unique_ptr<http::Client> client_;
  };

  Settings s_;
  http::Options http_;
  std::mutex pool_mu_;
  std::map<std::string, std::vector<std::unique_ptr<http::Client>>> pool_;
};

json::object file_status(Service& s, const Location& loc, bool* found) {
  // Without found, a 404 is thrown with the server's message.
  http::Response r = s.call({"GETFILESTATUS", &loc, "GET", {}, found ? std::vector<int>{404} : std::vector<int>{}});
  if (r.status == 404) {
    *found = false;
    return {};
  }
  if (found) *found = true;
  std::string what = s.prefix({"GETFILESTATUS", &loc, "GET", {}});
  json::value v = parse_answer(r.body, what);
  const auto* fs = v.is_object() ? v.as_object().if_contains("FileStatus") : nullptr;
  if (!fs || !fs->is_object()) throw Error(what + ": the answer has no FileStatus", EMBER_E_IO);
  return fs->as_object();
}

// Ranged streaming read; see the file comment.
class Reader final : public plugin::Storage::File {
 public:
  Reader(Service& s, Location loc, std::uint64_t offset, std::uint64_t length) : s_(s), loc_(std::move(loc)) {
    auto fs = file_status(s_, loc_, nullptr);
    auto e = to_entry(fs, loc_.url);
    if (e.is_dir) throw Error("webhdfs OPEN " + loc_.url + ": is a directory", EMBER_E_INVALID);
    next_ = std::min(offset, e.size);
    end_ = length == UINT64_MAX || length > e.size - next_ ? e.size : next_ + length;
    fetch_next();
  }
  ~Reader() override {
    if (pending_.valid()) pending_.wait();
  }

  std::size_t read(void* buf, std::size_t cap) override {
    while (pos_ == current_.size()) {
      if (!pending_.valid()) return 0;
      current_ = pending_.get();  // rethrows the chunk's failure
      pos_ = 0;
      fetch_next();
    }
    std::size_t n = std::min(cap, current_.size() - pos_);
    std::memcpy(buf, current_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  void fetch_next() {
    if (next_ >= end_) return;
    std::uint64_t first = next_, len = std::min<std::uint64_t>(end_ - next_, s_.settings().read_chunk_size);
    next_ += len;
    pending_ = std::async(std::launch::async, [this, first, len] {
      Call c{"OPEN", &loc_, "GET", {{"offset", std::to_string(first)}, {"length", std::to_string(len)}}};
      c.body_limit = std::max<std::uint64_t>(len, 64 * 1024);
      http::Response r = s_.call(c);
      if (r.body.size() != len)
        throw Error("webhdfs OPEN " + loc_.url + ": asked for " + std::to_string(len) + " bytes at offset " +
                        std::to_string(first) + ", got " + std::to_string(r.body.size()) +
                        " (the file changed while it was read?)" + s_.context(c),
                    EMBER_E_IO);
      return std::move(r.body);
    });
  }

  Service& s_;
  Location loc_;
  std::uint64_t next_ = 0, end_ = 0;
  std::string current_;
  std::size_t pos_ = 0;
  std::future<std::string> pending_;
};

std::string random_suffix() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<std::uint64_t>(::getpid()));
  std::lock_guard<std::mutex> lock(mu);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// Atomic streaming write; see the file comment.
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc) : s_(s), final_(std::move(loc)) {
    if (final_.path == "/") throw Error("webhdfs: cannot write to " + final_.url + ": it is the root directory", EMBER_E_INVALID);
    tmp_ = final_;
    tmp_.path = parent_of(final_.path) + (parent_of(final_.path) == "/" ? "" : "/") + "." + name_of(final_.path) +
                ".tmp-" + random_suffix();
    tmp_.url = final_.url.substr(0, final_.url.size() - name_of(final_.path).size()) + name_of(tmp_.path);
    part_ = s_.settings().part_size;
    // The parent first: a permission problem or a file in the way is reported before any data.
    Location parent = final_;
    parent.path = parent_of(final_.path);
    parent.url = final_.root + parent.path;
    if (parent.path != "/") {
      http::Response r = s_.call({"MKDIRS", &parent, "PUT", {}});
      if (r.body.find("true") == std::string::npos)
        throw Error("webhdfs MKDIRS " + parent.url + ": the NameNode answered " + s_.scrub(r.body), EMBER_E_IO);
    }
  }
  ~Writer() override {
    if (inflight_.valid()) inflight_.wait();
    if (!committed_ && started_) {
      try {
        s_.call({"DELETE", &tmp_, "DELETE", {{"recursive", "false"}}});
      } catch (...) {
        // Best effort: the failure that led here is what the caller reports.
      }
    }
  }

  void write(const void* data, std::size_t n) override {
    if (committed_) throw Error("webhdfs: cannot write to " + final_.url + ": already committed", EMBER_E_INVALID);
    const char* p = static_cast<const char*>(data);
    while (n) {
      if (buf_.capacity() < part_) buf_.reserve(part_);
      std::size_t take = std::min(n, part_ - buf_.size());
      buf_.append(p, take);
      p += take;
      n -= take;
      if (buf_.size() == part_) ship();
    }
  }

  void commit() override {
    if (committed_) return;
    if (!buf_.empty() || !started_) ship();
    wait_inflight();
    // The temporary file must hold every byte before it takes the final name.
    bool found = false;
    auto fs = file_status(s_, tmp_, &found);
    std::uint64_t len = found ? to_entry(fs, tmp_.url).size : 0;
    if (!found || len != total_)
      throw Error("webhdfs " + final_.url + ": wrote " + std::to_string(total_) + " bytes but the temporary file " +
                      tmp_.url + (found ? " has " + std::to_string(len) : " is missing"),
                  EMBER_E_IO);
    publish();
    committed_ = true;
    buf_ = std::string();
    spare_ = std::string();
  }

 private:
  void publish() {
    std::string dest = final_.path;
    if (s_.settings().overwrite == "rename_overwrite") {
      // One NameNode operation: the target is replaced atomically (Hadoop's rename2 OVERWRITE).
      try {
        s_.call({"RENAME", &tmp_, "PUT", {{"destination", dest}, {"renameoptions", "OVERWRITE"}}});
      } catch (const Error& e) {
        // A rename whose answer was lost is retried and finds no source: done if the target
        // now has our length and the temporary name is gone.
        if (e.status() != EMBER_E_NOT_FOUND || !landed()) throw;
      }
      return;
    }
    // delete_then_rename, for gateways without renameoptions: between the two calls the target
    // is absent (a reader then sees "not found", never a partial file).
    s_.call({"DELETE", &final_, "DELETE", {{"recursive", "false"}}});
    http::Response r = s_.call({"RENAME", &tmp_, "PUT", {{"destination", dest}}});
    if (r.body.find("true") == std::string::npos && !landed())
      throw Error("webhdfs RENAME " + tmp_.url + " to " + final_.url + ": the NameNode answered " + s_.scrub(r.body),
                  EMBER_E_IO);
  }

  bool landed() {
    bool tmp_found = true, final_found = false;
    file_status(s_, tmp_, &tmp_found);
    auto fs = file_status(s_, final_, &final_found);
    return !tmp_found && final_found && to_entry(fs, final_.url).size == total_;
  }

  void wait_inflight() {
    if (!inflight_.valid()) return;
    auto f = std::move(inflight_);
    f.get();  // rethrows the part's failure
  }

  // Send buf_: the first part CREATEs the temporary file, the others APPEND to it, one at a
  // time in order, while the next part fills.
  void ship() {
    wait_inflight();
    std::swap(buf_, spare_);
    buf_.clear();
    const bool create = !started_;
    started_ = true;
    const std::uint64_t before = total_;
    total_ += spare_.size();
    inflight_ = std::async(std::launch::async, [this, create, before] {
      if (create) {
        s_.send_data({"CREATE", &tmp_, "PUT", {{"overwrite", "true"}}}, spare_, nullptr);
        return;
      }
      const std::uint64_t after = before + spare_.size();
      s_.send_data({"APPEND", &tmp_, "POST", {}}, spare_, [&] {
        bool found = false;
        auto fs = file_status(s_, tmp_, &found);
        std::uint64_t len = found ? to_entry(fs, tmp_.url).size : 0;
        if (len == after) return true;
        if (len == before) return false;
        throw Error("webhdfs APPEND " + tmp_.url + ": after a failed attempt the file has " + std::to_string(len) +
                        " bytes, neither " + std::to_string(before) + " nor " + std::to_string(after),
                    EMBER_E_IO);
      });
    });
  }

  Service& s_;
  Location final_, tmp_;
  std::size_t part_;
  std::string buf_, spare_;  // filling; in flight
  std::future<void> inflight_;
  std::uint64_t total_ = 0;
  bool started_ = false, committed_ = false;
};

class WebHdfsPlugin final : public plugin::Plugin, public plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "hdfs,webhdfs,swebhdfs";

  WebHdfsPlugin(const ember_host_t* host, std::string_view config) : Plugin(host), s_(Settings::from_json(config)) {
    if (!s_.settings().verify_tls)
      log(EMBER_LOG_WARN, http::insecure_tls_warning("every WebHDFS endpoint", "the webhdfs config key verify_tls"));
  }

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override {
    return std::make_unique<Reader>(s_, s_.locate(url), offset, length);
  }
  std::unique_ptr<File> open_write(std::string_view url) override {
    return std::make_unique<Writer>(s_, s_.locate(url));
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
