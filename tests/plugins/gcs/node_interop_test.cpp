// Interop with Google's own Node.js client (@google-cloud/storage 7.x, installed by
// scripts/bootstrap into .deps/npm) against the same test server: what the plugin writes the
// client reads byte for byte (it checks x-goog-hash crc32c itself), and the reverse, one-shot and
// resumable uploads on both sides. A missing node or client is a failure naming how to install it.
#define BOOST_TEST_MODULE gcs_node_interop
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "gcs_fixture.hpp"

using namespace ember::test;

namespace {

GcsServer& server() {
  static GcsServer s({{"interop"}, false, nullptr, "", ""});
  return s;
}

TempDir& scratch() {
  static TempDir d("ember-gcs-node");
  return d;
}

ProcessResult node(const std::vector<std::string>& args) {
  const std::string exe = "/usr/bin/node";
  if (!std::filesystem::exists(exe)) throw std::runtime_error("node is not installed (/usr/bin/node): run scripts/bootstrap");
  const std::string client = source_root() + "/.deps/npm/node_modules/@google-cloud/storage/package.json";
  if (!std::filesystem::exists(client))
    throw std::runtime_error("@google-cloud/storage is not installed (" + client + " is missing): run scripts/bootstrap");
  std::vector<std::string> argv{"/usr/bin/env", "-u", "GOOGLE_APPLICATION_CREDENTIALS", "-u", "STORAGE_EMULATOR_HOST",
                                "HOME=" + scratch().path().string(), exe,
                                require_env("EMBER_GCS_TEST_DIR") + "/node_client.js", server().endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

struct Case {
  const char* name;
  const char* key;
  std::size_t size;
};

// 3 MiB + 7 is over the plugin's 1 MiB chunk (a resumable session) and the client's 1 MiB chunks.
const Case kCases[] = {
    {"small", "dir/small.bin", 1000},
    {"spaces_unicode_plus", "dir/a b+c=d/ünï 日本.bin", 4096},
    {"resumable", "dir/resumable.bin", 3 * 1024 * 1024 + 7},
};

std::string config() { return local_gcs_config(server().endpoint(), R"("anonymous": true, "chunk_size": 1048576)"); }

}  // namespace

BOOST_AUTO_TEST_CASE(objects_written_by_the_plugin_are_read_by_googles_node_client) {
  GcsUrls gcs(config());
  for (const auto& c : kCases) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string data = pattern_bytes(c.size, c.size);
      gcs.urls.put_atomic(std::string("gs://interop/plugin/") + c.key, data);
      auto out = scratch() / (std::string(c.name) + ".from-plugin");
      auto r = node({"download", "interop", std::string("plugin/") + c.key, out.string()});
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
      BOOST_TEST((read_file(out) == data));
    }
  }
  auto r = node({"list", "interop", "plugin/dir/"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(contains(r.out, "plugin/dir/resumable.bin 3145735"), r.out);
}

BOOST_AUTO_TEST_CASE(objects_written_by_googles_node_client_are_read_by_the_plugin) {
  GcsUrls gcs(config());
  for (const auto& c : kCases) {
    for (std::string how : {"upload", "upload-resumable"}) {
      BOOST_TEST_CONTEXT(c.name << " " << how) {
        const std::string data = pattern_bytes(c.size, c.size + 1);
        auto in = scratch() / (std::string(c.name) + ".to-plugin");
        write_file(in, data);
        const std::string name = "node/" + how + "/" + c.key;
        auto r = node({how, "interop", name, in.string()});
        BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
        BOOST_TEST((gcs.urls.read_all("gs://interop/" + name) == data));
        BOOST_TEST(gcs.urls.stat("gs://interop/" + name)->size == data.size());
      }
    }
  }
}
