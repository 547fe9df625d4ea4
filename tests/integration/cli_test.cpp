// The `ember` command as a user runs it: exit codes (0 ok, 2 usage/config, 1 runtime), config
// errors with FILE:LINE:COL and key paths, the plugin listing and its refusals, and running in
// a read-only working directory without writing anything there.
#define BOOST_TEST_MODULE integration_cli
#include <boost/test/unit_test.hpp>

#include <boost/json.hpp>
#include <ember/abi.h>

#include "run_process.hpp"
#include "expect.hpp"
#include "temp_dir.hpp"

#include <sys/stat.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using ember::test::ProcessResult;
using ember::test::TempDir;

namespace {

using ember::test::contains;

std::string ember_exe() { return ember::test::require_env("EMBER_EXE"); }
fs::path good_dir() { return ember::test::require_env("EMBER_TEST_GOOD_PLUGIN_DIR"); }
fs::path bad_dir() { return ember::test::require_env("EMBER_TEST_BAD_PLUGIN_DIR"); }

ProcessResult run_ember(std::vector<std::string> args, const std::string& cwd = "") {
  args.insert(args.begin(), ember_exe());
  ember::test::ProcessOptions opt;
  opt.cwd = cwd;
  return ember::test::run_process(args, opt);
}

// The line of text that mentions needle, or "".
std::string line_with(const std::string& text, const std::string& needle) {
  std::size_t at = text.find(needle);
  if (at == std::string::npos) return {};
  std::size_t begin = text.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  std::size_t end = text.find('\n', at);
  return text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// A config file with text, in dir.
std::string write_config(const TempDir& dir, const std::string& name, const std::string& text) {
  const fs::path p = dir / name;
  ember::test::write_file(p, text);
  return p.string();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(basics)

BOOST_AUTO_TEST_CASE(version_exits_zero_and_names_the_abi) {
  ProcessResult r = run_ember({"--version"});
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(contains(r.out, "ember "), r.describe());
  // The version is written once, in meson's project(version:), and generated into version.hpp.
  const char* version = std::getenv("EMBER_PROJECT_VERSION");
  BOOST_REQUIRE_MESSAGE(version && *version, "run with meson test (EMBER_PROJECT_VERSION)");
  BOOST_TEST(r.out.rfind("ember " + std::string(version) + " (", 0) == 0, r.describe());
  BOOST_TEST(contains(r.out, "plugin ABI " + std::to_string(EMBER_ABI_MAJOR) + "." +
                                 std::to_string(EMBER_ABI_MINOR)),
             r.describe());
}

BOOST_AUTO_TEST_CASE(unknown_option_is_a_usage_error) {
  ProcessResult r = run_ember({"--no-such-option"});
  BOOST_TEST(r.exit_code == 2, r.describe());
}

BOOST_AUTO_TEST_CASE(config_without_its_required_file_option_is_a_usage_error) {
  ProcessResult r = run_ember({"config"});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "--config"), r.describe());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(config_command)

BOOST_AUTO_TEST_CASE(malformed_json_exits_2_with_file_line_col) {
  TempDir tmp;
  const std::string path = write_config(tmp, "bad.json",
                                        "{\n"
                                        "  \"trainer\": {\n"
                                        "    \"max_epochs\": 3\n"
                                        "    \"max_steps\": 10\n"
                                        "  }\n"
                                        "}\n");
  ProcessResult r = run_ember({"config", "-c", path});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, path + ":4:5:"), r.describe());
  BOOST_TEST(contains(r.err, "bad.json:4:5:"), r.describe());
}

BOOST_AUTO_TEST_CASE(missing_config_file_exits_2_naming_it) {
  TempDir tmp;
  const std::string path = (tmp / "absent.json").string();
  ProcessResult r = run_ember({"config", "-c", path});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, path), r.describe());
}

BOOST_AUTO_TEST_CASE(unknown_key_exits_2_with_path_and_did_you_mean) {
  TempDir tmp;
  const std::string path = write_config(tmp, "run.json", R"({"trainer": {"max_epoch": 3}})");
  ProcessResult r = run_ember({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "trainer.max_epoch"), r.describe());
  BOOST_TEST(contains(r.err, "did you mean 'trainer.max_epochs'"), r.describe());
}

BOOST_AUTO_TEST_CASE(valid_config_prints_resolved_json_with_defaults_and_overrides) {
  TempDir tmp;
  const std::string path = write_config(tmp, "run.json", R"({"trainer": {"max_epochs": 3}})");
  ProcessResult r = run_ember({"config", "-c", path, "--set", "data.batch_size=16", "--plugin-dir",
                           good_dir().string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  boost::system::error_code ec;
  boost::json::value cfg = boost::json::parse(r.out, ec);
  BOOST_TEST_REQUIRE(!ec, "stdout is not JSON: " << r.describe());
  BOOST_TEST(cfg.at("trainer").at("max_epochs").as_int64() == 3);
  BOOST_TEST(cfg.at("trainer").at("max_steps").as_int64() == -1);
  BOOST_TEST(cfg.at("data").at("batch_size").as_int64() == 16);
}

BOOST_AUTO_TEST_CASE(bad_override_exits_2_naming_the_key) {
  TempDir tmp;
  const std::string path = write_config(tmp, "run.json", "{}");
  ProcessResult r = run_ember({"config", "-c", path, "--set", "trainer.max_epochs=many", "--plugin-dir",
                           good_dir().string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "trainer.max_epochs"), r.describe());
  BOOST_TEST(contains(r.err, "expected integer"), r.describe());
}

BOOST_AUTO_TEST_CASE(plugin_asked_for_by_a_name_that_does_not_exist_exits_2_naming_it) {
  TempDir tmp;
  const std::string path =
      write_config(tmp, "run.json", R"({"trainer": {"callbacks": [{"plugin": "nope"}]}})");
  ProcessResult r = run_ember({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "'nope'"), r.describe());
  BOOST_TEST(contains(r.err, "trainer.callbacks[0]"), r.describe());
}

BOOST_AUTO_TEST_CASE(misspelt_plugin_name_gets_did_you_mean) {
  TempDir tmp;
  const std::string path =
      write_config(tmp, "run.json", R"({"trainer": {"callbacks": [{"plugin": "good_plugn"}]}})");
  ProcessResult r = run_ember({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "did you mean 'good_plugin'"), r.describe());
}

BOOST_AUTO_TEST_CASE(plugin_config_with_unknown_key_exits_2_with_the_key_path) {
  TempDir tmp;
  const std::string path = write_config(
      tmp, "run.json",
      R"({"trainer": {"callbacks": [{"plugin": "good_plugin", "config": {"prefx": "x"}}]}})");
  ProcessResult r = run_ember({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "trainer.callbacks[0].config.prefx"), r.describe());
  BOOST_TEST(contains(r.err, "did you mean 'trainer.callbacks[0].config.prefix'"), r.describe());
}

BOOST_AUTO_TEST_CASE(config_using_an_existing_plugin_is_accepted) {
  TempDir tmp;
  const std::string path = write_config(
      tmp, "run.json",
      R"({"trainer": {"callbacks": [{"plugin": "good_plugin", "config": {"prefix": "p"}}]}})");
  ProcessResult r = run_ember({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(r.exit_code == 0, r.describe());
}

BOOST_AUTO_TEST_CASE(plugin_dirs_in_config_are_relative_to_the_config_file) {
  TempDir tmp;
  ember::test::make_plugin_dir(tmp / "conf" / "my_plugins", {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(tmp / "conf", 0755);
  const std::string path = write_config(
      tmp, "conf/run.json",
      R"({"plugins": {"dirs": ["my_plugins"]}, "trainer": {"callbacks": [{"plugin": "good_plugin"}]}})");
  ProcessResult r = run_ember({"config", "-c", path}, tmp.path().string());
  BOOST_TEST(r.exit_code == 0, r.describe());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(plugins_command)

BOOST_AUTO_TEST_CASE(lists_good_plugin_with_version_abi_interfaces_and_file) {
  ProcessResult r = run_ember({"plugins", "--plugin-dir", good_dir().string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  const std::string line = line_with(r.out, "good_plugin ");
  BOOST_TEST_REQUIRE(!line.empty(), r.describe());
  BOOST_TEST(contains(line, "1.2.3"), line);
  BOOST_TEST(contains(line, "abi " + std::to_string(EMBER_ABI_MAJOR) + "." +
                                std::to_string(EMBER_ABI_MINOR)),
             line);
  BOOST_TEST(contains(line, EMBER_CALLBACKS_V1), line);
  BOOST_TEST(contains(line, EMBER_LOGGER_V1), line);
  BOOST_TEST(contains(line, EMBER_STATE_V1), line);
  BOOST_TEST(contains(line, (good_dir() / "good_plugin.so").string()), line);
  BOOST_TEST(contains(r.out, "throwing_plugin"), r.describe());
  BOOST_TEST(contains(r.out, "error_plugin"), r.describe());
  BOOST_TEST(r.err.empty(), r.describe());
}

BOOST_AUTO_TEST_CASE(json_listing_describes_each_plugin) {
  ProcessResult r = run_ember({"plugins", "--json", "--plugin-dir", good_dir().string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r.out, ec);
  BOOST_TEST_REQUIRE(!ec, "stdout is not JSON: " << r.describe());
  const auto& list = v.at("plugins").as_array();
  BOOST_TEST(list.size() == 3u);
  bool found = false;
  for (const auto& p : list) {
    if (p.at("id").as_string() != "good_plugin") continue;
    found = true;
    BOOST_TEST(p.at("version").as_string() == "1.2.3");
    BOOST_TEST(p.at("file").as_string() == (good_dir() / "good_plugin.so").string());
    BOOST_TEST(p.at("interfaces").as_array().size() == 3u);
  }
  BOOST_TEST(found, r.describe());
  BOOST_TEST(v.at("refused").as_array().empty());
}

BOOST_AUTO_TEST_CASE(bad_dir_exits_0_and_reports_each_refusal_with_path_and_reason) {
  ProcessResult r = run_ember({"plugins", "--plugin-dir", bad_dir().string()});
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(contains(r.out, "no plugins found"), r.describe());
  struct Expect {
    const char* file;
    std::vector<std::string> reason;
  };
  const std::string plugin_abi = std::to_string(EMBER_ABI_MAJOR + 1) + ".0";
  const std::string host_abi = std::to_string(EMBER_ABI_MAJOR) + "." + std::to_string(EMBER_ABI_MINOR);
  const Expect expects[] = {
      {"missing_symbol.so", {"no 'ember_plugin_entry' symbol"}},
      {"wrong_major.so", {"plugin ABI " + plugin_abi, "host's ABI " + host_abi}},
      {"small_struct.so", {"entry struct is"}},
      {"null_create.so", {"'create' is null"}},
  };
  for (const auto& e : expects) {
    const std::string path = (bad_dir() / e.file).string();
    const std::string line = line_with(r.err, path + ": refused");
    BOOST_TEST_CONTEXT(e.file) {
      BOOST_TEST(!line.empty(), r.describe());
      for (const auto& why : e.reason) BOOST_TEST(contains(line, why), line);
    }
  }
}

BOOST_AUTO_TEST_CASE(plugin_dir_writable_by_others_is_refused) {
  TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(dir, 0777);
  ProcessResult r = run_ember({"plugins", "--plugin-dir", dir.string()});
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(!contains(r.out, "good_plugin"), r.describe());
  const std::string line = line_with(r.err, dir.string() + ": refused");
  BOOST_TEST(!line.empty(), r.describe());
  BOOST_TEST(contains(line, "writable"), r.describe());
}

BOOST_AUTO_TEST_CASE(plugin_file_writable_by_others_is_refused) {
  TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(dir / "good_plugin.so", 0666);
  ProcessResult r = run_ember({"plugins", "--plugin-dir", dir.string()});
  BOOST_TEST(r.exit_code == 0, r.describe());
  const std::string line = line_with(r.err, (dir / "good_plugin.so").string() + ": refused");
  BOOST_TEST(contains(line, "writable"), r.describe());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// Commands plugins add, git-style: `ember NAME ARGS` execs an executable ember-NAME found in the
// plugin directories (EMBER_PLUGIN_PATH here, else next to the binary), refused on the same rules
// as plugin libraries.
BOOST_AUTO_TEST_SUITE(plugin_commands)

// EMBER_PLUGIN_PATH set (or unset) for one test, restored after it.
class PluginPath {
 public:
  explicit PluginPath(const char* value) {
    if (const char* old = std::getenv("EMBER_PLUGIN_PATH")) old_ = old, had_ = true;
    if (value) ::setenv("EMBER_PLUGIN_PATH", value, 1);
    else ::unsetenv("EMBER_PLUGIN_PATH");
  }
  ~PluginPath() {
    if (had_) ::setenv("EMBER_PLUGIN_PATH", old_.c_str(), 1);
    else ::unsetenv("EMBER_PLUGIN_PATH");
  }

 private:
  std::string old_;
  bool had_ = false;
};

// dir/ember-NAME, a shell script with mode.
fs::path write_command(const fs::path& dir, const std::string& name, const std::string& script, mode_t mode) {
  fs::create_directories(dir);
  ember::test::chmod_or_throw(dir, 0700);
  const fs::path p = dir / ("ember-" + name);
  ember::test::write_file(p, "#!/bin/sh\n" + script);
  ember::test::chmod_or_throw(p, mode);
  return p;
}

BOOST_AUTO_TEST_CASE(help_lists_the_wandb_command_of_the_build_tree) {
  PluginPath path(nullptr);  // the default directories: build/plugins/, where ember-wandb is
  ProcessResult r = run_ember({"--help"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  BOOST_TEST(contains(r.out, "commands from plugins:"), r.describe());
  const std::string line = line_with(r.out, "  wandb  (");
  BOOST_TEST(!line.empty(), r.describe());
  BOOST_TEST(contains(line, "/plugins/wandb/ember-wandb)"), line);
}

BOOST_AUTO_TEST_CASE(runs_a_plugin_command_with_its_args_and_exit_code) {
  TempDir tmp;
  const fs::path dir = tmp / "plugins";
  write_command(dir, "echoargs", "for a in \"$@\"; do echo \"[$a]\"; done\necho oops >&2\nexit 7\n", 0700);
  PluginPath path(dir.c_str());
  ProcessResult r = run_ember({"echoargs", "a b", "--set", "x=1"});
  BOOST_TEST(r.exit_code == 7, r.describe());
  BOOST_TEST(r.out == "[a b]\n[--set]\n[x=1]\n", r.describe());
  BOOST_TEST(r.err == "oops\n", r.describe());
  ProcessResult help = run_ember({"--help"});
  BOOST_TEST(contains(help.out, "  echoargs  (" + (dir / "ember-echoargs").string() + ")"), help.describe());
}

BOOST_AUTO_TEST_CASE(world_writable_plugin_command_is_refused_naming_the_file) {
  TempDir tmp;
  const fs::path dir = tmp / "plugins";
  const fs::path file = write_command(dir, "x", "echo ran\n", 0777);
  PluginPath path(dir.c_str());
  ProcessResult r = run_ember({"x", "arg"});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(!contains(r.out, "ran"), r.describe());
  const std::string line = line_with(r.err, file.string() + ": refused");
  BOOST_TEST(!line.empty(), r.describe());
  BOOST_TEST(contains(line, "writable by group or others"), line);
  BOOST_TEST(contains(line, "chmod go-w " + file.string()), line);
  // --help lists the refusal too, and not the command.
  ProcessResult help = run_ember({"--help"});
  BOOST_TEST(contains(help.out, file.string() + ": refused"), help.describe());
  BOOST_TEST(!contains(help.out, "  x  ("), help.describe());
}

BOOST_AUTO_TEST_CASE(unknown_command_exits_2_naming_it) {
  ProcessResult r = run_ember({"nosuchcmd", "--flag"});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(contains(r.err, "'nosuchcmd' is not an ember command"), r.describe());
  BOOST_TEST(r.out.empty(), r.describe());
}

// The host links the core, libtorch and CLI11 only: W&B's HTTP stack (Beast over OpenSSL) is the
// plugin's and its command's.
BOOST_AUTO_TEST_CASE(ember_binary_does_not_link_openssl) {
  BOOST_TEST_REQUIRE(fs::exists("/usr/bin/readelf"), "/usr/bin/readelf (binutils) is needed");
  ProcessResult r = ember::test::run_process({"/usr/bin/readelf", "-d", ember_exe()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  BOOST_TEST_REQUIRE(contains(r.out, "(NEEDED)"), r.describe());
  BOOST_TEST(contains(r.out, "[libtorch"), r.describe());  // the check reads the right thing
  BOOST_TEST(!contains(r.out, "[libssl"), r.describe());
  BOOST_TEST(!contains(r.out, "[libcrypto"), r.describe());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(read_only_working_directory)

// Runs args with a fresh 0555 directory as cwd; checks exit 0 and that nothing appeared there.
// As root, 0555 does not stop writes, so the emptiness check is what proves the point.
void runs_without_writing_to_cwd(const std::vector<std::string>& args) {
  TempDir tmp;
  const fs::path cwd = tmp / "ro";
  fs::create_directory(cwd);
  ember::test::chmod_or_throw(cwd, 0555);
  ProcessResult r = run_ember(args, cwd.string());
  BOOST_TEST(r.exit_code == 0, r.describe());
  const auto left = ember::test::list_dir(cwd);
  BOOST_TEST(left.empty(), "created in the working directory: " << (left.empty() ? "" : left.front()));
  struct ::stat st;
  BOOST_TEST_REQUIRE(::stat(cwd.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0555u);
}

BOOST_AUTO_TEST_CASE(plugins_runs_in_read_only_cwd_and_writes_nothing_there) {
  runs_without_writing_to_cwd({"plugins"});
  runs_without_writing_to_cwd({"plugins", "--plugin-dir", good_dir().string()});
}

BOOST_AUTO_TEST_CASE(config_runs_in_read_only_cwd_and_writes_nothing_there) {
  TempDir conf;
  const std::string path = write_config(
      conf, "run.json",
      R"({"trainer": {"default_root_dir": "out", "callbacks": [{"plugin": "good_plugin"}]}})");
  runs_without_writing_to_cwd({"config", "-c", path, "--plugin-dir", good_dir().string()});
  BOOST_TEST(ember::test::list_dir(conf.path()) == std::vector<std::string>{"run.json"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
