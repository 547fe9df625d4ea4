// The trainer on gs:// end to end: `ember fit` on Fashion-MNIST (one short epoch) with
// default_root_dir on the GCS test server, credentials only from GOOGLE_APPLICATION_CREDENTIALS
// (a service-account key whose JWT the server verifies); the checkpoints, their index and the CSV
// metrics land in the bucket; `--ckpt-path last` resumes from gs:// for a second epoch. The
// working directory stays empty, and no secret appears in any output.
#define BOOST_TEST_MODULE gcs_trainer
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "gcs_fixture.hpp"

#include <algorithm>

namespace json = boost::json;
using namespace ember::test;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";

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
  json::object ckpt{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_accuracy"}, {"mode", "max"}}}};
  return json::object{
      {"seed_everything", 1},
      {"plugins", json::object{{"storage", json::array{gcs}}}},
      {"trainer", json::object{{"max_epochs", 1},
                               {"limit_train_batches", 30},
                               {"limit_val_batches", 5},
                               {"default_root_dir", root},
                               {"logger", json::array{json::object{{"plugin", "csv_logger"}}}},
                               {"callbacks", json::array{ckpt}},
                               {"enable_progress_bar", false},
                               {"log_every_n_steps", 5}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
}

// `ember <args> --plugin-dir <build>/plugins` in cwd, with Google credentials only from sa_json.
ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd, const TempDir& home, const std::string& sa_json) {
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE")};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back("--plugin-dir");
  spec.argv.push_back(require_env("EMBER_BUILD_ROOT") + "/plugins");
  spec.drop_prefixes = {"GOOGLE_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR_HOST"};
  spec.env = {{"GOOGLE_APPLICATION_CREDENTIALS", sa_json}, {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

std::vector<std::string> names(ember::storage::UrlSpace& urls, const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : urls.list(dir)) out.push_back(e.url.substr(dir.size() + 1) + (e.is_dir ? "/" : ""));
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " ";
  return s;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

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
  const std::string ckdir = "gs://runs/run/checkpoints";

  // 1. One short epoch: 30 steps, checkpoints and metrics in the bucket.
  auto fit = ember_cli({"fit", "--config", config}, cwd, home, sa);
  BOOST_REQUIRE_MESSAGE(fit.exit_code == 0, fit.describe());
  BOOST_TEST(contains(fit.out, "global_step 30\n"), fit.out);
  auto ck = names(gcs.urls, ckdir);
  BOOST_TEST(has(ck, "last.ckpt"), joined(ck));
  BOOST_TEST(has(ck, "checkpoints.json"), joined(ck));
  BOOST_TEST(has(ck, "epoch=0-step=30.ckpt"), joined(ck));
  auto index = json::parse(gcs.urls.read_all(ckdir + "/checkpoints.json")).as_object();
  BOOST_TEST(index["last"].as_string() == ckdir + "/last.ckpt", json::serialize(index));
  std::string metrics = gcs.urls.read_all("gs://runs/run/lightning_logs/version_0/metrics.csv");
  BOOST_TEST(contains(metrics, "val_accuracy"), metrics);
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));

  // 2. Resume from gs://…/last.ckpt for a second epoch: it continues at step 30 and ends at 60.
  auto resumed = ember_cli({"fit", "--config", config, "--ckpt-path", "last", "--set", "trainer.max_epochs=2"}, cwd, home, sa);
  BOOST_REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.describe());
  BOOST_TEST(contains(resumed.out, "global_step 60\n"), resumed.out);
  ck = names(gcs.urls, ckdir);
  BOOST_TEST(has(ck, "epoch=1-step=60.ckpt"), joined(ck));
  {
    TempDir scratch("ember-gcs-trainer-ckpt");
    write_file(scratch / "last.ckpt", gcs.urls.read_all(ckdir + "/last.ckpt"));
    auto py = run_process({"/usr/bin/python3", "-c",
                           "import sys, torch; c = torch.load(sys.argv[1]); print(c['global_step'], c['epoch'])",
                           (scratch / "last.ckpt").string()});
    BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
    BOOST_TEST(py.out == "60 1\n", py.out);
  }
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
  BOOST_TEST(server().stat("jwt_verified") >= 2);
  for (const auto* r : {&fit, &resumed}) {
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
