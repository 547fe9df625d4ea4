// Media on the worker: the history value of each media item, as W&B's clients write it, and its
// run files (PNG-encoded images, table JSON) named by key, step and content hash — uploaded online
// (kept in memory, spooled while W&B is away) or written under files/ offline.
#include <algorithm>
#include <cctype>

#include "logger.hpp"
#include "wandb_api_runs.hpp"
#include "wandb_json.hpp"
#include "wandb_records.hpp"
#include "wandb_spool.hpp"
#include <ember/sdk/png.hpp>

namespace ember::wandb_plugin {

std::string file_stem(std::string_view key) {
  std::string out, seg;
  auto flush = [&] {
    if (seg.empty() || seg == "." || seg == "..") seg = std::string(std::max<std::size_t>(seg.size(), 1), '_');
    if (!out.empty()) out += '/';
    out += seg;
    seg.clear();
  };
  for (char c : key) {
    if (c == '/') {
      flush();
      continue;
    }
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    seg += ok ? c : '_';
  }
  flush();
  return out;
}

// The history value of one media item at history step `step`, as W&B's clients write it; the
// files it names are queued for upload (online) or written under files/ (offline).
json::value WandbLogger::media_value(MediaItem& item, std::int64_t step) {
  const std::string stem = file_stem(item.key) + "_" + std::to_string(step) + "_";
  switch (item.kind) {
    case MediaItem::Kind::histogram: {
      json::array values, bins;
      for (auto c : item.hist.counts) values.emplace_back(c);
      for (auto e : item.hist.edges) bins.emplace_back(e);
      return json::object{{"_type", "histogram"}, {"values", std::move(values)}, {"bins", std::move(bins)}};
    }
    case MediaItem::Kind::table: {
      std::string text = json::serialize(json::object{{"columns", item.columns}, {"data", item.rows}});
      std::string sha = wb::sha256_hex(text);
      std::string path = "media/table/" + stem + sha.substr(0, 20) + ".table.json";
      json::object v{{"_type", "table-file"}, {"path", path},        {"sha256", sha},
                     {"size", text.size()},   {"ncols", item.columns.size()}, {"nrows", item.rows.size()}};
      add_media_file(path, std::move(text));
      return v;
    }
    case MediaItem::Kind::images: break;
  }
  // One image is an "image-file" (wandb.Image); several are one "images/separated" value with
  // a file each, named by index as W&B's clients name a list's files.
  const bool one = item.images.size() == 1;
  json::array filenames, captions;
  bool any_caption = false;
  json::object single;
  for (std::size_t i = 0; i < item.images.size(); ++i) {
    MediaItem::Picture& pic = item.images[i];
    std::string bytes = pic.pixels.empty() ? std::move(pic.png) : ember::png::encode(pic.pixels.data(), pic.width, pic.height, pic.channels);
    std::string sha = wb::sha256_hex(bytes);
    std::string path = "media/images/" + stem + (one ? sha.substr(0, 20) : std::to_string(i)) + ".png";
    if (one) {
      single = json::object{{"_type", "image-file"}, {"path", path},       {"sha256", sha},          {"size", bytes.size()},
                            {"format", "png"},       {"width", pic.width}, {"height", pic.height}};
      if (!pic.caption.empty()) single["caption"] = pic.caption;
    }
    filenames.emplace_back(path);
    any_caption = any_caption || !pic.caption.empty();
    captions.emplace_back(pic.caption.empty() ? json::value() : json::value(pic.caption));
    add_media_file(path, std::move(bytes));
  }
  if (one) return single;
  json::object v{{"_type", "images/separated"}, {"width", item.images[0].width}, {"height", item.images[0].height},
                 {"format", "png"},             {"count", item.images.size()},  {"filenames", std::move(filenames)}};
  if (any_caption) v["captions"] = std::move(captions);
  return v;
}

void WandbLogger::add_media_file(const std::string& path, std::string bytes) {
  if (opt_.offline) {
    write_file(path, bytes);
    write_record(wb::files_record({path}, 0));
    return;
  }
  media_bytes_ += bytes.size();
  media_files_.emplace_back(path, std::move(bytes));
}

// Upload the media files: the spooled ones first (older), then those in memory.
void WandbLogger::send_media_files() {
  while (!spooled_files_.empty()) {
    const auto& [path, url] = spooled_files_.front();
    if (auto bytes = spool_->read(url)) {
      wb::upload_run_file(*api_, *run_, path, *bytes);
      uploaded_.push_back(path);
    }
    spool_->remove(url);
    spooled_files_.pop_front();
  }
  while (!media_files_.empty()) {
    auto& [path, bytes] = media_files_.front();
    wb::upload_run_file(*api_, *run_, path, bytes);
    uploaded_.push_back(path);
    media_bytes_ -= bytes.size();
    media_files_.pop_front();
  }
}

}  // namespace ember::wandb_plugin
