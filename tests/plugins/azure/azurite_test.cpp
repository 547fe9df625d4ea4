// The built azure.so against Azurite (which checks Shared Key and SAS signatures): round trips
// through Put Blob and Put Block / Put Block List, a 64 MiB block upload, ranged reads, List Blobs
// paged by marker, stat, delete; the abfs:// form; credentials from a connection string and from
// the environment; and the errors a user meets: a wrong key (403, named, no key in the text), a
// read-only SAS refused on write, a missing container, adl://.
#define BOOST_TEST_MODULE azure
#include <boost/test/unit_test.hpp>

#include "azurite_fixture.hpp"

#include <ember/net/digest.hpp>

#include <algorithm>

using namespace ember::test;

namespace {

Azurite& server() {
  static Azurite a;
  static bool made = [] {
    create_container(a, "test");
    create_container(a, "lists");
    return true;
  }();
  (void)made;
  return a;
}

// One plugin instance for the cases that need nothing special: 4 MiB blocks, two entries a page.
AzureUrls& shared() {
  static AzureUrls u(azurite_config(server().endpoint(), R"("block_size": 4194304, "max_results": 2)"));
  return u;
}

}  // namespace

BOOST_AUTO_TEST_CASE(small_blob_round_trips_through_put_blob) {
  auto& u = shared().urls;
  std::string data = pattern_bytes(1000, 7);
  write_all(u, "az://test/small/one.bin", data);
  BOOST_TEST(read_all(u, "az://test/small/one.bin") == data);
  auto st = u.stat("az://test/small/one.bin");
  BOOST_REQUIRE(st);
  BOOST_TEST(st->size == 1000u);
  BOOST_TEST(!st->is_dir);
  BOOST_TEST(st->mtime_ns > 0);
  // Empty blobs too.
  write_all(u, "az://test/small/empty", "");
  BOOST_TEST(read_all(u, "az://test/small/empty").empty());
  BOOST_TEST(u.stat("az://test/small/empty")->size == 0u);
}

BOOST_AUTO_TEST_CASE(block_upload_of_64_mib_round_trips_and_reads_ranges) {
  auto& u = shared().urls;
  const std::size_t n = 64u << 20;
  std::string data = pattern_bytes(n + 12345, 11);  // 16 full blocks and a short one
  write_all(u, "az://test/big/64mib.bin", data, 3 << 20);
  BOOST_TEST(u.stat("az://test/big/64mib.bin")->size == data.size());
  BOOST_TEST((read_all(u, "az://test/big/64mib.bin") == data));
  // Ranges across chunk boundaries, at the end, and past it.
  for (auto [off, len] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {0, 1}, {4194303, 2}, {12345678, 9000000}, {data.size() - 10, 10}, {data.size() - 5, 100}, {data.size(), 10}}) {
    std::string got = read_all(u, "az://test/big/64mib.bin", off, len);
    std::string want = off >= data.size() ? std::string() : data.substr(off, len);
    BOOST_TEST((got == want), "range " << off << "+" << len);
  }
}

// block_checksum "crc64": each Put Block (and a one-shot Put Blob) carries x-ms-content-crc64
// instead of Content-MD5; Azurite computes Azure's CRC-64 of the body and refuses a mismatch
// (Crc64Mismatch), so the uploads succeeding shows the polynomial and byte order match; the check
// value of "123456789" pins them too.
BOOST_AUTO_TEST_CASE(crc64_block_checksums_are_accepted_by_azurite) {
  BOOST_TEST(ember::net::crc64_nvme("123456789") == 0xAE8B14860A799888ull);
  BOOST_TEST(ember::net::crc64_base64("123456789") == "iJh5CoYUi64=");
  BOOST_TEST(ember::net::crc64_nvme("6789", ember::net::crc64_nvme("12345")) == 0xAE8B14860A799888ull);
  server();
  AzureUrls crc(azurite_config(server().endpoint(), R"("block_size": 65536, "block_checksum": "crc64")"));
  const std::string data = pattern_bytes(5 * 65536 + 77, 13);  // six blocks
  write_all(crc.urls, "az://test/crc64/blocks.bin", data);
  BOOST_TEST((read_all(crc.urls, "az://test/crc64/blocks.bin") == data));
  write_all(crc.urls, "az://test/crc64/small.bin", "small");
  BOOST_TEST(read_all(crc.urls, "az://test/crc64/small.bin") == "small");
}

BOOST_AUTO_TEST_CASE(overwrite_replaces_and_uncommitted_write_leaves_previous) {
  auto& u = shared().urls;
  write_all(u, "az://test/over/blob", "first version");
  {
    auto w = u.open_write("az://test/over/blob");
    std::string big = pattern_bytes(9u << 20, 3);  // two blocks go up, never committed
    w->write(big.data(), big.size());
  }
  BOOST_TEST(read_all(u, "az://test/over/blob") == "first version");
  std::string second = pattern_bytes(9u << 20, 4);
  write_all(u, "az://test/over/blob", second);
  BOOST_TEST((read_all(u, "az://test/over/blob") == second));
}

BOOST_AUTO_TEST_CASE(list_pages_with_marker_and_shows_prefixes) {
  auto& u = shared().urls;  // max_results 2: five entries take three pages
  for (const char* name : {"a", "b", "c"}) write_all(u, std::string("az://lists/run/") + name, name);
  write_all(u, "az://lists/run/sub/x", "x");
  write_all(u, "az://lists/run/sub2/y/z", "z");
  write_all(u, "az://lists/other", "not listed");
  std::vector<std::string> got;
  for (const auto& e : u.list("az://lists/run")) got.push_back(e.url + (e.is_dir ? "/" : "") + ":" + std::to_string(e.size));
  std::vector<std::string> want{"az://lists/run/a:1", "az://lists/run/b:1", "az://lists/run/c:1", "az://lists/run/sub/:0",
                                "az://lists/run/sub2/:0"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  // The container's top level.
  std::vector<std::string> top;
  for (const auto& e : u.list("az://lists/")) top.push_back(e.url);
  BOOST_TEST(top == (std::vector<std::string>{"az://lists/other", "az://lists/run"}), boost::test_tools::per_element());
  auto dir = u.stat("az://lists/run/sub2");
  BOOST_REQUIRE(dir);
  BOOST_TEST(dir->is_dir);
}

BOOST_AUTO_TEST_CASE(remove_deletes_and_absent_is_not_found) {
  auto& u = shared().urls;
  write_all(u, "az://test/rm/gone", "bye");
  BOOST_TEST(u.remove("az://test/rm/gone"));
  BOOST_TEST(!u.stat("az://test/rm/gone"));
  BOOST_TEST(!u.remove("az://test/rm/gone"));
  BOOST_TEST(!u.stat("az://test/rm/never"));
}

BOOST_AUTO_TEST_CASE(abfs_urls_name_container_and_account) {
  auto& u = shared().urls;
  const std::string base = "abfs://test@devstoreaccount1.dfs.core.windows.net/abfs/";
  write_all(u, base + "f.txt", "hello abfs");
  BOOST_TEST(read_all(u, "az://test/abfs/f.txt") == "hello abfs");
  BOOST_TEST(read_all(u, "abfss://test@devstoreaccount1.dfs.core.windows.net/abfs/f.txt") == "hello abfs");
  auto l = u.list(base);
  BOOST_REQUIRE(l.size() == 1u);
  BOOST_TEST(l[0].url == base + "f.txt");
  // Another account than the endpoint serves is refused, naming both.
  std::string e = error_of([&] { u.stat("abfs://test@otheraccount.dfs.core.windows.net/x"); });
  BOOST_TEST(contains(e, "otheraccount"), e);
  BOOST_TEST(contains(e, "devstoreaccount1"), e);
}

BOOST_AUTO_TEST_CASE(adl_is_refused_with_a_reason) {
  auto& u = shared().urls;
  std::string e = error_of([&] { u.stat("adl://store.azuredatalakestore.net/x"); });
  BOOST_TEST(contains(e, "Gen1"), e);
  BOOST_TEST(contains(e, "abfs://"), e);
}

BOOST_AUTO_TEST_CASE(wrong_key_is_a_403_named_without_the_key) {
  const std::string wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleQ==";
  AzureUrls bad(R"({"endpoint_url": ")" + server().endpoint() +
                R"(", "account_name": "devstoreaccount1", "account_key": ")" + wrong + "\"}");
  std::string e = error_of([&] { write_all(bad.urls, "az://test/denied", "x"); });
  BOOST_TEST(contains(e, "403"), e);
  BOOST_TEST((contains(e, "AuthorizationFailure") || contains(e, "AuthenticationFailed")), e);
  BOOST_TEST(contains(e, "az://test/denied"), e);
  BOOST_TEST(contains(e, "account_key"), e);  // where the key came from
  BOOST_TEST(!contains(e, wrong), e);
  BOOST_TEST(!contains(e, wrong.substr(0, 12)), e);
  BOOST_TEST(std::count(e.begin(), e.end(), '\n') == 0, e);
  std::string r = error_of([&] { read_all(bad.urls, "az://test/small/one.bin"); });
  BOOST_TEST(contains(r, "403"), r);
  BOOST_TEST(!contains(r, wrong.substr(0, 12)), r);
}

BOOST_AUTO_TEST_CASE(read_only_sas_reads_and_is_refused_on_write) {
  auto sas = blob_client(server().connection_string(), {"sas", "rl"});
  BOOST_REQUIRE_MESSAGE(sas.exit_code == 0, sas.err);
  std::string token = sas.out.substr(0, sas.out.find('\n'));
  write_all(shared().urls, "az://test/sas/readable", "public-ish");
  AzureUrls ro(R"({"endpoint_url": ")" + server().endpoint() + R"(", "sas_token": ")" + token + "\"}");
  BOOST_TEST(read_all(ro.urls, "az://test/sas/readable") == "public-ish");
  BOOST_TEST(ro.urls.list("az://test/sas").size() == 1u);
  std::string e = error_of([&] { write_all(ro.urls, "az://test/sas/written", "nope"); });
  BOOST_TEST(contains(e, "403"), e);
  BOOST_TEST(contains(e, "az://test/sas/written"), e);
  BOOST_TEST(contains(e, "SAS token from the azure config key sas_token"), e);
  std::string sig = token.substr(token.find("sig=") + 4);
  BOOST_TEST(!contains(e, sig.substr(0, 10)), e);
  BOOST_TEST(!shared().urls.stat("az://test/sas/written"));
}

BOOST_AUTO_TEST_CASE(connection_string_and_environment_credentials) {
  // The config's connection string (its BlobEndpoint is the endpoint).
  AzureUrls cs(R"({"connection_string": ")" + server().connection_string() + "\"}");
  write_all(cs.urls, "az://test/cs/x", "via connection string");
  BOOST_TEST(read_all(shared().urls, "az://test/cs/x") == "via connection string");
  // The environment's.
  {
    ScopedEnv c("AZURE_STORAGE_CONNECTION_STRING", server().connection_string().c_str());
    AzureUrls e("{}");
    BOOST_TEST(read_all(e.urls, "az://test/cs/x") == "via connection string");
  }
  {
    ScopedEnv c("AZURE_STORAGE_CONNECTION_STRING", nullptr);
    ScopedEnv a("AZURE_STORAGE_ACCOUNT", kDevAccount);
    ScopedEnv k("AZURE_STORAGE_KEY", kDevKey);
    AzureUrls e(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
    BOOST_TEST(read_all(e.urls, "az://test/cs/x") == "via connection string");
  }
  // A malformed key is refused at load, without the key.
  std::string e = error_of([&] { AzureUrls bad(R"({"account_name": "a", "account_key": "not*base64*secret"})"); });
  BOOST_TEST(contains(e, "account_key"), e);
  BOOST_TEST(!contains(e, "not*base64*secret"), e);
}

BOOST_AUTO_TEST_CASE(missing_container_is_named) {
  auto& u = shared().urls;
  std::string e = error_of([&] { write_all(u, "az://nosuchcontainer/x", "x"); });
  BOOST_TEST(contains(e, "ContainerNotFound"), e);
  BOOST_TEST(contains(e, "az://nosuchcontainer/x"), e);
  BOOST_TEST(!contains(e, kDevKey), e);
  std::string l = error_of([&] { u.list("az://nosuchcontainer/"); });
  BOOST_TEST(contains(l, "ContainerNotFound"), l);
}

BOOST_AUTO_TEST_CASE(anonymous_access_to_a_private_container_says_so) {
  ScopedEnv c("AZURE_STORAGE_CONNECTION_STRING", nullptr);
  ScopedEnv k("AZURE_STORAGE_KEY", nullptr);
  ScopedEnv s("AZURE_STORAGE_SAS_TOKEN", nullptr);
  ScopedEnv cs("AZURE_CLIENT_SECRET", nullptr);
  AzureUrls anon(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
  std::string e = error_of([&] { read_all(anon.urls, "az://test/small/one.bin"); });
  BOOST_TEST(contains(e, "no credentials found"), e);
  BOOST_TEST((contains(e, "404") || contains(e, "403")), e);
}

namespace {

// tests/plugins/azure/token_server.py: a token endpoint for tenant "tenant-1", client "client-1".
struct TokenServer {
  TempDir dir{"ember-azure-token"};
  std::unique_ptr<Background> proc;
  std::string port;
  explicit TokenServer(const std::string& secret) {
    proc = std::make_unique<Background>(
        std::vector<std::string>{"/usr/bin/python3", require_env("EMBER_AZURE_TEST_DIR") + "/token_server.py", "tenant-1",
                                 "client-1", secret},
        std::map<std::string, std::string>{}, dir / "token.log");
    port = proc->wait_for(R"(listening on [0-9.]+:([0-9]+))");
  }
  std::string url() const { return "http://127.0.0.1:" + port; }
  int lines(const std::string& what) const {
    std::string log = proc->read_log();
    int n = 0;
    for (auto p = log.find(what); p != std::string::npos; p = log.find(what, p + 1)) ++n;
    return n;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(client_credentials_token_is_fetched_once_and_sent_as_bearer) {
  const std::string secret = "client-secret-NEVER-SHOWN";
  TokenServer ts(secret);
  ScopedEnv c("AZURE_STORAGE_CONNECTION_STRING", nullptr);
  ScopedEnv k("AZURE_STORAGE_KEY", nullptr);
  ScopedEnv s("AZURE_STORAGE_SAS_TOKEN", nullptr);
  ScopedEnv t("AZURE_TENANT_ID", "tenant-1");
  ScopedEnv i("AZURE_CLIENT_ID", "client-1");
  ScopedEnv x("AZURE_CLIENT_SECRET", secret.c_str());
  ScopedEnv a("AZURE_AUTHORITY_HOST", ts.url().c_str());
  AzureUrls u(R"({"endpoint_url": ")" + ts.url() + R"(/acct", "account_name": "acct"})");
  auto st = u.urls.stat("az://c/some/blob");
  BOOST_REQUIRE(st);
  BOOST_TEST(st->size == 42u);
  BOOST_TEST(u.urls.stat("az://c/other")->size == 42u);
  BOOST_TEST(ts.lines("TOKEN ") == 1);  // cached for the second request
  BOOST_TEST(ts.lines("BLOB HEAD /acct/c/some/blob ok") == 1);

  // A wrong secret: the token endpoint's error, the client and tenant named, the secret not.
  ScopedEnv wrong("AZURE_CLIENT_SECRET", "wrong-secret-NEVER-SHOWN");
  AzureUrls w(R"({"endpoint_url": ")" + ts.url() + R"(/acct", "account_name": "acct", "max_attempts": 1})");
  std::string e = error_of([&] { w.urls.stat("az://c/some/blob"); });
  BOOST_TEST(contains(e, "invalid_client"), e);
  BOOST_TEST(contains(e, "AADSTS7000215"), e);
  BOOST_TEST(contains(e, "client-1"), e);
  BOOST_TEST(contains(e, "tenant-1"), e);
  BOOST_TEST(!contains(e, "NEVER-SHOWN"), e);
  BOOST_TEST(!contains(e, "Trace ID"), e);
}

BOOST_AUTO_TEST_CASE(use_development_storage_means_azurites_default_endpoint) {
  // Nothing needs to listen on 10000: whatever answers (or refuses), the error names the endpoint
  // and the development account, and where the credentials came from.
  AzureUrls dev(R"({"connection_string": "UseDevelopmentStorage=true", "max_attempts": 1, "timeout_ms": 3000})");
  std::string e = error_of([&] { read_all(dev.urls, "az://c/x"); });
  BOOST_TEST(contains(e, "http://127.0.0.1:10000/devstoreaccount1"), e);
  BOOST_TEST(contains(e, "Shared Key of account devstoreaccount1 from the azure config key connection_string"), e);
}
