// The webhdfs plugin's atomic streaming writer: a temporary file CREATEd and APPENDed to, then
// RENAMEd over the target.
#include "webhdfs_service.hpp"

#include <ember/net/upload_pool.hpp>

#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <random>

namespace ember::webhdfs {
namespace {

std::string random_suffix() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<std::uint64_t>(::getpid()));
  std::lock_guard<std::mutex> lock(mu);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// Atomic streaming write; see webhdfs.cpp's file comment. Parts go in order, one in flight while
// the next fills (net::UploadPool with one job at a time).
class Writer final : public plugin::Storage::File {
 public:
  Writer(Service& s, Location loc) : s_(s), final_(std::move(loc)), parts_(s_.settings().part_size, 1) {
    if (final_.path == "/") throw Error("webhdfs: cannot write to " + final_.url + ": it is the root directory", EMBER_E_INVALID);
    tmp_ = final_;
    tmp_.path = parent_of(final_.path) + (parent_of(final_.path) == "/" ? "" : "/") + "." + name_of(final_.path) +
                ".tmp-" + random_suffix();
    tmp_.url = final_.url.substr(0, final_.url.size() - name_of(final_.path).size()) + name_of(tmp_.path);
    // The parent first: a permission problem or a file in the way is reported before any data.
    Location parent = final_;
    parent.path = parent_of(final_.path);
    parent.url = final_.root + parent.path;
    if (parent.path != "/") {
      http::Response r = s_.call({"MKDIRS", &parent, "PUT", {}});
      if (r.body.find("true") == std::string::npos)
        throw Error("webhdfs MKDIRS " + parent.url + ": the NameNode answered " + s_.scrub(r.body), EMBER_E_IO);
    }
  }
  ~Writer() override {
    parts_.drain();
    if (!committed_ && started_) {
      try {
        s_.call({"DELETE", &tmp_, "DELETE", {{"recursive", "false"}}});
      } catch (...) {
        // Best effort: the failure that led here is what the caller reports.
      }
    }
  }

  void write(const void* data, std::size_t n) override {
    if (committed_) throw Error("webhdfs: cannot write to " + final_.url + ": already committed", EMBER_E_INVALID);
    const char* p = static_cast<const char*>(data);
    while (n) {
      std::size_t take = parts_.fill(p, n);
      p += take;
      n -= take;
      if (parts_.full()) ship();
    }
  }

  void commit() override {
    if (committed_) return;
    if (!parts_.filling().empty() || !started_) ship();
    parts_.wait_all();
    // The temporary file must hold every byte before it takes the final name.
    bool found = false;
    auto fs = file_status(s_, tmp_, &found);
    std::uint64_t len = found ? to_entry(fs, tmp_.url).size : 0;
    if (!found || len != total_)
      throw Error("webhdfs " + final_.url + ": wrote " + std::to_string(total_) + " bytes but the temporary file " +
                      tmp_.url + (found ? " has " + std::to_string(len) : " is missing"),
                  EMBER_E_IO);
    publish();
    committed_ = true;
    parts_.release_buffers();
  }

 private:
  void publish() {
    std::string dest = final_.path;
    if (s_.settings().overwrite == "rename_overwrite") {
      // One NameNode operation: the target is replaced atomically (Hadoop's rename2 OVERWRITE).
      try {
        s_.call({"RENAME", &tmp_, "PUT", {{"destination", dest}, {"renameoptions", "OVERWRITE"}}});
      } catch (const Error& e) {
        // A rename whose answer was lost is retried and finds no source: done if the target
        // now has our length and the temporary name is gone.
        if (e.status() != EMBER_E_NOT_FOUND || !landed()) throw;
      }
      return;
    }
    // delete_then_rename, for gateways without renameoptions: between the two calls the target
    // is absent (a reader then sees "not found", never a partial file).
    s_.call({"DELETE", &final_, "DELETE", {{"recursive", "false"}}});
    http::Response r = s_.call({"RENAME", &tmp_, "PUT", {{"destination", dest}}});
    if (r.body.find("true") == std::string::npos && !landed())
      throw Error("webhdfs RENAME " + tmp_.url + " to " + final_.url + ": the NameNode answered " + s_.scrub(r.body),
                  EMBER_E_IO);
  }

  bool landed() {
    bool tmp_found = true, final_found = false;
    file_status(s_, tmp_, &tmp_found);
    auto fs = file_status(s_, final_, &final_found);
    return !tmp_found && final_found && to_entry(fs, final_.url).size == total_;
  }

  // Send the part filled: the first part CREATEs the temporary file, the others APPEND to it,
  // one at a time in order, while the next part fills.
  void ship() {
    parts_.wait_for_room();  // rethrows the previous part's failure
    const bool create = !started_;
    started_ = true;
    const std::uint64_t before = total_;
    total_ += parts_.filling().size();
    parts_.ship([this, create, before](const std::string& part) {
      if (create) {
        s_.send_data({"CREATE", &tmp_, "PUT", {{"overwrite", "true"}}}, part, nullptr);
        return;
      }
      const std::uint64_t after = before + part.size();
      s_.send_data({"APPEND", &tmp_, "POST", {}}, part, [&] {
        bool found = false;
        auto fs = file_status(s_, tmp_, &found);
        std::uint64_t len = found ? to_entry(fs, tmp_.url).size : 0;
        if (len == after) return true;
        if (len == before) return false;
        throw Error("webhdfs APPEND " + tmp_.url + ": after a failed attempt the file has " + std::to_string(len) +
                        " bytes, neither " + std::to_string(before) + " nor " + std::to_string(after),
                    EMBER_E_IO);
      });
    });
  }

  Service& s_;
  Location final_, tmp_;
  std::uint64_t total_ = 0;
  bool started_ = false, committed_ = false;
  net::UploadPool parts_;  // last: its jobs use the members above
};

}  // namespace

std::unique_ptr<plugin::Storage::File> open_writer(Service& s, Location loc) {
  return std::make_unique<Writer>(s, std::move(loc));
}

}  // namespace ember::webhdfs
