// Faults between the plugin and s3rver, injected by tests/plugins/s3/fault_proxy.py on a schedule:
// 503 SlowDown, 500, RequestTimeout, connection resets and slow answers are retried until they
// pass; an upload that keeps failing is aborted (the proxy answers AbortMultipartUpload,
// ListParts and ListMultipartUploads as S3 does, so "aborted" means no upload is left) and
// reported in one line; a failed part is never published by a later commit; a server ignoring
// Range fails a read at once; a stalled request meets its deadline; parts really are in flight
// together; S3's auth and region errors reach the user with their code, the bucket, key and
// endpoint — and never a secret.
#define BOOST_TEST_MODULE s3_faults
#include <boost/test/unit_test.hpp>
#include <boost/test/data/test_case.hpp>

#include "expect.hpp"
#include "s3_fixture.hpp"

#include <regex>

using namespace ember::test;

namespace {

S3rver& server() {
  static S3rver s({"faulty"});
  return s;
}

const char* kSecret = "fault-secret-NEVER-SHOWN";

// The proxy in front of this suite's s3rver, and a plugin config for it.
class Proxy : public FaultProxy {
 public:
  explicit Proxy(const std::string& rules, bool checksums = false) : FaultProxy(server().port(), rules, checksums) {}
  // Config for the plugin through this proxy: fast backoff, the secret to look for.
  std::string config(const std::string& extra = "") const {
    return R"({"endpoint_url": ")" + endpoint() + R"(", "access_key_id": "S3RVER", "secret_access_key": ")" + kSecret +
           R"(", "retry_base_ms": 5, "retry_max_ms": 50, "part_size": 5242880)" + (extra.empty() ? "" : ", " + extra) + "}";
  }
};

void upload(ember::storage::UrlSpace& urls, const std::string& url, const std::string& data) {
  auto w = urls.open_write(url);
  for (std::size_t i = 0; i < data.size(); i += 1 << 20) w->write(data.data() + i, std::min<std::size_t>(1 << 20, data.size() - i));
  w->commit();
}

struct Fault {
  const char* name;
  const char* rules;
};
std::ostream& operator<<(std::ostream& os, const Fault& f) { return os << f.name; }

// Each schedule hits a PutObject, two UploadParts, the Complete and ranged GETs, a bounded
// number of times (fewer than max_attempts per request).
const Fault kTransient[] = {
    {"slowdown_503", R"([{"method": "PUT", "action": "status", "status": 503, "code": "SlowDown", "times": 3},
                        {"method": "GET", "action": "status", "status": 503, "code": "SlowDown", "times": 2}])"},
    {"internal_error_500_and_502_504", R"([{"method": "PUT", "query": "partNumber=2", "action": "status", "status": 500, "code": "InternalError", "times": 2},
                        {"method": "POST", "query": "uploadId", "action": "status", "status": 502, "code": "BadGateway", "times": 1},
                        {"method": "GET", "action": "status", "status": 504, "code": "GatewayTimeout", "times": 2}])"},
    {"request_timeout_400", R"([{"method": "PUT", "action": "status", "status": 400, "code": "RequestTimeout", "message": "Your socket connection to the server was not read from or written to within the timeout period.", "times": 2}])"},
    {"connection_resets", R"([{"method": "PUT", "action": "reset", "times": 3},
                        {"method": "GET", "action": "reset", "times": 2},
                        {"method": "HEAD", "action": "reset", "times": 1}])"},
    {"slow_answers", R"([{"method": "PUT", "query": "partNumber=1", "action": "slow", "delay": 1.5, "times": 1},
                        {"method": "GET", "action": "slow", "delay": 1.5, "times": 1}])"},
};

}  // namespace

BOOST_DATA_TEST_CASE(transient_faults_are_retried_until_the_transfer_succeeds,
                     boost::unit_test::data::make(kTransient), fault) {
  Proxy proxy(fault.rules);
  // timeout_ms 700: a 1.5 s stall is a timeout, retried on a fresh connection.
  S3Urls s3(proxy.config(R"("timeout_ms": 700, "max_attempts": 5, "read_chunk_size": 4194304)"));
  const std::string small = pattern_bytes(1000, 1), big = pattern_bytes(12 * 1024 * 1024 + 5, 2);
  s3.urls.put_atomic("s3://faulty/" + std::string(fault.name) + "/small", small);
  upload(s3.urls, "s3://faulty/" + std::string(fault.name) + "/big", big);
  BOOST_TEST((s3.urls.read_all("s3://faulty/" + std::string(fault.name) + "/small") == small));
  BOOST_TEST((s3.urls.read_all("s3://faulty/" + std::string(fault.name) + "/big") == big));
  int injected = proxy.count("status") + proxy.count("reset") + proxy.count("slow");
  BOOST_TEST(injected >= 2, proxy.log());
}

BOOST_AUTO_TEST_CASE(a_permanently_failing_upload_is_aborted_with_one_clear_line) {
  Proxy proxy(R"([{"method": "PUT", "query": "partNumber", "action": "status", "status": 503, "code": "SlowDown",
                   "message": "Please reduce your request rate.", "times": -1}])");
  S3Urls s3(proxy.config(R"("max_attempts": 3)"));
  s3.urls.put_atomic("s3://faulty/perm/ckpt", "previous");
  std::string e = error_of([&] { upload(s3.urls, "s3://faulty/perm/ckpt", pattern_bytes(12 * 1024 * 1024, 3)); });
  BOOST_TEST(contains(e, "UploadPart"), e);
  BOOST_TEST(contains(e, "s3://faulty/perm/ckpt"), e);
  BOOST_TEST(contains(e, "SlowDown"), e);
  BOOST_TEST(contains(e, "Please reduce your request rate."), e);
  BOOST_TEST(contains(e, proxy.endpoint().substr(7)), e);
  BOOST_TEST(contains(e, "gave up after 3 attempts"), e);
  BOOST_TEST(e.find('\n') == std::string::npos, e);
  BOOST_TEST(!contains(e, kSecret), e);
  // Aborted: no upload is left, its parts are gone, and the previous object is untouched.
  BOOST_TEST(proxy.count("abort", "^DELETE .*uploadId=") == 1, proxy.log());
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  for (const auto& id : proxy.upload_ids()) BOOST_TEST(proxy.list_parts_status("faulty", "perm/ckpt", id) == 404, id);
  BOOST_TEST(s3.urls.read_all("s3://faulty/perm/ckpt") == "previous");
  // Bounded: 3 attempts per part, never more.
  BOOST_TEST(proxy.count("status", "partNumber=1&") + proxy.count("status", "partNumber=1$") <= 3, proxy.log());
}

BOOST_AUTO_TEST_CASE(a_failed_complete_aborts_the_upload) {
  Proxy proxy(R"([{"method": "POST", "query": "uploadId", "action": "status", "status": 400, "code": "InvalidPart",
                   "message": "One or more of the specified parts could not be found.", "times": -1}])");
  S3Urls s3(proxy.config());
  std::string e = error_of([&] { upload(s3.urls, "s3://faulty/complete/x", pattern_bytes(6 * 1024 * 1024, 4)); });
  BOOST_TEST(contains(e, "CompleteMultipartUpload"), e);
  BOOST_TEST(contains(e, "InvalidPart"), e);
  BOOST_TEST(proxy.count("abort", "^DELETE .*uploadId=") == 1, proxy.log());
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  BOOST_TEST(!s3.urls.stat("s3://faulty/complete/x"));
}

struct AuthFault {
  const char* name;
  int status;
  const char* code;
  const char* message;
};
std::ostream& operator<<(std::ostream& os, const AuthFault& f) { return os << f.name; }

const AuthFault kAuth[] = {
    {"access_denied", 403, "AccessDenied", "Access Denied"},
    {"invalid_access_key", 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."},
    {"signature_mismatch", 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."},
    {"wrong_region", 400, "AuthorizationHeaderMalformed",
     "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'"},
    {"expired_token", 400, "ExpiredToken", "The provided token has expired."},
};

BOOST_DATA_TEST_CASE(auth_and_region_errors_are_one_line_with_code_bucket_key_endpoint_and_no_secret,
                     boost::unit_test::data::make(kAuth), fault) {
  Proxy proxy(std::string(R"([{"action": "status", "status": )") + std::to_string(fault.status) + R"(, "code": ")" +
              fault.code + R"(", "message": ")" + fault.message + R"(", "bucket_region": "eu-central-1", "times": -1}])");
  S3Urls s3(proxy.config(R"("session_token": "TOKEN-never-shown-123")"));
  for (auto op : {0, 1, 2, 3}) {
    std::string e = error_of([&] {
      switch (op) {
        case 0: s3.urls.put_atomic("s3://faulty/auth/key.bin", "x"); break;
        case 1: s3.urls.read_all("s3://faulty/auth/key.bin"); break;
        case 2: s3.urls.list("s3://faulty/auth"); break;
        default: s3.urls.stat("s3://faulty/auth/key.bin"); break;
      }
    });
    BOOST_TEST_CONTEXT(e) {
      if (op != 3) {  // HEAD answers have no body: stat names the status's code only
        BOOST_TEST(contains(e, fault.code));
        BOOST_TEST(contains(e, fault.message));
      }
      BOOST_TEST(contains(e, op == 2 ? "s3://faulty/auth/" : "s3://faulty/auth/key.bin"));
      BOOST_TEST(contains(e, proxy.endpoint().substr(7)));
      BOOST_TEST(contains(e, "region us-east-1"));
      BOOST_TEST(contains(e, "eu-central-1"));
      BOOST_TEST(e.find('\n') == std::string::npos);
      BOOST_TEST(!contains(e, kSecret));
      BOOST_TEST(!contains(e, "TOKEN-never-shown-123"));
    }
  }
  // Not retried: one request per operation (the GET of a read and of a stat's fallback included).
  BOOST_TEST(proxy.count("status") <= 6, proxy.log());
}

// s3rver ignores checksums; the proxy checks them as S3 does.
BOOST_AUTO_TEST_CASE(every_part_and_put_carries_a_crc32c_that_matches_and_complete_lists_them) {
  Proxy proxy("[]", /*checksums=*/true);
  S3Urls s3(proxy.config());
  const std::string small = pattern_bytes(1000, 5), big = pattern_bytes(11 * 1024 * 1024 + 3, 6);
  s3.urls.put_atomic("s3://faulty/crc/small", small);
  upload(s3.urls, "s3://faulty/crc/big", big);  // 3 parts of 5 MiB, 5 MiB, 1 MiB + 3
  BOOST_TEST(proxy.verified("x-amz-checksum-crc32c") == 4, proxy.log());
  BOOST_TEST(proxy.verified("ChecksumCRC32C") == 1, proxy.log());  // the Complete
  BOOST_TEST(proxy.verified("Content-MD5") == 0, proxy.log());
  BOOST_TEST(proxy.refused() == 0, proxy.log());
  BOOST_TEST((s3.urls.read_all("s3://faulty/crc/big") == big));
  BOOST_TEST((s3.urls.read_all("s3://faulty/crc/small") == small));
}

BOOST_AUTO_TEST_CASE(checksum_md5_sends_content_md5_instead) {
  Proxy proxy("[]", /*checksums=*/true);
  S3Urls s3(proxy.config(R"("checksum": "md5")"));
  const std::string big = pattern_bytes(6 * 1024 * 1024, 7);
  s3.urls.put_atomic("s3://faulty/md5/small", "tiny");
  upload(s3.urls, "s3://faulty/md5/big", big);
  BOOST_TEST(proxy.verified("Content-MD5") == 3, proxy.log());
  BOOST_TEST(proxy.verified("x-amz-checksum-crc32c") == 0, proxy.log());
  BOOST_TEST(proxy.verified("ChecksumCRC32C") == 0, proxy.log());
  BOOST_TEST(proxy.refused() == 0, proxy.log());
  BOOST_TEST((s3.urls.read_all("s3://faulty/md5/big") == big));
}

BOOST_AUTO_TEST_CASE(a_part_corrupted_in_transit_is_refused_and_the_upload_aborted) {
  Proxy proxy(R"([{"method": "PUT", "query": "partNumber=2", "action": "corrupt", "times": 1}])", /*checksums=*/true);
  S3Urls s3(proxy.config());
  s3.urls.put_atomic("s3://faulty/corrupt/ckpt", "previous");
  std::string e = error_of([&] { upload(s3.urls, "s3://faulty/corrupt/ckpt", pattern_bytes(11 * 1024 * 1024, 8)); });
  BOOST_TEST(contains(e, "UploadPart"), e);
  BOOST_TEST(contains(e, "s3://faulty/corrupt/ckpt"), e);
  BOOST_TEST(contains(e, "BadDigest"), e);
  BOOST_TEST(proxy.refused() == 1, proxy.log());
  BOOST_TEST(proxy.count("abort", "^DELETE .*uploadId=") == 1, proxy.log());
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  BOOST_TEST(s3.urls.read_all("s3://faulty/corrupt/ckpt") == "previous");
}

BOOST_AUTO_TEST_CASE(a_put_corrupted_in_transit_is_refused) {
  Proxy proxy(R"([{"method": "PUT", "action": "corrupt", "times": 1}])", /*checksums=*/true);
  S3Urls s3(proxy.config());
  std::string e = error_of([&] { s3.urls.put_atomic("s3://faulty/corrupt/small", pattern_bytes(4096, 9)); });
  BOOST_TEST(contains(e, "PutObject"), e);
  BOOST_TEST(contains(e, "BadDigest"), e);
  BOOST_TEST(!s3.urls.stat("s3://faulty/corrupt/small"));
}

BOOST_AUTO_TEST_CASE(the_proxy_lists_parts_and_uploads_as_s3_does) {
  // The fixture's own check: an upload in progress is listed with its parts; once completed
  // it is not.
  Proxy proxy("[]");
  S3Urls s3(proxy.config(R"("max_concurrency": 1)"));
  auto w = s3.urls.open_write("s3://faulty/listing/obj");
  const std::string data = pattern_bytes(11 * 1024 * 1024, 10);
  w->write(data.data(), data.size());  // parts 1 and 2 shipped; 1 MiB left for commit
  auto open = proxy.open_uploads("faulty");
  BOOST_REQUIRE_EQUAL(open.size(), 1u);
  BOOST_TEST(open[0].rfind("listing/obj ", 0) == 0, open[0]);
  const std::string id = open[0].substr(open[0].find(' ') + 1);
  ember::http::Client c("http", "127.0.0.1", proxy.endpoint().substr(proxy.endpoint().rfind(':') + 1));
  auto parts = c.send({"GET", "/faulty/listing/obj?uploadId=" + id, {}, ""});
  BOOST_TEST(parts.status == 200);
  BOOST_TEST(contains(parts.body, "<PartNumber>1</PartNumber>"), parts.body);
  w->commit();
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  BOOST_TEST((s3.urls.read_all("s3://faulty/listing/obj") == data));
}

BOOST_AUTO_TEST_CASE(closing_without_commit_aborts_and_leaves_no_upload) {
  Proxy proxy("[]");
  S3Urls s3(proxy.config());
  s3.urls.put_atomic("s3://faulty/close/ckpt", "previous");
  {
    auto w = s3.urls.open_write("s3://faulty/close/ckpt");
    const std::string data = pattern_bytes(6 * 1024 * 1024, 11);
    w->write(data.data(), data.size());
    BOOST_TEST(proxy.open_uploads("faulty").size() == 1u);
  }
  BOOST_TEST(proxy.count("abort") == 1, proxy.log());
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  BOOST_TEST(s3.urls.read_all("s3://faulty/close/ckpt") == "previous");
}

// Three UploadParts must be inside the proxy at the same moment for its barrier to pass: only a
// client that really has several parts in flight can. With max_concurrency 1 they never overlap.
BOOST_AUTO_TEST_CASE(parts_are_uploaded_concurrently_with_max_concurrency_above_one) {
  const std::string data = pattern_bytes(15 * 1024 * 1024 + 1, 12);  // parts 1-3 while writing, 4 at commit
  {
    Proxy proxy(R"([{"method": "PUT", "query": "partNumber", "action": "barrier", "parties": 3, "timeout": 60, "times": 3}])");
    S3Urls s3(proxy.config(R"("max_concurrency": 4)"));
    upload(s3.urls, "s3://faulty/concurrent/obj", data);
    BOOST_TEST(proxy.barriers("passed") == 3, proxy.log());
    BOOST_TEST(proxy.barriers("broken") == 0, proxy.log());
    BOOST_TEST(proxy.max_overlap("^PUT .*partNumber=") >= 3, proxy.log());
    BOOST_TEST((s3.urls.read_all("s3://faulty/concurrent/obj") == data));
  }
  {
    Proxy proxy("[]");
    S3Urls s3(proxy.config(R"("max_concurrency": 1)"));
    upload(s3.urls, "s3://faulty/concurrent/seq", data);
    BOOST_TEST(proxy.count("forward", "^PUT .*partNumber=") == 4, proxy.log());
    BOOST_TEST(proxy.max_overlap("^PUT .*partNumber=") == 1, proxy.log());
  }
}

// A write that reported a failed part (the upload is aborted then) must not be followed by a
// commit that publishes what is left in the buffer over the previous object.
BOOST_AUTO_TEST_CASE(a_failed_part_is_never_published_by_a_later_commit) {
  Proxy proxy(R"([{"method": "PUT", "query": "partNumber=1", "action": "status", "status": 503, "code": "SlowDown", "times": -1}])");
  S3Urls s3(proxy.config(R"("max_concurrency": 1, "max_attempts": 2)"));
  s3.urls.put_atomic("s3://faulty/gap/ckpt", "previous");
  const int puts_before = proxy.count("forward", "^PUT /faulty/gap/ckpt$");
  auto w = s3.urls.open_write("s3://faulty/gap/ckpt");
  const std::string data = pattern_bytes(12 * 1024 * 1024, 13);
  std::string write_error;
  for (std::size_t i = 0; i < data.size() && write_error.empty(); i += 1 << 20) {
    try {
      w->write(data.data() + i, 1 << 20);
    } catch (const std::exception& x) {
      write_error = x.what();
    }
  }
  BOOST_TEST(contains(write_error, "SlowDown"), write_error);
  std::string e = error_of([&] { w->commit(); });
  BOOST_TEST(contains(e, "an earlier part failed"), e);
  BOOST_TEST(contains(e, "s3://faulty/gap/ckpt"), e);
  BOOST_TEST(proxy.count("forward", "^PUT /faulty/gap/ckpt$") == puts_before, proxy.log());
  BOOST_TEST(proxy.open_uploads("faulty").empty(), proxy.log());
  BOOST_TEST(s3.urls.read_all("s3://faulty/gap/ckpt") == "previous");
}

// A server that ignores Range answers every chunk with the whole object: refused at once (not
// retried, not sliced), before a large body is read.
BOOST_AUTO_TEST_CASE(a_server_ignoring_range_fails_the_read_at_once) {
  Proxy proxy(R"([{"method": "GET", "action": "ignore_range", "times": -1}])");
  S3Urls s3(proxy.config(R"("read_chunk_size": 65536, "max_concurrency": 2)"));
  s3.urls.put_atomic("s3://faulty/range/big", pattern_bytes(1024 * 1024, 14));
  s3.urls.put_atomic("s3://faulty/range/small", pattern_bytes(40000, 15));
  std::string big = error_of([&] { s3.urls.read_all("s3://faulty/range/big"); });
  BOOST_TEST(contains(big, "ignored the Range header"), big);
  BOOST_TEST(contains(big, "s3://faulty/range/big"), big);
  BOOST_TEST(!contains(big, "gave up after"), big);
  // An object under one chunk fits the body limit: the 200 itself is the error.
  std::string small = error_of([&] { s3.urls.read_all("s3://faulty/range/small"); });
  BOOST_TEST(contains(small, "not 206 Partial Content"), small);
  // One GET per chunk in flight, none retried.
  BOOST_TEST(proxy.count("ignore_range") <= 3, proxy.log());
}

// The proxy holds the request 3 s before forwarding: far inside the step timeout, past the
// request's deadline.
BOOST_AUTO_TEST_CASE(request_deadline_ms_bounds_a_stalled_request) {
  Proxy proxy(R"([{"method": "PUT", "action": "slow", "delay": 3, "times": 1}])");
  S3Urls s3(proxy.config(R"("timeout_ms": 20000, "request_deadline_ms": 500, "max_attempts": 1)"));
  std::string e = error_of([&] { s3.urls.put_atomic("s3://faulty/deadline/k", "x"); });
  BOOST_TEST(contains(e, "deadline of 500 ms"), e);
  BOOST_TEST(contains(e, "PutObject"), e);
  BOOST_TEST(contains(e, "s3://faulty/deadline/k"), e);
}

// A listing whose server answers every page "truncated, continue with tok" (found by the fuzz
// target for S3 answers): the plugin stops with an error instead of listing forever.
BOOST_AUTO_TEST_CASE(a_repeated_continuation_token_ends_the_listing_with_an_error) {
  Proxy proxy(R"([{"method": "GET", "query": "list-type", "action": "answer", "times": -1,
                   "body": "<ListBucketResult><Contents><Key>loop/a</Key><Size>1</Size></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"}])");
  S3Urls s3(proxy.config());
  std::string e = error_of([&] { s3.urls.list("s3://faulty/loop/"); });
  BOOST_TEST(contains(e, "repeated a continuation token"), e);
  BOOST_TEST(contains(e, "s3://faulty/loop/"), e);
  // The first page and the one that repeated its token: nothing more.
  BOOST_TEST(proxy.count("answer") == 2, proxy.log());
}
