// `ember storage ls|stat|cat|cp|rm` as a user runs it: the built `ember` against local files,
// hdfs:// (tests/plugins/webhdfs/webhdfs_server.py, the webhdfs plugin found by scheme with its default
// config, no run config) and s3:// (s3rver, the s3 plugin configured by --config), copying
// between every pair, recursive copies and removals, and the errors' lines and exit codes.
#define BOOST_TEST_MODULE storage_cmd
#include <boost/test/unit_test.hpp>

#include "../plugins/webhdfs/webhdfs_fixture.hpp"
#include "expect.hpp"

#include <fstream>
#include <sstream>

namespace json = boost::json;
using namespace ember::test;

namespace {

const char* kSecret = "storage-cmd-secret-NEVER-SHOWN";

WebHdfsServer& hdfs() {
  static WebHdfsServer s;
  return s;
}
S3rver& s3() {
  static S3rver s({"bucket"});
  return s;
}

std::string hdfs_url(const std::string& path) { return "hdfs://" + hdfs().authority() + path; }

ProcessResult ember_storage(const std::vector<std::string>& args) {
  ChildSpec spec;
  spec.argv = {require_env("EMBER_EXE"), "storage"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.argv.push_back("--plugin-dir");
  spec.argv.push_back(require_env("EMBER_BUILD_ROOT") + "/plugins");
  spec.drop_prefixes = {"AWS_", "EMBER_PLUGIN_PATH", "HADOOP_"};
  spec.env = {{"HADOOP_USER_NAME", "carol"},
              {"AWS_ACCESS_KEY_ID", "S3RVER"},
              {"AWS_SECRET_ACCESS_KEY", kSecret},
              {"AWS_CONFIG_FILE", "/nonexistent/aws-config"},
              {"AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials"}};
  return run_child(spec, std::chrono::seconds(300));
}

// A run config whose plugins.storage configures s3 for s3rver (webhdfs is found by scheme).
std::string s3_config(const TempDir& dir) {
  json::object s3cfg{{"endpoint_url", s3().endpoint()}, {"region", "us-east-1"}, {"part_size", 5242880}};
  json::object cfg{{"plugins", json::object{{"storage", json::array{json::object{{"plugin", "s3"}, {"config", s3cfg}}}}}}};
  std::string path = (dir / "run.json").string();
  write_file(path, json::serialize(cfg));
  return path;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

BOOST_AUTO_TEST_CASE(cp_cat_stat_ls_rm_between_file_and_hdfs_without_a_config) {
  TempDir tmp("ember-storage-cmd");
  const std::string data = pattern_bytes(3 * 1024 * 1024 + 5, 21);
  write_file(tmp / "model.ckpt", data);

  auto up = ember_storage({"cp", (tmp / "model.ckpt").string(), hdfs_url("/runs/a/")});
  BOOST_REQUIRE_MESSAGE(up.exit_code == 0, up.describe());
  BOOST_TEST(up.err.empty(), up.err);  // no progress: stderr is not a terminal

  auto st = ember_storage({"stat", hdfs_url("/runs/a/model.ckpt")});
  BOOST_REQUIRE_MESSAGE(st.exit_code == 0, st.describe());
  auto o = json::parse(st.out).as_object();
  BOOST_TEST(o.at("type").as_string() == "file");
  BOOST_TEST(o.at("size").to_number<std::uint64_t>() == data.size());
  BOOST_TEST(o.at("url").as_string() == hdfs_url("/runs/a/model.ckpt"));

  auto cat = ember_storage({"cat", hdfs_url("/runs/a/model.ckpt")});
  BOOST_REQUIRE_MESSAGE(cat.exit_code == 0, cat.describe());
  BOOST_TEST((cat.out == data));

  auto ls = ember_storage({"ls", hdfs_url("/runs")});
  BOOST_REQUIRE_MESSAGE(ls.exit_code == 0, ls.describe());
  BOOST_TEST(contains(ls.out, "DIR"), ls.out);
  BOOST_TEST(contains(ls.out, hdfs_url("/runs/a") + "/\n"), ls.out);

  auto down = ember_storage({"cp", hdfs_url("/runs/a/model.ckpt"), "file://" + (tmp / "back.ckpt").string()});
  BOOST_REQUIRE_MESSAGE(down.exit_code == 0, down.describe());
  BOOST_TEST((slurp(tmp / "back.ckpt") == data));

  // The plugin ran with its default config: the user came from HADOOP_USER_NAME.
  BOOST_TEST(json::serialize(hdfs().stats().at("users")) == R"(["carol"])");

  auto rm = ember_storage({"rm", hdfs_url("/runs/a/model.ckpt")});
  BOOST_REQUIRE_MESSAGE(rm.exit_code == 0, rm.describe());
  auto gone = ember_storage({"stat", hdfs_url("/runs/a/model.ckpt")});
  BOOST_TEST(gone.exit_code == 1);
  BOOST_TEST(contains(gone.err, "ember storage stat: " + hdfs_url("/runs/a/model.ckpt") + ": no such file or directory"), gone.err);
}

BOOST_AUTO_TEST_CASE(recursive_copy_list_and_remove) {
  TempDir tmp("ember-storage-cmd");
  std::filesystem::create_directories(tmp / "run" / "checkpoints");
  write_file(tmp / "run" / "hparams.yaml", "lr: 0.1\n");
  write_file(tmp / "run" / "checkpoints" / "last.ckpt", pattern_bytes(70000, 2));
  write_file(tmp / "run" / "checkpoints" / "epoch=0-step=30.ckpt", pattern_bytes(50000, 3));

  auto up = ember_storage({"cp", "-r", (tmp / "run").string(), hdfs_url("/tree/")});
  BOOST_REQUIRE_MESSAGE(up.exit_code == 0, up.describe());
  auto ls = ember_storage({"ls", "-r", hdfs_url("/tree/run")});
  BOOST_REQUIRE_MESSAGE(ls.exit_code == 0, ls.describe());
  for (const char* f : {"/tree/run/hparams.yaml", "/tree/run/checkpoints/last.ckpt", "/tree/run/checkpoints/epoch=0-step=30.ckpt"})
    BOOST_TEST(contains(ls.out, hdfs_url(f) + "\n"), ls.out);

  auto down = ember_storage({"cp", "-r", hdfs_url("/tree/run"), (tmp / "copy").string()});
  BOOST_REQUIRE_MESSAGE(down.exit_code == 0, down.describe());
  BOOST_TEST((slurp(tmp / "copy" / "checkpoints" / "last.ckpt") == pattern_bytes(70000, 2)));
  BOOST_TEST(slurp(tmp / "copy" / "hparams.yaml") == "lr: 0.1\n");

  auto no_r = ember_storage({"rm", hdfs_url("/tree/run")});
  BOOST_TEST(no_r.exit_code == 1);
  BOOST_TEST(contains(no_r.err, "is a directory (use rm -r)"), no_r.err);
  auto rm = ember_storage({"rm", "-r", hdfs_url("/tree/run"), (tmp / "copy").string()});
  BOOST_REQUIRE_MESSAGE(rm.exit_code == 0, rm.describe());
  BOOST_TEST(!std::filesystem::exists(tmp / "copy"));
  auto gone = ember_storage({"ls", hdfs_url("/tree")});
  BOOST_TEST(gone.exit_code == 0, gone.describe());
  BOOST_TEST(gone.out.empty(), gone.out);
}

BOOST_AUTO_TEST_CASE(copies_between_hdfs_and_s3_stream_with_the_config_plugins) {
  TempDir tmp("ember-storage-cmd");
  const std::string config = s3_config(tmp);
  const std::string data = pattern_bytes(12 * 1024 * 1024 + 1, 33);
  write_file(tmp / "big.bin", data);
  auto up = ember_storage({"cp", "--config", config, (tmp / "big.bin").string(), hdfs_url("/x/big.bin")});
  BOOST_REQUIRE_MESSAGE(up.exit_code == 0, up.describe());
  auto across = ember_storage({"cp", "--config", config, hdfs_url("/x/big.bin"), "s3://bucket/y/big.bin"});
  BOOST_REQUIRE_MESSAGE(across.exit_code == 0, across.describe());
  auto back = ember_storage({"cp", "--config", config, "s3://bucket/y/big.bin", hdfs_url("/x/again.bin")});
  BOOST_REQUIRE_MESSAGE(back.exit_code == 0, back.describe());
  auto cat = ember_storage({"cat", "--config", config, hdfs_url("/x/again.bin")});
  BOOST_TEST((cat.out == data));
  auto ls = ember_storage({"ls", "--config", config, "s3://bucket/y"});
  BOOST_REQUIRE_MESSAGE(ls.exit_code == 0, ls.describe());
  BOOST_TEST(contains(ls.out, "    12582913  "), ls.out);
  for (const auto* r : {&up, &across, &back, &ls}) BOOST_TEST(!contains(r->out + r->err, kSecret));
}

BOOST_AUTO_TEST_CASE(errors_name_the_url_and_set_the_exit_code) {
  auto missing = ember_storage({"cat", hdfs_url("/no/such/file")});
  BOOST_TEST(missing.exit_code == 1);
  BOOST_TEST(contains(missing.err, "ember storage cat: " + hdfs_url("/no/such/file") + ": "), missing.err);
  BOOST_TEST(contains(missing.err, "FileNotFoundException"), missing.err);

  // A scheme no plugin in the build claims (gs://, az://, hdfs:// all have one now).
  auto scheme = ember_storage({"ls", "nosuch://bucket/run"});
  BOOST_TEST(scheme.exit_code == 2);
  BOOST_TEST(contains(scheme.err, "no storage plugin serves 'nosuch://'"), scheme.err);
  BOOST_TEST(contains(scheme.err, "hdfs://"), scheme.err);  // what is available

  auto unknown = ember_storage({"mv", "a", "b"});
  BOOST_TEST(unknown.exit_code == 2);
  BOOST_TEST(contains(unknown.err, "unknown command 'mv'"), unknown.err);
  auto one = ember_storage({"cp", "/tmp"});
  BOOST_TEST(one.exit_code == 2);

  TempDir tmp("ember-storage-cmd");
  write_file(tmp / "bad.json", "{\"plugins\": {\"storage\": [{\"plugin\": \"nope\"}]}}");
  auto bad = ember_storage({"ls", "--config", (tmp / "bad.json").string(), tmp.path().string()});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(contains(bad.err, "nope"), bad.err);
  // Several URLs: the good ones are done, the bad one reported, exit 1.
  write_file(tmp / "ok.txt", "ok");
  auto mixed = ember_storage({"cat", (tmp / "ok.txt").string(), (tmp / "missing.txt").string()});
  BOOST_TEST(mixed.exit_code == 1);
  BOOST_TEST(mixed.out == "ok");
  BOOST_TEST(contains(mixed.err, "missing.txt"), mixed.err);
}
