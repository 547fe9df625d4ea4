// The s3 plugin against a real S3 server: s3rver on loopback, started by the fixture, reached
// through the built s3.so in a UrlSpace exactly as the host reaches it.
#define BOOST_TEST_MODULE s3_s3rver
#include <boost/test/unit_test.hpp>

#include "aws_config.hpp"
#include "expect.hpp"
#include "s3_fixture.hpp"
#include "url_io.hpp"

#include <cstdlib>

using namespace ember::test;

namespace {

// One server for the whole module: starting s3rver costs about a second.
S3rver& server() {
  static S3rver s({"test", "other"});
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(put_get_head_delete_round_trip) {
  S3Urls s3(local_config(server().endpoint()));
  const std::string url = "s3://test/basic/hello.txt";
  s3.urls.put_atomic(url, "hello, s3");
  BOOST_TEST(s3.urls.read_all(url) == "hello, s3");
  auto st = s3.urls.stat(url);
  BOOST_REQUIRE(st);
  BOOST_TEST(!st->is_dir);
  BOOST_TEST(st->size == 9u);
  BOOST_TEST(st->mtime_ns > 0);
  auto dir = s3.urls.stat("s3://test/basic");
  BOOST_REQUIRE(dir);
  BOOST_TEST(dir->is_dir);
  BOOST_TEST(s3.urls.remove(url));
  BOOST_TEST(!s3.urls.stat(url));
  BOOST_TEST(!s3.urls.remove(url));  // absent: false, not an error
  BOOST_TEST(!s3.urls.stat("s3://test/basic"));
}

BOOST_AUTO_TEST_CASE(empty_object_round_trips) {
  S3Urls s3(local_config(server().endpoint()));
  s3.urls.put_atomic("s3://test/empty/zero", "");
  BOOST_TEST(s3.urls.read_all("s3://test/empty/zero").empty());
  BOOST_TEST(s3.urls.stat("s3://test/empty/zero")->size == 0u);
}

BOOST_AUTO_TEST_CASE(ranged_reads_return_exactly_the_asked_bytes) {
  // Small read chunks so one read spans several ranged GETs.
  S3Urls s3(local_config(server().endpoint(), R"("read_chunk_size": 65536, "max_concurrency": 3)"));
  const std::string data = pattern_bytes(300000, 7);
  s3.urls.put_atomic("s3://test/range/blob", data);
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 0, 10) == data.substr(0, 10));
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 12345, 200000) == data.substr(12345, 200000));
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 299990, ember::storage::Backend::kToEnd) == data.substr(299990));
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 0, ember::storage::Backend::kToEnd) == data);
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 290000, 50000) == data.substr(290000));
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 300000, 10).empty());
  BOOST_TEST(read_range(s3.urls, "s3://test/range/blob", 400000, 10).empty());
}

BOOST_AUTO_TEST_CASE(multipart_upload_of_20_mib_in_5_mib_parts_reads_back_exactly) {
  S3Urls s3(local_config(server().endpoint(), R"("part_size": 5242880, "max_concurrency": 3, "read_chunk_size": 4194304)"));
  const std::string data = pattern_bytes(20 * 1024 * 1024 + 12345, 11);
  write_in_pieces(s3.urls, "s3://test/multi/big.bin", data, 1000003);
  auto st = s3.urls.stat("s3://test/multi/big.bin");
  BOOST_REQUIRE(st);
  BOOST_TEST(st->size == data.size());
  BOOST_TEST(s3.urls.read_all("s3://test/multi/big.bin") == data);
  // Exactly a multiple of the part size: no empty last part.
  const std::string even = pattern_bytes(10 * 1024 * 1024, 12);
  write_in_pieces(s3.urls, "s3://test/multi/even.bin", even, 4096);
  BOOST_TEST(s3.urls.read_all("s3://test/multi/even.bin") == even);
}

BOOST_AUTO_TEST_CASE(uncommitted_writes_leave_the_previous_object) {
  S3Urls s3(local_config(server().endpoint(), R"("part_size": 5242880)"));
  s3.urls.put_atomic("s3://test/atomic/ckpt", "old");
  {
    auto w = s3.urls.open_write("s3://test/atomic/ckpt");
    w->write("new", 3);
  }  // small: never sent
  BOOST_TEST(s3.urls.read_all("s3://test/atomic/ckpt") == "old");
  {
    auto w = s3.urls.open_write("s3://test/atomic/ckpt");
    std::string big = pattern_bytes(11 * 1024 * 1024, 3);
    w->write(big.data(), big.size());
  }  // multipart started, then aborted
  BOOST_TEST(s3.urls.read_all("s3://test/atomic/ckpt") == "old");
  BOOST_TEST(!s3.urls.stat("s3://test/atomic/never"));
  { auto w = s3.urls.open_write("s3://test/atomic/never"); }
  BOOST_TEST(!s3.urls.stat("s3://test/atomic/never"));
}

BOOST_AUTO_TEST_CASE(list_is_one_level_and_follows_continuation_tokens) {
  // max_keys 3: 12 files + 2 dirs need five pages.
  S3Urls s3(local_config(server().endpoint(), R"("max_keys": 3)"));
  std::vector<std::string> want;
  for (int i = 0; i < 12; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "f%02d", i);
    s3.urls.put_atomic(std::string("s3://test/listing/") + name, name);
    want.push_back(std::string("s3://test/listing/") + name);
  }
  s3.urls.put_atomic("s3://test/listing/sub/a", "a");
  s3.urls.put_atomic("s3://test/listing/sub/deeper/b", "b");
  s3.urls.put_atomic("s3://test/listing/zdir/c", "c");
  s3.urls.put_atomic("s3://test/listingX", "not under listing/");
  want.push_back("s3://test/listing/sub/");
  want.push_back("s3://test/listing/zdir/");
  std::sort(want.begin(), want.end());
  auto got = urls_of(s3.urls.list("s3://test/listing"));
  BOOST_TEST(got == want, boost::test_tools::per_element());
  BOOST_TEST(urls_of(s3.urls.list("s3://test/listing/")) == want, boost::test_tools::per_element());
  auto files = s3.urls.list("s3://test/listing/sub");
  BOOST_TEST(urls_of(files) == (std::vector<std::string>{"s3://test/listing/sub/a", "s3://test/listing/sub/deeper/"}),
             boost::test_tools::per_element());
  BOOST_TEST(files[0].size == 1u);
  BOOST_TEST(s3.urls.list("s3://test/nothing-here").empty());
}

// Keys are literal: every byte round-trips through write, read, stat and list.
struct KeyCase {
  const char* name;
  const char* key;
};
static const KeyCase kKeys[] = {
    {"space", "keys/with space.txt"},
    {"two_spaces", "keys/a  b"},
    {"unicode", "keys/ünïcødé/日本語.bin"},
    {"plus", "keys/a+b+c"},
    {"equals", "keys/x=1&y=2"},
    {"percent", "keys/100%25 literal %"},
    {"tilde_star", "keys/~user/*star*"},
    {"question_hash", "keys/what?#frag"},
    {"dotdot_name", "keys/..hidden.."},
    {"dots_inside", "keys/a..b/...c"},
    {"colon_semicolon", "keys/a:b;c,d@e$f!g'h(i)"},
};

BOOST_AUTO_TEST_CASE(keys_with_spaces_unicode_plus_equals_and_dots_round_trip_exactly) {
  S3Urls s3(local_config(server().endpoint()));
  for (const auto& k : kKeys) {
    BOOST_TEST_CONTEXT("key case " << k.name << ": " << k.key) {
      const std::string url = std::string("s3://test/") + k.key;
      const std::string body = std::string("content of ") + k.key;
      s3.urls.put_atomic(url, body);
      BOOST_TEST(s3.urls.read_all(url) == body);
      auto st = s3.urls.stat(url);
      BOOST_REQUIRE(st);
      BOOST_TEST(st->size == body.size());
      auto slash = url.rfind('/');
      auto listed = s3.urls.list(url.substr(0, slash));
      bool found = false;
      for (const auto& e : listed) found = found || (e.url == url && !e.is_dir);
      BOOST_TEST(found);
    }
  }
}

// "." and ".." segments: s3rver (like any server that normalises paths) would store
// "keys/p/../escape" as "keys/escape", outside keys/p/. The plugin refuses them by default, with
// a message naming the key and the config key that allows them.
BOOST_AUTO_TEST_CASE(dot_segments_never_escape_the_prefix) {
  S3Urls s3(local_config(server().endpoint()));
  for (const char* key : {"keys/p/../escape", "keys/./here", "../up", "keys/p/.."}) {
    const std::string url = std::string("s3://test/") + key;
    std::string e = error_of([&] { s3.urls.put_atomic(url, "x"); });
    BOOST_TEST(contains(e, url), e);
    BOOST_TEST(contains(e, "dot_segments"), e);
    std::string r = error_of([&] { s3.urls.read_all(url); });
    BOOST_TEST(contains(r, "dot_segments"), r);
  }
  BOOST_TEST(!s3.urls.stat("s3://test/escape"));
  BOOST_TEST(!s3.urls.stat("s3://test/keys/escape"));
  BOOST_TEST(!s3.urls.stat("s3://test/up"));
  // s3rver keeps each object in a directory tree named after its key: nothing landed at the top.
  for (const auto& e : std::filesystem::directory_iterator(server().data_dir() / "test"))
    BOOST_TEST((e.path().filename().string().rfind("escape.", 0) != 0 &&
                e.path().filename().string().rfind("up.", 0) != 0),
               e.path());
}

BOOST_AUTO_TEST_CASE(unknown_scheme_names_the_scheme_and_the_registered_ones) {
  S3Urls s3(local_config(server().endpoint()));
  std::string e = error_of([&] { s3.urls.read_all("gs://bucket/x"); });
  BOOST_TEST(contains(e, "'gs'"), e);
  BOOST_TEST(contains(e, "s3://"), e);
  BOOST_TEST(contains(e, "file://"), e);
}

BOOST_AUTO_TEST_CASE(no_such_bucket_names_bucket_key_endpoint_and_code) {
  S3Urls s3(local_config(server().endpoint()));
  std::string e = error_of([&] { s3.urls.put_atomic("s3://nobucket/some/key.txt", "x"); });
  BOOST_TEST(contains(e, "NoSuchBucket"), e);
  BOOST_TEST(contains(e, "s3://nobucket/some/key.txt"), e);
  BOOST_TEST(contains(e, server().endpoint().substr(7)), e);
  BOOST_TEST(e.find('\n') == std::string::npos, e);
  std::string r = error_of([&] { s3.urls.read_all("s3://nobucket/some/key.txt"); });
  BOOST_TEST(contains(r, "NoSuchBucket"), r);
  std::string k = error_of([&] { s3.urls.read_all("s3://test/no/such/key"); });
  BOOST_TEST(contains(k, "NoSuchKey"), k);
  BOOST_TEST(contains(k, "s3://test/no/such/key"), k);
}

BOOST_AUTO_TEST_CASE(invalid_access_key_is_named_by_its_last_four_characters_only) {
  S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() +
            R"(", "access_key_id": "AKIDWRONGKEY9876", "secret_access_key": "wrong-secret-XYZ"})");
  std::string e = error_of([&] { s3.urls.put_atomic("s3://test/denied.txt", "x"); });
  BOOST_TEST(contains(e, "InvalidAccessKeyId"), e);
  BOOST_TEST(contains(e, "9876"), e);
  BOOST_TEST(!contains(e, "AKIDWRONGKEY9876"), e);
  BOOST_TEST(!contains(e, "wrong-secret-XYZ"), e);
}

// Every failing operation's message, scanned for the secret, the token and the full key id.
BOOST_AUTO_TEST_CASE(no_error_message_contains_a_secret) {
  const std::string secret = "SeCrEt/Key+ABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
  const std::string token = "TOKEN-zyxwvutsrqponmlkjihgfedcba-SESSION";
  const std::string key_id = "AKIAEXAMPLEKEY5555";
  std::vector<std::string> errors;
  auto collect = [&](const std::string& config, const std::string& what) {
    S3Urls s3(config);
    auto add = [&](auto&& fn) { errors.push_back(what + ": " + error_of(fn)); };
    add([&] { s3.urls.put_atomic("s3://test/secret/x", "x"); });
    add([&] { s3.urls.read_all("s3://test/secret/x"); });
    add([&] { s3.urls.read_all("s3://nobucket/secret/x"); });
    add([&] { s3.urls.list("s3://nobucket/secret"); });
    add([&] { s3.urls.stat("s3://nobucket/secret/x"); });
    add([&] { s3.urls.remove("s3://nobucket/secret/x"); });
    add([&] {
      auto w = s3.urls.open_write("s3://nobucket/secret/big");
      std::string big(6 * 1024 * 1024, 'x');
      w->write(big.data(), big.size());
      w->commit();
    });
  };
  auto creds = R"("access_key_id": ")" + key_id + R"(", "secret_access_key": ")" + secret + R"(", "session_token": ")" + token + "\"";
  collect(R"({"endpoint_url": ")" + server().endpoint() + "\", " + creds + "}", "wrong key id");
  collect(R"({"endpoint_url": "http://127.0.0.1:1", "max_attempts": 2, "retry_base_ms": 1, )" + creds + "}", "refused");
  {
    // The right key id with the secret: operations on a missing bucket still fail.
    S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + R"(", "access_key_id": "S3RVER", "secret_access_key": ")" +
              secret + R"(", "session_token": ")" + token + "\"}");
    errors.push_back(error_of([&] { s3.urls.put_atomic("s3://nobucket/k", "x"); }));
    errors.push_back(error_of([&] { s3.urls.read_all("s3://test/absent/k"); }));
  }
  BOOST_TEST(errors.size() == 16u);
  for (const auto& e : errors) {
    BOOST_TEST_CONTEXT(e) {
      BOOST_TEST(e != "(no exception)");
      BOOST_TEST(!contains(e, secret));
      BOOST_TEST(!contains(e, token));
      BOOST_TEST(!contains(e, key_id));
      BOOST_TEST(!contains(e, "SeCrEt"));
    }
  }
}

BOOST_AUTO_TEST_CASE(missing_credentials_say_where_they_were_looked_for) {
  TempDir home("ember-s3-home");
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"})
    ::unsetenv(v);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (home / "credentials").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (home / "config").c_str(), 1);
  S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
  std::string e = error_of([&] { s3.urls.put_atomic("s3://test/nocreds/k", "x"); });
  BOOST_TEST(contains(e, "no AWS credentials found"), e);
  BOOST_TEST(contains(e, "AWS_ACCESS_KEY_ID"), e);
  BOOST_TEST(contains(e, (home / "credentials").string()), e);
  BOOST_TEST(contains(e, (home / "config").string()), e);
  BOOST_TEST(contains(e, "AWS_CONTAINER_CREDENTIALS_FULL_URI"), e);
  BOOST_TEST(contains(e, "s3://test/nocreds/k"), e);
  ::unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  ::unsetenv("AWS_CONFIG_FILE");
}

BOOST_AUTO_TEST_CASE(profile_credentials_and_region_come_from_the_shared_files) {
  TempDir home("ember-s3-home");
  write_file(home / "credentials", "[default]\naws_access_key_id = WRONG\naws_secret_access_key = x\n\n"
                                   "[ember]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
  write_file(home / "config", "[profile ember]\nregion = eu-west-3\n");
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"})
    ::unsetenv(v);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (home / "credentials").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (home / "config").c_str(), 1);
  ::setenv("AWS_PROFILE", "ember", 1);
  {
    S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
    s3.urls.put_atomic("s3://test/profile/k", "via profile");
    BOOST_TEST(s3.urls.read_all("s3://test/profile/k") == "via profile");
    std::string e = error_of([&] { s3.urls.read_all("s3://nobucket/k"); });
    BOOST_TEST(contains(e, "region eu-west-3"), e);
  }
  ::unsetenv("AWS_PROFILE");
  {
    // The default profile's key id is refused by s3rver: proves the profile was switched.
    S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
    std::string e = error_of([&] { s3.urls.put_atomic("s3://test/profile/k2", "x"); });
    BOOST_TEST(contains(e, "InvalidAccessKeyId"), e);
  }
  ::unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  ::unsetenv("AWS_CONFIG_FILE");
}

BOOST_AUTO_TEST_CASE(container_credentials_are_fetched_from_the_full_uri) {
  TempDir dir("ember-s3-ecs");
  // A loopback stand-in for the ECS agent: answers any GET with credentials for s3rver and
  // logs each request line and its Authorization header.
  write_file(dir / "ecs.py", R"PY(
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sys.stdout.write("REQ %s auth=%s\n" % (self.path, self.headers.get("Authorization")))
        sys.stdout.flush()
        body = json.dumps({"AccessKeyId": "S3RVER", "SecretAccessKey": "container-secret",
                           "Token": "container-token", "Expiration": "2099-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
)PY");
  Background ecs({"/usr/bin/python3", (dir / "ecs.py").string()}, {}, dir / "ecs.log");
  std::string port = ecs.wait_for(R"(listening on [0-9.]+:([0-9]+))");
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}) ::unsetenv(v);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir / "none").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (dir / "none").c_str(), 1);
  ::setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ("http://127.0.0.1:" + port + "/v2/credentials/abc").c_str(), 1);
  ::setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token", 1);
  {
    S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + "\"}");
    s3.urls.put_atomic("s3://test/ecs/k", "via container credentials");
    BOOST_TEST(s3.urls.read_all("s3://test/ecs/k") == "via container credentials");
  }
  std::string log = ecs.read_log();
  BOOST_TEST(contains(log, "REQ /v2/credentials/abc auth=ecs-auth-token"), log);
  for (const char* v : {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN"})
    ::unsetenv(v);
}

BOOST_AUTO_TEST_CASE(endpoint_comes_from_aws_endpoint_url_s3_before_aws_endpoint_url) {
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  ::setenv("AWS_ENDPOINT_URL_S3", server().endpoint().c_str(), 1);
  {
    S3Urls s3(R"({"access_key_id": "S3RVER", "secret_access_key": "S3RVER", "max_attempts": 1})");
    s3.urls.put_atomic("s3://test/envendpoint/k", "env endpoint");
    BOOST_TEST(s3.urls.read_all("s3://test/envendpoint/k") == "env endpoint");
  }
  ::unsetenv("AWS_ENDPOINT_URL_S3");
  {
    S3Urls s3(R"({"access_key_id": "S3RVER", "secret_access_key": "S3RVER", "max_attempts": 1})");
    std::string e = error_of([&] { s3.urls.read_all("s3://test/envendpoint/k"); });
    BOOST_TEST(contains(e, "127.0.0.1:1"), e);
  }
  ::unsetenv("AWS_ENDPOINT_URL");
}

BOOST_AUTO_TEST_CASE(config_errors_name_the_key) {
  std::string e = error_of([&] { S3Urls s3(R"({"addressing_style": "sideways"})"); });
  BOOST_TEST(contains(e, "addressing_style"), e);
  std::string p = error_of([&] { S3Urls s3(R"({"part_size": 1000})"); });
  BOOST_TEST(contains(p, "part_size"), p);
  std::string u = error_of([&] { S3Urls s3(R"({"endpoint_url": "ftp://x"})"); });
  BOOST_TEST(contains(u, "endpoint_url"), u);
}

// TLS is verified: s3rver over HTTPS with a self-signed certificate for 127.0.0.1 is refused by
// default, accepted with ca_bundle naming that certificate, and with verify_tls false.
BOOST_AUTO_TEST_CASE(tls_is_verified_and_ca_bundle_is_honoured) {
  TempDir dir("ember-s3-tls");
  auto gen = run_process({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                          "-keyout", (dir / "key.pem").string(), "-out", (dir / "cert.pem").string(),
                          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
  BOOST_REQUIRE_MESSAGE(gen.exit_code == 0, gen.describe());
  std::string js = source_root() + "/.deps/npm/node_modules/s3rver/bin/s3rver.js";
  BOOST_REQUIRE_MESSAGE(std::filesystem::exists(js), "s3rver is not installed: run scripts/bootstrap");
  std::filesystem::create_directories(dir / "data");
  Background tls({"/usr/bin/node", js, "-d", (dir / "data").string(), "-a", "127.0.0.1", "-p", "0", "--key",
                  (dir / "key.pem").string(), "--cert", (dir / "cert.pem").string(), "--configure-bucket", "secure"},
                 {{"NODE_OPTIONS", "--openssl-legacy-provider"}}, dir / "s3rver.log");
  std::string port = tls.wait_for(R"(listening on [0-9.]+:([0-9]+))");
  const std::string endpoint = "https://127.0.0.1:" + port;
  {
    S3Urls s3(local_config(endpoint, R"("max_attempts": 1)"));
    std::string e = error_of([&] { s3.urls.put_atomic("s3://secure/k", "x"); });
    BOOST_TEST(contains(e, "TLS handshake failed"), e);
    BOOST_TEST(contains(e, "127.0.0.1:" + port), e);
    BOOST_TEST(contains(e, "certificate"), e);
  }
  {
    S3Urls s3(local_config(endpoint, R"("ca_bundle": ")" + (dir / "cert.pem").string() + "\""));
    s3.urls.put_atomic("s3://secure/k", "over verified TLS");
    BOOST_TEST(s3.urls.read_all("s3://secure/k") == "over verified TLS");
  }
  {
    ::setenv("AWS_CA_BUNDLE", (dir / "cert.pem").c_str(), 1);
    S3Urls s3(local_config(endpoint));
    BOOST_TEST(s3.urls.read_all("s3://secure/k") == "over verified TLS");
    ::unsetenv("AWS_CA_BUNDLE");
  }
  {
    // Works, and says loudly through the host's log that nothing is verified.
    S3Urls s3(local_config(endpoint, R"("verify_tls": false)"));
    BOOST_TEST(s3.urls.read_all("s3://secure/k") == "over verified TLS");
    auto lines = s3.services.lines();
    BOOST_REQUIRE_EQUAL(lines.size(), 1u);
    BOOST_TEST(contains(lines[0], "[s3] 2 "), lines[0]);  // EMBER_LOG_WARN
    BOOST_TEST(contains(lines[0], "verification is OFF"), lines[0]);
    BOOST_TEST(contains(lines[0], "127.0.0.1:" + port), lines[0]);
    BOOST_TEST(contains(lines[0], "verify_tls"), lines[0]);
  }
  {
    S3Urls s3(local_config(endpoint, R"("ca_bundle": ")" + (dir / "cert.pem").string() + "\""));
    BOOST_TEST(s3.services.lines().empty());
  }
}

// Every request is signed (and may carry a session token): plain http is for loopback only
// unless allow_insecure_http says otherwise. Refused when the plugin is configured, before any
// request.
BOOST_AUTO_TEST_CASE(plain_http_to_a_non_loopback_endpoint_needs_allow_insecure_http) {
  std::string e = error_of([&] { S3Urls s3(local_config("http://s3.example.com:9000/base?x=SECRET")); });
  BOOST_TEST(contains(e, "endpoint_url"), e);
  BOOST_TEST(contains(e, "http://s3.example.com:9000/base"), e);
  BOOST_TEST(contains(e, "allow_insecure_http"), e);
  BOOST_TEST(!contains(e, "SECRET"), e);
  S3Urls allowed(local_config("http://s3.example.com:9000", R"("allow_insecure_http": true)"));
  S3Urls loopback(local_config("http://localhost:9000"));
  S3Urls tls(local_config("https://s3.example.com"));
}

// AWS's SDKs fetch container credentials over plain http only from loopback or the ECS / EKS
// agents' addresses; the token must not go anywhere else.
BOOST_AUTO_TEST_CASE(container_credentials_over_http_go_only_to_loopback_ecs_or_eks) {
  namespace s3 = ember::s3;
  namespace http = ember::http;
  for (const char* ok : {"http://127.0.0.1:8080/creds", "http://localhost/creds", "http://169.254.170.2/v2/credentials",
                         "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials",
                         "http://[::1]:80/c", "https://creds.example.com/x"})
    BOOST_TEST(s3::container_uri_refusal(http::Url::parse(ok)).empty(), ok);
  for (const char* bad : {"http://192.0.2.1/creds", "http://169.254.169.254/latest", "http://[fd00:ec2::254]/x",
                          "http://10.0.0.5:80/creds"})
    BOOST_TEST(!s3::container_uri_refusal(http::Url::parse(bad)).empty(), bad);

  TempDir dir("ember-s3-ecs-refused");
  for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}) ::unsetenv(v);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir / "none").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (dir / "none").c_str(), 1);
  // TEST-NET-1: nothing answers there, so a client that tried would time out instead.
  ::setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds?sig=SECRET", 1);
  ::setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token", 1);
  {
    S3Urls s3(R"({"endpoint_url": ")" + server().endpoint() + R"(", "max_attempts": 1})");
    std::string e = error_of([&] { s3.urls.put_atomic("s3://test/ecs-refused/k", "x"); });
    BOOST_TEST(contains(e, "AWS_CONTAINER_CREDENTIALS_FULL_URI http://192.0.2.1/creds refused"), e);
    BOOST_TEST(contains(e, "169.254.170.2"), e);
    BOOST_TEST(!contains(e, "SECRET"), e);
    BOOST_TEST(!contains(e, "ecs-auth-token"), e);
  }
  for (const char* v : {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN"})
    ::unsetenv(v);
}
