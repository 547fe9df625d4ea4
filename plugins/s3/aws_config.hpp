// Where the S3 plugin's region, endpoint and credentials come from, in the AWS CLI's order:
// plugin config, environment, the shared files (~/.aws/credentials, ~/.aws/config, for
// AWS_PROFILE or "default"), then container credentials (ECS/EKS). Nothing here logs or returns
// a secret in a message; Resolution::searched says where credentials were looked for.
#pragma once

#include "sigv4.hpp"

#include <ember/net/http.hpp>

#include <boost/json.hpp>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace ember::s3 {

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

inline std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// An AWS shared file (INI): section -> key -> value. Comments start with '#' or ';'.
// Nested blocks (a key with an empty value followed by indented lines, used for "s3 =" settings)
// are read as "parent.child" keys.
using Ini = std::map<std::string, std::map<std::string, std::string>>;

inline std::optional<Ini> read_ini(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  Ini out;
  std::string line, section, parent;
  while (std::getline(in, line)) {
    bool indented = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(t.substr(1, t.size() - 2));
      out[section];
      parent.clear();
      continue;
    }
    auto eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(t.substr(0, eq)), value = trim(t.substr(eq + 1));
    if (indented && !parent.empty()) {
      out[section][parent + "." + key] = value;
      continue;
    }
    parent = value.empty() ? key : std::string();
    out[section][key] = value;
  }
  return out;
}

inline std::string home_file(const char* env_name, const char* rel) {
  std::string p = env(env_name);
  if (!p.empty()) return p;
  std::string home = env("HOME");
  return home.empty() ? std::string() : home + "/" + rel;
}

inline std::string credentials_file() { return home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"); }
inline std::string config_file() { return home_file("AWS_CONFIG_FILE", ".aws/config"); }

// A profile's settings from ~/.aws/config ("[profile name]", or "[default]").
inline std::map<std::string, std::string> config_profile(const std::string& profile) {
  auto ini = read_ini(config_file());
  if (!ini) return {};
  auto it = ini->find(profile == "default" ? "default" : "profile " + profile);
  if (it == ini->end() && profile == "default") it = ini->find("profile default");
  return it == ini->end() ? std::map<std::string, std::string>() : it->second;
}

// The parts of an ISO 8601 UTC time ("2024-01-02T03:04:05Z") as seconds since the epoch, or -1.
inline std::int64_t parse_iso8601(const std::string& s) {
  std::tm tm{};
  if (s.size() < 19 || !strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return -1;
  return static_cast<std::int64_t>(timegm(&tm));
}

struct SourcedCredentials {
  Credentials creds;
  std::string source;             // "config", "environment", "profile default (~/.aws/credentials)" ...
  std::int64_t expires_at = -1;   // seconds since the epoch; -1: does not expire
};

// Whether AWS allows container credentials from this URL (the rule of its SDKs): https to any
// host; plain http only to loopback (every address the name resolves to), the ECS agent
// 169.254.170.2, or EKS Pod Identity's 169.254.170.23 / fd00:ec2::23. Empty when allowed, else why not.
inline std::string container_uri_refusal(const http::Url& u) {
  if (u.scheme == "https") return {};
  auto allowed = [](const boost::asio::ip::address& a) {
    if (a.is_loopback()) return true;
    if (a.is_v6() && a.to_v6().is_v4_mapped())
      return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).is_loopback();
    return a == boost::asio::ip::make_address("169.254.170.2") || a == boost::asio::ip::make_address("169.254.170.23") ||
           a == boost::asio::ip::make_address("fd00:ec2::23");
  };
  boost::system::error_code ec;
  auto literal = boost::asio::ip::make_address(u.host, ec);
  if (!ec) return allowed(literal) ? std::string() : u.host + " is not a loopback, ECS or EKS address";
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::resolver resolver(ioc);
  auto found = resolver.resolve(u.host, u.port, ec);
  if (ec) return "cannot resolve " + u.host + " to check it is a loopback address: " + ec.message();
  if (found.empty()) return u.host + " resolves to no address";
  for (const auto& e : found)
    if (!e.endpoint().address().is_loopback())
      return u.host + " resolves to " + e.endpoint().address().to_string() + ", which is not a loopback address";
  return {};
}

// Container credentials (ECS task role, EKS pod identity): GET the URI, JSON answer with
// AccessKeyId / SecretAccessKey / Token / Expiration. FULL_URI wins over RELATIVE_URI (which
// is relative to 169.254.170.2). An authorization token comes from AWS_CONTAINER_AUTHORIZATION_TOKEN
// or the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; it (and the request) go only where
// container_uri_refusal allows. Messages show the URI without its query.
inline std::optional<SourcedCredentials> container_credentials(std::string& searched) {
  std::string full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  std::string rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  if (full.empty() && rel.empty()) {
    searched += ", container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI not set)";
    return std::nullopt;
  }
  const char* var = full.empty() ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" : "AWS_CONTAINER_CREDENTIALS_FULL_URI";
  std::string uri = full.empty() ? "http://169.254.170.2" + rel : full;
  http::Url url;
  try {
    url = http::Url::parse(uri);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(var) + ": " + e.what());
  }
  if (std::string why = container_uri_refusal(url); !why.empty())
    throw std::runtime_error(std::string(var) + " " + url.display() + " refused: " + why +
                             "; container credentials over plain http are fetched only from loopback, 169.254.170.2 "
                             "(ECS), 169.254.170.23 or fd00:ec2::23 (EKS), else use https");
  const std::string shown = url.display();
  http::Options opts;
  opts.timeout = std::chrono::milliseconds(5000);
  opts.deadline = std::chrono::milliseconds(10000);
  opts.max_body = 64 * 1024;
  http::Client client(url.scheme, url.host, url.port, opts);
  http::Request req{"GET", url.target, {{"Accept", "application/json"}}, ""};
  std::string token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  if (std::string tf = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); !tf.empty()) {
    std::ifstream in(tf);
    std::stringstream ss;
    ss << in.rdbuf();
    token = trim(ss.str());
  }
  if (!token.empty()) req.headers.emplace_back("Authorization", token);
  http::Response res;
  try {
    res = client.send(req);
  } catch (const std::exception& e) {
    throw std::runtime_error("container credentials from " + shown + ": " + e.what());
  }
  if (res.status != 200)
    throw std::runtime_error("container credentials from " + shown + ": HTTP " + std::to_string(res.status));
  boost::system::error_code ec;
  auto v = boost::json::parse(res.body, ec);
  if (ec || !v.is_object())
    throw std::runtime_error("container credentials from " + shown + ": the answer is not a JSON object");
  const auto& o = v.as_object();
  auto get = [&](const char* k) {
    const auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->as_string()) : std::string();
  };
  SourcedCredentials out;
  out.creds = {get("AccessKeyId"), get("SecretAccessKey"), get("Token")};
  out.source = "container credentials (" + url.scheme + "://" + client.endpoint() + ")";
  out.expires_at = parse_iso8601(get("Expiration"));
  if (out.creds.empty())
    throw std::runtime_error("container credentials from " + shown + ": the answer has no AccessKeyId/SecretAccessKey");
  return out;
}

// Resolve credentials. config_* come from the plugin config (may be empty). Throws a message
// listing every place looked at when none is found.
inline SourcedCredentials resolve_credentials(const Credentials& from_config, const std::string& profile) {
  if (!from_config.access_key_id.empty() || !from_config.secret_access_key.empty()) {
    if (from_config.empty())
      throw std::runtime_error("s3 config: access_key_id and secret_access_key must be given together");
    return {from_config, "plugin config", -1};
  }
  std::string searched = "plugin config (access_key_id/secret_access_key)";
  Credentials e{env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN")};
  if (!e.empty()) return {e, "environment", -1};
  searched += ", environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)";

  std::string cred_path = credentials_file(), conf_path = config_file();
  if (auto ini = read_ini(cred_path)) {
    if (auto it = ini->find(profile); it != ini->end()) {
      Credentials c{it->second["aws_access_key_id"], it->second["aws_secret_access_key"], it->second["aws_session_token"]};
      if (!c.empty()) return {c, "profile " + profile + " in " + cred_path, -1};
    }
  }
  searched += ", profile '" + profile + "' in " + (cred_path.empty() ? std::string("~/.aws/credentials") : cred_path);
  {
    auto p = config_profile(profile);
    Credentials c{p["aws_access_key_id"], p["aws_secret_access_key"], p["aws_session_token"]};
    if (!c.empty()) return {c, "profile " + profile + " in " + conf_path, -1};
  }
  searched += ", profile '" + profile + "' in " + (conf_path.empty() ? std::string("~/.aws/config") : conf_path);
  if (auto c = container_credentials(searched)) return *c;
  throw std::runtime_error("no AWS credentials found; looked in: " + searched);
}

// Region: config, AWS_REGION, AWS_DEFAULT_REGION, the profile in ~/.aws/config, us-east-1.
inline std::string resolve_region(const std::string& from_config, const std::string& profile) {
  if (!from_config.empty()) return from_config;
  if (auto r = env("AWS_REGION"); !r.empty()) return r;
  if (auto r = env("AWS_DEFAULT_REGION"); !r.empty()) return r;
  auto p = config_profile(profile);
  if (auto it = p.find("region"); it != p.end() && !it->second.empty()) return it->second;
  return "us-east-1";
}

// Endpoint: config, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url (or its
// "s3 = endpoint_url" block); empty means AWS itself.
inline std::string resolve_endpoint(const std::string& from_config, const std::string& profile) {
  if (!from_config.empty()) return from_config;
  if (auto r = env("AWS_ENDPOINT_URL_S3"); !r.empty()) return r;
  if (auto r = env("AWS_ENDPOINT_URL"); !r.empty()) return r;
  auto p = config_profile(profile);
  if (auto it = p.find("s3.endpoint_url"); it != p.end() && !it->second.empty()) return it->second;
  if (auto it = p.find("endpoint_url"); it != p.end() && !it->second.empty()) return it->second;
  return {};
}

inline std::string resolve_profile(const std::string& from_config) {
  if (!from_config.empty()) return from_config;
  if (auto p = env("AWS_PROFILE"); !p.empty()) return p;
  return "default";
}

}  // namespace ember::s3
