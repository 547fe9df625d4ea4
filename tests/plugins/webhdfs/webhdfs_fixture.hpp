// Fixtures for the webhdfs suites: tests/plugins/webhdfs/webhdfs_server.py (a NameNode and a DataNode on
// loopback ports it picks, announced on stdout) started per suite, its /control and /stats
// endpoints, and the built webhdfs.so loaded in-process and registered for its schemes in a
// UrlSpace the way Session does (ember::register_storage).
#pragma once

#include "../s3/s3_fixture.hpp"

#include <boost/json.hpp>

#include <string>
#include <vector>

namespace ember::test {

class WebHdfsServer {
 public:
  explicit WebHdfsServer(const std::vector<std::string>& extra_args = {}) : dir_("ember-webhdfs") {
    std::string script = source_root() + "/tests/plugins/webhdfs/webhdfs_server.py";
    std::vector<std::string> argv{"/usr/bin/python3", script};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    proc_ = std::make_unique<Background>(argv, std::map<std::string, std::string>{}, dir_ / "server.log");
    datanode_port_ = proc_->wait_for(R"(datanode listening on [0-9.]+:([0-9]+))");
    port_ = proc_->wait_for(R"(namenode listening on [0-9.]+:([0-9]+))");
  }
  const std::string& port() const { return port_; }
  const std::string& datanode_port() const { return datanode_port_; }
  // The NameNode's authority, for URLs: "127.0.0.1:P".
  std::string authority() const { return "127.0.0.1:" + port_; }
  std::string log() const { return proc_->read_log(); }

  // POST /control with a JSON body (faults, deny_write).
  boost::json::value control(const std::string& body) {
    return request("POST", "/control", body);
  }
  boost::json::object stats() { return request("GET", "/stats", "").as_object(); }
  // A raw WebHDFS GET on the NameNode (for what the plugin hides, such as temporary names).
  boost::json::value raw_get(const std::string& target) { return request("GET", target, ""); }

 private:
  boost::json::value request(const std::string& method, const std::string& target, const std::string& body) {
    http::Client c("http", "127.0.0.1", port_);
    http::Request req{method, target, {{"Content-Type", "application/json"}}, body};
    auto r = c.send(req);
    if (r.status != 200) throw std::runtime_error(method + " " + target + ": HTTP " + std::to_string(r.status) + " " + r.body);
    return boost::json::parse(r.body);
  }

  TempDir dir_;
  std::unique_ptr<Background> proc_;
  std::string port_, datanode_port_;
};

struct WebHdfsUrls {
  RecordingServices services;
  PluginInstance instance;
  storage::UrlSpace urls;
  explicit WebHdfsUrls(const std::string& config_json)
      : instance(open_library(require_env("EMBER_WEBHDFS_SO")), boost::json::parse(config_json), services, "test config") {
    if (!instance.interface<ember_storage_v1_t>(EMBER_STORAGE_V1))
      throw std::runtime_error(instance.library().path() + " offers no " EMBER_STORAGE_V1);
    register_storage(instance, urls);
  }
};

}  // namespace ember::test
