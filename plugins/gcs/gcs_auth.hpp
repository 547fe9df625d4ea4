// Google credentials for the gcs plugin, found as Google's client libraries find them
// (Application Default Credentials): an explicit token, a credentials file
// (GOOGLE_APPLICATION_CREDENTIALS, else gcloud's application_default_credentials.json) holding a
// service-account key or gcloud user credentials, then the metadata server. Header-only; OpenSSL
// (EVP) signs the service account's RS256 JWT. No network here: fetching a token is the plugin's.
//
// Nothing secret (a private key, a refresh token, a client secret, an access token, a JWT) is
// ever part of a message; TokenSource::describe() names the source and the public identity only.
#pragma once

#include "sigv4.hpp"  // base64

#include <boost/json.hpp>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ember::gcs {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// base64url without padding (RFC 7515's JWS encoding).
inline std::string base64url(std::string_view raw) {
  std::string s = ember::s3::base64(raw);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

// RSASSA-PKCS1-v1_5 with SHA-256 (JWS "RS256") of data with a PEM private key. what names the
// key's file for messages; the key itself never appears in one.
inline std::string sign_rs256(const std::string& pem, std::string_view data, const std::string& what) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) throw std::runtime_error("out of memory reading the private key of " + what);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
                                                          &EVP_PKEY_free);
  if (!key) throw std::runtime_error("the private_key of " + what + " is not a PEM private key");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
    throw std::runtime_error("cannot sign with the private_key of " + what + " (is it an RSA key?)");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(&sig[0]), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
    throw std::runtime_error("cannot sign with the private_key of " + what);
  sig.resize(len);
  return sig;
}

constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";
constexpr const char* kDefaultScope = "https://www.googleapis.com/auth/devstorage.read_write";

// Where tokens come from, resolved once (lazily, on the first request).
struct TokenSource {
  enum class Kind { anonymous, token, service_account, authorized_user, metadata };
  Kind kind = Kind::anonymous;
  std::string where;     // "GOOGLE_APPLICATION_CREDENTIALS /path", "config key token"...
  std::string identity;  // client_email / client_id: public, for messages
  // service_account
  std::string private_key, private_key_id, token_uri;
  // authorized_user
  std::string client_id, client_secret, refresh_token;
  // metadata: scheme://host[:port] of the metadata server
  std::string metadata_base;
  // token
  std::string token;

  bool refreshable() const { return kind == Kind::service_account || kind == Kind::authorized_user || kind == Kind::metadata; }

  std::string describe() const {
    switch (kind) {
      case Kind::anonymous: return "anonymous (" + where + ")";
      case Kind::token: return "an access token from " + where;
      case Kind::service_account: return "service account " + identity + " from " + where;
      case Kind::authorized_user: return "gcloud user credentials (client " + identity + ") from " + where;
      case Kind::metadata: return "the metadata server " + metadata_base;
    }
    return where;
  }

  // The signed JWT a service account trades for an access token (Google's OAuth 2.0
  // server-to-server flow): iss = client_email, aud = token_uri, an hour of validity.
  std::string jwt(const std::string& scope, std::int64_t now) const {
    boost::json::object header{{"alg", "RS256"}, {"typ", "JWT"}};
    if (!private_key_id.empty()) header["kid"] = private_key_id;
    boost::json::object claims{{"iss", identity}, {"scope", scope}, {"aud", token_uri}, {"iat", now}, {"exp", now + 3600}};
    std::string input = base64url(boost::json::serialize(header)) + "." + base64url(boost::json::serialize(claims));
    return input + "." + base64url(sign_rs256(private_key, input, where));
  }
};

// A credentials file (service_account or authorized_user JSON) as a TokenSource. where names it.
inline TokenSource read_credentials_file(const std::string& path, const std::string& where,
                                         const std::string& token_uri_override) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the credentials file " + where);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  auto v = boost::json::parse(ss.str(), ec);
  if (ec || !v.is_object()) throw std::runtime_error("the credentials file " + where + " is not a JSON object");
  const auto& o = v.as_object();
  auto get = [&](const char* k) -> std::string {
    const auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->as_string()) : std::string();
  };
  auto need = [&](const char* k) {
    std::string s = get(k);
    if (s.empty()) throw std::runtime_error("the credentials file " + where + " has no \"" + k + "\" (a string)");
    return s;
  };
  TokenSource t;
  t.where = where;
  std::string type = get("type");
  if (type == "service_account") {
    t.kind = TokenSource::Kind::service_account;
    t.identity = need("client_email");
    t.private_key = need("private_key");
    t.private_key_id = get("private_key_id");
    t.token_uri = get("token_uri");
  } else if (type == "authorized_user") {
    t.kind = TokenSource::Kind::authorized_user;
    t.client_id = need("client_id");
    t.identity = t.client_id;
    t.client_secret = need("client_secret");
    t.refresh_token = need("refresh_token");
    t.token_uri = get("token_uri");
  } else {
    throw std::runtime_error("the credentials file " + where + " has type \"" + type +
                             "\"; expected \"service_account\" or \"authorized_user\" (external_account and "
                             "impersonated_service_account are not supported)");
  }
  if (!token_uri_override.empty()) t.token_uri = token_uri_override;
  if (t.token_uri.empty()) t.token_uri = kDefaultTokenUri;
  return t;
}

// gcloud's ADC file: $CLOUDSDK_CONFIG/application_default_credentials.json, else
// ~/.config/gcloud/application_default_credentials.json; "" when neither exists.
inline std::string gcloud_adc_path() {
  std::string dir = env("CLOUDSDK_CONFIG");
  if (dir.empty()) {
    std::string home = env("HOME");
    if (home.empty()) return "";
    dir = home + "/.config/gcloud";
  }
  std::string p = dir + "/application_default_credentials.json";
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) ? p : "";
}

}  // namespace ember::gcs
