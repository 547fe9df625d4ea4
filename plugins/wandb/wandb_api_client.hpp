// W&B's client over ember::http (Boost.Beast + OpenSSL): one attempt per call (GraphQL,
// file_stream, signed PUT and GET) with W&B's failure classes, and retry() with W&B's backoff;
// the API key from the environment or netrc. Not thread-safe: one Api per thread.
//
// The API key only ever goes into the Authorization header; no message built here contains it.
#pragma once

#include <ember/net/http.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "wandb_json.hpp"
#include "wandb_safety.hpp"
#include "wandb_types.hpp"

namespace ember::wandb {

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

}  // namespace ember::wandb
