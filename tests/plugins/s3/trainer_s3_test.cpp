// The trainer on s3:// end to end: `ember fit` on Fashion-MNIST (one short epoch) with
// default_root_dir on a local s3rver, credentials from the environment only; the checkpoints,
// their index and the CSV metrics land in the bucket (checked through the plugin in-process);
// `--ckpt-path last` resumes from S3 for a second epoch, and `ember test --ckpt-path best`
// reads the best checkpoint from S3. The working directory stays empty throughout.
#define BOOST_TEST_MODULE s3_trainer
#include <boost/test/unit_test.hpp>

#include "s3_fixture.hpp"
#include "scheme_run.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace json = boost::json;
using namespace ember::test;

namespace {

const char* kSecret = "trainer-secret-NEVER-SHOWN";

S3rver& server() {
  static S3rver s({"runs"});
  return s;
}

json::object run_config(const std::string& endpoint) {
  json::object s3{{"plugin", "s3"}, {"config", json::object{{"endpoint_url", endpoint}, {"region", "us-east-1"}}}};
  return remote_root_run("s3://runs/run", s3, /*with_test=*/true);
}

// `ember <args> --plugin-dir <build>/plugins` in cwd, with S3 credentials only from the
// environment (dummy keys; every inherited AWS_* variable dropped, no ~/.aws).
ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd, const TempDir& home) {
  ChildSpec spec = ember_child(args);
  spec.drop_prefixes = {"AWS_"};
  spec.env = {{"AWS_ACCESS_KEY_ID", "S3RVER"},
              {"AWS_SECRET_ACCESS_KEY", kSecret},
              {"AWS_CONFIG_FILE", (home / "no-aws-config").string()},
              {"AWS_SHARED_CREDENTIALS_FILE", (home / "no-aws-credentials").string()},
              {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

}  // namespace

BOOST_AUTO_TEST_CASE(fit_resume_and_test_with_default_root_dir_on_s3) {
  TempDir cwd("ember-s3-trainer-cwd"), home("ember-s3-trainer-home"), conf("ember-s3-trainer-conf");
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(run_config(server().endpoint())));
  S3Urls s3(local_config(server().endpoint()));
  const std::string ckdir = "s3://runs/run/checkpoints";

  // 1-2. One short epoch into the bucket, then resumed from its last.ckpt (scheme_run.hpp).
  auto run = fit_then_resume(s3.urls, "s3://runs/run", config, cwd.path(),
                             [&](const std::vector<std::string>& args) { return ember_cli(args, cwd, home); });

  // 3. Test from the best checkpoint, found through the index in the bucket.
  auto index = json::parse(s3.urls.read_all(ckdir + "/checkpoints.json")).as_object();
  auto test = ember_cli({"test", "--config", config, "--ckpt-path", "best"}, cwd, home);
  BOOST_REQUIRE_MESSAGE(test.exit_code == 0, test.describe());
  BOOST_TEST(contains(test.out, "test test_accuracy 0."), test.out);
  BOOST_TEST(index["best"].is_string(), json::serialize(index));

  // Nothing local, and the secret appears in no output.
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
  for (const auto* r : {&run.fit, &run.resumed, &test}) {
    BOOST_TEST(!contains(r->out, kSecret));
    BOOST_TEST(!contains(r->err, kSecret));
  }
}

// A missing bucket fails the run in one line naming the bucket, the endpoint and S3's code.
BOOST_AUTO_TEST_CASE(fit_into_a_missing_bucket_names_bucket_and_code) {
  TempDir cwd("ember-s3-trainer-cwd"), home("ember-s3-trainer-home"), conf("ember-s3-trainer-conf");
  auto cfg = run_config(server().endpoint());
  cfg["trainer"].as_object()["default_root_dir"] = "s3://no-such-bucket/run";
  cfg["trainer"].as_object()["limit_train_batches"] = 2;
  cfg["trainer"].as_object()["limit_val_batches"] = 1;
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(cfg));
  auto r = ember_cli({"fit", "--config", config}, cwd, home);
  BOOST_TEST_MESSAGE("missing bucket: " << r.err);
  // Exactly 1, with the run's error line: this once crashed (Session destroyed the data before
  // the plugins, and csv_logger's last flush read a freed loader).
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(contains(r.err, "no-such-bucket"), r.err);
  BOOST_TEST(contains(r.err, "NoSuchBucket"), r.err);
  BOOST_TEST(contains(r.err, server().endpoint().substr(7)), r.err);
  BOOST_TEST(!contains(r.err, kSecret), r.err);
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
}

namespace {

// Every row of a metrics.csv (Lightning's wide layout), in order, as its step, epoch and the
// names of the metrics it holds; values left out. The header is the first entry.
std::vector<std::string> row_keys(const std::string& csv) {
  auto cells = [](const std::string& line) {
    std::vector<std::string> f(1);
    for (char c : line) {
      if (c == ',')
        f.emplace_back();
      else
        f.back().push_back(c);
    }
    return f;
  };
  std::vector<std::string> out, header;
  std::size_t start = 0;
  while (start < csv.size()) {
    std::size_t end = csv.find('\n', start);
    std::string line = csv.substr(start, end - start);
    if (header.empty()) {
      header = cells(line);
      out.push_back(line);
    } else {
      auto f = cells(line);
      std::string key;
      for (std::size_t c = 0; c < f.size() && c < header.size(); ++c)
        if (header[c] == "step" || header[c] == "epoch")
          key += header[c] + "=" + f[c] + " ";
        else if (!f[c].empty())
          key += header[c] + " ";
      out.push_back(key);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

// csv_logger writes to S3 from its own thread: a rewrite of metrics.csv that fails (every
// attempt answered 500) costs a warning naming the URL, not the run and not a row — the run's
// metrics.csv has the same rows as a run without the fault.
BOOST_AUTO_TEST_CASE(csv_logger_on_s3_loses_no_row_when_a_rewrite_fails) {
  TempDir cwd("ember-s3-trainer-cwd"), home("ember-s3-trainer-home"), conf("ember-s3-trainer-conf");
  // The first metrics.csv rewrite fails both of its attempts; the next one passes.
  FaultProxy proxy(server().port(), R"([{"method": "PUT", "path": "metrics.csv", "action": "status", "status": 500,
                                         "code": "InternalError", "times": 2}])");
  auto config_for = [&](const std::string& endpoint, const std::string& root) {
    auto cfg = run_config(endpoint);
    auto& s3 = cfg["plugins"].as_object()["storage"].as_array()[0].as_object()["config"].as_object();
    s3["max_attempts"] = 2, s3["retry_base_ms"] = 5, s3["retry_max_ms"] = 20;
    auto& trainer = cfg["trainer"].as_object();
    trainer["default_root_dir"] = root;
    trainer["limit_train_batches"] = 10;
    trainer["limit_val_batches"] = 2;
    trainer["log_every_n_steps"] = 2;
    std::string path = (conf / (root.substr(root.rfind('/') + 1) + ".json")).string();
    write_file(path, json::serialize(cfg));
    return path;
  };
  auto clean = ember_cli({"fit", "--config", config_for(server().endpoint(), "s3://runs/clean")}, cwd, home);
  BOOST_REQUIRE_MESSAGE(clean.exit_code == 0, clean.describe());
  auto faulty = ember_cli({"fit", "--config", config_for(proxy.endpoint(), "s3://runs/faulty")}, cwd, home);
  BOOST_REQUIRE_MESSAGE(faulty.exit_code == 0, faulty.describe());
  BOOST_TEST(proxy.count("status", "metrics.csv") == 2, proxy.log());

  const std::string url = "s3://runs/faulty/lightning_logs/version_0/metrics.csv";
  std::string output = faulty.out + faulty.err;
  BOOST_TEST(contains(output, "cannot write " + url), output);
  BOOST_TEST(contains(output, "InternalError"), output);
  S3Urls s3(local_config(server().endpoint()));
  auto want = row_keys(s3.urls.read_all("s3://runs/clean/lightning_logs/version_0/metrics.csv"));
  auto got = row_keys(s3.urls.read_all(url));
  BOOST_TEST(want.size() > 5u);
  BOOST_TEST(got == want, "rows of the faulted run:\n" << joined(got) << "\nexpected:\n" << joined(want));
}

// Issue 15.4: a config that writes to s3:// and names no storage plugin works when s3.so is in
// a plugin directory: the plugin claims the scheme and is loaded for it with its default config
// (endpoint and credentials from the environment, as the AWS tools find them).
BOOST_AUTO_TEST_CASE(s3_urls_work_with_no_storage_entry_when_the_plugin_is_in_the_plugin_dir) {
  TempDir cwd("ember-s3-auto-cwd"), home("ember-s3-auto-home"), conf("ember-s3-auto-conf");
  auto cfg = run_config(server().endpoint());
  cfg.erase("plugins");
  cfg["trainer"].as_object()["default_root_dir"] = "s3://runs/auto";
  cfg["trainer"].as_object()["limit_train_batches"] = 5;
  cfg["trainer"].as_object()["limit_val_batches"] = 2;
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(cfg));
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE"), "fit", "--config", config, "--plugin-dir", require_env("EMBER_BUILD_ROOT") + "/plugins"};
  spec.drop_prefixes = {"AWS_"};
  spec.env = {{"AWS_ACCESS_KEY_ID", "S3RVER"},
              {"AWS_SECRET_ACCESS_KEY", kSecret},
              {"AWS_ENDPOINT_URL", server().endpoint()},
              {"AWS_REGION", "us-east-1"},
              {"AWS_CONFIG_FILE", (home / "no-aws-config").string()},
              {"AWS_SHARED_CREDENTIALS_FILE", (home / "no-aws-credentials").string()},
              {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  auto fit = run_child(spec, std::chrono::seconds(400));
  BOOST_REQUIRE_MESSAGE(fit.exit_code == 0, fit.describe());
  BOOST_TEST(contains(fit.out, "global_step 5\n"), fit.out);
  S3Urls s3(local_config(server().endpoint()));
  BOOST_TEST(s3.urls.stat("s3://runs/auto/checkpoints/last.ckpt").has_value());
  BOOST_TEST(s3.urls.stat("s3://runs/auto/lightning_logs/version_0/metrics.csv").has_value());
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
  BOOST_TEST(!contains(fit.err, kSecret));
}

// A scheme no plugin serves is refused when the config is loaded, before any data is read or a
// step runs (it used to train a whole epoch and fail at the first write): exit 2, naming the key,
// the scheme and the plugin that would provide it; nothing is written. The plugin directory holds
// the plugins the run names but not azure.so (which would claim az:// and be loaded for it).
BOOST_AUTO_TEST_CASE(an_unknown_scheme_fails_at_config_time_naming_key_and_provider) {
  TempDir cwd("ember-s3-unknown-cwd"), home("ember-s3-unknown-home"), conf("ember-s3-unknown-conf"),
      plugs("ember-s3-unknown-plugins");
  const std::string built = require_env("EMBER_BUILD_ROOT") + "/plugins/";
  for (const char* id : {"fashion_mlp", "csv_logger", "model_checkpoint", "s3"})
    std::filesystem::create_symlink(built + id + "/" + id + ".so", plugs / (std::string(id) + ".so"));
  auto cfg = run_config(server().endpoint());
  cfg["trainer"].as_object()["default_root_dir"] = "az://container/run";
  const std::string config = (conf / "run.json").string();
  write_file(config, json::serialize(cfg));
  for (const char* cmd : {"config", "fit"}) {
    ChildSpec spec;
    spec.argv = {require_env("EMBER_EXE"), cmd, "--config", config, "--plugin-dir", plugs.path().string()};
    spec.drop_prefixes = {"AWS_", "AZURE_"};
    spec.env = {{"HOME", home.path().string()}};
    spec.cwd = cwd.path().string();
    auto r = run_child(spec, std::chrono::seconds(120));
    BOOST_TEST(r.exit_code == 2, r.describe());
    BOOST_TEST(contains(r.err, "trainer.default_root_dir: unknown URL scheme 'az://'"), r.err);
    BOOST_TEST(contains(r.err, "the 'azure' storage plugin provides az://"), r.err);
    BOOST_TEST(contains(r.err, "s3://"), r.err);  // what is available, the configured s3 plugin's scheme among it
    BOOST_TEST(!contains(r.out, "global_step"), r.out);
  }
  BOOST_TEST(list_dir(cwd.path()).empty(), joined(list_dir(cwd.path())));
}
