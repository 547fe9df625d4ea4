// Interop: what Ember's webhdfs plugin writes, the npm `webhdfs` client (another WebHDFS
// implementation: two-step create with a chunked upload, OPEN following the redirect) reads, and
// the reverse, against the same tests/plugins/webhdfs/webhdfs_server.py. The client is installed by
// scripts/bootstrap into .deps/npm; missing, the test fails saying so.
#define BOOST_TEST_MODULE webhdfs_interop
#include <boost/test/unit_test.hpp>

#include "webhdfs_fixture.hpp"

#include <fstream>
#include <sstream>

namespace json = boost::json;
using namespace ember::test;

namespace {

WebHdfsServer& server() {
  static WebHdfsServer s;
  return s;
}

ProcessResult node_client(const std::vector<std::string>& args) {
  const std::string modules = source_root() + "/.deps/npm/node_modules";
  if (!std::filesystem::exists(modules + "/webhdfs/package.json"))
    throw std::runtime_error("the npm webhdfs client is not installed (" + modules + "/webhdfs): run scripts/bootstrap");
  if (!std::filesystem::exists("/usr/bin/node")) throw std::runtime_error("node is not installed (/usr/bin/node): run scripts/bootstrap");
  ChildSpec spec;
  spec.argv = {"/usr/bin/node", source_root() + "/tests/plugins/webhdfs/interop_client.js", server().port()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {{"NODE_PATH", modules}};
  return run_child(spec, std::chrono::seconds(120));
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

BOOST_AUTO_TEST_CASE(node_client_reads_what_ember_wrote_and_lists_it) {
  WebHdfsUrls ember(R"({"user": "alice", "part_size": 1048576})");
  const std::string data = pattern_bytes(3 * 1024 * 1024 + 7, 5);
  ember.urls.put_atomic("webhdfs://" + server().authority() + "/interop/from_ember.bin", data);

  TempDir tmp("ember-webhdfs-interop");
  auto read = node_client({"read", "/interop/from_ember.bin", (tmp / "got.bin").string()});
  BOOST_REQUIRE_MESSAGE(read.exit_code == 0, read.describe());
  BOOST_TEST((slurp(tmp / "got.bin") == data));

  auto stat = node_client({"stat", "/interop/from_ember.bin"});
  BOOST_REQUIRE_MESSAGE(stat.exit_code == 0, stat.describe());
  auto st = json::parse(stat.out).as_object();
  BOOST_TEST(st.at("length").to_number<std::uint64_t>() == data.size());
  BOOST_TEST(st.at("owner").as_string() == "alice");

  // No temporary name left behind for another client to see.
  auto list = node_client({"list", "/interop"});
  BOOST_REQUIRE_MESSAGE(list.exit_code == 0, list.describe());
  BOOST_TEST(list.out.find(".tmp-") == std::string::npos, list.out);
  BOOST_TEST(list.out.find(R"(["from_ember.bin",3145735,"FILE"])") != std::string::npos, list.out);
}

BOOST_AUTO_TEST_CASE(ember_reads_what_the_node_client_wrote) {
  TempDir tmp("ember-webhdfs-interop");
  const std::string data = pattern_bytes(2 * 1024 * 1024 + 3, 9);
  write_file(tmp / "up.bin", data);
  auto up = node_client({"write", "/interop/from_node.bin", (tmp / "up.bin").string()});
  BOOST_REQUIRE_MESSAGE(up.exit_code == 0, up.describe());

  WebHdfsUrls ember(R"({"user": "alice", "read_chunk_size": 524288})");
  const std::string u = "hdfs://" + server().authority() + "/interop/from_node.bin";
  auto st = ember.urls.stat(u);
  BOOST_REQUIRE(st.has_value());
  BOOST_TEST(st->size == data.size());
  BOOST_TEST((ember.urls.read_all(u) == data));
  // A range of it, across read chunks.
  auto r = ember.urls.open_read(u, 500000, 600000);
  std::string part;
  char buf[8192];
  while (std::size_t n = r->read(buf, sizeof buf)) part.append(buf, n);
  BOOST_TEST((part == data.substr(500000, 600000)));
  // The node client's user owns it.
  auto stat = node_client({"stat", "/interop/from_node.bin"});
  BOOST_TEST(json::parse(stat.out).at("owner").as_string() == "bob");
}
