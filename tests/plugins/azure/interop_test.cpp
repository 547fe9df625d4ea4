// Interop with Microsoft's own client, @azure/storage-blob (npm), on the same Azurite: blobs the
// plugin writes (one Put Blob, and Put Block + Put Block List) read back byte for byte by
// downloadToBuffer, and blobs the client writes (single shot, and in blocks) read by the plugin,
// whole and by ranges.
#define BOOST_TEST_MODULE azure_interop
#include <boost/test/unit_test.hpp>

#include "azurite_fixture.hpp"
#include "sigv4.hpp"

using namespace ember::test;

namespace {

Azurite& server() {
  static Azurite a;
  static bool made = [] {
    create_container(a, "interop");
    return true;
  }();
  (void)made;
  return a;
}

AzureUrls& plugin() {
  static AzureUrls u(azurite_config(server().endpoint(), R"("block_size": 1048576, "read_chunk_size": 524288)"));
  return u;
}

// "size sha256" as blob_client.js get prints it.
std::string fingerprint(const std::string& data) {
  return std::to_string(data.size()) + " " + ember::s3::sha256_hex(data) + "\n";
}

}  // namespace

BOOST_AUTO_TEST_CASE(blobs_written_by_ember_read_by_microsofts_client) {
  for (std::size_t size : {std::size_t(0), std::size_t(777), std::size_t((3u << 20) + 5)}) {
    std::string name = "from-ember/" + std::to_string(size) + ".bin";
    std::string data = pattern_bytes(size, size + 1);
    write_all(plugin().urls, "az://interop/" + name, data);
    auto got = blob_client(server().connection_string(), {"get", "interop", name});
    BOOST_REQUIRE_MESSAGE(got.exit_code == 0, got.err);
    BOOST_TEST(got.out == fingerprint(data), name);
  }
}

BOOST_AUTO_TEST_CASE(blobs_written_by_microsofts_client_read_by_ember) {
  struct Case {
    std::string name, size, seed, block;
  };
  for (const Case& c : {Case{"single.bin", "5000", "41", ""}, Case{"blocks.bin", "2621440", "42", "1048576"}}) {
    std::vector<std::string> args{"put", "interop", "from-node/" + c.name, c.size, c.seed};
    if (!c.block.empty()) args.push_back(c.block);
    auto put = blob_client(server().connection_string(), args);
    BOOST_REQUIRE_MESSAGE(put.exit_code == 0, put.err);
    std::string want = pattern_bytes(std::stoul(c.size), std::stoull(c.seed));
    std::string url = "az://interop/from-node/" + c.name;
    BOOST_TEST((read_all(plugin().urls, url) == want), c.name);
    BOOST_TEST((read_all(plugin().urls, url, 1000, 3000) == want.substr(1000, 3000)), c.name);
    BOOST_TEST(plugin().urls.stat(url)->size == want.size());
  }
  std::vector<std::string> listed;
  for (const auto& e : plugin().urls.list("az://interop/from-node")) listed.push_back(e.url);
  BOOST_TEST(listed == (std::vector<std::string>{"az://interop/from-node/blocks.bin", "az://interop/from-node/single.bin"}),
             boost::test_tools::per_element());
}
