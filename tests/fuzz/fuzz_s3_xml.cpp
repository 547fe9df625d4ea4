// libFuzzer target: the S3 plugin reading a server's XML answers — ListObjectsV2 pages
// (ListBucketResult: Contents, CommonPrefixes, IsTruncated, NextContinuationToken), error
// bodies (Error.Code / Message, which decide retries), InitiateMultipartUpload's UploadId and
// CompleteMultipartUpload's answer — through the real plugin (its source compiled in, registered
// in-process as plugins.storage) and the host's URL space, against a loopback server that
// answers every request with the input's XML (tests/fuzz/loopback_server.hpp).
// The first byte picks the operation and the HTTP status the answers carry:
//   bits 0-1: list s3://b/p/ | stat s3://b/k | write a 1-byte object | write a multipart object
//   bits 2-3: 200 | 404 | 400 | 503
// max_attempts is 1 so that a retryable status costs no backoff sleep. A refusal (an
// exception) is expected; a crash or sanitizer report is a finding.
#include "loopback_server.hpp"

#include "../../plugins/s3/s3.cpp"

#include "fuzz_session.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

// The plugin under test as plugins.storage, talking to the loopback server.
struct S3Host {
  fuzz::LoopbackServer& server = fuzz::loopback_server();
  fuzz::FuzzSession host{
      boost::json::object{{"storage", boost::json::array{boost::json::object{
                              {"plugin", "s3"},
                              {"config", boost::json::object{{"endpoint_url", "http://127.0.0.1:" + server.port()},
                                                             {"region", "us-east-1"},
                                                             {"access_key_id", "AKIDFUZZ"},
                                                             {"secret_access_key", "fuzz-secret"},
                                                             {"max_attempts", 1},
                                                             {"timeout_ms", 5000},
                                                             {"part_size", 5 * 1024 * 1024},
                                                             {"max_concurrency", 1}}}}}}},
      std::make_shared<ember::PluginLibrary>("(in-process s3)", &ember_plugin_entry)};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static S3Host h;
  static const char* const statuses[] = {"200 OK", "404 Not Found", "400 Bad Request", "503 Slow Down"};
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  h.server.set_payload(std::string("HTTP/1.1 ") + statuses[(data[0] >> 2) & 3] +
                       "\r\nContent-Type: application/xml\r\nETag: \"0123\"\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body);
  const auto& urls = h.host.session->trainer().urls();
  try {
    switch (data[0] & 3) {
      case 0: (void)urls.list("s3://fuzz-bucket/p/"); break;
      case 1: (void)urls.stat("s3://fuzz-bucket/k"); break;
      case 2: urls.put_atomic("s3://fuzz-bucket/k", "x"); break;
      case 3: {
        static const std::string part(5 * 1024 * 1024 + 1, 'x');  // just over one part: multipart
        urls.put_atomic("s3://fuzz-bucket/k", part);
        break;
      }
    }
  } catch (const std::exception&) {
  }
  return 0;
}
