// The azure plugin's credentials and endpoint, found as Azure's SDKs find them (connection string,
// account key, SAS token, client secret; config first, then the environment), and the Entra ID
// tokens of the client-credentials flow.
#include "azure_service.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <thread>

namespace ember::azure {

void Service::resolve() {
  std::string conn_source;
  std::map<std::string, std::string> conn;
  std::string account = s_.account_name.empty() ? env("AZURE_STORAGE_ACCOUNT") : s_.account_name;
  auto from = [&](bool config) -> bool {
    std::string cs = config ? s_.connection_string : env("AZURE_STORAGE_CONNECTION_STRING");
    std::string where = config ? "the azure config key connection_string" : "AZURE_STORAGE_CONNECTION_STRING";
    if (!cs.empty()) {
      std::string bad;
      auto parsed = parse_connection_string(cs, &bad);
      if (!parsed)
        throw std::runtime_error("azure: " + where + ": expected Name=Value pairs separated by ';', found '" +
                                 bad.substr(0, 40) + "' without '='");
      conn = *parsed;
      conn_source = where;
      if (conn.count("UseDevelopmentStorage") && lower(conn["UseDevelopmentStorage"]) == "true") {
        conn.emplace("AccountName", kDevAccount);
        conn.emplace("AccountKey", kDevKey);
        conn.emplace("BlobEndpoint", kDevBlobEndpoint);
      }
      cred_.account = conn.count("AccountName") ? conn["AccountName"] : account;
      if (conn.count("AccountKey")) {
        set_key(conn["AccountKey"], where);
      } else if (conn.count("SharedAccessSignature")) {
        set_sas(conn["SharedAccessSignature"], where);
      } else {
        cred_.kind = AuthKind::anonymous;
        cred_.source = where + " has no AccountKey or SharedAccessSignature";
      }
      return true;
    }
    std::string key = config ? s_.account_key : env("AZURE_STORAGE_KEY");
    if (!key.empty()) {
      cred_.account = account;
      if (account.empty())
        throw std::runtime_error(std::string("azure: ") + (config ? "the config key account_key" : "AZURE_STORAGE_KEY") +
                                 " is set but no account: set AZURE_STORAGE_ACCOUNT or the azure config key account_name");
      set_key(key, config ? "the azure config key account_key" : "AZURE_STORAGE_KEY");
      return true;
    }
    std::string sas = config ? s_.sas_token : env("AZURE_STORAGE_SAS_TOKEN");
    if (!sas.empty()) {
      cred_.account = account;
      set_sas(sas, config ? "the azure config key sas_token" : "AZURE_STORAGE_SAS_TOKEN");
      return true;
    }
    std::string secret = config ? s_.client_secret : env("AZURE_CLIENT_SECRET");
    if (!secret.empty()) {
      cred_.account = account;
      cred_.kind = AuthKind::bearer;
      cred_.client_secret = secret;
      cred_.client_id = config ? s_.client_id : env("AZURE_CLIENT_ID");
      cred_.tenant_id = config ? s_.tenant_id : env("AZURE_TENANT_ID");
      cred_.source = config ? "the azure config keys tenant_id, client_id, client_secret"
                            : "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET";
      if (cred_.client_id.empty() || cred_.tenant_id.empty())
        throw std::runtime_error("azure: " + cred_.source + ": the client secret is set but " +
                                 (cred_.client_id.empty() ? "the client id" : "the tenant id") + " is not");
      secrets_.push_back(secret);
      return true;
    }
    return false;
  };
  if (s_.anonymous) {
    cred_.account = account;
    cred_.source = "the azure config key anonymous is true";
  } else if (!from(true) && !from(false)) {
    cred_.account = account;
    cred_.source = "no credentials found: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, "
                   "AZURE_STORAGE_SAS_TOKEN or AZURE_CLIENT_SECRET, or the azure config keys";
  }
  if (!s_.connection_string.empty() && conn_source.empty()) secrets_.push_back(s_.connection_string);

  // The endpoint: the config's, the connection string's BlobEndpoint, or the account's.
  std::string ep = s_.endpoint_url;
  std::string ep_source = "the azure config key endpoint_url";
  if (ep.empty() && conn.count("BlobEndpoint")) {
    ep = conn["BlobEndpoint"];
    ep_source = "BlobEndpoint in " + conn_source;
  }
  custom_endpoint_ = !ep.empty();
  if (ep.empty() && !cred_.account.empty()) {
    std::string proto = conn.count("DefaultEndpointsProtocol") ? lower(conn["DefaultEndpointsProtocol"]) : "https";
    std::string suffix = conn.count("EndpointSuffix") ? conn["EndpointSuffix"] : s_.endpoint_suffix;
    ep = proto + "://" + cred_.account + ".blob." + suffix;
    ep_source = "the account name";
  }
  if (ep.empty()) return;  // every call names its account in the URL, or fails saying so
  try {
    endpoint_ = http::Url::parse(ep);
    if (cred_.kind != AuthKind::anonymous)
      http::require_secure_transport(endpoint_, s_.allow_insecure_http, "the azure config key allow_insecure_http");
  } catch (const std::exception& e) {
    throw std::runtime_error("azure: " + ep_source + ": " + std::string(e.what()));
  }
  if (endpoint_.target.find('?') != std::string::npos)
    throw std::runtime_error("azure: " + ep_source + ": the endpoint has a query; put a SAS token in sas_token");
  base_path_ = endpoint_.target == "/" ? std::string() : endpoint_.target;
  if (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();
  // Azurite and other emulators on an IP address take the account as the first path segment.
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(endpoint_.host, ec);
  const bool ip_or_localhost = !ec || lower(endpoint_.host) == "localhost";
  if (base_path_.empty() && ip_or_localhost && !cred_.account.empty()) base_path_ = "/" + cred_.account;
  if (cred_.account.empty() && custom_endpoint_ && !base_path_.empty()) cred_.account = base_path_.substr(1, base_path_.find('/', 1) - 1);
}

void Service::set_key(const std::string& text, const std::string& source) {
  auto raw = net::base64_decode(text);
  // Never the key in the message: its length only.
  if (!raw) throw std::runtime_error("azure: " + source + ": the account key is not base64 (" + std::to_string(text.size()) + " characters)");
  cred_.kind = AuthKind::shared_key;
  cred_.key = *raw;
  cred_.source = source;
  secrets_.push_back(text);
}

void Service::set_sas(std::string sas, const std::string& source) {
  if (!sas.empty() && sas.front() == '?') sas.erase(0, 1);
  if (sas.find("sig=") == std::string::npos)
    throw std::runtime_error("azure: " + source + ": not a SAS token (no sig= parameter)");
  cred_.kind = AuthKind::sas;
  cred_.sas = sas;
  cred_.source = source;
  secrets_.push_back(sas);
  // The signature alone, as it may appear decoded or re-encoded in an answer.
  for (std::size_t p = 0; p < sas.size();) {
    auto end = sas.find('&', p);
    std::string kv = sas.substr(p, end == std::string::npos ? std::string::npos : end - p);
    if (kv.rfind("sig=", 0) == 0) {
      secrets_.push_back(kv.substr(4));
      secrets_.push_back(percent_decode(kv.substr(4)));
    }
    if (end == std::string::npos) break;
    p = end + 1;
  }
}

std::string Service::bearer_token(const Call& c) {
  std::lock_guard<std::mutex> lock(token_mu_);
  auto now = std::chrono::steady_clock::now();
  if (!token_.empty() && now < token_expiry_) return token_;
  std::string authority = s_.authority_host.empty() ? env("AZURE_AUTHORITY_HOST") : s_.authority_host;
  if (authority.empty()) authority = "https://login.microsoftonline.com";
  while (!authority.empty() && authority.back() == '/') authority.pop_back();
  std::string where = "azure token " + authority + "/" + cred_.tenant_id + "/oauth2/v2.0/token for " + prefix(c);
  http::Url u;
  try {
    u = http::Url::parse(authority + "/" + net::uri_encode(cred_.tenant_id) + "/oauth2/v2.0/token");
    http::require_secure_transport(u, s_.allow_insecure_http, "the azure config key allow_insecure_http");
  } catch (const std::exception& e) {
    throw AzureError(where + ": " + e.what(), EMBER_E_INVALID);
  }
  std::string form = "grant_type=client_credentials&client_id=" + net::uri_encode(cred_.client_id) +
                     "&client_secret=" + net::uri_encode(cred_.client_secret) +
                     "&scope=" + net::uri_encode("https://storage.azure.com/.default");
  http::Request req{"POST", u.target, {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}}, form};
  req.idempotent = true;  // asking again for a token has no effect but another token
  std::string last;
  for (int attempt = 1;; ++attempt) {
    try {
      http::Client client(u.scheme, u.host, u.port, pool_->options());
      http::Response r = client.send(req);
      boost::system::error_code ec;
      auto v = boost::json::parse(r.body, ec);
      const boost::json::object* o = !ec && v.is_object() ? &v.as_object() : nullptr;
      auto field = [&](const char* k) -> std::string {
        if (!o) return {};
        const auto* x = o->if_contains(k);
        return x && x->is_string() ? std::string(x->as_string()) : std::string();
      };
      if (r.status == 200 && !field("access_token").empty()) {
        token_ = field("access_token");
        secrets_.push_back(token_);
        std::int64_t expires = 3600;
        if (o)
          if (const auto* x = o->if_contains("expires_in"))
            expires = x->is_int64() ? x->as_int64() : x->is_string() ? std::atoll(x->as_string().c_str()) : 3600;
        token_expiry_ = now + std::chrono::seconds(std::max<std::int64_t>(expires - 300, 30));
        return token_;
      }
      last = where + ": HTTP " + std::to_string(r.status) +
             (field("error").empty() ? "" : ": " + field("error") + ": " + first_line(field("error_description"))) +
             " (client " + cred_.client_id + ", tenant " + cred_.tenant_id + ", from " + cred_.source + ")";
      if (!(r.status == 429 || r.status >= 500)) throw AzureError(scrub_locked(last), EMBER_E_IO);
    } catch (const http::Error& e) {
      last = where + ": " + e.what();
      if (!e.retryable()) throw AzureError(scrub_locked(last), EMBER_E_IO);
    }
    if (s_.retry.exhausted(attempt)) throw AzureError(scrub_locked(last) + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
    // Without jitter: one token request at a time (token_mu_ is held).
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(s_.retry.cap_ms(attempt) * 1000)));
  }
}

std::string Service::scrub_locked(std::string text) const {
  for (const auto& sec : secrets_) {
    if (sec.size() < 6) continue;
    for (auto p = text.find(sec); p != std::string::npos; p = text.find(sec, p)) text.replace(p, sec.size(), "***");
  }
  return text;
}

}  // namespace ember::azure
