// Errors the host reports, with the exit code each maps to (2: usage/config, 1: runtime).
#pragma once

#include <stdexcept>
#include <string>

namespace ember {

// Bad input from the user: malformed or invalid config, unknown plugin asked for by name.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure while running (a plugin, I/O, the model).
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ember
