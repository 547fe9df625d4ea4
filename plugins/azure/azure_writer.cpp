// The azure plugin's atomic streaming writer: one Put Blob, or Put Blocks and a Put Block List.
#include "azure_service.hpp"

#include <ember/net/upload_pool.hpp>

#include <cstdio>
#include <random>

namespace ember::azure {
namespace {

// Atomic streaming write; see azure.cpp's file comment. A block's MD5 is computed on its own
// worker thread, so the writer's thread only copies bytes in; finished block buffers are reused
// (net::UploadPool), and at most max_concurrency + 1 of them exist at once.
class Writer final : public plugin::Storage::File {
 public:
  // The integrity header of a block (or a one-shot blob): Content-MD5, or with block_checksum
  // "crc64" x-ms-content-crc64 (Azure's CRC-64, include/ember/net/digest.hpp). The service
  // verifies either and refuses both at once.
  std::pair<std::string, std::string> checksum_header(std::string_view data) const {
    if (s_.settings().block_crc64) return {"x-ms-content-crc64", net::crc64_base64(data)};
    return {"Content-MD5", md5_base64(data)};
  }
  Writer(Service& s, Location loc)
      : s_(s), loc_(std::move(loc)), blocks_(s_.settings().block_size, s_.settings().max_concurrency) {
    if (loc_.blob.empty() || loc_.blob.back() == '/')
      throw AzureError("cannot write to " + loc_.url() + ": not a blob name", EMBER_E_INVALID);
    // Block ids: one length for every block of a blob (the service's rule), unique per upload so
    // two writers of one blob never commit each other's blocks: 16 random hex digits, then the
    // block number in 8 digits: 24 bytes, 32 base64 characters without padding.
    std::random_device rd;
    char nonce[17];
    std::snprintf(nonce, sizeof nonce, "%08x%08x", rd(), rd());
    nonce_ = nonce;
  }
  ~Writer() override { blocks_.drain(); }

  void write(const void* data, std::size_t n) override {
    const char* p = static_cast<const char*>(data);
    if (committed_) throw AzureError("cannot write to " + loc_.url() + ": already committed", EMBER_E_INVALID);
    if (failed_) throw AzureError("cannot write to " + loc_.url() + ": an earlier block failed: " + failure_, EMBER_E_IO);
    while (n) {
      std::size_t take = blocks_.fill(p, n);
      p += take;
      n -= take;
      total_ += take;
      if (blocks_.full()) ship_block();
    }
  }

  void commit() override {
    if (committed_) return;
    if (failed_)
      throw AzureError("cannot commit " + loc_.url() + ": an earlier block failed (nothing was published): " + failure_,
                       EMBER_E_IO);
    try {
      if (ids_.empty()) {
        const std::string& body = blocks_.filling();
        Service::Call c{"PutBlob", &loc_, "PUT", {},
                        {{"x-ms-blob-type", "BlockBlob"}, {"Content-Type", "application/octet-stream"},
                         checksum_header(body)},
                        body, {}};
        s_.call(std::move(c));
      } else {
        if (!blocks_.filling().empty()) ship_block();
        blocks_.wait_all();
        std::string xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
        for (const auto& id : ids_) xml += "<Latest>" + id + "</Latest>";
        xml += "</BlockList>";
        s_.call({"PutBlockList", &loc_, "PUT", {{"comp", "blocklist"}},
                 {{"Content-Type", "application/xml"}, {"Content-MD5", md5_base64(xml)},
                  {"x-ms-blob-content-type", "application/octet-stream"}},
                 xml, {}});
      }
    } catch (const std::exception& e) {
      fail(e.what());
      blocks_.drain();
      throw;
    }
    committed_ = true;
    blocks_.release_buffers();
    verify_size();
  }

 private:
  void fail(const std::string& why) {
    if (!failed_) failure_ = why;
    failed_ = true;
  }

  void ship_block() {
    if (ids_.size() >= static_cast<std::size_t>(kMaxBlocks)) {
      fail("more than 50000 blocks");
      throw AzureError("cannot write " + loc_.url() + ": a blob has at most " + std::to_string(kMaxBlocks) +
                           " blocks; raise the azure config key block_size (now " + std::to_string(blocks_.part_size()) + ")",
                       EMBER_E_INVALID);
    }
    // Bounded memory: wait for the oldest block when max_concurrency are in flight.
    try {
      blocks_.wait_for_room();  // on a failure, after waiting for the other blocks
    } catch (const std::exception& e) {
      fail(e.what());
      throw;
    }
    char number[16];
    std::snprintf(number, sizeof number, "%08zu", ids_.size());
    std::string id = net::base64(nonce_ + number);
    ids_.push_back(id);
    blocks_.ship([this, id](const std::string& b) {
      Service::Call c{"PutBlock", &loc_, "PUT", {{"comp", "block"}, {"blockid", id}}, {checksum_header(b)}, b, {}};
      s_.call(std::move(c));
    });
  }

  void verify_size() {
    http::Response r = s_.call({"GetBlobProperties", &loc_, "HEAD", {}, {}, "", {}});
    std::string len = r.header("Content-Length");
    if (!len.empty() && std::stoull(len) != total_)
      throw AzureError("azure " + loc_.url() + ": wrote " + std::to_string(total_) + " bytes but the stored blob has " + len +
                           s_.context(),
                       EMBER_E_IO);
  }

  Service& s_;
  Location loc_;
  std::string failure_, nonce_;
  std::uint64_t total_ = 0;
  bool committed_ = false, failed_ = false;
  std::vector<std::string> ids_;
  net::UploadPool blocks_;  // last: its jobs use the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc) {
  return std::make_unique<Writer>(s, std::move(loc));
}

}  // namespace ember::azure
