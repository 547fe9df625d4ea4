// The read-only wandb:// scheme (ember.storage/1, through plugin::Storage): a checkpoint logged as
// a model artifact, readable by the host's normal restore. Any thread; served in every mode
// (online, offline, disabled, any rank): reading a checkpoint the user named is not logging.
//
// wandb://ENTITY/PROJECT/NAME[:ALIAS][/FILE] is FILE of that artifact version (default: its only
// file, else model.ckpt), resolved as W&B's clients do (ArtifactByName, the manifest, the file
// URLs) and MD5-checked; so `ckpt_path: "wandb://me/proj/model-abc123:best"` resumes from it.
#pragma once

#include <ember/sdk/plugin.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "settings.hpp"

namespace ember::wandb_plugin {

class ArtifactScheme : public ember::plugin::Storage {
 public:
  static constexpr std::string_view kSchemes = "wandb";

  std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) override;
  std::unique_ptr<File> open_write(std::string_view url) override;
  Entry stat(std::string_view url) override;
  void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) override;
  void remove(std::string_view url) override;

 protected:
  // The owner's settings (key, base_url, HTTP options) and its log, asked at call time.
  virtual const Settings& scheme_settings() const = 0;
  virtual void scheme_info(const std::string& message) const = 0;

 private:
  // The last file read, by artifact id and path: aliases move, a version's bytes do not.
  std::mutex cache_mu_;
  std::string cache_key_;
  std::shared_ptr<const std::string> cache_bytes_;
};

}  // namespace ember::wandb_plugin
