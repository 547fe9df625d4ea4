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
  const std::string ckdir = root + "/checkpoints";

  auto fit = ember_cli({"fit", "--config", config}, cwd);
  BOOST_REQUIRE_MESSAGE(fit.exit_code == 0, fit.describe());
  BOOST_TEST(contains(fit.out, "global_step 30\n"), fit.out);
  auto ck = names(hdfs.urls, ckdir);
  BOOST_TEST(has(ck, "last.ckpt"), joined(ck));
  BOOST_TEST(has(ck, "checkpoints.json"), joined(ck));
  BOOST_TEST(has(ck, "epoch=0-step=30.ckpt"), joined(ck));
  auto index = json::parse(hdfs.urls.read_all(ckdir + "/checkpoints.json")).as_object();
  BOOST_TEST(index["last"].as_string() == ckdir + "/last.ckpt", json::serialize(index));
  std::string metrics = hdfs.urls.read_all(root + "/lightning_logs/version_0/metrics.csv");
  BOOST_TEST(contains(metrics, "train_loss"), metrics);
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));

  auto resumed = ember_cli({"fit", "--config", config, "--ckpt-path", "last", "--set", "trainer.max_epochs=2"}, cwd);
  BOOST_REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.describe());
  BOOST_TEST(contains(resumed.out, "global_step 60\n"), resumed.out);
  ck = names(hdfs.urls, ckdir);
  BOOST_TEST(has(ck, "epoch=1-step=60.ckpt"), joined(ck));
  {
    TempDir scratch("ember-webhdfs-trainer-ckpt");
    write_file(scratch / "last.ckpt", hdfs.urls.read_all(ckdir + "/last.ckpt"));
    auto py = run_process({"/usr/bin/python3", "-c",
                           "import sys, torch; c = torch.load(sys.argv[1]); print(c['global_step'], c['epoch'])",
                           (scratch / "last.ckpt").string()});
    BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
    BOOST_TEST(py.out == "60 1\n", py.out);
  }
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
  for (const auto* r : {&fit, &resumed}) {
    BOOST_TEST(!contains(r->out, kToken));
    BOOST_TEST(!contains(r->err, kToken));
  }
  BOOST_TEST(!server().stats().at("token_leak").as_bool());
}
