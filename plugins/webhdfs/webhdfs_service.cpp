// The webhdfs plugin's Service: URLs to NameNode requests, the DataNode redirects, the connection
// pool and the retry loop every request goes through.
#include "webhdfs_service.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>

namespace ember::webhdfs {

namespace {

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

}  // namespace

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
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

Service::Service(Settings s) : s_(std::move(s)) {
  http::Options o;
  o.verify_tls = s_.verify_tls;
  o.ca_file = s_.ca_bundle;
  o.timeout = std::chrono::milliseconds(s_.timeout_ms);
  o.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
  o.max_body = 64 << 20;  // JSON answers; data reads set their own limit
  // Idle connections kept per NameNode or DataNode: the reader's and the writer's, and two more.
  pool_.emplace(std::move(o), 4);
}

Location Service::locate(std::string_view url) const {
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

std::string Service::target(const Call& c) const {
  std::string t = "/webhdfs/v1" + encode(c.loc->path, true) + "?op=" + c.op;
  for (const auto& kv : c.params) t += "&" + kv.first + "=" + encode(kv.second, false);
  if (!s_.delegation_token.empty()) t += "&delegation=" + encode(s_.delegation_token, false);
  else if (!s_.user.empty()) t += "&user.name=" + encode(s_.user, false);
  return t;
}

template <class F>
http::Response Service::retrying(const Call& c, F&& attempt_fn) {
  std::string last;
  for (int attempt = 1;; ++attempt) {
    bool retry = false;
    ember_status_t status = EMBER_E_IO;
    try {
      http::Response r = attempt_fn(attempt);
      if ((r.status >= 200 && r.status < 300) || std::find(c.accept.begin(), c.accept.end(), r.status) != c.accept.end())
        return r;
      Remote re = parse_remote(r.body);
      // Every 5xx (a NameNode in safe mode or failing over answers several), beyond the shared ones.
      retry = r.status >= 500 || net::retryable_status(r.status) || re.exception == "StandbyException" ||
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
    if (s_.retry.exhausted(attempt)) throw Error(net::RetryPolicy::gave_up(last, attempt), status);
    s_.retry.backoff(attempt);
  }
}

http::Response Service::call(const Call& c) {
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

void Service::send_data(const Call& c, std::string_view body, const std::function<bool()>& before_retry) {
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

std::string Service::scrub(std::string text) const {
  const std::string& t = s_.delegation_token;
  if (t.empty()) return text;
  for (auto p = text.find(t); p != std::string::npos; p = text.find(t, p)) text.replace(p, t.size(), "<token>");
  std::string enc = encode(t, false);
  for (auto p = text.find(enc); p != std::string::npos; p = text.find(enc, p)) text.replace(p, enc.size(), "<token>");
  return text;
}

http::Url Service::datanode(const Call& c, const http::Response& r) {
  std::string location = r.header("Location");
  if (location.empty())
    throw Error(prefix(c) + ": the NameNode's 307 answer has no Location" + context(c), EMBER_E_IO);
  try {
    return http::Url::parse(location);
  } catch (const std::exception& e) {
    throw Error(prefix(c) + ": the NameNode redirected to a bad Location: " + scrub(e.what()) + context(c), EMBER_E_IO);
  }
}

http::Response Service::send(const http::Url& u, const http::Request& req) {
  // A delegation token rides in the query: never in clear beyond this machine unless allowed.
  if (!s_.delegation_token.empty())
    http::require_secure_transport(u, s_.allow_insecure_http, "the webhdfs config key allow_insecure_http");
  net::ConnectionPool::Lease lease(*pool_, u);
  return lease->send(req);
}

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

}  // namespace ember::webhdfs
