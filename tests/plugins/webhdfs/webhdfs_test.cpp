// The built webhdfs.so against tests/plugins/webhdfs/webhdfs_server.py (a NameNode and a DataNode on
// loopback, two-step CREATE/APPEND/OPEN with 307 redirects, RemoteException bodies, faults on
// demand): round trips on each scheme, a large streamed write sent in bounded parts, ranged
// reads, list (paged and not), stat, mkdirs, delete, a failed upload that leaves the previous
// file, Hadoop's errors as one line, retried faults, and the delegation token kept secret.
#define BOOST_TEST_MODULE webhdfs
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "webhdfs_fixture.hpp"

namespace json = boost::json;
using namespace ember::test;

namespace {

// One server for most cases; LISTSTATUS_BATCH pages of 3 entries so that listings page.
WebHdfsServer& server() {
  static WebHdfsServer s({"--batch", "3"});
  return s;
}

std::string config(const std::string& extra = "") {
  return R"({"user": "alice", "part_size": 262144, "read_chunk_size": 65536, "retry_base_ms": 1, "retry_max_ms": 20)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

WebHdfsUrls& fs() {
  static WebHdfsUrls u(config());
  return u;
}

std::string url(const std::string& path, const std::string& scheme = "webhdfs") {
  return scheme + "://" + server().authority() + path;
}

std::int64_t count(const json::object& stats, const std::string& key) {
  const auto& c = stats.at("count").as_object();
  return c.contains(key) ? c.at(key).as_int64() : 0;
}

// Names in a directory as the server has them, temporary names included.
std::vector<std::string> raw_names(const std::string& dir) {
  std::vector<std::string> out;
  auto v = server().raw_get("/webhdfs/v1" + dir + "?op=LISTSTATUS&user.name=alice");
  for (const auto& s : v.at("FileStatuses").at("FileStatus").as_array())
    out.push_back(std::string(s.at("pathSuffix").as_string()));
  return out;
}

struct ClearFaults {
  ~ClearFaults() { server().control(R"({"faults": [], "deny_write": []})"); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(round_trips_on_every_scheme) {
  auto& u = fs().urls;
  for (std::string scheme : {"webhdfs", "hdfs"}) {
    const std::string a = url("/rt/" + scheme + "/hello.txt", scheme);
    u.put_atomic(a, "hello " + scheme);
    BOOST_TEST(u.read_all(a) == "hello " + scheme);
    auto st = u.stat(a);
    BOOST_REQUIRE(st.has_value());
    BOOST_TEST(!st->is_dir);
    BOOST_TEST(st->size == 6 + scheme.size());
    BOOST_TEST(st->mtime_ns > 0);
  }
  // An empty file is a CREATE with no bytes, and reads back empty.
  u.put_atomic(url("/rt/empty"), "");
  BOOST_TEST(u.read_all(url("/rt/empty")).empty());
  BOOST_TEST(u.stat(url("/rt/empty"))->size == 0u);
  // Overwrite replaces the whole file.
  u.put_atomic(url("/rt/webhdfs/hello.txt"), "v2");
  BOOST_TEST(u.read_all(url("/rt/webhdfs/hello.txt")) == "v2");
  // Names that need percent-encoding round-trip.
  u.put_atomic(url("/rt/a name with spaces & =+%x"), "odd");
  BOOST_TEST(u.read_all(url("/rt/a name with spaces & =+%x")) == "odd");
}

BOOST_AUTO_TEST_CASE(large_write_streams_in_parts_of_part_size) {
  auto before = server().stats();
  const std::size_t size = 5 * 1024 * 1024 + 12345;
  const std::string data = pattern_bytes(size);
  const std::string a = url("/big/blob.bin");
  {
    auto w = fs().urls.open_write(a);
    for (std::size_t off = 0; off < size; off += 100000) w->write(data.data() + off, std::min<std::size_t>(100000, size - off));
    w->commit();
  }
  auto after = server().stats();
  // 262144-byte parts: one CREATE and the rest APPENDs, none larger than a part.
  const std::int64_t parts = static_cast<std::int64_t>((size + 262143) / 262144);
  BOOST_TEST(count(after, "datanode:CREATE") - count(before, "datanode:CREATE") == 1);
  BOOST_TEST(count(after, "datanode:APPEND") - count(before, "datanode:APPEND") == parts - 1);
  BOOST_TEST(after.at("max_body").at("APPEND").as_int64() <= 262144);
  BOOST_TEST(after.at("max_body").at("CREATE").as_int64() <= 262144);
  BOOST_TEST(fs().urls.stat(a)->size == size);
  BOOST_TEST((fs().urls.read_all(a) == data));
}

BOOST_AUTO_TEST_CASE(ranged_reads_follow_the_redirect_and_clip_at_the_end) {
  const std::string data = pattern_bytes(200000, 7);
  const std::string a = url("/ranges/data.bin");
  fs().urls.put_atomic(a, data);
  auto read_range = [&](std::uint64_t off, std::uint64_t len) {
    auto r = fs().urls.open_read(a, off, len);
    std::string out;
    char buf[4096];
    while (std::size_t n = r->read(buf, sizeof buf)) out.append(buf, n);
    return out;
  };
  BOOST_TEST((read_range(0, 10) == data.substr(0, 10)));
  // Across read_chunk_size (65536) boundaries: several OPENs with offset and length.
  BOOST_TEST((read_range(60000, 100000) == data.substr(60000, 100000)));
  BOOST_TEST((read_range(199990, 1000) == data.substr(199990)));
  BOOST_TEST(read_range(300000, 10).empty());
  BOOST_TEST((read_range(12345, ember::storage::Backend::kToEnd) == data.substr(12345)));
}

BOOST_AUTO_TEST_CASE(list_stat_mkdirs_and_delete) {
  auto& u = fs().urls;
  const std::string dir = url("/ls/run");
  for (const char* name : {"e.txt", "a.txt", "d.txt", "c.txt", "b.txt"}) u.put_atomic(dir + "/" + name, name);
  u.put_atomic(dir + "/sub/deep/x.bin", "x");  // MKDIRS of the parents first

  // Paged (LISTSTATUS_BATCH, pages of 3), sorted, one level, directories marked.
  auto entries = u.list(dir);
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.url.substr(dir.size() + 1) + (e.is_dir ? "/" : ""));
  BOOST_TEST(names == (std::vector<std::string>{"a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "sub/"}),
             boost::test_tools::per_element());
  BOOST_TEST(entries[0].size == 5u);
  auto sub = u.stat(dir + "/sub/deep");
  BOOST_REQUIRE(sub.has_value());
  BOOST_TEST(sub->is_dir);
  // A trailing slash names the same directory.
  BOOST_TEST(u.list(dir + "/").size() == entries.size());
  // Absent: no entries, no stat.
  BOOST_TEST(u.list(url("/ls/none")).empty());
  BOOST_TEST(!u.stat(url("/ls/none")).has_value());

  BOOST_TEST(u.remove(dir + "/a.txt"));
  BOOST_TEST(!u.remove(dir + "/a.txt"));
  BOOST_TEST(!u.stat(dir + "/a.txt").has_value());
  // A directory with something in it is not removed by a single remove.
  std::string err = error_of([&] { u.remove(dir + "/sub"); });
  BOOST_TEST(contains(err, "PathIsNotEmptyDirectoryException"), err);
  BOOST_TEST(u.remove(dir + "/sub/deep/x.bin"));
  BOOST_TEST(u.remove(dir + "/sub/deep"));
}

BOOST_AUTO_TEST_CASE(a_failed_upload_leaves_the_previous_file) {
  ClearFaults clear;
  auto& u = fs().urls;
  const std::string a = url("/keep/model.ckpt");
  u.put_atomic(a, "version 1");
  const std::string big = pattern_bytes(600000, 3);
  // Abandoned: bytes sent (a CREATE and an APPEND of the temporary file), never committed.
  {
    auto w = u.open_write(a);
    w->write(big.data(), big.size());
  }
  BOOST_TEST(u.read_all(a) == "version 1");
  BOOST_TEST(raw_names("/keep") == std::vector<std::string>{"model.ckpt"}, boost::test_tools::per_element());
  // A DataNode that refuses a part: the write or the commit fails, the old file stays.
  server().control(R"({"faults": [{"where": "datanode", "op": "APPEND", "kind": "denied", "count": 1}]})");
  std::string err = error_of([&] {
    auto w = u.open_write(a);
    w->write(big.data(), big.size());
    w->commit();
  });
  BOOST_TEST(contains(err, "AccessControlException"), err);
  BOOST_TEST(u.read_all(a) == "version 1");
  BOOST_TEST(raw_names("/keep") == std::vector<std::string>{"model.ckpt"}, boost::test_tools::per_element());
  // In progress, the temporary name exists but is not listed.
  {
    auto w = u.open_write(a);
    w->write(big.data(), big.size());
    BOOST_TEST(raw_names("/keep").size() == 2u);
    BOOST_TEST(u.list(url("/keep")).size() == 1u);
    w->commit();
  }
  BOOST_TEST((u.read_all(a) == big));
}

BOOST_AUTO_TEST_CASE(remote_exceptions_become_one_clear_line) {
  ClearFaults clear;
  auto& u = fs().urls;
  std::string err = error_of([&] { u.read_all(url("/nope/missing.bin")); });
  BOOST_TEST(contains(err, "FileNotFoundException: File does not exist: /nope/missing.bin"), err);
  BOOST_TEST(contains(err, url("/nope/missing.bin")), err);
  BOOST_TEST(err.find('\n') == std::string::npos, err);
  BOOST_TEST_MESSAGE("not found: " << err);

  server().control(R"({"deny_write": ["/readonly"]})");
  err = error_of([&] { u.put_atomic(url("/readonly/x/y.txt"), "no"); });
  BOOST_TEST(contains(err, "AccessControlException: Permission denied: user=alice, access=WRITE"), err);
  BOOST_TEST(contains(err, "MKDIRS " + url("/readonly/x")), err);
  BOOST_TEST(contains(err, "HTTP 403"), err);
  BOOST_TEST_MESSAGE("denied: " << err);
  err = error_of([&] { u.put_atomic(url("/readonly/top.txt"), "no"); });
  BOOST_TEST(contains(err, "AccessControlException"), err);
  BOOST_TEST(!u.stat(url("/readonly/top.txt")).has_value());

  // Refused before any request.
  err = error_of([&] { u.put_atomic(url("/a/../b"), "x"); });
  BOOST_TEST(contains(err, "'..'"), err);
  err = error_of([&] { u.stat("hdfs:///no/namenode"); });
  BOOST_TEST(contains(err, "no NameNode"), err);
}

BOOST_AUTO_TEST_CASE(faults_are_retried_and_an_append_is_never_doubled) {
  ClearFaults clear;
  auto& u = fs().urls;
  const std::string data = pattern_bytes(700000, 11);
  const std::string a = url("/faults/f.bin");
  server().control(R"({"faults": [
      {"where": "namenode", "op": "MKDIRS", "kind": "503", "count": 1},
      {"where": "datanode", "op": "CREATE", "kind": "reset", "count": 1},
      {"where": "datanode", "op": "APPEND", "kind": "reset_after", "count": 1},
      {"where": "datanode", "op": "APPEND", "kind": "500", "count": 1},
      {"where": "namenode", "op": "GETFILESTATUS", "kind": "standby", "count": 1},
      {"where": "namenode", "op": "RENAME", "kind": "reset_after", "count": 1},
      {"where": "datanode", "op": "OPEN", "kind": "reset", "count": 2}]})");
  u.put_atomic(a, data);
  BOOST_TEST((u.read_all(a) == data));
  BOOST_TEST(server().control("{}").at("faults_left").as_int64() == 0);
  BOOST_TEST(raw_names("/faults") == std::vector<std::string>{"f.bin"}, boost::test_tools::per_element());

  // More failures than max_attempts (5): the last one is reported, with the count.
  server().control(R"({"faults": [{"where": "namenode", "op": "GETFILESTATUS", "kind": "503", "count": 9}]})");
  std::string err = error_of([&] { u.stat(a); });
  BOOST_TEST(contains(err, "HTTP 503"), err);
  BOOST_TEST(contains(err, "gave up after 5 attempts"), err);
  BOOST_TEST_MESSAGE("gave up: " << err);
}

BOOST_AUTO_TEST_CASE(delete_then_rename_publishes_too) {
  WebHdfsUrls other(config(R"("overwrite": "delete_then_rename")"));
  const std::string a = url("/dtr/x.txt");
  other.urls.put_atomic(a, "one");
  other.urls.put_atomic(a, "two");
  BOOST_TEST(other.urls.read_all(a) == "two");
}

BOOST_AUTO_TEST_CASE(delegation_token_authenticates_and_never_shows) {
  const std::string token = "SECRET-dt-IwAJZWUDF0cmVhbAA";
  WebHdfsServer secure({"--token", token});
  const std::string base = "webhdfs://" + secure.authority();
  {
    WebHdfsUrls good(R"({"delegation_token": ")" + token + R"(", "retry_base_ms": 1})");
    good.urls.put_atomic(base + "/t/file", "with token");
    BOOST_TEST(good.urls.read_all(base + "/t/file") == "with token");
    auto stats = secure.stats();
    BOOST_TEST(!stats.at("token_leak").as_bool());
    BOOST_TEST(json::serialize(stats.at("users")) == R"(["tokenuser"])");
  }
  // A wrong token: the server's message quotes it; ours must not.
  const std::string wrong = "WRONG-token-value-42";
  WebHdfsUrls bad(R"({"delegation_token": ")" + wrong + R"(", "retry_base_ms": 1})");
  std::string err = error_of([&] { bad.urls.read_all(base + "/t/file"); });
  BOOST_TEST(contains(err, "SecurityException"), err);
  BOOST_TEST(contains(err, "delegation token"), err);
  BOOST_TEST(!contains(err, wrong), err);
  BOOST_TEST_MESSAGE("bad token: " << err);
  err = error_of([&] { bad.urls.put_atomic(base + "/t/other", "x"); });
  BOOST_TEST(!contains(err, wrong), err);
  for (const auto& line : bad.services.lines()) BOOST_TEST(!contains(line, wrong), line);
  // A token is never sent in clear to another machine.
  err = error_of([&] { bad.urls.stat("webhdfs://192.0.2.1:9870/x"); });
  BOOST_TEST(contains(err, "refusing to send credentials in clear text"), err);
}

BOOST_AUTO_TEST_CASE(servers_without_liststatus_batch_are_listed_with_liststatus) {
  WebHdfsServer old({"--no-batch"});
  WebHdfsUrls u(config());
  const std::string base = "webhdfs://" + old.authority() + "/old";
  for (int i = 0; i < 4; ++i) u.urls.put_atomic(base + "/f" + std::to_string(i), "x");
  BOOST_TEST(u.urls.list(base).size() == 4u);
  BOOST_TEST(u.urls.list(base).size() == 4u);
  BOOST_TEST(count(old.stats(), "namenode:LISTSTATUS_BATCH") == 1);
}

BOOST_AUTO_TEST_CASE(bad_config_is_refused_naming_the_key) {
  std::string err = error_of([] { WebHdfsUrls u(R"({"overwrite": "sometimes"})"); });
  BOOST_TEST(contains(err, "overwrite"), err);
  err = error_of([] { WebHdfsUrls u(R"({"endpoints": {"nn:8020": "ftp://nn"}})"); });
  BOOST_TEST(contains(err, "endpoints.nn:8020"), err);
}

BOOST_AUTO_TEST_CASE(endpoints_map_an_rpc_address_to_the_http_one) {
  WebHdfsUrls u(config(R"("endpoints": {"namenode.example:8020": "http://)" + server().authority() + R"("})"));
  u.urls.put_atomic("hdfs://namenode.example:8020/mapped/x", "mapped");
  BOOST_TEST(fs().urls.read_all(url("/mapped/x")) == "mapped");
  auto e = u.urls.list("hdfs://namenode.example:8020/mapped");
  BOOST_REQUIRE(e.size() == 1u);
  BOOST_TEST(e[0].url == "hdfs://namenode.example:8020/mapped/x");
}
