// The azure plugin through tests/plugins/s3/fault_proxy.py in front of Azurite: 503 and 500 answers and
// connection resets are retried (with backoff) until the operation succeeds; a body corrupted in
// transit is refused by the service's Content-MD5 check and sent again; an upload that keeps
// failing leaves the previous blob untouched; and at most max_concurrency blocks are in flight.
#define BOOST_TEST_MODULE azure_faults
#include <boost/test/unit_test.hpp>

#include "azurite_fixture.hpp"

using namespace ember::test;

namespace {

Azurite& server() {
  static Azurite a;
  static bool made = [] {
    create_container(a, "faults");
    return true;
  }();
  (void)made;
  return a;
}

// The plugin pointed at proxy, retrying fast.
std::string via(const FaultProxy& proxy, const std::string& extra = "") {
  return azurite_config(proxy.endpoint() + "/devstoreaccount1",
                        R"("block_size": 1048576, "max_concurrency": 3, "retry_base_ms": 5, "retry_max_ms": 50)" +
                            (extra.empty() ? "" : ", " + extra));
}

}  // namespace

BOOST_AUTO_TEST_CASE(put_block_503_and_500_are_retried) {
  FaultProxy proxy(server().port(), R"([
    {"method": "PUT", "query": "comp=block&", "action": "status", "status": 503, "code": "ServerBusy", "times": 2},
    {"method": "PUT", "query": "comp=blocklist", "action": "status", "status": 500, "code": "InternalError", "times": 1}])");
  AzureUrls u(via(proxy));
  std::string data = pattern_bytes(5u << 20, 21);
  write_all(u.urls, "az://faults/retry/blocks", data);
  BOOST_TEST(proxy.count("status") == 3, proxy.log());
  BOOST_TEST((read_all(u.urls, "az://faults/retry/blocks") == data));
}

BOOST_AUTO_TEST_CASE(resets_on_reads_and_writes_are_retried) {
  FaultProxy proxy(server().port(), R"([
    {"method": "PUT", "action": "reset", "times": 2},
    {"method": "GET", "action": "reset", "times": 2},
    {"method": "HEAD", "action": "reset", "times": 1}])");
  AzureUrls u(via(proxy));
  std::string data = pattern_bytes(3u << 20, 22);
  write_all(u.urls, "az://faults/retry/reset", data);
  BOOST_TEST((read_all(u.urls, "az://faults/retry/reset") == data));
  BOOST_TEST(proxy.count("reset") == 5, proxy.log());
}

BOOST_AUTO_TEST_CASE(corrupted_block_is_refused_by_md5_and_sent_again) {
  // Azurite checks Content-MD5 as Azure does: the corrupted copy is refused (400 Md5Mismatch);
  // the plugin reports it after its attempts unless a clean copy gets through.
  FaultProxy proxy(server().port(), R"([{"method": "PUT", "query": "comp=block&", "action": "corrupt", "times": 1}])");
  AzureUrls u(via(proxy, R"("max_attempts": 1)"));
  std::string data = pattern_bytes(2u << 20, 23);
  std::string e;
  try {
    write_all(u.urls, "az://faults/corrupt/blob", data);
  } catch (const std::exception& x) {
    e = x.what();
  }
  BOOST_TEST(proxy.count("corrupt") == 1, proxy.log());
  BOOST_TEST(contains(e, "Md5Mismatch"), e);
  BOOST_TEST(contains(e, "az://faults/corrupt/blob"), e);
  BOOST_TEST(!u.urls.stat("az://faults/corrupt/blob"));
}

BOOST_AUTO_TEST_CASE(failing_upload_leaves_the_previous_blob) {
  AzureUrls direct(azurite_config(server().endpoint()));
  write_all(direct.urls, "az://faults/keep/ckpt", "the previous checkpoint");
  FaultProxy proxy(server().port(), R"([
    {"method": "PUT", "query": "comp=blocklist", "action": "status", "status": 500, "code": "InternalError", "times": -1}])");
  AzureUrls u(via(proxy, R"("max_attempts": 3)"));
  std::string e;
  try {
    write_all(u.urls, "az://faults/keep/ckpt", pattern_bytes(4u << 20, 24));
  } catch (const std::exception& x) {
    e = x.what();
  }
  BOOST_TEST(contains(e, "InternalError"), e);
  BOOST_TEST(contains(e, "gave up after 3 attempts"), e);
  BOOST_TEST(proxy.count("status") == 3, proxy.log());
  BOOST_TEST(read_all(direct.urls, "az://faults/keep/ckpt") == "the previous checkpoint");
  // A block that keeps failing stops the upload before anything is published, too.
  FaultProxy blocks(server().port(), R"([{"method": "PUT", "query": "comp=block&", "action": "reset", "times": -1}])");
  AzureUrls b(via(blocks, R"("max_attempts": 2)"));
  BOOST_CHECK_THROW(write_all(b.urls, "az://faults/keep/ckpt", pattern_bytes(6u << 20, 25)), std::exception);
  BOOST_TEST(blocks.count("forward", "comp=blocklist") == 0);
  BOOST_TEST(read_all(direct.urls, "az://faults/keep/ckpt") == "the previous checkpoint");
}

BOOST_AUTO_TEST_CASE(blocks_go_up_in_parallel_and_bounded) {
  // A barrier of 3 passes only if three Put Blocks are inside the proxy at once.
  FaultProxy proxy(server().port(), R"([
    {"method": "PUT", "query": "comp=block&", "action": "barrier", "parties": 3, "times": 3, "timeout": 20}])");
  AzureUrls u(via(proxy));
  std::string data = pattern_bytes(12u << 20, 26);
  write_all(u.urls, "az://faults/parallel/blob", data);
  BOOST_TEST(proxy.barriers("passed") == 3, proxy.log());
  BOOST_TEST(proxy.max_overlap("comp=block&") <= 3);
  BOOST_TEST((read_all(u.urls, "az://faults/parallel/blob") == data));
}
