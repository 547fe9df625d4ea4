// The s3 plugin's atomic streaming writer: one PutObject, or a multipart upload.
#include "s3_service.hpp"

#include <ember/net/upload_pool.hpp>

#include <map>
#include <mutex>

namespace ember::s3 {
namespace {

// Atomic streaming write; see s3.cpp's file comment. Each part's checksum and signed SHA-256 are
// computed on the part's own worker thread, in one pass over its buffer, so the writer's
// thread only copies bytes in; finished part buffers are reused (net::UploadPool), and at most
// max_concurrency + 1 of them exist at once.
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc)
      : s_(s), loc_(std::move(loc)), parts_(s_.settings().part_size, s_.settings().max_concurrency) {
    if (loc_.key.empty()) throw S3Error("cannot write to " + loc_.url() + ": no object key", EMBER_E_INVALID);
  }
  ~Writer() override {
    parts_.drain();
    if (!committed_ && !upload_id_.empty()) abort();
  }

  void write(const void* data, std::size_t n) override {
    const char* p = static_cast<const char*>(data);
    if (committed_) throw S3Error("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw S3Error("cannot write to " + loc_.url() + ": an earlier part failed: " + failure_, EMBER_E_IO);
    while (n) {
      std::size_t take = parts_.fill(p, n);
      p += take;
      n -= take;
      total_ += take;
      if (parts_.full()) ship_part();
    }
  }

  void commit() override {
    if (committed_) return;
    // A part that failed (reported by an earlier write, and the upload aborted) leaves a gap:
    // never publish what is left, as a PutObject of the last buffer would.
    if (failed_)
      throw S3Error("cannot commit " + loc_.url() + ": an earlier part failed (the upload was aborted): " + failure_,
                    EMBER_E_IO);
    try {
      if (upload_id_.empty()) {
        const std::string& body = parts_.filling();
        BodyDigests d = body_digests(body, s_.settings().checksum);
        Service::Call c{"PutObject", &loc_, "PUT", {},
                        {{d.header_name, d.header_value}, {"Content-Type", "application/octet-stream"}}, body, {}};
        c.payload_hash = d.sha256_hex;
        check_echoed_checksum(s_.call(std::move(c)), d, "PutObject");
      } else {
        if (!parts_.filling().empty()) ship_part();
        parts_.wait_all();
        complete();
      }
    } catch (const std::exception& e) {
      fail(e.what());
      parts_.drain();
      if (!upload_id_.empty()) abort();
      upload_id_.clear();
      throw;
    }
    committed_ = true;
    parts_.release_buffers();
    verify_size();
  }

 private:
  struct Part {
    std::string etag, checksum;  // checksum: the crc32c part checksum, for CompleteMultipartUpload
  };

  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  // A server that verified the checksum may echo it; one that disagrees with ours is an error.
  void check_echoed_checksum(const http::Response& r, const BodyDigests& d, const std::string& what) const {
    if (d.header_name == "Content-MD5") return;
    std::string echoed = r.header(d.header_name);
    if (!echoed.empty() && echoed != d.header_value)
      throw S3Error("S3 " + what + " " + loc_.url() + ": the server's " + d.header_name + " is " + echoed +
                        ", the data's is " + d.header_value + s_.context(),
                    EMBER_E_IO);
  }

  void ship_part() {
    if (upload_id_.empty()) create();
    // Bounded memory: wait for the oldest part when max_concurrency are in flight.
    try {
      parts_.wait_for_room();  // on a failure, after waiting for the other parts
    } catch (const std::exception& e) {
      fail(e.what());
      abort();
      upload_id_.clear();
      throw;
    }
    int number = next_part_++;
    parts_.ship([this, number](const std::string& b) {
      const std::string what = "UploadPart part " + std::to_string(number) + " of";
      BodyDigests d = body_digests(b, s_.settings().checksum);
      Service::Call c{"UploadPart", &loc_, "PUT",
                      {{"partNumber", std::to_string(number)}, {"uploadId", upload_id_}},
                      {{d.header_name, d.header_value}}, b, {}};
      c.payload_hash = d.sha256_hex;
      http::Response r = s_.call(std::move(c));
      check_echoed_checksum(r, d, what);
      std::string etag = r.header("ETag");
      if (etag.empty())
        throw S3Error("S3 UploadPart " + loc_.url() + " part " + std::to_string(number) + ": the answer has no ETag" + s_.context(), EMBER_E_IO);
      std::lock_guard<std::mutex> lock(mu_);
      done_[number] = Part{etag, s_.settings().checksum == Checksum::crc32c ? d.header_value : std::string()};
    });
  }

  void create() {
    Params h{{"Content-Type", "application/octet-stream"}};
    // Every part then carries x-amz-checksum-crc32c, and S3 checks each one.
    if (s_.settings().checksum == Checksum::crc32c) h.emplace_back("x-amz-checksum-algorithm", "CRC32C");
    http::Response r = s_.call({"CreateMultipartUpload", &loc_, "POST", {{"uploads", ""}}, h, "", {}});
    upload_id_ = parse_xml(r.body).get<std::string>("InitiateMultipartUploadResult.UploadId", "");
    if (upload_id_.empty())
      throw S3Error("S3 CreateMultipartUpload " + loc_.url() + ": the answer has no UploadId" + s_.context(), EMBER_E_IO);
  }

  void complete() {
    std::string xml = "<CompleteMultipartUpload>";
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& kv : done_) {
        xml += "<Part><PartNumber>" + std::to_string(kv.first) + "</PartNumber><ETag>" + xml_escape(kv.second.etag) + "</ETag>";
        if (!kv.second.checksum.empty()) xml += "<ChecksumCRC32C>" + kv.second.checksum + "</ChecksumCRC32C>";
        xml += "</Part>";
      }
    }
    xml += "</CompleteMultipartUpload>";
    http::Response r = s_.call({"CompleteMultipartUpload", &loc_, "POST", {{"uploadId", upload_id_}}, {{"Content-Type", "application/xml"}}, xml, {}});
    // S3 may answer 200 and still fail: the error is then in the body.
    Tree t = parse_xml(r.body);
    if (t.get_child_optional("Error"))
      throw S3Error("S3 CompleteMultipartUpload " + loc_.url() + ": " + t.get<std::string>("Error.Code", "") + ": " +
                        t.get<std::string>("Error.Message", "") + s_.context(),
                    EMBER_E_IO);
  }

  // An uncommitted upload must not linger (its parts are billed). Servers without
  // AbortMultipartUpload (s3rver) answer 404/405/501: nothing more can be done.
  void abort() {
    if (upload_id_.empty()) return;
    try {
      s_.call({"AbortMultipartUpload", &loc_, "DELETE", {{"uploadId", upload_id_}}, {}, "", {404, 405, 501}});
    } catch (...) {
      // Best effort: the failure that led here is what the caller reports.
    }
    upload_id_.clear();
  }

  void verify_size() {
    http::Response r = s_.call({"HeadObject", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = r.header("Content-Length");
    if (!len.empty() && std::stoull(len) != total_)
      throw S3Error("S3 " + loc_.url() + ": wrote " + std::to_string(total_) + " bytes but the stored object has " + len +
                        s_.context(),
                    EMBER_E_IO);
  }

  Service& s_;
  Location loc_;
  std::string upload_id_, failure_;
  std::uint64_t total_ = 0;
  int next_part_ = 1;
  bool committed_ = false, failed_ = false;
  std::mutex mu_;                 // guards done_, which part jobs fill
  std::map<int, Part> done_;      // finished parts by number
  net::UploadPool parts_;         // last: its jobs use the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc) {
  return std::make_unique<Writer>(s, std::move(loc));
}

}  // namespace ember::s3
