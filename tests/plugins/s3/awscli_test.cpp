// Interop with the aws CLI (Debian's awscli) against the same s3rver: what the plugin writes
// `aws s3 cp` reads byte for byte, and the reverse, multipart included.
#define BOOST_TEST_MODULE s3_awscli
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "s3_fixture.hpp"

using namespace ember::test;

namespace {

S3rver& server() {
  static S3rver s({"interop"});
  return s;
}

TempDir& scratch() {
  static TempDir d("ember-s3-awscli");
  return d;
}

// Run `aws --endpoint-url ... <args>` with dummy credentials and config files in a temp dir
// (never the user's ~/.aws).
ProcessResult aws(const std::vector<std::string>& args) {
  const std::string exe = "/usr/bin/aws";
  if (!std::filesystem::exists(exe)) throw std::runtime_error("the aws CLI is not installed (/usr/bin/aws): run scripts/bootstrap");
  write_file(scratch() / "aws-config", "[default]\nregion = us-east-1\n");
  write_file(scratch() / "aws-credentials", "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
  std::vector<std::string> argv{"/usr/bin/env",
                                "AWS_CONFIG_FILE=" + (scratch() / "aws-config").string(),
                                "AWS_SHARED_CREDENTIALS_FILE=" + (scratch() / "aws-credentials").string(),
                                "AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                                "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "HOME=" + scratch().path().string(),
                                exe, "--endpoint-url", server().endpoint(), "--no-cli-pager"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

struct Case {
  const char* name;
  const char* key;
  std::size_t size;
};

const Case kCases[] = {
    {"small", "dir/small.bin", 1000},
    {"spaces_unicode_plus_equals", "dir/a b+c=d/ünï 日本.bin", 4096},
    {"multipart", "dir/multipart.bin", 13 * 1024 * 1024 + 7},
};

}  // namespace

BOOST_AUTO_TEST_CASE(objects_written_by_the_plugin_are_read_by_aws_s3_cp) {
  S3Urls s3(local_config(server().endpoint(), R"("part_size": 5242880)"));
  for (const auto& c : kCases) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string data = pattern_bytes(c.size, c.size);
      auto w = s3.urls.open_write(std::string("s3://interop/plugin/") + c.key);
      for (std::size_t i = 0; i < data.size(); i += 65536) w->write(data.data() + i, std::min<std::size_t>(65536, data.size() - i));
      w->commit();
      auto out = scratch() / (std::string("from-plugin-") + c.name);
      auto r = aws({"s3", "cp", std::string("s3://interop/plugin/") + c.key, out.string()});
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
      BOOST_TEST((read_file(out) == data));
    }
  }
}

BOOST_AUTO_TEST_CASE(objects_written_by_aws_s3_cp_are_read_by_the_plugin) {
  S3Urls s3(local_config(server().endpoint(), R"("read_chunk_size": 1048576)"));
  for (const auto& c : kCases) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string data = pattern_bytes(c.size, c.size + 1);
      auto in = scratch() / (std::string("to-plugin-") + c.name);
      write_file(in, data);
      auto r = aws({"s3", "cp", in.string(), std::string("s3://interop/cli/") + c.key});
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
      const std::string url = std::string("s3://interop/cli/") + c.key;
      BOOST_TEST((s3.urls.read_all(url) == data));
      BOOST_TEST(s3.urls.stat(url)->size == data.size());
    }
  }
  auto listed = s3.urls.list("s3://interop/cli/dir");
  std::vector<std::string> names;
  for (const auto& e : listed) names.push_back(e.url + (e.is_dir ? "/" : ""));
  BOOST_TEST(names == (std::vector<std::string>{"s3://interop/cli/dir/a b+c=d/", "s3://interop/cli/dir/multipart.bin",
                                                "s3://interop/cli/dir/small.bin"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(aws_s3_ls_sees_what_the_plugin_wrote) {
  S3Urls s3(local_config(server().endpoint()));
  s3.urls.put_atomic("s3://interop/ls/one file.txt", "1");
  auto r = aws({"s3", "ls", "s3://interop/ls/"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(contains(r.out, "one file.txt"), r.out);
}
