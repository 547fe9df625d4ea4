// Media rows (ember.media/1): what the training thread copies out of a log_image / log_table /
// log_histogram call (media_capture.cpp) and the worker turns into history values and run files
// (media_files.cpp).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <ember/sdk/media.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ember::wandb_plugin {

struct MediaItem {
  enum class Kind { images, table, histogram };
  struct Picture {
    std::vector<std::uint8_t> pixels;  // packed HWC rows; empty when png holds the file
    std::string png;
    std::uint32_t width = 0, height = 0, channels = 0;
    std::string caption;
  };
  Kind kind = Kind::images;
  std::string key;
  std::vector<Picture> images;
  boost::json::array columns, rows;  // table
  ember::media::Histogram hist;
};

struct MediaRow {
  std::vector<MediaItem> items;
};

// A run file's name from a metric key: W&B keeps '/' as directories; other characters outside
// [A-Za-z0-9._-] and empty, "." or ".." segments become '_' so the name stays inside media/.
std::string file_stem(std::string_view key);

}  // namespace ember::wandb_plugin
