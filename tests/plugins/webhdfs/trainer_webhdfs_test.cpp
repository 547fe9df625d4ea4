// The trainer on hdfs:// end to end: `ember fit` on Fashion-MNIST (one short epoch) with
// default_root_dir hdfs://127.0.0.1:P/runs/... on tests/plugins/webhdfs/webhdfs_server.py; the
// checkpoints, their index and the CSV metrics land there (checked through the plugin
// in-process); `--ckpt-path last` resumes from it for a second epoch, and the last checkpoint
// opens in Python's torch.load. The working directory stays empty; the delegation token (the
// server demands one) appears in no output.
#define BOOST_TEST_MODULE webhdfs_trainer
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "webhdfs_fixture.hpp"
#include "scheme_run.hpp"

#include <algorithm>

namespace json = boost::json;
using namespace ember::test;

namespace {

const char* kToken = "trainer-delegation-token-NEVER-SHOWN";

WebHdfsServer& server() {
  static WebHdfsServer s({"--token", kToken});
  return s;
}

json::object run_config() {
  // The token comes from the environment (WEBHDFS_DELEGATION_TOKEN), never from the file.
  json::object hdfs{{"plugin", "webhdfs"}, {"config", json::object{{"part_size", 1048576}}}};
  return remote_root_run("hdfs://" + server().authority() + "/runs/run", hdfs);
}

ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd) {
  ChildSpec spec = ember_child(args);
  spec.env = {{"WEBHDFS_DELEGATION_TOKEN", kToken}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

}  // namespace

BOOST_AUTO_TEST_CASE(fit_and_resume_from_last_with_default_root_dir_on_hdfs) {
  TempDir cwd("ember-webhdfs-trainer-cwd"), conf("ember-webhdfs-trainer-conf");
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(run_config()));
  WebHdfsUrls hdfs(std::string(R"({"delegation_token": ")") + kToken + R"("})");
  const std::string root = "hdfs://" + server().authority() + "/runs/run";

  auto run = fit_then_resume(hdfs.urls, root, config, cwd.path(),
                             [&](const std::vector<std::string>& args) { return ember_cli(args, cwd); });
  for (const auto* r : {&run.fit, &run.resumed}) {
    BOOST_TEST(!contains(r->out, kToken));
    BOOST_TEST(!contains(r->err, kToken));
  }
  BOOST_TEST(!server().stats().at("token_leak").as_bool());
}
