// `ember config` (and `ember fit`) against careless and hostile configs (issue 10 items 5 and 13):
// numbers out of range, beyond double, repeated keys, exit 2 with the file, position or key path;
// and the s3 plugin's secrets printed as "***", never verbatim.
#define BOOST_TEST_MODULE integration_config_cli
#include <boost/test/unit_test.hpp>

#include <boost/json.hpp>

#include "expect.hpp"
#include "run_process.hpp"
#include "temp_dir.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using ember::test::contains;
using ember::test::ProcessResult;
using ember::test::TempDir;

namespace {

// The repository's plugins as built (s3 among them): build/plugins/<name>/<name>.so.
std::string plugin_dir() { return (fs::path(ember::test::require_env("EMBER_BUILD_ROOT")) / "plugins").string(); }

ProcessResult run_ember(std::vector<std::string> args) {
  args.insert(args.begin(), ember::test::require_env("EMBER_EXE"));
  return ember::test::run_process(args);
}

// `ember config --config FILE --plugin-dir build/plugins [--set ...]` on text.
ProcessResult config_of(const TempDir& dir, const std::string& text, const std::vector<std::string>& sets = {}) {
  const fs::path p = dir / "run.json";
  ember::test::write_file(p, text);
  std::vector<std::string> args = {"config", "--config", p.string(), "--plugin-dir", plugin_dir()};
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  return run_ember(args);
}

bool is_json(const std::string& text) {
  boost::system::error_code ec;
  boost::json::parse(text, ec);
  return !ec;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(numbers)

BOOST_AUTO_TEST_CASE(huge_batch_size_exits_2_with_the_key) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, "{}", {"data.batch_size=1e300"});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "data.batch_size: expected a value <= 9007199254740991, got 1e+300"), r.describe());
}

BOOST_AUTO_TEST_CASE(negative_fast_dev_run_exits_2_for_config_and_fit) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, R"({"trainer": {"fast_dev_run": -3}})");
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "run.json: trainer.fast_dev_run: expected a value >= 0, got -3"), r.describe());
  // `ember fit` used to run 0 steps and exit 0.
  ProcessResult f = run_ember({"fit", "--config", (tmp / "run.json").string(), "--plugin-dir", plugin_dir()});
  BOOST_TEST(f.exit_code == 2, f.describe());
  BOOST_TEST(contains(f.err, "trainer.fast_dev_run"), f.describe());
}

BOOST_AUTO_TEST_CASE(infinite_lr_exits_2_at_its_position_instead_of_printing_invalid_json) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, "{\"model\": {\"optimizer\": {\n  \"lr\": 1e999}}}");
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, (tmp / "run.json").string() + ":2:9: number out of range"), r.describe());
  BOOST_TEST(!contains(r.out, "Infinity"), r.describe());
  ProcessResult s = config_of(tmp, "{}", {"model.optimizer.lr=1e999"});
  BOOST_TEST(s.exit_code == 2, s.describe());
  BOOST_TEST(contains(s.err, "--set model.optimizer.lr"), s.describe());
}

BOOST_AUTO_TEST_CASE(tiny_lr_prints_valid_json) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, R"({"model": {"optimizer": {"lr": 1e-300}}})");
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(is_json(r.out), r.describe());
}

BOOST_AUTO_TEST_CASE(repeated_key_exits_2_with_file_line_col) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, "{\"trainer\": {\n  \"deterministic\": true,\n  \"deterministic\": false}}");
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, (tmp / "run.json").string() + ":3:3: duplicate key \"deterministic\""), r.describe());
}

BOOST_AUTO_TEST_CASE(negative_seed_exits_2) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, R"({"seed_everything": -7})");
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "seed_everything: expected a value >= 0, got -7"), r.describe());
}

BOOST_AUTO_TEST_CASE(s3_millisecond_settings_past_int_are_refused_by_its_schema) {
  // timeout_ms 2147483648 wrapped negative in the plugin's int; retry_max_ms past INT_MAX removed
  // the backoff.
  TempDir tmp;
  for (const char* key : {"timeout_ms", "retry_max_ms", "retry_base_ms"}) {
    BOOST_TEST_CONTEXT(key) {
      ProcessResult r = config_of(
          tmp, std::string(R"({"plugins": {"storage": [{"plugin": "s3", "config": {")") + key + R"(": 2147483648}}]}})");
      BOOST_TEST(r.exit_code == 2, r.describe());
      BOOST_TEST(contains(r.err, std::string("plugins.storage[0].config.") + key + ": expected a value <= "), r.describe());
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(secrets)

const char* kS3WithSecrets = R"({"plugins": {"storage": [{"plugin": "s3", "config": {
  "access_key_id": "AKIAEXAMPLE", "secret_access_key": "wJalrXUtnFEMI-SECRET", "session_token": "FwoGZX-TOKEN"}}]}})";

BOOST_AUTO_TEST_CASE(config_prints_s3_secrets_as_stars) {
  TempDir tmp;
  ProcessResult r = config_of(tmp, kS3WithSecrets);
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(!contains(r.out, "SECRET"), r.describe());
  BOOST_TEST(!contains(r.out, "TOKEN"), r.describe());
  BOOST_TEST(contains(r.out, "AKIAEXAMPLE"), r.describe());  // an access key id is not secret
  BOOST_REQUIRE(is_json(r.out));
  auto cfg = boost::json::parse(r.out);
  const auto& c = cfg.at("plugins").at("storage").as_array()[0].at("config");
  BOOST_TEST(c.at("secret_access_key").as_string() == "***");
  BOOST_TEST(c.at("session_token").as_string() == "***");
}

BOOST_AUTO_TEST_CASE(secrets_given_with_set_are_redacted_too) {
  TempDir tmp;
  ProcessResult r = config_of(
      tmp, "{}", {R"(plugins.storage=[{"plugin": "s3", "config": {"secret_access_key": "wJalrXUtnFEMI-SECRET"}}])"});
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(!contains(r.out, "SECRET"), r.describe());
  BOOST_TEST(contains(r.out, "\"secret_access_key\":\"***\""), r.describe());
}

BOOST_AUTO_TEST_CASE(config_error_about_a_secret_does_not_quote_it) {
  TempDir tmp;
  ProcessResult r = config_of(
      tmp, R"({"plugins": {"storage": [{"plugin": "s3", "config": {"secret_access_key": ["wJalrXUtnFEMI-SECRET"]}}]}})");
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "plugins.storage[0].config.secret_access_key: expected string, got array"), r.describe());
  BOOST_TEST(!contains(r.err, "SECRET"), r.describe());
}

BOOST_AUTO_TEST_SUITE_END()
