// storage_options (include/ember/storage_options.hpp), fsspec's per-URL options: URL-prefix
// routing of storage::UrlSpace in-process; then the built `ember` against two s3rvers, each with
// its own bucket, routed by prefix with their own endpoint and credentials (the environment's
// access key id is one s3rver refuses, so only the options' credentials work): one fit writes its
// checkpoints to one and its CSV logs to the other, `ember storage cp` copies between them; the
// refusals at config time (bad option value, unclaimed scheme, built-in scheme) name the key; no
// option secret is printed.
#define BOOST_TEST_MODULE storage_options
#include <boost/test/unit_test.hpp>

#include "../plugins/s3/s3_fixture.hpp"

#include <ember/storage.hpp>

#include <boost/json.hpp>

namespace json = boost::json;
using namespace ember::test;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";
const char* kSecretA = "opts-secret-A-NEVER-SHOWN";
const char* kSecretB = "opts-secret-B-NEVER-SHOWN";

bool has_text(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

S3rver& server_a() {
  static S3rver s({"ckpts"});
  return s;
}
S3rver& server_b() {
  static S3rver s({"logs"});
  return s;
}

json::object s3_options(const std::string& endpoint, const char* secret) {
  return json::object{{"endpoint_url", endpoint},
                      {"region", "us-east-1"},
                      {"access_key_id", "S3RVER"},
                      {"secret_access_key", secret},
                      {"part_size", 5242880}};
}

json::object run_config() {
  json::object ckpt{{"plugin", "model_checkpoint"}, {"config", json::object{{"monitor", "val_accuracy"}, {"mode", "max"}}}};
  json::object csv{{"plugin", "csv_logger"}, {"config", json::object{{"save_dir", "s3://logs/run"}}}};
  return json::object{
      {"seed_everything", 1},
      {"storage_options", json::object{{"s3://ckpts/", s3_options(server_a().endpoint(), kSecretA)},
                                       {"s3://logs/", s3_options(server_b().endpoint(), kSecretB)}}},
      {"trainer", json::object{{"max_epochs", 1},
                               {"limit_train_batches", 5},
                               {"limit_val_batches", 2},
                               {"default_root_dir", "s3://ckpts/run"},
                               {"logger", json::array{csv}},
                               {"callbacks", json::array{ckpt}},
                               {"enable_progress_bar", false},
                               {"log_every_n_steps", 1}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
}

// `ember ARGS --plugin-dir <build>/plugins` in cwd; the environment's S3 credentials are an access
// key id s3rver refuses, and no endpoint: only storage_options reach the servers.
ProcessResult ember_cli(const std::vector<std::string>& args, const TempDir& cwd, const TempDir& home) {
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE")};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back("--plugin-dir");
  spec.argv.push_back(require_env("EMBER_BUILD_ROOT") + "/plugins");
  spec.drop_prefixes = {"AWS_", "EMBER_PLUGIN_PATH"};
  spec.env = {{"AWS_ACCESS_KEY_ID", "NOT-AN-S3RVER-KEY"},
              {"AWS_SECRET_ACCESS_KEY", "env-secret"},
              {"AWS_REGION", "us-east-1"},
              {"AWS_CONFIG_FILE", (home / "no-aws-config").string()},
              {"AWS_SHARED_CREDENTIALS_FILE", (home / "no-aws-credentials").string()},
              {"HOME", home.path().string()}};
  spec.cwd = cwd.path().string();
  return run_child(spec, std::chrono::seconds(400));
}

std::string write_config(const TempDir& dir, const json::object& cfg, const char* name = "run.json") {
  std::string path = (dir / name).string();
  write_file(path, json::serialize(cfg));
  return path;
}

using Tagged = ember::storage::MemoryBackend;

}  // namespace

// The longest prefix wins, then a scheme entry ("memory://"), then the scheme's backend; a prefix
// ending in '/' also serves the URL without it; the scheme is compared case-insensitively.
BOOST_AUTO_TEST_CASE(url_space_routes_to_the_longest_prefix_then_the_scheme) {
  ember::storage::UrlSpace urls;
  auto scheme = std::make_shared<Tagged>(), a = std::make_shared<Tagged>(), ab = std::make_shared<Tagged>();
  ember::storage::Backend* builtin = &urls.route("memory://x/k");
  BOOST_TEST(&urls.route("memory://a/k") == builtin);
  urls.add_prefix("memory://", scheme);
  urls.add_prefix("memory://a/", a);
  urls.add_prefix("memory://a/b/", ab);
  BOOST_TEST(&urls.route("memory://x/k") == scheme.get());
  BOOST_TEST(&urls.route("memory://a/k") == a.get());
  BOOST_TEST(&urls.route("memory://a") == a.get());
  BOOST_TEST(&urls.route("MEMORY://a/k") == a.get());
  BOOST_TEST(&urls.route("memory://a/b/k") == ab.get());
  BOOST_TEST(&urls.route("memory://a/bc/k") == a.get());  // "a/b/" is not a prefix of "a/bc/k"
  BOOST_TEST(&urls.route("memory://ab/k") == scheme.get());
  BOOST_TEST(&urls.route("/tmp/x") != scheme.get());  // file:// untouched
  urls.put_atomic("memory://a/b/obj", "ab");
  BOOST_TEST(ab->stat("memory://a/b/obj").has_value());
  BOOST_TEST(!a->stat("memory://a/b/obj").has_value());
  BOOST_TEST(!urls.has_prefix_route("s3://a/"));
}

// One fit: checkpoints through "s3://ckpts/" to server A, CSV logs through "s3://logs/" to server
// B, each with its own endpoint and credentials; then `ember storage` lists and copies across.
BOOST_AUTO_TEST_CASE(one_fit_writes_two_servers_by_prefix_and_storage_cp_copies_between_them) {
  TempDir cwd("ember-opts-cwd"), home("ember-opts-home"), conf("ember-opts-conf");
  const std::string config = write_config(conf, run_config());
  auto fit = ember_cli({"fit", "--config", config}, cwd, home);
  BOOST_REQUIRE_MESSAGE(fit.exit_code == 0, fit.describe());
  BOOST_TEST(has_text(fit.out, "global_step 5\n"), fit.out);

  S3Urls a(local_config(server_a().endpoint())), b(local_config(server_b().endpoint()));
  BOOST_TEST(a.urls.stat("s3://ckpts/run/checkpoints/last.ckpt").has_value());
  BOOST_TEST(b.urls.stat("s3://logs/run/lightning_logs/version_0/metrics.csv").has_value());
  // Each server holds only its own bucket: the routes did not cross.
  BOOST_TEST(!std::filesystem::exists(server_a().data_dir() / "logs"));
  BOOST_TEST(!std::filesystem::exists(server_b().data_dir() / "ckpts"));
  BOOST_TEST(list_dir(cwd.path()).empty());

  auto ls = ember_cli({"storage", "ls", "-r", "--config", config, "s3://logs/run/lightning_logs/version_0"}, cwd, home);
  BOOST_REQUIRE_MESSAGE(ls.exit_code == 0, ls.describe());
  BOOST_TEST(has_text(ls.out, "s3://logs/run/lightning_logs/version_0/metrics.csv\n"), ls.out);

  auto cp = ember_cli({"storage", "cp", "--config", config, "s3://ckpts/run/checkpoints/last.ckpt", "s3://logs/copied/last.ckpt"},
                      cwd, home);
  BOOST_REQUIRE_MESSAGE(cp.exit_code == 0, cp.describe());
  const std::string original = a.urls.read_all("s3://ckpts/run/checkpoints/last.ckpt");
  BOOST_TEST(!original.empty());
  BOOST_TEST((b.urls.read_all("s3://logs/copied/last.ckpt") == original));

  // Without the options the environment's key is refused: the options are what made it work.
  json::object bare = run_config();
  bare.erase("storage_options");
  auto refused = ember_cli({"storage", "ls", "--config", write_config(conf, bare, "bare.json"), "s3://ckpts/run"}, cwd, home);
  BOOST_TEST(refused.exit_code != 0, refused.describe());

  for (const auto* r : {&fit, &ls, &cp, &refused}) {
    BOOST_TEST(!has_text(r->out + r->err, kSecretA));
    BOOST_TEST(!has_text(r->out + r->err, kSecretB));
  }
}

// `ember config` prints the options with their secrets as "***", the rest as written.
BOOST_AUTO_TEST_CASE(config_prints_options_without_their_secrets) {
  TempDir cwd("ember-opts-cwd"), home("ember-opts-home"), conf("ember-opts-conf");
  auto r = ember_cli({"config", "--config", write_config(conf, run_config())}, cwd, home);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  auto cfg = json::parse(r.out).as_object();
  const auto& a = cfg.at("storage_options").at("s3://ckpts/").as_object();
  BOOST_TEST(a.at("secret_access_key").as_string() == "***");
  BOOST_TEST(a.at("endpoint_url").as_string() == server_a().endpoint());
  BOOST_TEST(a.at("access_key_id").as_string() == "S3RVER");
  BOOST_TEST(!has_text(r.out + r.err, kSecretA));
  BOOST_TEST(!has_text(r.out + r.err, kSecretB));
}

// Refused when the config is loaded (exit 2, nothing trained or written), naming the key: a value
// the plugin's schema refuses, a scheme no plugin claims, a built-in scheme, a key that is neither
// a scheme nor a URL prefix. Every problem is listed, with no secret.
BOOST_AUTO_TEST_CASE(bad_options_are_refused_at_config_time_naming_the_key) {
  TempDir cwd("ember-opts-cwd"), home("ember-opts-home"), conf("ember-opts-conf");
  json::object cfg = run_config();
  auto& so = cfg["storage_options"].as_object();
  so["s3://ckpts/"].as_object()["part_size"] = 5;
  so["nosuch://bucket/"] = json::object{{"secret", kSecretB}};
  so["file"] = json::object();
  so["not a scheme"] = json::object();
  const std::string config = write_config(conf, cfg);
  for (const char* cmd : {"config", "fit"}) {
    auto r = ember_cli({cmd, "--config", config}, cwd, home);
    BOOST_TEST(r.exit_code == 2, r.describe());
    BOOST_TEST(has_text(r.err, "storage_options[\"s3://ckpts/\"].part_size: "), r.err);
    BOOST_TEST(has_text(r.err, "5242880"), r.err);  // what was expected: the schema's minimum
    BOOST_TEST(has_text(r.err, "storage_options[\"nosuch://bucket/\"]: no storage plugin claims the scheme 'nosuch://'"), r.err);
    BOOST_TEST(has_text(r.err, "storage_options[\"file\"]: file:// is served by the host itself"), r.err);
    BOOST_TEST(has_text(r.err, "storage_options[\"not a scheme\"]: expected a URL scheme"), r.err);
    BOOST_TEST(!has_text(r.out + r.err, kSecretA));
    BOOST_TEST(!has_text(r.out + r.err, kSecretB));
    BOOST_TEST(!has_text(r.out, "global_step"), r.out);
  }
  BOOST_TEST(list_dir(cwd.path()).empty());
}
