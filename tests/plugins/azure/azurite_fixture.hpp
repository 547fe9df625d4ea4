// Fixtures for the azure suites: Azurite (npm, Microsoft's emulator; it checks Shared Key and SAS
// signatures) in memory on 127.0.0.1 and a port it picks and announces, the built azure.so loaded
// in-process and registered for its schemes in a UrlSpace (as Session does), and
// tests/plugins/azure/blob_client.js, which drives Microsoft's @azure/storage-blob against the same server.
//
// The child-process machinery (Background, run_child, FaultProxy) is tests/plugins/s3/s3_fixture.hpp's.
// A missing Azurite or node is a failure that says how to install it, never a skipped test.
#pragma once

#include "expect.hpp"
#include "s3_fixture.hpp"

#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ember::test {

// Azurite's well-known development account (published by Microsoft; no secret).
inline constexpr const char* kDevAccount = "devstoreaccount1";
inline constexpr const char* kDevKey =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

inline std::string npm_root() { return source_root() + "/.deps/npm/node_modules"; }

inline std::string node_exe() {
  std::string node = "/usr/bin/node";
  if (!std::filesystem::exists(node)) throw std::runtime_error("node is not installed (/usr/bin/node): run scripts/bootstrap");
  return node;
}

// Azurite's blob service, in memory, on 127.0.0.1 and a port the kernel picks: Azurite prints
// "successfully listens on http://127.0.0.1:PORT" once its socket accepts, and the fixture waits
// for that line on the child's output pipe (a condition, not a sleep). Stopped on destruction.
class Azurite {
 public:
  Azurite() : dir_("ember-azurite") {
    std::string js = npm_root() + "/azurite/dist/src/blob/main.js";
    if (!std::filesystem::exists(js))
      throw std::runtime_error("Azurite is not installed (" + js + " is missing): run scripts/bootstrap");
    std::vector<std::string> argv{node_exe(), js, "--disableTelemetry", "--inMemoryPersistence", "--blobHost",
                                  "127.0.0.1", "--blobPort", "0", "--skipApiVersionCheck"};
    proc_ = std::make_unique<Background>(argv, std::map<std::string, std::string>{}, dir_ / "azurite.log");
    port_ = proc_->wait_for(R"(successfully listens on http://127\.0\.0\.1:([0-9]+))", std::chrono::seconds(60));
  }
  const std::string& port() const { return port_; }
  // The blob endpoint, path-style with the account (as Azurite's connection string names it).
  std::string endpoint() const { return "http://127.0.0.1:" + port_ + "/" + kDevAccount; }
  std::string connection_string() const {
    return std::string("DefaultEndpointsProtocol=http;AccountName=") + kDevAccount + ";AccountKey=" + kDevKey +
           ";BlobEndpoint=" + endpoint() + ";";
  }
  std::string log() const { return proc_->read_log(); }

 private:
  TempDir dir_;
  std::unique_ptr<Background> proc_;
  std::string port_;
};

// A UrlSpace with az://, abfs://, abfss:// (and adl://, refused) served by the built plugin
// (EMBER_AZURE_SO) configured with config_json, registered as Session registers a storage plugin.
struct AzureUrls {
  RecordingServices services;
  PluginInstance instance;
  storage::UrlSpace urls;
  explicit AzureUrls(const std::string& config_json)
      : instance(open_library(require_env("EMBER_AZURE_SO")), boost::json::parse(config_json), services, "test config") {
    if (!instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1))
      throw std::runtime_error(instance.library().path() + " offers no " EMBER_STORAGE_V1);
    register_storage(instance, urls);
  }
};

// A plugin config for Azurite with the development account's key (Shared Key), plus extra keys.
inline std::string azurite_config(const std::string& endpoint, const std::string& extra = "") {
  return R"({"endpoint_url": ")" + endpoint + R"(", "account_name": "devstoreaccount1", "account_key": ")" + kDevKey +
         "\"" + (extra.empty() ? "" : ", " + extra) + "}";
}

// tests/plugins/azure/blob_client.js (Microsoft's @azure/storage-blob) with args, against connection.
inline ProcessResult blob_client(const std::string& connection, const std::vector<std::string>& args,
                                 std::chrono::seconds timeout = std::chrono::seconds(600)) {
  std::string lib = npm_root() + "/@azure/storage-blob/package.json";
  if (!std::filesystem::exists(lib))
    throw std::runtime_error("@azure/storage-blob is not installed (" + lib + " is missing): run scripts/bootstrap");
  ChildSpec spec;
  spec.argv = {node_exe(), require_env("EMBER_AZURE_TEST_DIR") + "/blob_client.js"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {{"NODE_PATH", npm_root()}, {"EMBER_AZURE_CONNECTION", connection}};
  spec.drop_prefixes = {"AZURE_"};
  return run_child(spec, timeout);
}

// Make a container through Microsoft's client (the plugin, like fsspec's put, never creates one).
inline void create_container(const Azurite& a, const std::string& name) {
  auto r = blob_client(a.connection_string(), {"mkcontainer", name});
  if (r.exit_code != 0) throw std::runtime_error("blob_client.js mkcontainer " + name + " failed: " + r.err + r.out);
}

// Every byte of url through the UrlSpace.
inline std::string read_all(storage::UrlSpace& urls, const std::string& url, std::uint64_t offset = 0,
                            std::uint64_t length = UINT64_MAX) {
  auto r = urls.open_read(url, offset, length);
  std::string out;
  std::string buf(1 << 20, '\0');
  for (;;) {
    std::size_t n = r->read(&buf[0], buf.size());
    if (n == 0) break;
    out.append(buf.data(), n);
  }
  return out;
}

inline void write_all(storage::UrlSpace& urls, const std::string& url, const std::string& data,
                      std::size_t piece = 1 << 20) {
  auto w = urls.open_write(url);
  for (std::size_t i = 0; i < data.size(); i += piece) w->write(data.data() + i, std::min(piece, data.size() - i));
  w->commit();
}

// A scoped environment variable (set, or unset when value is null), restored on destruction.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace ember::test
