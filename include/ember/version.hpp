// The host's version.
#pragma once

namespace ember {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace ember
