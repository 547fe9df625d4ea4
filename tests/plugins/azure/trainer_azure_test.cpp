// The trainer on az:// end to end (as tests/plugins/s3/trainer_s3_test.cpp does for s3://): `ember fit`
// on Fashion-MNIST (one short epoch) with default_root_dir on Azurite and the credentials only in
// AZURE_STORAGE_CONNECTION_STRING; checkpoints, their index and the CSV metrics land in the
// container (checked through the plugin in-process); `--ckpt-path last` resumes from Azure for a
// second epoch. The working directory stays empty, and the key appears in no output.
#define BOOST_TEST_MODULE azure_trainer
#include <boost/test/unit_test.hpp>

#include "azurite_fixture.hpp"
#include "scheme_run.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace json = boost::json;
using namespace ember::test;

namespace {


Azurite& server() {
  static Azurite a;
  static bool made = [] {
    create_container(a, "runs");
    return true;
  }();
  (void)made;
  return a;
}

json::object run_config(const std::string& root) {
  json::object azure{{"plugin", "azure"}, {"config", json::object{}}};
  return remote_root_run(root, azure);
}

// `ember <args> --plugin-dir <build>/plugins` in cwd; Azure credentials only from the
// environment (every inherited AZURE_* variable dropped).
ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd, const TempDir& home,
                        const std::string& connection) {
  ChildSpec spec = ember_child(args);
  spec.drop_prefixes = {"AZURE_"};
  spec.env = {{"AZURE_STORAGE_CONNECTION_STRING", connection}, {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

}  // namespace

BOOST_AUTO_TEST_CASE(fit_and_resume_with_default_root_dir_on_azure) {
  TempDir cwd("ember-az-trainer-cwd"), home("ember-az-trainer-home"), conf("ember-az-trainer-conf");
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(run_config("az://runs/run")));
  AzureUrls az(azurite_config(server().endpoint()));
  const std::string conn = server().connection_string();

  auto run = fit_then_resume(az.urls, "az://runs/run", config, cwd.path(),
                             [&](const std::vector<std::string>& args) { return ember_cli(args, cwd, home, conn); });
  for (const auto* r : {&run.fit, &run.resumed}) {
    BOOST_TEST(!contains(r->out + r->err, kDevKey));
    BOOST_TEST(!contains(r->out + r->err, std::string(kDevKey).substr(0, 16)));
  }
}

// A missing container fails the run in one line naming the container and the service's code.
BOOST_AUTO_TEST_CASE(fit_into_a_missing_container_names_it_and_the_code) {
  TempDir cwd("ember-az-trainer-cwd"), home("ember-az-trainer-home"), conf("ember-az-trainer-conf");
  auto cfg = run_config("az://no-such-container/run");
  cfg["trainer"].as_object()["limit_train_batches"] = 2;
  cfg["trainer"].as_object()["limit_val_batches"] = 1;
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(cfg));
  auto r = ember_cli({"fit", "--config", config}, cwd, home, server().connection_string());
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(contains(r.err, "no-such-container"), r.err);
  BOOST_TEST(contains(r.err, "ContainerNotFound"), r.err);
  BOOST_TEST(!contains(r.out + r.err, std::string(kDevKey).substr(0, 16)), r.err);
}
