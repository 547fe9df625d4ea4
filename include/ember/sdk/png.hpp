// PNG through libpng's simplified API (png_image, libpng >= 1.6): encode packed 8-bit pixels, and
// read a PNG's header. The simplified API reports errors by status and message, so no setjmp /
// longjmp crosses C++ frames. One encoder for everyone: the wandb plugin (log_image), the
// tensorboard plugin (images), `ember plot` and their tests. Needs libpng >= 1.6.29 (png_dep).
// Built without libpng (meson -Dpng=disabled defines EMBER_NO_PNG), both functions are there and
// throw std::runtime_error saying so: what logs or draws a PNG fails at run time, not at build time.
#pragma once

#ifndef EMBER_NO_PNG
#include <png.h>
#endif

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ember::png {

struct Info {
  std::uint32_t width = 0, height = 0, channels = 0;
};

#ifdef EMBER_NO_PNG
inline constexpr const char* kNotBuilt = "PNG support is not built in (Ember was configured with -Dpng=disabled: no libpng)";

inline std::string encode(const std::uint8_t*, std::uint32_t, std::uint32_t, std::uint32_t) {
  throw std::runtime_error(std::string("cannot encode a PNG: ") + kNotBuilt);
}

inline Info read_info(const void*, std::size_t) {
  throw std::runtime_error(std::string("cannot read a PNG: ") + kNotBuilt);
}
#else
// Encode height rows of width * channels bytes (channels 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
inline std::string encode(const std::uint8_t* pixels, std::uint32_t width, std::uint32_t height, std::uint32_t channels) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = width;
  img.height = height;
  switch (channels) {
    case 1: img.format = PNG_FORMAT_GRAY; break;
    case 2: img.format = PNG_FORMAT_GA; break;
    case 3: img.format = PNG_FORMAT_RGB; break;
    case 4: img.format = PNG_FORMAT_RGBA; break;
    default: throw std::invalid_argument("PNG: " + std::to_string(channels) + " channels; expected 1, 2, 3 or 4");
  }
  png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(img);
  std::string out(static_cast<std::size_t>(size), '\0');
  if (!png_image_write_to_memory(&img, out.data(), &size, 0, pixels, 0, nullptr))
    throw std::runtime_error(std::string("PNG encoding failed (libpng): ") + img.message);
  out.resize(static_cast<std::size_t>(size));
  return out;
}

// Width, height and channels from a PNG file's header; std::invalid_argument if it is not one.
inline Info read_info(const void* data, std::size_t size) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, data, size))
    throw std::invalid_argument(std::string("not a readable PNG file (libpng: ") + img.message + ")");
  Info i{img.width, img.height, PNG_IMAGE_SAMPLE_CHANNELS(img.format)};
  png_image_free(&img);
  return i;
}
#endif  // EMBER_NO_PNG

}  // namespace ember::png
