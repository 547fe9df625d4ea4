// The gcs plugin's atomic streaming writer: one multipart upload, or a resumable session.
#include "gcs_service.hpp"

#include <ember/net/upload_pool.hpp>

#include <random>

namespace ember::gcs {
namespace {

// Atomic streaming write; see gcs.cpp's file comment. Chunks go to the session in order, one in
// flight while the next fills (net::UploadPool with one job at a time).
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc) : s_(s), loc_(std::move(loc)), chunks_(s_.settings().chunk_size, 1) {
    if (loc_.key.empty()) throw plugin::Error("cannot write to " + loc_.url() + ": no object name", EMBER_E_INVALID);
  }
  ~Writer() override {
    chunks_.drain();
    if (!committed_ && !session_.empty()) cancel();
  }

  void write(const void* data, std::size_t n) override {
    if (committed_) throw plugin::Error("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw plugin::Error("cannot write to " + loc_.url() + ": an earlier chunk failed: " + failure_, EMBER_E_IO);
    const char* p = static_cast<const char*>(data);
    while (n) {
      std::size_t take = chunks_.fill(p, n);
      p += take;
      n -= take;
      if (chunks_.full()) ship();
    }
  }

  void commit() override {
    if (committed_) return;
    if (failed_)
      throw plugin::Error("cannot commit " + loc_.url() + ": an earlier chunk failed (the upload was cancelled): " + failure_, EMBER_E_IO);
    try {
      json::object obj;
      if (session_.empty()) {
        obj = multipart();
      } else {
        chunks_.wait_all();
        const std::string& last = chunks_.filling();
        crc_ = s3::crc32c(last, crc_);
        obj = send_chunk(last, sent_, true);
        sent_ += last.size();
      }
      verify(obj);
    } catch (const std::exception& e) {
      fail(e.what());
      throw;
    }
    committed_ = true;
    chunks_.release_buffers();
  }

 private:
  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  // A full chunk goes to the session in the background; the writer fills the other buffer.
  void ship() {
    try {
      if (session_.empty()) open_session();
      chunks_.wait_for_room();
    } catch (const std::exception& e) {
      fail(e.what());
      throw;
    }
    std::uint64_t offset = sent_;
    sent_ += chunks_.filling().size();
    chunks_.ship([this, offset](const std::string& chunk) {
      crc_ = s3::crc32c(chunk, crc_);  // in order: one chunk in flight at a time
      send_chunk(chunk, offset, false);
    });
  }

  std::string shown() const { return loc_.url(); }

  void open_session() {
    json::object meta{{"name", loc_.key}, {"contentType", "application/octet-stream"}};
    std::string body = json::serialize(meta);
    Service::Call c{"objects.insert (resumable)", shown(), "POST",
                    s_.upload_path(loc_) + "?uploadType=resumable&name=" + pct(loc_.key),
                    {{"Content-Type", "application/json; charset=UTF-8"}, {"X-Upload-Content-Type", "application/octet-stream"}},
                    body, {}};
    http::Response r = s_.call(c);
    session_ = r.header("Location");
    if (session_.empty())
      throw plugin::Error("gcs objects.insert (resumable) " + shown() + ": the answer has no Location (session URI)" + s_.context(), EMBER_E_IO);
    if (session_.front() == '/') session_ = s_.endpoint_text() + session_;
  }

  // The bytes the session holds, from a 308's Range ("bytes=0-N"); 0 when it has none.
  static std::uint64_t persisted(const http::Response& r) {
    std::string range = r.header("Range");
    auto dash = range.rfind('-');
    if (range.empty() || dash == std::string::npos) return 0;
    return std::stoull(range.substr(dash + 1)) + 1;
  }

  // Send data (the object's bytes from offset) to the session; final: the last chunk, with the
  // total and the object's crc32c. Resumes after failures from what the session reports it
  // holds. Returns the object resource after the final chunk.
  json::object send_chunk(const std::string& data, std::uint64_t offset, bool final) {
    const std::uint64_t end = offset + data.size();
    std::uint64_t done = offset;
    std::string last;
    int attempt = 0;
    bool query = false;  // ask the session what it holds before sending more
    for (;;) {
      Service::Call c{final ? "objects.insert (final chunk)" : "objects.insert (chunk)", shown(), "PUT", session_, {}, "", {}};
      if (query) {
        c.headers.emplace_back("Content-Range", final ? "bytes */" + std::to_string(end) : std::string("bytes */*"));
      } else {
        c.body = std::string_view(data).substr(done - offset);
        std::string range = done == end ? "bytes */" : "bytes " + std::to_string(done) + "-" + std::to_string(end - 1) + "/";
        c.headers.emplace_back("Content-Range", range + (final ? std::to_string(end) : "*"));
        c.headers.emplace_back("Content-Type", "application/octet-stream");
        if (final) c.headers.emplace_back("X-Goog-Hash", "crc32c=" + s3::crc32c_base64(crc_));
      }
      bool transient = false;
      try {
        http::Response r = s_.send_once(c);
        if (r.status == 200 || r.status == 201) {
          if (!final)
            throw plugin::Error("gcs " + std::string(c.op) + " " + shown() + ": the session finished the object at " +
                                    std::to_string(done) + " bytes before its last chunk" + s_.context(),
                                EMBER_E_IO);
          return parse_object(r.body);
        }
        if (r.status == 308) {
          std::uint64_t held = persisted(r);
          if (held < offset || held > end)
            throw plugin::Error("gcs " + std::string(c.op) + " " + shown() + ": the session holds " + std::to_string(held) +
                                    " bytes, outside this chunk's " + std::to_string(offset) + "-" + std::to_string(end) + s_.context(),
                                EMBER_E_IO);
          bool progress = held > done || query;
          done = held;
          query = false;
          if (!final && done == end) return {};
          if (progress) continue;  // the rest of the chunk, at once
          last = "gcs " + std::string(c.op) + " " + shown() + ": the session kept " + std::to_string(held) + " of " +
                 std::to_string(end) + " bytes" + s_.context();
          transient = true;
        } else if (Service::retryable_status(r.status)) {
          last = s_.describe(c, r);
          transient = true;
        } else {
          // 404/410: the session expired or was cancelled; 4xx: refused (a crc32c mismatch is 400).
          throw plugin::Error(s_.describe(c, r), EMBER_E_IO);
        }
      } catch (const http::Error& e) {
        last = s_.prefix(c) + ": " + e.what() + s_.context();
        if (!e.retryable()) throw plugin::Error(last, EMBER_E_IO);
        transient = true;
      }
      if (transient) {
        if (s_.settings().retry.exhausted(++attempt))
          throw plugin::Error(last + " (gave up after " + std::to_string(attempt) + " attempts)", EMBER_E_IO);
        s_.settings().retry.backoff(attempt);
        query = true;
      }
    }
  }

  // An object under one chunk: one multipart/related upload (metadata with its crc32c, then the
  // bytes); GCS refuses it (400) when the bytes do not match the crc32c.
  json::object multipart() {
    const std::string& data = chunks_.filling();
    crc_ = s3::crc32c(data, crc_);
    const std::string crc = s3::crc32c_base64(crc_);
    json::object meta{{"name", loc_.key}, {"contentType", "application/octet-stream"}, {"crc32c", crc}};
    std::string boundary = "ember_gcs_" + std::to_string(std::random_device{}()) + std::to_string(data.size());
    std::string body = "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + json::serialize(meta) +
                       "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n";
    body.reserve(body.size() + data.size() + boundary.size() + 8);
    body += data;
    body += "\r\n--" + boundary + "--\r\n";
    Service::Call c{"objects.insert (multipart)", shown(), "POST", s_.upload_path(loc_) + "?uploadType=multipart",
                    {{"Content-Type", "multipart/related; boundary=" + boundary}, {"X-Goog-Hash", "crc32c=" + crc}},
                    body, {}};
    c.idempotent = true;  // the whole object each time: repeating it stores the same bytes
    sent_ = data.size();
    return parse_object(s_.call(c).body);
  }

  // The stored object must have what we sent.
  void verify(const json::object& obj) {
    Meta m = meta_of(obj);
    std::string want = s3::crc32c_base64(crc_);
    if (obj.if_contains("size") && m.size != sent_)
      throw plugin::Error("gcs " + shown() + ": wrote " + std::to_string(sent_) + " bytes but the stored object has " +
                              std::to_string(m.size) + s_.context(),
                          EMBER_E_IO);
    if (!m.crc32c.empty() && m.crc32c != want)
      throw plugin::Error("gcs " + shown() + ": the stored object's crc32c is " + m.crc32c + ", the data's is " + want + s_.context(),
                          EMBER_E_IO);
  }

  // Cancel the session (DELETE answers 499): nothing is published. Best effort.
  void cancel() {
    try {
      Service::Call c{"objects.insert (cancel)", shown(), "DELETE", session_, {}, "", {404, 410, 499}};
      s_.send_once(c);
    } catch (...) {
    }
    session_.clear();
  }

  Service& s_;
  Location loc_;
  std::uint64_t sent_ = 0;  // bytes handed to uploads so far
  std::string session_, failure_;
  std::uint32_t crc_ = 0;
  bool committed_ = false, failed_ = false;
  net::UploadPool chunks_;  // last: its jobs use the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc) {
  return std::make_unique<Writer>(s, std::move(loc));
}

}  // namespace ember::gcs
