// Tests that need an outside tool (node and @wandb/sdk, protoc and python3-protobuf): without it a
// case is skipped with the reason, and a test executable with a skipped case and no failure exits
// 77 (meson SKIP, not OK, even if other cases passed; scripts/test-all lists it with the reason). Under CI (CI set, and not "", "0" or
// "false") a missing tool is a failure instead: the case runs and fails naming what is missing, so
// CI cannot go green on tests that never ran.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>

namespace ember::test::tools {

inline bool ci() {
  const char* v = std::getenv("CI");
  if (!v) return false;
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return !(s.empty() || s == "0" || s == "false" || s == "no");
}

// The first executable called name on PATH, or "".
inline std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    std::filesystem::path p = std::filesystem::path(d.empty() ? "." : d) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

struct Record {
  bool skipped = false;
  std::string reason;
};
inline Record& record() {
  static Record r;
  return r;
}

// A Boost.Test precondition: `missing` says what is missing ("" when everything is there). Skips
// the case with that reason, except under CI, where the case runs and require() fails it.
struct Needs {
  std::function<std::string()> missing;
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    std::string m = missing();
    if (m.empty() || ci()) return true;
    record().skipped = true;
    record().reason = m;
    boost::test_tools::assertion_result r(false);
    r.message() << m;
    return r;
  }
  // First thing in the case: fails it (under CI) when the tool is missing.
  void require() const {
    std::string m = missing();
    BOOST_REQUIRE_MESSAGE(m.empty(), m + " (CI is set: a test that cannot find its tool fails instead of skipping)");
  }
};

// Boost.Test's main, except that a run with a skipped case and no failure exits 77 with the reason.
inline int main_with_skip(int argc, char* argv[], const char* name) {
  int rc = boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
  if (rc != 0 || !record().skipped) return rc;
  std::cerr << name << ": SKIP: " << record().reason << "\n";
  return 77;
}

}  // namespace ember::test::tools
