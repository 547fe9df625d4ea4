// The azure plugin's Service: requests to the Blob endpoint, signed (Shared Key), with a SAS or a
// bearer token, through the connection pool and the retry loop (credentials: azure_credentials.cpp).
#include "azure_service.hpp"

#include <algorithm>

namespace ember::azure {

Location parse_location(std::string_view url) {
  auto p = url.find("://");
  if (p == std::string_view::npos) throw AzureError("not an az:// or abfs:// URL: " + std::string(url), EMBER_E_INVALID);
  Location loc;
  loc.scheme = lower(url.substr(0, p));
  if (loc.scheme == "adl")
    throw AzureError("adl:// (" + std::string(url) +
                         ") is Azure Data Lake Storage Gen1, which Microsoft retired in February 2024; the azure plugin "
                         "does not support it: use abfs://container@account.dfs.core.windows.net/path on a Gen2 account",
                     EMBER_E_INVALID);
  if (loc.scheme != "az" && loc.scheme != "abfs" && loc.scheme != "abfss")
    throw AzureError("not an az://, abfs:// or abfss:// URL: " + std::string(url), EMBER_E_INVALID);
  std::string_view rest = url.substr(p + 3);
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) loc.blob = std::string(rest.substr(slash + 1));
  auto at = authority.find('@');
  if (at != std::string_view::npos) {
    loc.container = std::string(authority.substr(0, at));
    std::string_view host = authority.substr(at + 1);
    loc.account = lower(host.substr(0, host.find('.')));
    if (loc.account.empty())
      throw AzureError("no account in URL " + std::string(url) + " (expected " + loc.scheme +
                           "://container@account.dfs.core.windows.net/path)",
                       EMBER_E_INVALID);
  } else {
    loc.container = std::string(authority);
  }
  if (loc.container.empty())
    throw AzureError("no container in URL " + std::string(url) + " (expected " + loc.scheme + "://container/path" +
                         (loc.scheme == "az" ? "" : " or " + loc.scheme + "://container@account.dfs.core.windows.net/path") + ")",
                     EMBER_E_INVALID);
  loc.base = std::string(url.substr(0, p + 3)) + std::string(authority) + "/";
  return loc;
}

// The first line of text (the service's messages carry "RequestId:...\nTime:..." after it).
std::string first_line(std::string text) {
  auto nl = text.find_first_of("\r\n");
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

Service::Service(Settings s) : s_(std::move(s)) {
  resolve();
  if (s_.ca_bundle.empty()) s_.ca_bundle = env("AZURE_CA_BUNDLE");
  http::Options o;
  o.verify_tls = s_.verify_tls;
  o.ca_file = s_.ca_bundle;
  o.timeout = std::chrono::milliseconds(s_.timeout_ms);
  o.deadline = std::chrono::milliseconds(s_.request_deadline_ms);
  o.max_body = kXmlAnswerLimit;
  // Idle connections kept per endpoint: two per block or chunk in flight, and two more.
  pool_.emplace(std::move(o), 2 * s_.max_concurrency + 2);
}

http::Response Service::call(Call c) {
  const Target t = target(*c.loc, c);
  std::string path = t.base_path + "/" + net::uri_encode(c.loc->container);
  if (!c.container_level) path += "/" + net::uri_encode(c.loc->blob, /*encode_slash=*/false);
  std::string query;
  for (const auto& kv : c.query) query += (query.empty() ? "" : "&") + net::uri_encode(kv.first) + "=" + net::uri_encode(kv.second);
  if (cred_.kind == AuthKind::sas) query += (query.empty() ? "" : "&") + cred_.sas;

  http::Request req;
  req.method = c.method;
  req.target = path + (query.empty() ? "" : "?" + query);
  req.body = c.body;
  req.body_limit = c.body_limit;

  std::string last;
  for (int attempt = 1;; ++attempt) {
    Params headers = c.headers;
    headers.emplace_back("x-ms-date", net::format_http_date(std::time(nullptr)));
    headers.emplace_back("x-ms-version", kApiVersion);
    if (cred_.kind == AuthKind::shared_key) {
      SharedKeyInput in{c.method, cred_.account, path, c.query, headers, c.body.size()};
      headers.emplace_back("Authorization", shared_key_authorization(in, cred_.key));
    } else if (cred_.kind == AuthKind::bearer) {
      headers.emplace_back("Authorization", "Bearer " + bearer_token(c));
    }
    req.headers = std::move(headers);

    bool retry = false;
    try {
      net::ConnectionPool::Lease lease(*pool_, t.scheme, t.host, t.port);
      http::Response res = lease->send(req);
      if ((res.status >= 200 && res.status < 300) ||
          std::find(c.accept.begin(), c.accept.end(), res.status) != c.accept.end())
        return res;
      retry = net::retryable_status(res.status, {408});
      last = describe(c, res);
      if (!retry) throw AzureError(last, res.status == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
    } catch (const http::Error& e) {
      // An answer over its limit or a certificate that fails verification fails the same way
      // next time: only network trouble is retried.
      retry = e.retryable();
      last = scrub(prefix(c) + ": " + e.what() + context());
      if (!retry) throw AzureError(last, EMBER_E_IO);
    }
    if (s_.retry.exhausted(attempt)) throw AzureError(net::RetryPolicy::gave_up(last, attempt), EMBER_E_IO);
    s_.retry.backoff(attempt);
  }
}

std::string Service::scrub(std::string text) const {
  std::vector<std::string> secrets;
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    secrets = secrets_;
  }
  for (const auto& sec : secrets) {
    if (sec.size() < 6) continue;
    for (auto p = text.find(sec); p != std::string::npos; p = text.find(sec, p)) text.replace(p, sec.size(), "***");
  }
  return text;
}

Service::Target Service::target(const Location& loc, const Call& c) const {
  if (loc.account.empty() || loc.account == cred_.account) {
    if (endpoint_.host.empty())
      throw AzureError(prefix(c) + ": no storage account: set AZURE_STORAGE_ACCOUNT (or the azure config key "
                                   "account_name, or a connection string), or name it in the URL as "
                                   "abfs://container@account.dfs.core.windows.net/path",
                       EMBER_E_INVALID);
    return {endpoint_.scheme, endpoint_.host, endpoint_.port, base_path_};
  }
  if (custom_endpoint_ || cred_.kind == AuthKind::shared_key || cred_.kind == AuthKind::sas)
    throw AzureError(prefix(c) + ": the URL names account " + loc.account + " but the configured " +
                         (custom_endpoint_ ? "endpoint " + endpoint_text() + " serves" : "credentials are for") +
                         " account " + cred_.account,
                     EMBER_E_INVALID);
  return {"https", loc.account + ".blob." + s_.endpoint_suffix, "443", ""};
}

std::string Service::describe(const Call& c, const http::Response& res) const {
  Tree t = parse_xml(res.body);
  std::string code = res.header("x-ms-error-code");
  if (code.empty()) code = t.get<std::string>("Error.Code", "");
  std::string message = first_line(t.get<std::string>("Error.Message", ""));
  if (code.empty()) {
    switch (res.status) {
      case 403: code = "AuthorizationFailure"; break;
      case 404: code = c.container_level ? "ContainerNotFound" : "BlobNotFound"; break;
      default: code = "HTTP" + std::to_string(res.status);
    }
  }
  if (message.empty() && c.method == "HEAD") message = "(a HEAD answer has no error body)";
  std::string out = prefix(c) + ": " + code + (message.empty() ? "" : ": " + message) + " (HTTP " +
                    std::to_string(res.status) + ", container " + c.loc->container +
                    (c.container_level ? "" : ", blob " + c.loc->blob) + ", endpoint " + endpoint_text() +
                    ", account " + (cred_.account.empty() ? "(none)" : cred_.account) + ", " + cred_.describe();
  if (std::string id = res.header("x-ms-request-id"); !id.empty()) out += "; request id " + id;
  return scrub(out + ")");
}

}  // namespace ember::azure
