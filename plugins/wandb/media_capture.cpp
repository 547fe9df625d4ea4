// ember.media/1 on the training thread: each call's arguments are borrowed, so an image's pixels
// (as 8-bit) or PNG bytes are copied, a table parsed and checked, a histogram binned, and the row
// queued in order with the metric rows. Encoding, hashing and uploading are the worker's
// (media_files.cpp). Bad arguments throw std::invalid_argument (the host gets EMBER_E_INVALID).
#include <chrono>

#include "logger.hpp"
#include "sysinfo.hpp"
#include <ember/sdk/media_table.hpp>
#include <ember/sdk/png.hpp>

namespace ember::wandb_plugin {

void WandbLogger::log_image(const ember_log_context_t& ctx, std::string_view key, const ember_image_t* images, size_t count) {
  if (!enabled()) return;
  if (!images || count == 0) throw std::invalid_argument("log_image '" + std::string(key) + "': no images");
  MediaItem item;
  item.kind = MediaItem::Kind::images;
  item.key = media_key(key, "log_image");
  item.images.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const ember_image_t& im = images[i];
    MediaItem::Picture& pic = item.images[i];
    pic.caption = std::string(view(im.caption));
    if (im.tensor) {
      // The view is borrowed: its pixels are copied (as 8-bit) before returning.
      ember::media::ImageLayout l = ember::media::check_image(*im.tensor, key, i);
      pic.pixels = ember::media::to_pixels(*im.tensor, l);
      pic.width = static_cast<std::uint32_t>(l.width), pic.height = static_cast<std::uint32_t>(l.height);
      pic.channels = static_cast<std::uint32_t>(l.channels);
    } else if (im.png && im.png_size > 0) {
      ember::png::Info info;
      try {
        info = ember::png::read_info(im.png, im.png_size);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) + ": " + e.what());
      }
      pic.png.assign(static_cast<const char*>(im.png), im.png_size);
      pic.width = info.width, pic.height = info.height, pic.channels = info.channels;
    } else {
      throw std::invalid_argument("log_image '" + std::string(key) + "': image " + std::to_string(i) +
                                  " has neither a tensor nor PNG bytes");
    }
  }
  queue_media(ctx, std::move(item));
}

void WandbLogger::log_table(const ember_log_context_t& ctx, std::string_view key, std::string_view columns_json,
               std::string_view rows_json) {
  if (!enabled()) return;
  MediaItem item;
  item.kind = MediaItem::Kind::table;
  item.key = media_key(key, "log_table");
  ember::media::Table t = ember::media::parse_table(key, columns_json, rows_json);
  item.columns = std::move(t.columns);
  item.rows = std::move(t.rows);
  queue_media(ctx, std::move(item));
}

// Histograms of one step (watch logs one per parameter) become one history row, as
// wandb.watch's do: they are held until a call for another step or any other row.
void WandbLogger::log_histogram(const ember_log_context_t& ctx, std::string_view key, const DLTensor& values,
                   int32_t num_bins) {
  if (!enabled()) return;
  MediaItem item;
  item.kind = MediaItem::Kind::histogram;
  item.key = media_key(key, "log_histogram");
  item.hist = ember::media::histogram(values, num_bins, key);
  if (item.hist.finite == 0) return;  // all NaN/inf: nothing to draw (wandb.watch skips it too)
  if (!started_) start();
  if (!pending_hist_.items.empty() && (ctx.step != hist_ctx_.step || ctx.stage != hist_ctx_.stage)) flush_histograms();
  if (pending_hist_.items.empty()) {
    hist_ctx_ = ctx;
    hist_runtime_ = std::chrono::duration<double>(Clock::now() - t0_).count();
    hist_ts_ = unix_now();
  }
  pending_hist_.items.push_back(std::move(item));
}

std::string WandbLogger::media_key(std::string_view key, const char* what) const {
  if (key.empty()) throw std::invalid_argument(std::string(what) + ": empty key");
  return opt_.prefix.empty() ? std::string(key) : opt_.prefix + "-" + std::string(key);
}

// Queue a media row after any held histograms, in order with the metric rows.
void WandbLogger::queue_media(const ember_log_context_t& ctx, MediaItem item) {
  if (!started_) start();
  if (!pending_hist_.items.empty()) flush_histograms();
  MediaRow row;
  row.items.push_back(std::move(item));
  push_media_row(ctx, std::chrono::duration<double>(Clock::now() - t0_).count(), unix_now(), std::move(row));
}

void WandbLogger::flush_histograms() {
  MediaRow row;
  row.items.swap(pending_hist_.items);
  push_media_row(hist_ctx_, hist_runtime_, hist_ts_, std::move(row));
}

void WandbLogger::push_media_row(const ember_log_context_t& ctx, double runtime, double ts, MediaRow row) {
  std::lock_guard<std::mutex> lk(mu_);
  rows_.add_media(ctx.step, ctx.epoch, runtime, ts, std::move(row));
}

}  // namespace ember::wandb_plugin
