// The gcs plugin's credentials: where they come from (gcs_auth.hpp reads the files) and the
// access tokens fetched and refreshed with them, for the Service's requests.
#include "gcs_service.hpp"

#include <chrono>
#include <ctime>

namespace ember::gcs {

bool Service::source_refreshable() {
  std::lock_guard<std::mutex> lock(cred_mu_);
  return source_ && source_->refreshable();
}
void Service::invalidate_token() {
  std::lock_guard<std::mutex> lock(cred_mu_);
  token_.clear();
  token_expires_ = 0;
}

std::string Service::authorization(const Call& c) {
  std::lock_guard<std::mutex> lock(cred_mu_);
  try {
    if (!source_) source_ = resolve_source();
    switch (source_->kind) {
      case TokenSource::Kind::anonymous: return "";
      case TokenSource::Kind::token: return "Bearer " + source_->token;
      default: break;
    }
    std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    if (token_.empty() || now + kRefreshMarginS >= token_expires_) fetch_token(now);
    return "Bearer " + token_;
  } catch (const plugin::Error& e) {
    throw plugin::Error(prefix(c) + ": " + e.what(), e.status());
  } catch (const std::exception& e) {
    throw plugin::Error(prefix(c) + ": " + e.what(), EMBER_E_INVALID);
  }
}

TokenSource Service::resolve_source() {
  TokenSource t;
  if (!s_.token.empty()) {
    t.kind = TokenSource::Kind::token;
    t.token = s_.token;
    t.where = "the gcs config key token";
    return t;
  }
  if (s_.anonymous) {
    t.where = "the gcs config key anonymous";
    return t;
  }
  if (!s_.credentials_file.empty())
    return read_credentials_file(s_.credentials_file, "credentials_file " + s_.credentials_file, s_.token_uri);
  if (!emulator_.empty()) {
    // Google's clients talk to an emulator without credentials.
    t.where = "STORAGE_EMULATOR_HOST is set; set credentials_file or token to send credentials";
    return t;
  }
  if (std::string p = env("GOOGLE_APPLICATION_CREDENTIALS"); !p.empty())
    return read_credentials_file(p, "GOOGLE_APPLICATION_CREDENTIALS " + p, s_.token_uri);
  if (std::string p = gcloud_adc_path(); !p.empty()) return read_credentials_file(p, p, s_.token_uri);
  std::string host = env("GCE_METADATA_HOST");
  bool explicit_host = !host.empty();
  if (host.empty()) host = "169.254.169.254";
  t.metadata_base = "http://" + host;
  t.kind = TokenSource::Kind::metadata;
  t.where = explicit_host ? "GCE_METADATA_HOST" : "the metadata server";
  if (explicit_host || metadata_answers(t.metadata_base)) return t;
  TokenSource none;
  none.where = "no credentials found: GOOGLE_APPLICATION_CREDENTIALS is unset, there is no "
               "gcloud application_default_credentials.json and no metadata server answered";
  return none;
}

bool Service::metadata_answers(const std::string& base) {
  try {
    http::Url u = http::Url::parse(base + "/");
    http::Options o = pool_->options();
    o.timeout = std::chrono::milliseconds(s_.metadata_timeout_ms);
    o.deadline = std::chrono::milliseconds(s_.metadata_timeout_ms);
    http::Client c(u.scheme, u.host, u.port, o);
    auto r = c.send({"GET", "/", {{"Metadata-Flavor", "Google"}}, ""});
    return r.header("Metadata-Flavor") == "Google";
  } catch (...) {
    return false;
  }
}

void Service::fetch_token(std::int64_t now) {
  const TokenSource& t = *source_;
  std::string url, body, what;
  Params headers;
  std::string method = "POST";
  if (t.kind == TokenSource::Kind::metadata) {
    url = t.metadata_base + "/computeMetadata/v1/instance/service-accounts/default/token";
    method = "GET";
    headers.emplace_back("Metadata-Flavor", "Google");
    what = "the metadata server " + t.metadata_base;
  } else {
    url = t.token_uri;
    headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    if (t.kind == TokenSource::Kind::service_account) {
      body = "grant_type=" + pct("urn:ietf:params:oauth:grant-type:jwt-bearer") + "&assertion=" + pct(t.jwt(s_.scope, now));
    } else {
      body = "grant_type=refresh_token&client_id=" + pct(t.client_id) + "&client_secret=" + pct(t.client_secret) +
             "&refresh_token=" + pct(t.refresh_token);
    }
    what = http::display_url(url);
  }
  const std::string who = t.describe();
  http::Url u;
  try {
    u = http::Url::parse(url);
    http::require_secure_transport(u, s_.allow_insecure_http, "the gcs config key allow_insecure_http");
  } catch (const std::exception& e) {
    throw plugin::Error("cannot get an access token for " + who + ": " + e.what(), EMBER_E_INVALID);
  }
  std::string last;
  for (int attempt = 1;; ++attempt) {
    bool retry = false;
    try {
      http::Client c(u.scheme, u.host, u.port, pool_->options());
      http::Request req{method, u.target, headers, body};
      req.idempotent = true;  // a token request has no effect to repeat
      http::Response r = c.send(req);
      json::object o2 = parse_object(r.body);
      if (r.status == 200) {
        std::string tok = json_str(o2, "access_token");
        if (tok.empty()) throw plugin::Error("cannot get an access token for " + who + " from " + what + ": the answer has no access_token", EMBER_E_IO);
        token_ = tok;
        std::uint64_t expires_in = json_u64(o2, "expires_in");
        token_expires_ = static_cast<std::int64_t>(std::time(nullptr)) + static_cast<std::int64_t>(expires_in ? expires_in : 3600);
        return;
      }
      std::string code = json_str(o2, "error"), desc = json_str(o2, "error_description");
      if (code.empty()) code = "HTTP" + std::to_string(r.status);
      last = "cannot get an access token for " + who + " from " + what + ": " + code + (desc.empty() ? "" : ": " + desc) +
             " (HTTP " + std::to_string(r.status) + ")";
      retry = retryable_status(r.status);
    } catch (const http::Error& e) {
      last = "cannot get an access token for " + who + " from " + what + ": " + e.what();
      retry = e.retryable();
    }
    // The server's words may quote what we sent: never let a secret through.
    for (const std::string* secret : {&t.client_secret, &t.refresh_token})
      if (secret->size() >= 8)
        for (auto p = last.find(*secret); p != std::string::npos; p = last.find(*secret, p)) last.replace(p, secret->size(), "***");
    if (auto p = last.find("eyJ"); p != std::string::npos) last = last.substr(0, p) + "***";
    if (!retry) throw plugin::Error(last, EMBER_E_IO);
    if (s_.retry.exhausted(attempt)) throw plugin::Error(last + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
    s_.retry.backoff(attempt);
  }
}

}  // namespace ember::gcs
