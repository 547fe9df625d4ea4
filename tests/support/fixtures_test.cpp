// The test fixtures themselves: run_process captures both streams and the exit status without
// deadlocking, and TempDir cleans up even what a test made read-only. A fixture that lies
// would make every integration test pass for the wrong reason.
#define BOOST_TEST_MODULE support_fixtures
#include <boost/test/unit_test.hpp>

#include "run_process.hpp"
#include "temp_dir.hpp"

#include <filesystem>
#include <string>

namespace fs = std::filesystem;
using ember::test::run_process;

BOOST_AUTO_TEST_CASE(run_process_captures_stdout_stderr_and_exit_code) {
  auto r = run_process({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  BOOST_TEST(r.exit_code == 3);
  BOOST_TEST(r.out == "out\n");
  BOOST_TEST(r.err == "err\n");
}

BOOST_AUTO_TEST_CASE(run_process_drains_large_output_on_both_streams) {
  // More than a pipe buffer on each stream, interleaved: a naive reader would deadlock.
  auto r = run_process({"/bin/sh", "-c",
                        "i=0; while [ $i -lt 2000 ]; do "
                        "echo 0123456789012345678901234567890123456789; "
                        "echo abcdefghijabcdefghijabcdefghijabcdefghij >&2; i=$((i+1)); done"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out.size() == 2000u * 41u);
  BOOST_TEST(r.err.size() == 2000u * 41u);
}

BOOST_AUTO_TEST_CASE(run_process_runs_in_the_given_directory) {
  ember::test::TempDir tmp;
  ember::test::ProcessOptions opt;
  opt.cwd = tmp.path().string();
  auto r = run_process({"/bin/pwd"}, opt);
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(fs::equivalent(fs::path(r.out.substr(0, r.out.size() - 1)), tmp.path()));
}

BOOST_AUTO_TEST_CASE(run_process_reports_death_by_signal_and_failed_exec) {
  auto killed = run_process({"/bin/sh", "-c", "kill -9 $$"});
  BOOST_TEST(killed.exit_code == 128 + 9);
  auto missing = run_process({"/nonexistent/program"});
  BOOST_TEST(missing.exit_code == 127);
  BOOST_TEST(missing.err.find("exec failed") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(temp_dir_removes_read_only_trees) {
  fs::path kept;
  {
    ember::test::TempDir tmp;
    kept = tmp.path();
    fs::create_directories(tmp / "a" / "b");
    ember::test::write_file(tmp / "a" / "b" / "f", "x");
    ember::test::chmod_or_throw(tmp / "a" / "b", 0555);
    ember::test::chmod_or_throw(tmp / "a", 0555);
    BOOST_TEST(fs::exists(kept / "a" / "b" / "f"));
  }
  BOOST_TEST(!fs::exists(kept));
}
