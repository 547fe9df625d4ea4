// The gcs plugin against tests/plugins/gcs/gcs_server.py (a Cloud Storage JSON API and OAuth token
// endpoint written from Google's docs), reached through the built gcs.so in a UrlSpace exactly
// as the host reaches it: round trips (one-shot and resumable), ranged reads, list paging,
// stat, delete, each credential source, faults, integrity, and messages without secrets.
#define BOOST_TEST_MODULE gcs
#include <boost/test/unit_test.hpp>

#include "expect.hpp"
#include "gcs_fixture.hpp"
#include "url_io.hpp"

using namespace ember::test;
namespace json = boost::json;

namespace {

constexpr std::size_t kMiB = 1024 * 1024;

// One anonymous server for the storage behaviour; auth tests start their own.
GcsServer& server() {
  static GcsServer s({{"test", "other"}, false, nullptr, "", ""});
  return s;
}

std::string anon_config(const std::string& extra = "") {
  return local_gcs_config(server().endpoint(), std::string(R"("anonymous": true)") + (extra.empty() ? "" : ", " + extra));
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + " ";
  return s;
}

// Clears every Google variable for the test, so the machine's own never leak in.
struct CleanEnv {
  ScopedEnv env{{}, google_env()};
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(storage, CleanEnv)

BOOST_AUTO_TEST_CASE(small_object_round_trips_in_one_multipart_upload) {
  GcsUrls gcs(anon_config());
  int before = server().count("^POST /upload/storage/v1/b/test/o -> 200");
  gcs.urls.put_atomic("gs://test/small/hello.txt", "hello, gcs");
  BOOST_TEST(server().count("^POST /upload/storage/v1/b/test/o -> 200") == before + 1);
  BOOST_TEST(gcs.urls.read_all("gs://test/small/hello.txt") == "hello, gcs");
  // gcs:// names the same object.
  BOOST_TEST(gcs.urls.read_all("gcs://test/small/hello.txt") == "hello, gcs");
  auto st = gcs.urls.stat("gs://test/small/hello.txt");
  BOOST_REQUIRE(st.has_value());
  BOOST_TEST(st->size == 10u);
  BOOST_TEST(!st->is_dir);
  BOOST_TEST(st->mtime_ns > 1600000000LL * 1000000000LL);
  // An empty object too.
  gcs.urls.put_atomic("gs://test/small/empty", "");
  BOOST_TEST(gcs.urls.read_all("gs://test/small/empty").empty());
  BOOST_TEST(gcs.urls.stat("gs://test/small/empty")->size == 0u);
}

BOOST_AUTO_TEST_CASE(names_round_trip_literally) {
  GcsUrls gcs(anon_config());
  for (std::string name : {"sp ace/x+y=z.bin", "pct%41/q?#frag", "unicodé/ß", "a//b"}) {
    std::string url = "gs://test/names/" + name;
    gcs.urls.put_atomic(url, name);
    BOOST_TEST(gcs.urls.read_all(url) == name, url);
  }
}

BOOST_AUTO_TEST_CASE(large_object_streams_in_resumable_chunks) {
  GcsUrls gcs(anon_config(R"("chunk_size": 8388608, "read_chunk_size": 4194304)"));
  const std::string big = pattern_bytes(40 * kMiB + 12345);
  int puts = server().count("^PUT /upload/storage/v1/b/test/o -> 308");
  write_in_pieces(gcs.urls, "gs://test/large/blob.bin", big, 1 * kMiB + 7);
  // Five full 8 MiB chunks answered 308, then the final one with the rest.
  BOOST_TEST(server().count("^PUT /upload/storage/v1/b/test/o -> 308") == puts + 5);
  BOOST_TEST(server().stat("sessions_open") == 0);
  auto st = gcs.urls.stat("gs://test/large/blob.bin");
  BOOST_REQUIRE(st.has_value());
  BOOST_TEST(st->size == big.size());
  std::string back = gcs.urls.read_all("gs://test/large/blob.bin");
  BOOST_TEST(back.size() == big.size());
  BOOST_TEST((back == big));
}

BOOST_AUTO_TEST_CASE(ranged_reads_return_exactly_the_range) {
  GcsUrls gcs(anon_config(R"("read_chunk_size": 65536, "max_concurrency": 3)"));
  const std::string data = pattern_bytes(300000, 7);
  gcs.urls.put_atomic("gs://test/range/r.bin", data);
  struct Case {
    std::uint64_t off, len;
  };
  for (Case c : {Case{0, 10}, Case{65530, 20}, Case{1, 299999}, Case{131072, 65536}, Case{299990, 100},
                 Case{300000, 5}, Case{12345, UINT64_MAX}}) {
    std::string want = c.off >= data.size() ? "" : data.substr(c.off, c.len == UINT64_MAX ? std::string::npos : c.len);
    std::string got = read_range(gcs.urls, "gs://test/range/r.bin", c.off, c.len);
    BOOST_TEST((got == want), "offset " << c.off << " length " << c.len << ": got " << got.size() << " bytes");
  }
}

BOOST_AUTO_TEST_CASE(list_follows_page_tokens_and_shows_prefixes) {
  GcsUrls gcs(anon_config(R"("max_results": 2)"));
  std::vector<std::string> want;
  for (int i = 0; i < 7; ++i) {
    std::string url = "gs://test/list/f" + std::to_string(i);
    gcs.urls.put_atomic(url, std::string(static_cast<std::size_t>(i), 'x'));
    want.push_back(url);
  }
  gcs.urls.put_atomic("gs://test/list/sub/a", "a");
  gcs.urls.put_atomic("gs://test/list/sub/b", "b");
  gcs.urls.put_atomic("gs://test/list/zz/c", "c");
  want.push_back("gs://test/list/sub/");
  want.push_back("gs://test/list/zz/");
  std::sort(want.begin(), want.end());
  int lists = server().count("^GET /storage/v1/b/test/o -> 200");
  auto got = urls_of(gcs.urls.list("gs://test/list"));
  BOOST_TEST(joined(got) == joined(want));
  // 9 entries, 2 per page: 5 pages.
  BOOST_TEST(server().count("^GET /storage/v1/b/test/o -> 200") == lists + 5);
  auto entries = gcs.urls.list("gs://test/list/");
  BOOST_REQUIRE(entries.size() == 9u);
  BOOST_TEST(entries[3].size == 3u);
  // gcs:// lists under its own scheme.
  BOOST_TEST(urls_of(gcs.urls.list("gcs://test/list/sub")).front() == "gcs://test/list/sub/a");
}

BOOST_AUTO_TEST_CASE(stat_and_remove) {
  GcsUrls gcs(anon_config());
  gcs.urls.put_atomic("gs://test/rm/dir/one", "1");
  auto dir = gcs.urls.stat("gs://test/rm/dir");
  BOOST_REQUIRE(dir.has_value());
  BOOST_TEST(dir->is_dir);
  BOOST_TEST(gcs.urls.stat("gs://test/")->is_dir);
  BOOST_TEST(!gcs.urls.stat("gs://test/rm/nothing").has_value());
  BOOST_TEST(gcs.urls.remove("gs://test/rm/dir/one"));
  BOOST_TEST(!gcs.urls.stat("gs://test/rm/dir/one").has_value());
  BOOST_TEST(!gcs.urls.stat("gs://test/rm/dir").has_value());
  BOOST_TEST(!gcs.urls.remove("gs://test/rm/dir/one"));
}

BOOST_AUTO_TEST_CASE(missing_bucket_and_object_are_named_with_the_reason) {
  GcsUrls gcs(anon_config());
  std::string e = error_of([&] { gcs.urls.read_all("gs://no-such-bucket/some/key"); });
  BOOST_TEST(contains(e, "gs://no-such-bucket/some/key"), e);
  BOOST_TEST(contains(e, "notFound"), e);
  BOOST_TEST(contains(e, "HTTP 404"), e);
  BOOST_TEST(contains(e, server().endpoint()), e);
  e = error_of([&] { gcs.urls.put_atomic("gs://no-such-bucket/k", "x"); });
  BOOST_TEST(contains(e, "gs://no-such-bucket/k"), e);
  BOOST_TEST(contains(e, "notFound"), e);
}

BOOST_AUTO_TEST_CASE(storage_emulator_host_is_the_endpoint_without_credentials) {
  ScopedEnv env({{"STORAGE_EMULATOR_HOST", "127.0.0.1:" + server().port()}});
  GcsUrls gcs(R"({"retry_base_ms": 5})");
  gcs.urls.put_atomic("gs://test/emu/x", "via STORAGE_EMULATOR_HOST");
  BOOST_TEST(gcs.urls.read_all("gs://test/emu/x") == "via STORAGE_EMULATOR_HOST");
}

BOOST_AUTO_TEST_CASE(bad_config_is_refused_with_the_key) {
  std::string e = error_of([] { GcsUrls gcs(local_gcs_config("http://127.0.0.1:1", R"("chunk_size": 300000)")); });
  BOOST_TEST(contains(e, "chunk_size"), e);
  BOOST_TEST(contains(e, "262144"), e);
}

BOOST_AUTO_TEST_SUITE_END()

// --- faults and integrity -------------------------------------------------------------------

BOOST_FIXTURE_TEST_SUITE(faults, CleanEnv)

BOOST_AUTO_TEST_CASE(transient_failures_are_retried) {
  GcsUrls gcs(anon_config(R"("chunk_size": 262144, "read_chunk_size": 131072)"));
  const std::string data = pattern_bytes(1000000, 3);
  server().faults(R"([
    {"method": "POST", "path": "uploadType=resumable", "action": "status", "status": 503, "times": 1},
    {"method": "PUT", "path": "upload_id", "with_body": true, "action": "partial", "times": 1},
    {"method": "PUT", "path": "upload_id", "with_body": true, "action": "status", "status": 500, "times": 1},
    {"method": "PUT", "path": "upload_id", "with_body": true, "action": "reset_after", "times": 1},
    {"method": "PUT", "path": "upload_id", "with_body": true, "action": "reset", "times": 1},
    {"method": "GET", "path": "alt=media", "action": "status", "status": 429, "times": 1},
    {"method": "GET", "path": "alt=media", "action": "reset", "times": 1, "skip": 2},
    {"method": "GET", "path": "retried\\.bin$", "action": "status", "status": 502, "times": 1}
  ])");
  write_in_pieces(gcs.urls, "gs://test/faults/retried.bin", data, 100000);
  BOOST_TEST((gcs.urls.read_all("gs://test/faults/retried.bin") == data));
  // Every rule fired, and the bytes are intact.
  std::string log = server().log();
  BOOST_TEST(server().count("^POST /upload/storage/v1/b/test/o -> status") == 1, log);
  BOOST_TEST(server().count("^PUT /upload/storage/v1/b/test/o -> partial") == 1, log);
  BOOST_TEST(server().count("^PUT /upload/storage/v1/b/test/o -> status") == 1, log);
  BOOST_TEST(server().count("^PUT /upload/storage/v1/b/test/o -> reset_after") == 1, log);
  BOOST_TEST(server().count("^PUT /upload/storage/v1/b/test/o -> reset$") == 1, log);
  BOOST_TEST(server().count("^GET /storage/v1/b/test/o/faults%2Fretried.bin -> status") == 2, log);
  BOOST_TEST(server().count("^GET /storage/v1/b/test/o/faults%2Fretried.bin -> reset") == 1, log);
  server().faults("[]");
}

BOOST_AUTO_TEST_CASE(failures_past_max_attempts_are_reported_once) {
  GcsUrls gcs(anon_config(R"("max_attempts": 3)"));
  gcs.urls.put_atomic("gs://test/faults/stuck", "x");
  server().faults(R"([{"method": "GET", "path": "/o/faults%2Fstuck", "action": "status", "status": 503, "times": -1}])");
  std::string e = error_of([&] { gcs.urls.read_all("gs://test/faults/stuck"); });
  server().faults("[]");
  BOOST_TEST(contains(e, "gs://test/faults/stuck"), e);
  BOOST_TEST(contains(e, "backendError"), e);
  BOOST_TEST(contains(e, "HTTP 503"), e);
  BOOST_TEST(contains(e, "gave up after 3 attempts"), e);
}

BOOST_AUTO_TEST_CASE(a_broken_upload_leaves_the_previous_object) {
  GcsUrls gcs(anon_config(R"("chunk_size": 262144, "max_attempts": 2)"));
  const std::string v1 = "version one";
  gcs.urls.put_atomic("gs://test/faults/keep.ckpt", v1);
  // Every chunk after the first fails: the upload cannot finish.
  server().faults(R"([{"method": "PUT", "path": "upload_id", "action": "status", "status": 503, "times": -1, "skip": 1}])");
  std::string e = error_of([&] { write_in_pieces(gcs.urls, "gs://test/faults/keep.ckpt", pattern_bytes(2 * kMiB), 65536); });
  server().faults("[]");
  BOOST_TEST(contains(e, "gs://test/faults/keep.ckpt"), e);
  BOOST_TEST(contains(e, "503"), e);
  BOOST_TEST(gcs.urls.read_all("gs://test/faults/keep.ckpt") == v1);
  // A writer closed without commit publishes nothing and cancels its session.
  {
    auto w = gcs.urls.open_write("gs://test/faults/keep.ckpt");
    std::string part = pattern_bytes(600000);
    w->write(part.data(), part.size());
  }
  BOOST_TEST(gcs.urls.read_all("gs://test/faults/keep.ckpt") == v1);
  BOOST_TEST(server().count("^DELETE /upload/storage/v1/b/test/o -> 499") >= 1);
  BOOST_TEST(server().stat("sessions_open") == 0);
}

BOOST_AUTO_TEST_CASE(a_corrupted_download_is_detected_by_crc32c) {
  GcsUrls gcs(anon_config(R"("read_chunk_size": 65536)"));
  const std::string data = pattern_bytes(200000, 11);
  gcs.urls.put_atomic("gs://test/faults/corrupt.bin", data);
  server().faults(R"([{"method": "GET", "path": "corrupt.bin\\?alt=media", "action": "corrupt", "times": 1, "skip": 1}])");
  std::string e = error_of([&] { gcs.urls.read_all("gs://test/faults/corrupt.bin"); });
  server().faults("[]");
  BOOST_TEST(contains(e, "gs://test/faults/corrupt.bin"), e);
  BOOST_TEST(contains(e, "crc32c mismatch"), e);
  BOOST_TEST((gcs.urls.read_all("gs://test/faults/corrupt.bin") == data));
}

BOOST_AUTO_TEST_SUITE_END()

// --- credentials ----------------------------------------------------------------------------

namespace {

const TestKey& test_key() {
  static TestKey k;
  return k;
}

GcsServer& auth_server() {
  static GcsServer s({{"secure"}, true, &test_key(), "client-1.apps:user-secret-NEVER-SHOWN:refresh-NEVER-SHOWN-1", "static-token-NEVER-SHOWN"});
  return s;
}

// Nothing secret in a message: no key, no JWT, no token, no client secret or refresh token.
void no_secret(const std::string& text) {
  BOOST_TEST(!contains(text, "PRIVATE KEY"), text);
  BOOST_TEST(!contains(text, "eyJ"), text);  // a JWT's base64url JSON header
  BOOST_TEST(!contains(text, "ya29."), text);
  BOOST_TEST(!contains(text, "NEVER-SHOWN"), text);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(credentials, CleanEnv)

BOOST_AUTO_TEST_CASE(service_account_jwt_is_verified_and_the_token_reused) {
  TempDir dir("ember-gcs-sa");
  write_file(dir / "sa.json", service_account_json(test_key(), auth_server().token_uri()));
  ScopedEnv env({{"GOOGLE_APPLICATION_CREDENTIALS", (dir / "sa.json").string()}});
  GcsUrls gcs(local_gcs_config(auth_server().endpoint()));
  auto verified = auth_server().stat("jwt_verified");
  for (int i = 0; i < 5; ++i) gcs.urls.put_atomic("gs://secure/sa/" + std::to_string(i), "x");
  BOOST_TEST(gcs.urls.read_all("gs://secure/sa/3") == "x");
  BOOST_TEST(gcs.urls.list("gs://secure/sa").size() == 5u);
  // One JWT exchanged for a token that served every request.
  BOOST_TEST(auth_server().stat("jwt_verified") == verified + 1);
  for (const auto& line : gcs.services.lines()) no_secret(line);
}

BOOST_AUTO_TEST_CASE(tokens_are_refreshed_before_expiry_and_after_a_401) {
  TempDir dir("ember-gcs-sa");
  write_file(dir / "sa.json", service_account_json(test_key(), auth_server().token_uri()));
  GcsUrls gcs(local_gcs_config(auth_server().endpoint(), R"("credentials_file": ")" + (dir / "sa.json").string() + "\""));
  gcs.urls.put_atomic("gs://secure/refresh/a", "a");
  auto verified = auth_server().stat("jwt_verified");
  // A token the server forgot (revoked): a 401, one fresh token, and the request goes through.
  auth_server().revoke();
  BOOST_TEST(gcs.urls.read_all("gs://secure/refresh/a") == "a");
  BOOST_TEST(auth_server().stat("jwt_verified") == verified + 1);
  // Tokens that live less than the refresh margin (225 s) are renewed before each use.
  auth_server().set_expires_in(120);
  auth_server().revoke();
  gcs.urls.read_all("gs://secure/refresh/a");  // 401, then a 120 s token
  verified = auth_server().stat("jwt_verified");
  gcs.urls.stat("gs://secure/refresh/a");
  gcs.urls.stat("gs://secure/refresh/a");
  BOOST_TEST(auth_server().stat("jwt_verified") == verified + 2);
  auth_server().set_expires_in(3600);
}

BOOST_AUTO_TEST_CASE(gcloud_user_credentials_use_the_refresh_token) {
  TempDir dir("ember-gcs-gcloud");
  json::object adc{{"type", "authorized_user"}, {"client_id", "client-1.apps"}, {"client_secret", "user-secret-NEVER-SHOWN"},
                   {"refresh_token", "refresh-NEVER-SHOWN-1"}, {"token_uri", auth_server().token_uri()}};
  write_file(dir / "application_default_credentials.json", json::serialize(adc));
  ScopedEnv env({{"CLOUDSDK_CONFIG", dir.path().string()}});
  GcsUrls gcs(local_gcs_config(auth_server().endpoint()));
  auto refreshed = auth_server().stat("refreshed");
  gcs.urls.put_atomic("gs://secure/user/x", "from gcloud");
  BOOST_TEST(gcs.urls.read_all("gs://secure/user/x") == "from gcloud");
  BOOST_TEST(auth_server().stat("refreshed") == refreshed + 1);

  // A refresh token the server does not know: invalid_grant, named, with no secret.
  adc["refresh_token"] = "refresh-NEVER-SHOWN-2";
  write_file(dir / "application_default_credentials.json", json::serialize(adc));
  GcsUrls bad(local_gcs_config(auth_server().endpoint(), R"("max_attempts": 1)"));
  std::string e = error_of([&] { bad.urls.read_all("gs://secure/user/x"); });
  BOOST_TEST(contains(e, "gs://secure/user/x"), e);
  BOOST_TEST(contains(e, "invalid_grant"), e);
  BOOST_TEST(contains(e, "client-1.apps"), e);
  no_secret(e);
}

BOOST_AUTO_TEST_CASE(metadata_server_tokens) {
  ScopedEnv env({{"GCE_METADATA_HOST", "127.0.0.1:" + auth_server().port()}});
  GcsUrls gcs(local_gcs_config(auth_server().endpoint()));
  auto n = auth_server().stat("metadata");
  gcs.urls.put_atomic("gs://secure/md/x", "from the metadata server");
  BOOST_TEST(gcs.urls.read_all("gs://secure/md/x") == "from the metadata server");
  BOOST_TEST(auth_server().stat("metadata") == n + 1);
}

BOOST_AUTO_TEST_CASE(explicit_token_and_anonymous) {
  GcsUrls ok(local_gcs_config(auth_server().endpoint(), R"("token": "static-token-NEVER-SHOWN")"));
  ok.urls.put_atomic("gs://secure/tok/x", "token");
  BOOST_TEST(ok.urls.read_all("gs://secure/tok/x") == "token");

  GcsUrls wrong(local_gcs_config(auth_server().endpoint(), R"("token": "wrong-token-NEVER-SHOWN")"));
  std::string e = error_of([&] { wrong.urls.put_atomic("gs://secure/tok/y", "x"); });
  BOOST_TEST(contains(e, "gs://secure/tok/y"), e);
  BOOST_TEST(contains(e, "authError"), e);
  BOOST_TEST(contains(e, "HTTP 401"), e);
  BOOST_TEST(contains(e, "the gcs config key token"), e);
  no_secret(e);

  GcsUrls anon(local_gcs_config(auth_server().endpoint(), R"("anonymous": true)"));
  e = error_of([&] { anon.urls.read_all("gs://secure/tok/x"); });
  BOOST_TEST(contains(e, "gs://secure/tok/x"), e);
  BOOST_TEST(contains(e, "HTTP 401"), e);
  BOOST_TEST(contains(e, "anonymous"), e);
}

BOOST_AUTO_TEST_CASE(a_wrong_service_account_key_is_named_without_secrets) {
  TestKey other;  // not the key the server trusts
  TempDir dir("ember-gcs-sa");
  write_file(dir / "sa.json", service_account_json(other, auth_server().token_uri()));
  ScopedEnv env({{"GOOGLE_APPLICATION_CREDENTIALS", (dir / "sa.json").string()}});
  GcsUrls gcs(local_gcs_config(auth_server().endpoint()));
  std::string e = error_of([&] { gcs.urls.put_atomic("gs://secure/wrong/model.ckpt", "x"); });
  BOOST_TEST(contains(e, "gs://secure/wrong/model.ckpt"), e);
  BOOST_TEST(contains(e, "invalid_grant"), e);
  BOOST_TEST(contains(e, "Invalid JWT Signature"), e);
  BOOST_TEST(contains(e, sa_email()), e);
  BOOST_TEST(contains(e, (dir / "sa.json").string()), e);
  BOOST_TEST(e.find('\n') == std::string::npos, e);
  no_secret(e);
  BOOST_TEST(!contains(e, other.private_pem.substr(40, 40)), e);
}

BOOST_AUTO_TEST_CASE(a_credentials_file_that_is_not_a_key_is_named) {
  TempDir dir("ember-gcs-sa");
  write_file(dir / "bad.json", R"({"type": "external_account"})");
  GcsUrls gcs(local_gcs_config(auth_server().endpoint(), R"("credentials_file": ")" + (dir / "bad.json").string() + "\""));
  std::string e = error_of([&] { gcs.urls.read_all("gs://secure/x"); });
  BOOST_TEST(contains(e, "gs://secure/x"), e);
  BOOST_TEST(contains(e, (dir / "bad.json").string()), e);
  BOOST_TEST(contains(e, "external_account"), e);
}

BOOST_AUTO_TEST_SUITE_END()
