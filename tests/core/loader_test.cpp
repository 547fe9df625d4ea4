// The plugin loader: entry checks field by field (in-process tables, no dlopen), the version
// rule, refusal of real bad .so files, directory scans and their permission checks, config
// checks before create, and plugin failures surfacing as errors with the plugin's words.
#define BOOST_TEST_MODULE loader
#include <boost/test/unit_test.hpp>

#include <ember/loader.hpp>

#include "expect.hpp"
#include "temp_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

using ember::test::contains;
using ember::test::error_of;

using ember::check_entry;
using ember::ConfigError;
using ember::RuntimeError;

std::string version_string(unsigned major, unsigned minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// --- an in-process entry that check_entry accepts; tests break one field at a time.
int dummy_instance;
ember_status_t ok_create(const ember_host_t*, ember_str_t, void** out) {
  *out = &dummy_instance;
  return EMBER_OK;
}
void ok_destroy(void*) {}
const void* ok_get_interface(void*, ember_str_t) { return nullptr; }
ember_str_t ok_last_error(void*) { return {"", 0}; }

ember_plugin_entry_t good_entry() {
  ember_plugin_entry_t e{};
  e.abi_major = EMBER_ABI_MAJOR;
  e.abi_minor = EMBER_ABI_MINOR;
  e.struct_size = sizeof e;
  e.id = EMBER_STR("in_process");
  e.version = EMBER_STR("1.0.0");
  e.description = EMBER_STR("built by the test");
  e.config_schema = EMBER_STR(R"({"type": "object"})");
  e.create = &ok_create;
  e.destroy = &ok_destroy;
  e.get_interface = &ok_get_interface;
  e.last_error = &ok_last_error;
  return e;
}

fs::path good_dir() { return ember::test::require_env("EMBER_TEST_GOOD_PLUGIN_DIR"); }
fs::path bad_dir() { return ember::test::require_env("EMBER_TEST_BAD_PLUGIN_DIR"); }

// Services that keep every line plugins log, so a test sees what a plugin recorded.
class RecordingServices : public ember::Services {
 public:
  void log(const std::string& plugin_id, int, std::string_view message) override {
    lines.push_back(plugin_id + ": " + std::string(message));
  }
  bool saw(const std::string& needle) const {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return contains(l, needle); });
  }
  std::vector<std::string> lines;
};

ember::HookArgs hook_args() {
  ember::HookArgs a{};
  a.struct_size = sizeof a;
  a.stage = EMBER_STAGE_FIT;
  a.batch_idx = -1;
  a.optimizer_idx = -1;
  return a;
}

// --- an in-process plugin whose interface tables a test sets byte by byte, to break them.
std::map<std::string, std::vector<unsigned char>> g_tables;  // interface id -> the table's bytes
int g_destroyed = 0;
const void* table_get_interface(void*, ember_str_t id) {
  auto it = g_tables.find(std::string(ember::sv(id)));
  return it == g_tables.end() ? nullptr : it->second.data();
}
void counting_destroy(void*) { ++g_destroyed; }

// A full table with every slot filled with a pattern (never called) and struct_size as given;
// then bytes past struct_size still hold the pattern, to show the host does not read them.
template <class Table>
std::vector<unsigned char> full_table(std::uint32_t struct_size = sizeof(Table)) {
  std::vector<unsigned char> bytes(sizeof(Table), 0x5a);
  std::memcpy(bytes.data(), &struct_size, sizeof struct_size);
  return bytes;
}
template <class Table, class Field>
void set_field(std::vector<unsigned char>& bytes, std::size_t offset, const Field& value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

const char kSchemes[] = "fake";
std::vector<unsigned char> storage_table() {
  auto t = full_table<ember_storage_v1_t>();
  set_field<ember_storage_v1_t>(t, offsetof(ember_storage_v1_t, schemes), ember_str_t{kSchemes, 4});
  return t;
}

std::shared_ptr<ember::PluginLibrary> table_library(ember_plugin_entry_t& e) {
  e = good_entry();
  e.get_interface = &table_get_interface;
  e.destroy = &counting_destroy;
  return std::make_shared<ember::PluginLibrary>("in-process/in_process.so", &e);
}

// The in-process plugin, created with the tables in g_tables.
struct TablePlugin {
  TablePlugin() : lib(table_library(entry)), inst(lib, boost::json::object{}, services, "test") {}
  ember_plugin_entry_t entry;
  std::shared_ptr<ember::PluginLibrary> lib;
  ember::Services services;
  ember::PluginInstance inst;
};

// What creating the in-process plugin says, with the tables in g_tables ("" when accepted).
std::string creation_error() {
  const int destroyed = g_destroyed;
  try {
    TablePlugin p;
  } catch (const RuntimeError& err) {
    if (g_destroyed != destroyed + 1) return "refused without destroying the instance: " + std::string(err.what());
    return err.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(entry_checks)

BOOST_AUTO_TEST_CASE(accepts_a_well_formed_entry) {
  auto e = good_entry();
  BOOST_TEST(check_entry(e) == "");
  e.config_schema = {nullptr, 0};  // no schema: accepts {} only, still valid
  BOOST_TEST(check_entry(e) == "");
}

BOOST_AUTO_TEST_CASE(refuses_plugin_with_other_abi_major) {
  auto e = good_entry();
  e.abi_major = EMBER_ABI_MAJOR + 1;
  e.abi_minor = 3;
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, "major"), why);
  BOOST_TEST(contains(why, version_string(EMBER_ABI_MAJOR + 1, 3)), why);
  BOOST_TEST(contains(why, version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR)), why);
}

BOOST_AUTO_TEST_CASE(refuses_plugin_with_older_abi_major) {
  auto e = good_entry();
  e.abi_major = 0;
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, version_string(0, EMBER_ABI_MINOR)), why);
  BOOST_TEST(contains(why, version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR)), why);
}

BOOST_AUTO_TEST_CASE(refuses_plugin_with_newer_abi_minor) {
  auto e = good_entry();
  e.abi_minor = EMBER_ABI_MINOR + 1;
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, "newer"), why);
  BOOST_TEST(contains(why, version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR + 1)), why);
  BOOST_TEST(contains(why, version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR)), why);
}

BOOST_AUTO_TEST_CASE(refuses_entry_with_small_struct_size) {
  auto e = good_entry();
  e.struct_size = offsetof(ember_plugin_entry_t, create);
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, "entry struct"), why);
  BOOST_TEST(contains(why, std::to_string(e.struct_size) + " bytes"), why);
  BOOST_TEST(contains(why, std::to_string(ember::kEntryMinSize) + " bytes"), why);
}

BOOST_AUTO_TEST_CASE(accepts_entry_larger_than_the_host_knows) {
  auto e = good_entry();
  e.struct_size = sizeof e + 64;  // a newer minor's entry; the host reads only its prefix
  BOOST_TEST(check_entry(e) == "");
}

BOOST_AUTO_TEST_CASE(refuses_bad_plugin_ids) {
  for (const char* id : {"", "Upper", "has-dash", "has space", "dots.bad", "ünï"}) {
    auto e = good_entry();
    e.id = {id, std::char_traits<char>::length(id)};
    const std::string why = check_entry(e);
    BOOST_TEST_CONTEXT("id '" << id << "'") {
      BOOST_TEST(contains(why, "plugin id '" + std::string(id) + "'"), why);
      BOOST_TEST(contains(why, "[a-z0-9_]"), why);
    }
  }
  auto e = good_entry();
  const std::string long_id(65, 'a');
  e.id = {long_id.data(), long_id.size()};
  BOOST_TEST(!check_entry(e).empty());
  e.id = {nullptr, 0};
  BOOST_TEST(!check_entry(e).empty());
}

BOOST_AUTO_TEST_CASE(refuses_entry_with_each_null_required_function) {
  struct Case {
    const char* name;
    void (*breaks)(ember_plugin_entry_t&);
  };
  const Case cases[] = {
      {"create", [](ember_plugin_entry_t& e) { e.create = nullptr; }},
      {"destroy", [](ember_plugin_entry_t& e) { e.destroy = nullptr; }},
      {"get_interface", [](ember_plugin_entry_t& e) { e.get_interface = nullptr; }},
      {"last_error", [](ember_plugin_entry_t& e) { e.last_error = nullptr; }},
  };
  for (const auto& c : cases) {
    auto e = good_entry();
    c.breaks(e);
    const std::string why = check_entry(e);
    BOOST_TEST_CONTEXT("null " << c.name) {
      BOOST_TEST(contains(why, std::string("'") + c.name + "'"), why);
      BOOST_TEST(contains(why, "null"), why);
    }
  }
}

BOOST_AUTO_TEST_CASE(refuses_entry_with_invalid_config_schema_json) {
  auto e = good_entry();
  e.config_schema = EMBER_STR("{\"type\": \"object\",\n \"properties\": }");
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, "config_schema"), why);
  BOOST_TEST(contains(why, "not valid JSON"), why);
  BOOST_TEST(contains(why, "config_schema:2:"), why);  // where in the schema text
}

BOOST_AUTO_TEST_CASE(refuses_entry_whose_config_schema_is_not_an_object) {
  auto e = good_entry();
  e.config_schema = EMBER_STR("[1, 2]");
  const std::string why = check_entry(e);
  BOOST_TEST(contains(why, "config_schema is not a JSON object"), why);
}

BOOST_AUTO_TEST_CASE(version_rule_is_same_major_and_host_minor_at_least_plugin_minor) {
  BOOST_TEST(ember::check_abi_version(EMBER_ABI_MAJOR, EMBER_ABI_MINOR) == "");
  BOOST_TEST(ember::check_abi_version(EMBER_ABI_MAJOR, 0) == "");
  BOOST_TEST(!ember::check_abi_version(EMBER_ABI_MAJOR, EMBER_ABI_MINOR + 1).empty());
  BOOST_TEST(!ember::check_abi_version(EMBER_ABI_MAJOR + 1, 0).empty());
  BOOST_TEST(!ember::check_abi_version(EMBER_ABI_MAJOR - 1, EMBER_ABI_MINOR).empty());
  BOOST_TEST(!ember::check_abi_version(0xFFFF, 0).empty());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(open_library)

BOOST_AUTO_TEST_CASE(refuses_library_without_entry_symbol) {
  const fs::path p = bad_dir() / "missing_symbol.so";
  const std::string what = error_of([&] { ember::open_library(p); });
  BOOST_TEST(contains(what, p.string() + ": refused"), what);
  BOOST_TEST(contains(what, "no '" EMBER_ENTRY_SYMBOL "' symbol"), what);
  BOOST_CHECK_THROW(ember::open_library(p), RuntimeError);
}

BOOST_AUTO_TEST_CASE(refuses_library_with_other_abi_major_naming_both_versions) {
  const fs::path p = bad_dir() / "wrong_major.so";
  const std::string what = error_of([&] { ember::open_library(p); });
  BOOST_TEST(contains(what, p.string() + ": refused"), what);
  BOOST_TEST(contains(what, "plugin ABI " + version_string(EMBER_ABI_MAJOR + 1, 0)), what);
  BOOST_TEST(contains(what, "host's ABI " + version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR)), what);
  BOOST_CHECK_THROW(ember::open_library(p), RuntimeError);
}

BOOST_AUTO_TEST_CASE(refuses_library_with_small_entry_struct) {
  const fs::path p = bad_dir() / "small_struct.so";
  const std::string what = error_of([&] { ember::open_library(p); });
  BOOST_TEST(contains(what, p.string() + ": refused"), what);
  BOOST_TEST(contains(what, "entry struct is " + std::to_string(offsetof(ember_plugin_entry_t, destroy)) +
                                " bytes"),
             what);
  BOOST_CHECK_THROW(ember::open_library(p), RuntimeError);
}

BOOST_AUTO_TEST_CASE(refuses_library_with_null_create) {
  const fs::path p = bad_dir() / "null_create.so";
  const std::string what = error_of([&] { ember::open_library(p); });
  BOOST_TEST(contains(what, p.string() + ": refused"), what);
  BOOST_TEST(contains(what, "'create' is null"), what);
  BOOST_CHECK_THROW(ember::open_library(p), RuntimeError);
}

BOOST_AUTO_TEST_CASE(refuses_file_that_is_not_a_shared_library) {
  ember::test::TempDir tmp;
  const fs::path p = tmp / "text.so";
  ember::test::write_file(p, "this is not an ELF file\n");
  const std::string what = error_of([&] { ember::open_library(p); });
  BOOST_TEST(contains(what, p.string() + ": refused: cannot load"), what);
  BOOST_CHECK_THROW(ember::open_library(p), RuntimeError);
}

BOOST_AUTO_TEST_CASE(opens_good_plugin_and_reads_its_entry) {
  auto lib = ember::open_library(good_dir() / "good_plugin.so");
  BOOST_TEST(lib->id() == "good_plugin");
  BOOST_TEST(lib->version() == "1.2.3");
  BOOST_TEST(lib->abi() == version_string(EMBER_ABI_MAJOR, EMBER_ABI_MINOR));
  BOOST_TEST(contains(lib->path(), "good_plugin.so"));
  const std::vector<std::string> expected{EMBER_CALLBACKS_V1, EMBER_LOGGER_V1, EMBER_STATE_V1};
  BOOST_TEST(lib->interfaces() == expected, boost::test_tools::per_element());

  auto c = ember::open_library(good_dir() / "error_plugin.so");
  BOOST_TEST(c->id() == "error_plugin");
  const std::vector<std::string> callbacks_only{EMBER_CALLBACKS_V1};
  BOOST_TEST(c->interfaces() == callbacks_only, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(catalog)

BOOST_AUTO_TEST_CASE(scan_of_bad_dir_collects_one_refusal_per_library_and_no_plugin) {
  ember::Catalog cat;
  cat.scan(bad_dir());
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 4u);
  for (const char* name : {"missing_symbol", "wrong_major", "small_struct", "null_create"}) {
    const std::string path = (bad_dir() / (std::string(name) + ".so")).string();
    const bool named = std::any_of(cat.refusals.begin(), cat.refusals.end(), [&](const std::string& r) {
      return r.rfind(path + ": refused: ", 0) == 0;
    });
    BOOST_TEST(named, "no refusal for " << path);
  }
}

BOOST_AUTO_TEST_CASE(scan_of_good_dir_finds_the_three_test_plugins) {
  ember::Catalog cat;
  cat.scan(good_dir());
  BOOST_TEST(cat.refusals.empty(), (cat.refusals.empty() ? "" : cat.refusals.front()));
  BOOST_TEST(cat.plugins.size() == 3u);
  for (const char* id : {"good_plugin", "throwing_plugin", "error_plugin"})
    BOOST_TEST(cat.find(id) != nullptr, "missing " << id);
  BOOST_TEST(cat.dirs.size() == 1u);
}

BOOST_AUTO_TEST_CASE(scan_descends_one_level_into_subdirectories) {
  ember::test::TempDir tmp;
  const fs::path root = tmp / "plugins";
  ember::test::make_plugin_dir(root / "one", {good_dir() / "good_plugin.so"});
  ember::test::make_plugin_dir(root / "one" / "two", {good_dir() / "error_plugin.so"});
  ember::test::chmod_or_throw(root, 0755);
  ember::Catalog cat;
  cat.scan(root);
  BOOST_TEST(cat.find("good_plugin") != nullptr);
  BOOST_TEST(cat.find("error_plugin") == nullptr);  // two levels down: not scanned
}

BOOST_AUTO_TEST_CASE(scan_of_missing_dir_is_a_refusal_not_a_crash) {
  ember::test::TempDir tmp;
  ember::Catalog cat;
  cat.scan(tmp / "does-not-exist");
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], "does-not-exist"));
  BOOST_TEST(contains(cat.refusals[0], "not a directory"));
}

BOOST_AUTO_TEST_CASE(refuses_directory_writable_by_group) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(dir, 0775);
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], dir.string()), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "writable"), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "0775"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_directory_writable_by_others) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(dir, 0757);
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], "writable"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_writable_subdirectory_but_keeps_the_rest) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::make_plugin_dir(dir / "sub", {good_dir() / "error_plugin.so"});
  ember::test::chmod_or_throw(dir / "sub", 0777);
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.find("good_plugin") != nullptr);
  BOOST_TEST(cat.find("error_plugin") == nullptr);
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], (dir / "sub").string()), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "writable"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_plugin_file_with_mode_0666) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so", good_dir() / "error_plugin.so"});
  ember::test::chmod_or_throw(dir / "good_plugin.so", 0666);
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.find("good_plugin") == nullptr);
  BOOST_TEST(cat.find("error_plugin") != nullptr);
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], (dir / "good_plugin.so").string()), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "writable"), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "0666"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_plugin_dir_inside_a_world_writable_parent) {
  ember::test::TempDir tmp;
  const fs::path open = tmp / "open";
  ember::test::make_plugin_dir(open / "plugins", {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(open, 0777);  // anyone could rename plugins/ and put another there
  ember::Catalog cat;
  cat.scan(open / "plugins");
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  const std::string& r = cat.refusals[0];
  BOOST_TEST(contains(r, (open / "plugins").string() + ": refused: directory " + open.string() + " is writable"), r);
  BOOST_TEST(contains(r, "0777"), r);
  BOOST_TEST(contains(r, "chmod go-w " + open.string()), r);
}

BOOST_AUTO_TEST_CASE(accepts_own_plugin_dir_under_a_sticky_world_writable_parent) {
  ember::test::TempDir tmp;
  const fs::path shared = tmp / "shared";
  ember::test::make_plugin_dir(shared / "plugins", {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(shared, 01777);  // like /tmp: nobody else can move our entry
  ember::Catalog cat;
  cat.scan(shared / "plugins");
  BOOST_TEST(cat.refusals.empty(), (cat.refusals.empty() ? "" : cat.refusals.front()));
  BOOST_TEST(cat.find("good_plugin") != nullptr);
}

BOOST_AUTO_TEST_CASE(refuses_a_sticky_world_writable_dir_as_plugin_dir) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(dir, 01777);  // anyone may add a .so here
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], "1777"), cat.refusals[0]);
  BOOST_TEST(contains(cat.refusals[0], "chmod go-w " + dir.string()), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_symlink_to_a_library_in_a_world_writable_dir) {
  ember::test::TempDir tmp;
  const fs::path open = tmp / "open";
  ember::test::make_plugin_dir(open, {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(open, 0777);
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "error_plugin.so"});
  fs::create_symlink(open / "good_plugin.so", dir / "good_plugin.so");
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.find("good_plugin") == nullptr);
  BOOST_TEST(cat.find("error_plugin") != nullptr);
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  const std::string& r = cat.refusals[0];
  BOOST_TEST(contains(r, (dir / "good_plugin.so").string() + ": refused: directory " + open.string()), r);
  BOOST_TEST(contains(r, "writable"), r);
}

BOOST_AUTO_TEST_CASE(follows_symlink_to_a_library_in_a_trusted_dir_and_loads_the_target) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {});
  const fs::path target = fs::canonical(good_dir() / "good_plugin.so");
  fs::create_symlink(target, dir / "good_plugin.so");
  fs::path resolved;
  BOOST_TEST(ember::check_trusted(dir / "good_plugin.so", &resolved) == "");
  BOOST_TEST(resolved == target);
  ember::Catalog cat;
  cat.scan(dir);
  BOOST_TEST(cat.refusals.empty(), (cat.refusals.empty() ? "" : cat.refusals.front()));
  BOOST_TEST(cat.find("good_plugin") != nullptr);
}

BOOST_AUTO_TEST_CASE(refuses_a_symlinked_plugin_dir_whose_target_parent_is_world_writable) {
  ember::test::TempDir tmp;
  const fs::path open = tmp / "open";
  ember::test::make_plugin_dir(open / "real", {good_dir() / "good_plugin.so"});
  ember::test::chmod_or_throw(open, 0777);
  fs::create_symlink(open / "real", tmp / "plugins");
  ember::Catalog cat;
  cat.scan(tmp / "plugins");
  BOOST_TEST(cat.plugins.empty());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], "directory " + open.string() + " is writable"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(refuses_plugin_file_owned_by_another_user) {
  ember::test::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  ember::test::make_plugin_dir(dir, {good_dir() / "good_plugin.so", good_dir() / "error_plugin.so"});
  if (::geteuid() == 0) {
    // As root: really hand the file (and a symlink) to someone else.
    BOOST_TEST_REQUIRE(::chown((dir / "good_plugin.so").c_str(), 4242, 4242) == 0);
    fs::create_symlink(fs::canonical(good_dir() / "throwing_plugin.so"), dir / "throwing_plugin.so");
    BOOST_TEST_REQUIRE(::lchown((dir / "throwing_plugin.so").c_str(), 4242, 4242) == 0);
    ember::Catalog cat;
    cat.scan(dir);
    BOOST_TEST(cat.find("error_plugin") != nullptr);
    BOOST_TEST(cat.find("good_plugin") == nullptr);
    BOOST_TEST(cat.find("throwing_plugin") == nullptr);
    BOOST_TEST_REQUIRE(cat.refusals.size() == 2u);
    for (const auto& r : cat.refusals) {
      BOOST_TEST(contains(r, "is owned by uid 4242"), r);
      BOOST_TEST(contains(r, "Fix with: chown "), r);
    }
    BOOST_TEST(contains(cat.refusals[0], "file " + (dir / "good_plugin.so").string()), cat.refusals[0]);
    BOOST_TEST(contains(cat.refusals[1], "symlink " + (dir / "throwing_plugin.so").string()), cat.refusals[1]);
  } else {
    // Not root: nothing can be given away, so trust a different user than us instead; the walk
    // must then stop at the first thing we own.
    const uid_t other = ::geteuid() + 1;
    const std::string why = ember::check_trusted(dir / "good_plugin.so", nullptr, other);
    BOOST_TEST(contains(why, "is owned by"), why);
    BOOST_TEST(contains(why, "uid " + std::to_string(::geteuid())), why);
  }
}

BOOST_AUTO_TEST_CASE(refuses_second_plugin_with_the_same_id) {
  ember::test::TempDir tmp;
  ember::test::make_plugin_dir(tmp / "a", {good_dir() / "good_plugin.so"});
  ember::test::make_plugin_dir(tmp / "b", {good_dir() / "good_plugin.so"});
  ember::Catalog cat;
  cat.scan(tmp / "a");
  cat.scan(tmp / "b");
  BOOST_TEST(cat.plugins.size() == 1u);
  BOOST_TEST(cat.find("good_plugin")->path() == (tmp / "a" / "good_plugin.so").string());
  BOOST_TEST_REQUIRE(cat.refusals.size() == 1u);
  BOOST_TEST(contains(cat.refusals[0], "already provided by"), cat.refusals[0]);
}

BOOST_AUTO_TEST_CASE(require_of_missing_id_throws_config_error_with_did_you_mean) {
  ember::Catalog cat;
  cat.scan(good_dir());
  BOOST_TEST(cat.require("good_plugin", "run.json: trainer.callbacks[0].plugin") != nullptr);
  try {
    cat.require("good_plugn", "run.json: trainer.callbacks[0].plugin");
    BOOST_FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    BOOST_TEST(contains(what, "run.json: trainer.callbacks[0].plugin"), what);
    BOOST_TEST(contains(what, "'good_plugn'"), what);
    BOOST_TEST(contains(what, "did you mean 'good_plugin'"), what);
    BOOST_TEST(contains(what, good_dir().string()), what);  // where it looked
  }
}

BOOST_AUTO_TEST_CASE(require_of_refused_plugin_says_why_it_was_refused) {
  ember::Catalog cat;
  cat.scan(bad_dir());
  const std::string what = error_of([&] { cat.require("wrong_major", "run.json: x.plugin"); });
  BOOST_TEST(contains(what, "'wrong_major' is not available"), what);
  BOOST_TEST(contains(what, "wrong_major.so: refused"), what);
  BOOST_CHECK_THROW(cat.require("wrong_major", "here"), ConfigError);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(instances)

BOOST_AUTO_TEST_CASE(good_plugin_receives_defaults_and_its_two_hooks) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "good_plugin.so");
  {
    ember::PluginInstance inst(lib, boost::json::object{}, services, "test");
    BOOST_TEST(inst.id() == "good_plugin");
    // The schema's defaults were filled before create.
    BOOST_TEST(contains(inst.config_json(), "\"prefix\":\"good\""), inst.config_json());
    BOOST_TEST(contains(inst.config_json(), "\"level\":\"info\""), inst.config_json());
    BOOST_TEST(services.saw("good_plugin: good: create"));

    ember::HookRegistry registry;
    inst.register_hooks(registry);
    BOOST_TEST(registry.size(EMBER_HOOK_ID_on_fit_start) == 1u);
    BOOST_TEST(registry.size(EMBER_HOOK_ID_on_train_batch_end) == 1u);
    BOOST_TEST(registry.size(EMBER_HOOK_ID_on_train_start) == 0u);
    BOOST_TEST(registry.size(EMBER_HOOK_ID_teardown) == 0u);

    auto args = hook_args();
    registry.call(EMBER_HOOK_ID_on_fit_start, args);
    args.batch_idx = 4;
    registry.call(EMBER_HOOK_ID_on_train_batch_end, args);
    BOOST_TEST(services.saw("good: on_fit_start stage=1"));
    BOOST_TEST(services.saw("good: on_train_batch_end batch_idx=4"));

    auto* logger = inst.interface<ember_logger_v1_t>(EMBER_LOGGER_V1);
    BOOST_TEST_REQUIRE(logger != nullptr);
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, 12, 0};
    ember_metric_t m[] = {{EMBER_STR("loss"), 0.5}};
    BOOST_TEST(logger->log_metrics(inst.self(), &ctx, m, 1) == EMBER_OK);
    BOOST_TEST(services.saw("good: log_metrics step=12 loss=0.5"));
    BOOST_TEST(inst.interface<ember_storage_v1_t>(EMBER_STORAGE_V1) == nullptr);
  }
  BOOST_TEST(services.saw("good: destroy"));
}

BOOST_AUTO_TEST_CASE(plugin_config_values_reach_the_plugin) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "good_plugin.so");
  ember::PluginInstance inst(lib, boost::json::object{{"prefix", "custom"}}, services, "test");
  BOOST_TEST(services.saw("good_plugin: custom: create"));
}

BOOST_AUTO_TEST_CASE(config_with_unknown_key_is_refused_naming_the_key_path) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "good_plugin.so");
  const std::string what = error_of([&] {
    ember::PluginInstance inst(lib, boost::json::object{{"prefx", "x"}}, services,
                               "run.json: trainer.callbacks[0]");
  });
  BOOST_TEST(contains(what, "run.json: trainer.callbacks[0]"), what);
  BOOST_TEST(contains(what, "config.prefx"), what);
  BOOST_TEST(contains(what, "did you mean 'config.prefix'"), what);
  BOOST_TEST(!services.saw("create"));  // refused before any plugin code ran
  BOOST_CHECK_THROW(ember::PluginInstance(lib, boost::json::object{{"prefx", "x"}}, services, "w"),
                    ConfigError);
}

BOOST_AUTO_TEST_CASE(config_with_wrong_type_is_refused_naming_path_and_expected_type) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "good_plugin.so");
  const std::string what = error_of([&] {
    ember::PluginInstance inst(lib, boost::json::object{{"prefix", 3}}, services, "where");
  });
  BOOST_TEST(contains(what, "config.prefix"), what);
  BOOST_TEST(contains(what, "expected string"), what);
}

BOOST_AUTO_TEST_CASE(plugin_without_schema_refuses_any_config_key) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "error_plugin.so");
  BOOST_CHECK_NO_THROW(ember::PluginInstance(lib, boost::json::value(), services, "w"));
  const std::string what = error_of([&] {
    ember::PluginInstance inst(lib, boost::json::object{{"x", 1}}, services, "run.json: cb");
  });
  BOOST_TEST(contains(what, "run.json: cb"), what);
  BOOST_TEST(contains(what, "'error_plugin' takes no config keys"), what);
}

BOOST_AUTO_TEST_CASE(throwing_constructor_becomes_create_failed_with_its_message) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "throwing_plugin.so");
  const std::string what = error_of([&] {
    ember::PluginInstance inst(lib, boost::json::object{{"throw_in_ctor", true}}, services, "w");
  });
  BOOST_TEST(contains(what, "throwing_plugin"), what);
  BOOST_TEST(contains(what, "create failed"), what);
  BOOST_TEST(contains(what, "throw_in_ctor is set"), what);
  BOOST_CHECK_THROW(
      ember::PluginInstance(lib, boost::json::object{{"throw_in_ctor", true}}, services, "w"),
      RuntimeError);
}

BOOST_AUTO_TEST_CASE(error_plugin_hook_failure_is_hook_error_with_its_message) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "error_plugin.so");
  ember::PluginInstance inst(lib, boost::json::value(), services, "w");
  ember::HookRegistry registry;
  inst.register_hooks(registry);
  try {
    registry.call(EMBER_HOOK_ID_on_fit_start, hook_args());
    BOOST_FAIL("expected HookError");
  } catch (const ember::HookError& e) {
    BOOST_TEST(e.owner() == "error_plugin");
    BOOST_TEST(e.hook() == EMBER_HOOK_ID_on_fit_start);
    BOOST_TEST(e.message() == "error_plugin says no");
  }
}

BOOST_AUTO_TEST_CASE(exception_in_plugin_hook_is_caught_inside_and_becomes_hook_error) {
  RecordingServices services;
  auto lib = ember::open_library(good_dir() / "throwing_plugin.so");
  ember::PluginInstance inst(lib, boost::json::object{}, services, "w");
  ember::HookRegistry registry;
  inst.register_hooks(registry);
  BOOST_TEST(registry.size(EMBER_HOOK_ID_on_train_start) == 1u);
  // Call the C slot directly first: a status, not an exception, crosses the boundary.
  auto* cb = inst.interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1);
  BOOST_TEST_REQUIRE(cb != nullptr);
  const auto args = hook_args();
  ember_status_t rc = EMBER_OK;
  BOOST_CHECK_NO_THROW(rc = cb->on_train_start(inst.self(), &args));
  BOOST_TEST(rc == EMBER_E_FAILED);
  BOOST_TEST(inst.last_error() == "boom from throwing_plugin");
  try {
    registry.call(EMBER_HOOK_ID_on_train_start, args);
    BOOST_FAIL("expected HookError");
  } catch (const ember::HookError& e) {
    BOOST_TEST(e.owner() == "throwing_plugin");
    BOOST_TEST(e.hook() == EMBER_HOOK_ID_on_train_start);
    BOOST_TEST(e.message() == "boom from throwing_plugin");
  }
}

BOOST_AUTO_TEST_CASE(plugin_library_stays_loaded_while_an_instance_lives) {
  RecordingServices services;
  std::unique_ptr<ember::PluginInstance> inst;
  {
    auto lib = ember::open_library(good_dir() / "good_plugin.so");
    inst = std::make_unique<ember::PluginInstance>(lib, boost::json::object{}, services, "w");
  }  // the catalog's reference is gone; the instance keeps the code mapped
  ember::HookRegistry registry;
  inst->register_hooks(registry);
  registry.call(EMBER_HOOK_ID_on_fit_start, hook_args());
  BOOST_TEST(services.saw("on_fit_start"));
  inst.reset();
  BOOST_TEST(services.saw("destroy"));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// Interface tables are adopted one way: copied up to the plugin's struct_size into a host-side
// full-size struct, required slots checked at creation; a refusal names plugin, interface, slot.
BOOST_AUTO_TEST_SUITE(interface_tables)

struct RequiredSlot {
  const char* interface;
  const char* slot;
  std::size_t offset;
  std::vector<unsigned char> (*table)();
};

std::vector<RequiredSlot> required_slots() {
  auto logger = [] { return full_table<ember_logger_v1_t>(); };
  auto state = [] { return full_table<ember_state_v1_t>(); };
  std::vector<RequiredSlot> out = {
      {EMBER_LOGGER_V1, "log_metrics", offsetof(ember_logger_v1_t, log_metrics), +logger},
      {EMBER_STATE_V1, "state_dict", offsetof(ember_state_v1_t, state_dict), +state},
      {EMBER_STATE_V1, "load_state_dict", offsetof(ember_state_v1_t, load_state_dict), +state},
  };
#define SLOT(name) out.push_back({EMBER_STORAGE_V1, #name, offsetof(ember_storage_v1_t, name), &storage_table});
  SLOT(open_read) SLOT(read) SLOT(open_write) SLOT(write) SLOT(commit) SLOT(close) SLOT(stat) SLOT(list) SLOT(remove)
#undef SLOT
  return out;
}

BOOST_AUTO_TEST_CASE(complete_tables_are_adopted_as_host_side_copies) {
  g_tables = {{EMBER_LOGGER_V1, full_table<ember_logger_v1_t>()},
              {EMBER_STATE_V1, full_table<ember_state_v1_t>()},
              {EMBER_STORAGE_V1, storage_table()},
              {EMBER_MEDIA_V1, full_table<ember_media_v1_t>()},
              {EMBER_CALLBACKS_V1, full_table<ember_callbacks_v1_t>()}};
  TablePlugin p;
  ember::PluginInstance& inst = p.inst;
  auto* lg = inst.interface<ember_logger_v1_t>(EMBER_LOGGER_V1);
  BOOST_TEST_REQUIRE(lg != nullptr);
  BOOST_TEST(static_cast<const void*>(lg) != static_cast<const void*>(g_tables[EMBER_LOGGER_V1].data()));  // a copy
  const std::size_t first = offsetof(ember_logger_v1_t, log_hyperparams);  // every slot, not the header's padding
  BOOST_TEST(std::memcmp(reinterpret_cast<const unsigned char*>(lg) + first, g_tables[EMBER_LOGGER_V1].data() + first,
                         sizeof *lg - first) == 0);
  auto* st = inst.interface<ember_storage_v1_t>(EMBER_STORAGE_V1);
  BOOST_TEST_REQUIRE(st != nullptr);
  BOOST_TEST(std::string(ember::sv(st->schemes)) == "fake");
  BOOST_TEST(inst.interface<ember_state_v1_t>(EMBER_STATE_V1) != nullptr);
  BOOST_TEST(inst.interface<ember_media_v1_t>(EMBER_MEDIA_V1) != nullptr);
  BOOST_TEST(inst.interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1) != nullptr);
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(refuses_each_null_required_slot_naming_plugin_interface_and_slot) {
  for (const auto& c : required_slots()) {
    BOOST_TEST_CONTEXT(c.interface << " " << c.slot) {
      auto table = c.table();
      set_field<void>(table, c.offset, static_cast<void*>(nullptr));
      g_tables = {{c.interface, table}};
      const std::string why = creation_error();
      BOOST_TEST(contains(why, "plugin in_process (in-process/in_process.so): refused"), why);
      BOOST_TEST(contains(why, std::string("interface ") + c.interface), why);
      BOOST_TEST(contains(why, std::string("required slot '") + c.slot + "' is null"), why);
    }
  }
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(refuses_required_slot_beyond_a_too_small_struct_size) {
  for (const auto& c : required_slots()) {
    BOOST_TEST_CONTEXT(c.interface << " " << c.slot) {
      auto table = c.table();
      // Half of the slot inside: it must not be half-read.
      const auto size = static_cast<std::uint32_t>(c.offset + sizeof(void*) / 2);
      std::memcpy(table.data(), &size, sizeof size);
      g_tables = {{c.interface, table}};
      const std::string why = creation_error();
      BOOST_TEST(contains(why, "plugin in_process"), why);
      BOOST_TEST(contains(why, std::string("interface ") + c.interface), why);
      BOOST_TEST(contains(why, std::string("required slot '") + c.slot + "' lies outside the table"), why);
      BOOST_TEST(contains(why, "struct_size is " + std::to_string(size) + " bytes"), why);
    }
  }
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(refuses_storage_table_without_schemes) {
  auto table = storage_table();
  set_field<void>(table, offsetof(ember_storage_v1_t, schemes), ember_str_t{kSchemes, 0});
  g_tables = {{EMBER_STORAGE_V1, table}};
  const std::string why = creation_error();
  BOOST_TEST(contains(why, "interface " EMBER_STORAGE_V1 ": required slot 'schemes' is empty"), why);
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(refuses_table_smaller_than_its_own_header) {
  for (const char* iid : {EMBER_CALLBACKS_V1, EMBER_MEDIA_V1, EMBER_LOGGER_V1}) {
    BOOST_TEST_CONTEXT(iid) {
      g_tables = {{iid, full_table<ember_media_v1_t>(2)}};  // every table's header is 8 bytes
      const std::string why = creation_error();
      BOOST_TEST(contains(why, std::string("interface ") + iid + ": struct_size is 2 bytes"), why);
    }
  }
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(optional_slots_past_an_old_struct_size_are_null_in_the_copy) {
  // An older plugin's media table that ends after log_image; the bytes after it are not its.
  g_tables = {{EMBER_MEDIA_V1, full_table<ember_media_v1_t>(offsetof(ember_media_v1_t, log_table))},
              {EMBER_LOGGER_V1, full_table<ember_logger_v1_t>(offsetof(ember_logger_v1_t, after_save_checkpoint))}};
  TablePlugin p;
  ember::PluginInstance& inst = p.inst;
  auto* m = inst.interface<ember_media_v1_t>(EMBER_MEDIA_V1);
  BOOST_TEST_REQUIRE(m != nullptr);
  BOOST_TEST(m->struct_size == sizeof(ember_media_v1_t));
  BOOST_TEST(m->log_image != nullptr);
  BOOST_TEST(m->log_table == nullptr);
  BOOST_TEST(m->log_histogram == nullptr);
  auto* lg = inst.interface<ember_logger_v1_t>(EMBER_LOGGER_V1);
  BOOST_TEST_REQUIRE(lg != nullptr);
  BOOST_TEST(lg->log_metrics != nullptr);
  BOOST_TEST(lg->after_save_checkpoint == nullptr);
  BOOST_TEST(lg->save == nullptr);
  BOOST_TEST(lg->finalize == nullptr);
  g_tables.clear();
}

BOOST_AUTO_TEST_CASE(state_dict_failure_keeps_the_plugins_message) {
  // The one builder of plugin failure text, as the trainer uses it for state_dict.
  auto last_error = [](void*) -> ember_str_t { return EMBER_STR("disk quota exceeded"); };
  BOOST_TEST(ember::plugin_failure("model_checkpoint", "state_dict", +last_error, nullptr, EMBER_E_IO) ==
             "model_checkpoint: state_dict failed: disk quota exceeded");
  auto silent = [](void*) -> ember_str_t { return {nullptr, 0}; };
  BOOST_TEST(ember::plugin_failure("x", "load_state_dict", +silent, nullptr, EMBER_E_IO) ==
             "x: load_state_dict failed: status -5 and no message");
}

BOOST_AUTO_TEST_SUITE_END()
