// The tensorboard logger on s3:// end to end: `ember fit` with save_dir on a local s3rver behind
// tests/plugins/s3's fault proxy, which fails the first event-file upload (both of the s3 plugin's
// attempts). The logger reports it naming the URL, the run continues, the next flush publishes the
// same events, and the event files in the bucket read back (python3-protobuf, both CRCs checked)
// in name order with every scalar csv_logger saw in the same run, once, in order.
#define BOOST_TEST_MODULE tensorboard_s3
#include <boost/test/unit_test.hpp>

#include "s3_fixture.hpp"
#include "tb_reader.hpp"

#include <boost/json.hpp>

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace ember::test;
using ember::test::tb::read_events;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";

// `ember fit` with S3 credentials only from the environment (s3rver's key id, no ~/.aws).
ProcessResult ember_fit(const std::string& config, const TempDir& home) {
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE"), "fit", "--config", config, "--plugin-dir", require_env("EMBER_BUILD_ROOT") + "/plugins"};
  spec.drop_prefixes = {"AWS_"};
  spec.env = {{"AWS_ACCESS_KEY_ID", "S3RVER"},
              {"AWS_SECRET_ACCESS_KEY", "tb-secret-NEVER-SHOWN"},
              {"AWS_CONFIG_FILE", (home / "no-aws-config").string()},
              {"AWS_SHARED_CREDENTIALS_FILE", (home / "no-aws-credentials").string()},
              {"HOME", home.path().string()}};
  spec.cwd = home.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

}  // namespace

BOOST_AUTO_TEST_CASE(event_files_on_s3_lose_nothing_when_an_upload_fails) {
  BOOST_REQUIRE_MESSAGE(fs::exists(kData + "train-images-idx3-ubyte.gz"), "install dataset-fashion-mnist (scripts/bootstrap)");
  S3rver server({"runs"});
  FaultProxy proxy(server.port(), R"([{"method": "PUT", "path": "tfevents", "action": "status", "status": 500,
                                       "code": "InternalError", "times": 2}])");
  TempDir home("ember-tb-s3-home"), local("ember-tb-s3-events");
  json::object s3{{"plugin", "s3"},
                  {"config", json::object{{"endpoint_url", proxy.endpoint()}, {"region", "us-east-1"},
                                          {"max_attempts", 2}, {"retry_base_ms", 5}, {"retry_max_ms", 20}}}};
  json::object cfg{
      {"seed_everything", 5},
      {"plugins", json::object{{"storage", json::array{s3}}}},
      {"trainer",
       json::object{{"max_epochs", 2}, {"limit_train_batches", 8}, {"limit_val_batches", 2}, {"log_every_n_steps", 1},
                    {"default_root_dir", "s3://runs/fit"}, {"enable_progress_bar", false}, {"enable_checkpointing", false},
                    {"logger", json::array{json::object{{"plugin", "tensorboard"}, {"config", json::object{{"name", "tb"}, {"flush_secs", 0.2}}}},
                                           json::object{{"plugin", "csv_logger"}, {"config", json::object{{"name", "csv"}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 32}}}};
  const std::string config = (home / "tb_s3.json").string();
  ember::test::tb::write_file(config, json::serialize(cfg));
  auto r = ember_fit(config, home);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  const std::string output = r.out + r.err;
  BOOST_TEST(proxy.count("status", "tfevents") == 2, proxy.log());
  BOOST_TEST(output.find("cannot write s3://runs/fit/tb/version_0/events.out.tfevents.") != std::string::npos, output);
  BOOST_TEST(output.find("tb-secret-NEVER-SHOWN") == std::string::npos);

  S3Urls s3urls(local_config(server.endpoint()));
  const std::string dir = "s3://runs/fit/tb/version_0";
  int event_files = 0;
  bool yaml = false;
  for (const auto& e : s3urls.urls.list(dir)) {
    std::string name = e.url.substr(e.url.rfind('/') + 1);
    yaml = yaml || name == "hparams.yaml";
    if (name.find("tfevents") == std::string::npos) continue;
    ember::test::tb::write_file(local / name, s3urls.urls.read_all(e.url));
    ++event_files;
  }
  BOOST_TEST(yaml);
  BOOST_TEST_MESSAGE(event_files << " event files in " << dir);
  BOOST_TEST(event_files >= 1);
  auto ev = read_events(local.path());
  for (auto& f : ev["files"].as_array()) BOOST_TEST(f.as_object().at("file_version").as_string() == "brain.Event:2");
  ember::test::tb::check_scalars_match_csv(ev, s3urls.urls.read_all("s3://runs/fit/csv/version_0/metrics.csv"));
  BOOST_TEST(ev["hparams"].as_array().size() == 3u);
}
