// The tensorboard suites' reader: tests/plugins/tensorboard/read_events.py (/usr/bin/python3 with
// python3-protobuf, the .proto files beside it compiled by protoc) run on a directory of event
// files, its JSON parsed. A missing tool fails the test and says what to install.
#pragma once

#include <algorithm>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>
#include <vector>
#include <sstream>
#include <string>

#include "run_process.hpp"
#include "temp_dir.hpp"

namespace ember::test::tb {

namespace fs = std::filesystem;
namespace json = boost::json;

inline std::string source_dir() { return ember::test::require_env("EMBER_SOURCE_ROOT") + "/tests/plugins/tensorboard"; }

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// The reader's tools: missing ones fail the test (CI or not), naming what to install.
inline void require_tool(const char* path, const char* package) {
  BOOST_REQUIRE_MESSAGE(fs::exists(path), std::string(path) + " not found: install " + package +
                                              " (scripts/bootstrap); the event files cannot be checked without it");
}

// protoc output for the tests' .proto files, compiled once per test process.
inline const std::string& proto_out() {
  static TempDir dir;
  static const std::string out = [] {
    require_tool("/usr/bin/protoc", "protobuf-compiler");
    require_tool("/usr/bin/python3", "python3");
    auto r = run_process({"/usr/bin/protoc", "-I" + source_dir(), "-I/usr/include", "--python_out=" + dir.path().string(),
                          "tb_event.proto", "tb_hparams.proto"},
                         {source_dir()});
    BOOST_REQUIRE_MESSAGE(r.exit_code == 0, "protoc failed: " + r.describe());
    auto py = run_process({"/usr/bin/python3", "-c", "import google.protobuf"});
    BOOST_REQUIRE_MESSAGE(py.exit_code == 0, "python3-protobuf is missing (scripts/bootstrap): " + py.describe());
    return dir.path().string();
  }();
  return out;
}

// Everything read_events.py found in run_dir's event files (fails the test on any CRC/framing error).
inline json::object read_events(const fs::path& run_dir) {
  auto r = run_process({"/usr/bin/python3", source_dir() + "/read_events.py", proto_out(), run_dir.string()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, "read_events.py on " + run_dir.string() + ": " + r.describe());
  return json::parse(r.out).as_object();
}

inline double num(const json::value& v) { return v.to_number<double>(); }
// A scalar as TensorBoard keeps it (float32). Compared as floats: Boost.JSON 1.81 may parse the
// reader's shortest decimal one double ulp off.
inline float f32(double v) { return static_cast<float>(v); }

// The event files hold every value of csv_logger's metrics.csv (Lightning's wide layout: a row
// per step, a column per metric) of the same run: each metric at the same steps, in the same
// order, as float32, nothing more.
inline void check_scalars_match_csv(json::object& ev, const std::string& csv_text) {
  auto cells = [](const std::string& line) {
    std::vector<std::string> f(1);
    for (char c : line) {
      if (c == ',')
        f.emplace_back();
      else
        f.back().push_back(c);
    }
    return f;
  };
  std::istringstream csv(csv_text);
  std::string line;
  std::getline(csv, line);
  const auto header = cells(line);
  const auto step_col = std::find(header.begin(), header.end(), "step") - header.begin();
  BOOST_REQUIRE_MESSAGE(step_col < static_cast<std::ptrdiff_t>(header.size()), "no step column: " + line);
  std::map<std::string, std::vector<std::pair<std::int64_t, double>>> want;
  while (std::getline(csv, line)) {
    auto f = cells(line);
    BOOST_REQUIRE_EQUAL(f.size(), header.size());
    for (size_t c = 0; c < f.size(); ++c)
      if (header[c] != "step" && header[c] != "epoch" && !f[c].empty())
        want[header[c]].emplace_back(std::stoll(f[static_cast<size_t>(step_col)]), std::stod(f[c]));
  }
  BOOST_REQUIRE(want.count("train_loss"));
  BOOST_REQUIRE(want.count("val_accuracy"));
  auto& scalars = ev["scalars"].as_object();
  for (auto& [name, rows] : want) {
    BOOST_REQUIRE_MESSAGE(scalars.contains(name), "no scalar " + name + " in the event files");
    auto& got = scalars[name].as_array();
    BOOST_REQUIRE_EQUAL(got.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      BOOST_CHECK_EQUAL(got[i].as_array()[0].as_int64(), rows[i].first);
      BOOST_CHECK_EQUAL(f32(num(got[i].as_array()[1])), f32(rows[i].second));
    }
  }
  for (auto& kv : scalars)
    BOOST_CHECK_MESSAGE(kv.key() == "hp_metric" || want.count(std::string(kv.key())), "unexpected scalar " << kv.key());
}

}  // namespace ember::test::tb
