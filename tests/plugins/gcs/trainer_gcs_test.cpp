// The trainer on gs:// end to end: `ember fit` on Fashion-MNIST (one short epoch) with
// default_root_dir on the GCS test server, credentials only from GOOGLE_APPLICATION_CREDENTIALS
// (a service-account key whose JWT the server verifies); the checkpoints, their index and the CSV
// metrics land in the bucket; `--ckpt-path last` resumes from gs:// for a second epoch. The
// working directory stays empty, and no secret appears in any output.
#define BOOST_TEST_MODULE gcs_trainer
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "gcs_fixture.hpp"
#include "scheme_run.hpp"

#include <algorithm>

namespace json = boost::json;
using namespace ember::test;

namespace {


const TestKey& test_key() {
  static TestKey k;
  return k;
}

GcsServer& server() {
  static GcsServer s({{"runs"}, true, &test_key(), "", ""});
  return s;
}

json::object run_config(const std::string& root) {
  json::object gcs{{"plugin", "gcs"}, {"config", json::object{{"endpoint", server().endpoint()}, {"retry_base_ms", 5}}}};
  return remote_root_run(root, gcs);
}

// `ember <args> --plugin-dir <build>/plugins` in cwd, with Google credentials only from sa_json.
ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd, const TempDir& home, const std::string& sa_json) {
  ChildSpec spec = ember_child(args);
  spec.drop_prefixes = {"GOOGLE_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR_HOST"};
  spec.env = {{"GOOGLE_APPLICATION_CREDENTIALS", sa_json}, {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

void no_secret(const std::string& text) {
  BOOST_TEST(!contains(text, "PRIVATE KEY"));
  BOOST_TEST(!contains(text, test_key().private_pem.substr(60, 40)));
  BOOST_TEST(!contains(text, "ya29."));
  BOOST_TEST(!contains(text, "eyJ"));
}

}  // namespace

BOOST_AUTO_TEST_CASE(fit_and_resume_from_last_with_default_root_dir_on_gs) {
  TempDir cwd("ember-gcs-trainer-cwd"), home("ember-gcs-trainer-home"), conf("ember-gcs-trainer-conf");
  const std::string sa = (conf / "sa.json").string();
  write_file(sa, service_account_json(test_key(), server().token_uri()));
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(run_config("gs://runs/run")));
  ScopedEnv env({{"GOOGLE_APPLICATION_CREDENTIALS", sa}}, {"CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "STORAGE_EMULATOR_HOST"});
  GcsUrls gcs(local_gcs_config(server().endpoint()));

  auto run = fit_then_resume(gcs.urls, "gs://runs/run", config, cwd.path(),
                             [&](const std::vector<std::string>& args) { return ember_cli(args, cwd, home, sa); });
  BOOST_TEST(server().stat("jwt_verified") >= 2);
  for (const auto* r : {&run.fit, &run.resumed}) {
    no_secret(r->out);
    no_secret(r->err);
  }
}

// A missing bucket fails the run in one line naming the URL and the store's reason.
BOOST_AUTO_TEST_CASE(fit_into_a_missing_bucket_names_bucket_and_reason) {
  TempDir cwd("ember-gcs-trainer-cwd"), home("ember-gcs-trainer-home"), conf("ember-gcs-trainer-conf");
  const std::string sa = (conf / "sa.json").string();
  write_file(sa, service_account_json(test_key(), server().token_uri()));
  auto cfg = run_config("gs://no-such-bucket/run");
  cfg["trainer"].as_object()["limit_train_batches"] = 2;
  cfg["trainer"].as_object()["limit_val_batches"] = 1;
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(cfg));
  auto r = ember_cli({"fit", "--config", config}, cwd, home, sa);
  BOOST_TEST_MESSAGE("missing bucket: " << r.err);
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(contains(r.err, "gs://no-such-bucket/run"), r.err);
  BOOST_TEST(contains(r.err, "notFound"), r.err);
  no_secret(r.out);
  no_secret(r.err);
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
}
