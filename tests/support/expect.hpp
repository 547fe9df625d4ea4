// Small helpers for assertions on messages, shared by the suites.
#pragma once

#include <exception>
#include <string>

namespace ember::test {

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Run fn and return the what() of the exception it throws, or "(no exception)".
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace ember::test
