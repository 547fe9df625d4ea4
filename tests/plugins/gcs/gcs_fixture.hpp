// Fixtures for the gcs suites: tests/plugins/gcs/gcs_server.py (a Cloud Storage JSON API + OAuth token
// endpoint written from Google's docs) on a free loopback port, a throwaway RSA service-account
// key made with the openssl CLI, and the built gcs.so loaded in-process and registered for gs://
// and gcs:// in a UrlSpace (as Session does). Child processes and waits come from the s3
// fixture (no sleep-polling: pipes and pidfds with deadlines).
#pragma once

#include "s3_fixture.hpp"

#include <boost/json.hpp>

#include <regex>

namespace ember::test {

// An RSA key for a fake service account: the private key (PEM, what the JSON key file holds)
// and the public key file the server verifies JWTs with.
struct TestKey {
  TempDir dir{"ember-gcs-key"};
  std::string private_pem;
  std::string public_path;
  TestKey() {
    auto priv = (dir / "key.pem").string();
    public_path = (dir / "pub.pem").string();
    auto r = run_process({"/usr/bin/openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", priv});
    if (r.exit_code != 0) throw std::runtime_error("openssl genpkey failed (is openssl installed? scripts/bootstrap): " + r.describe());
    r = run_process({"/usr/bin/openssl", "pkey", "-in", priv, "-pubout", "-out", public_path});
    if (r.exit_code != 0) throw std::runtime_error("openssl pkey -pubout failed: " + r.describe());
    private_pem = read_file(priv);
  }
};

inline std::string sa_email() { return "trainer@ember-test.iam.gserviceaccount.com"; }

// A service-account key file as the Cloud console downloads it.
inline std::string service_account_json(const TestKey& key, const std::string& token_uri) {
  boost::json::object o{{"type", "service_account"},
                        {"project_id", "ember-test"},
                        {"private_key_id", "0123456789abcdef"},
                        {"private_key", key.private_pem},
                        {"client_email", sa_email()},
                        {"client_id", "1234567890"},
                        {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
                        {"token_uri", token_uri}};
  return boost::json::serialize(o);
}

struct GcsServerOptions {
  std::vector<std::string> buckets{"test"};
  bool auth = false;             // storage requests need a token the server issued
  const TestKey* key = nullptr;  // the service account whose JWTs the token endpoint accepts
  std::string user;              // "client_id:secret:refresh" for gcloud user credentials
  std::string static_token;
};

class GcsServer {
 public:
  explicit GcsServer(const GcsServerOptions& o = {}) : dir_("ember-gcs-server") {
    std::string script = require_env("EMBER_GCS_TEST_DIR") + "/gcs_server.py";
    std::vector<std::string> argv{"/usr/bin/python3", script, "--auth", o.auth ? "required" : "none"};
    for (const auto& b : o.buckets) argv.push_back("--bucket"), argv.push_back(b);
    if (o.key) {
      argv.insert(argv.end(), {"--sa-email", sa_email(), "--sa-public-key", o.key->public_path});
    }
    if (!o.user.empty()) argv.push_back("--user"), argv.push_back(o.user);
    if (!o.static_token.empty()) argv.push_back("--static-token"), argv.push_back(o.static_token);
    proc_ = std::make_unique<Background>(argv, std::map<std::string, std::string>{}, dir_ / "server.log");
    port_ = proc_->wait_for(R"(listening on [0-9.]+:([0-9]+))");
  }
  const std::string& port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + port_; }
  std::string token_uri() const { return endpoint() + "/token"; }
  std::string log() const { return proc_->read_log(); }

  http::Response control(const std::string& method, const std::string& path, const std::string& body = "") const {
    http::Client c("http", "127.0.0.1", port_);
    auto r = c.send({method, path, {}, body});
    if (r.status >= 400 && method == "POST") throw std::runtime_error(path + ": HTTP " + std::to_string(r.status));
    return r;
  }
  void faults(const std::string& rules) const { control("POST", "/_test/faults", rules); }
  void set_expires_in(int seconds) const { control("POST", "/_test/config", "{\"expires_in\": " + std::to_string(seconds) + "}"); }
  void revoke() const { control("POST", "/_test/revoke"); }
  boost::json::object stats() const { return boost::json::parse(control("GET", "/_test/stats").body).as_object(); }
  std::int64_t stat(const char* k) const { return stats().at(k).to_number<std::int64_t>(); }
  // How many requests so far matched re ("METHOD /path -> status").
  int count(const std::string& re) const {
    std::regex want(re);
    int n = 0;
    const auto all = stats();
    for (const auto& r : all.at("requests").as_array())
      if (std::regex_search(std::string(r.as_string()), want)) ++n;
    return n;
  }
  void put_object(const std::string& bucket, const std::string& name, const std::string& bytes) const {
    control("PUT", "/_test/object/" + bucket + "/" + name, bytes);
  }
  std::optional<std::string> get_object(const std::string& bucket, const std::string& name) const {
    auto r = control("GET", "/_test/object/" + bucket + "/" + name);
    if (r.status != 200) return std::nullopt;
    return r.body;
  }

 private:
  TempDir dir_;
  std::unique_ptr<Background> proc_;
  std::string port_;
};

// A UrlSpace with gs:// and gcs:// served by the built plugin (EMBER_GCS_SO) with config_json.
struct GcsUrls {
  RecordingServices services;
  PluginInstance instance;
  storage::UrlSpace urls;
  explicit GcsUrls(const std::string& config_json)
      : instance(open_library(require_env("EMBER_GCS_SO")), boost::json::parse(config_json), services, "test config") {
    if (!instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1))
      throw std::runtime_error(instance.library().path() + " offers no " EMBER_STORAGE_V1);
    register_storage(instance, urls);
  }
};

// A plugin config for the test server: its endpoint, fast retries, and whatever else.
inline std::string local_gcs_config(const std::string& endpoint, const std::string& extra = "") {
  return R"({"endpoint": ")" + endpoint + R"(", "retry_base_ms": 5, "retry_max_ms": 50)" + (extra.empty() ? "" : ", " + extra) + "}";
}

// Sets environment variables for one scope and restores them after (the plugin reads
// GOOGLE_APPLICATION_CREDENTIALS & co. when it resolves credentials, on the first request).
class ScopedEnv {
 public:
  ScopedEnv(std::map<std::string, std::string> set, std::vector<std::string> unset = {}) {
    for (const auto& kv : set) save(kv.first), ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
    for (const auto& k : unset) save(k), ::unsetenv(k.c_str());
  }
  ~ScopedEnv() {
    for (const auto& kv : saved_) {
      if (kv.second) ::setenv(kv.first.c_str(), kv.second->c_str(), 1);
      else ::unsetenv(kv.first.c_str());
    }
  }

 private:
  void save(const std::string& k) {
    const char* v = std::getenv(k.c_str());
    saved_.emplace_back(k, v ? std::optional<std::string>(v) : std::nullopt);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Every variable the plugin's credential lookup reads, cleared for a test that sets its own.
inline std::vector<std::string> google_env() {
  return {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "STORAGE_EMULATOR_HOST"};
}

}  // namespace ember::test
