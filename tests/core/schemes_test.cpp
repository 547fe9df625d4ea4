// Which plugin serves a URL scheme, and the schemes a run config uses: a scheme a plugin in the
// catalog claims needs no plugins.storage entry; two claims, the first in plugin-directory order
// wins and the other is reported; a scheme nothing serves is refused when the config is loaded,
// naming the key, the schemes available and the plugin that would provide it.
#define BOOST_TEST_MODULE schemes
#include <boost/test/unit_test.hpp>

#include <ember/schemes.hpp>

#include <memory>
#include <string>

namespace {

namespace json = boost::json;

// Plugin entries built by hand, as a C plugin would export them; only what the scheme lookup
// reads is filled in (the storage table's schemes, asked with self NULL).
template <int N>
struct FakeStorage {
  static inline std::string schemes;
  static const void* get_interface(void*, ember_str_t id) {
    static ember_storage_v1_t table{};
    table.struct_size = sizeof table;
    table.schemes = ember::cstr(schemes);
    return ember::sv(id) == EMBER_STORAGE_V1 ? &table : nullptr;
  }
  static const ember_plugin_entry_t* entry(const char* id, std::string claims) {
    schemes = std::move(claims);
    static ember_plugin_entry_t e{};
    e.abi_major = EMBER_ABI_MAJOR;
    e.abi_minor = EMBER_ABI_MINOR;
    e.struct_size = sizeof e;
    e.id = ember::cstr(id);
    e.get_interface = &get_interface;
    return &e;
  }
};

const void* no_interfaces(void*, ember_str_t) { return nullptr; }

ember::Catalog catalog_of_two_gs_claims() {
  ember::Catalog c;
  c.dirs = {"/opt/first", "/opt/second"};
  // Added in the opposite order of the directories: the order that counts is the directories'.
  c.add(std::make_shared<ember::PluginLibrary>("/opt/second/gcs_b.so", FakeStorage<1>::entry("gcs_b", "gs")));
  c.add(std::make_shared<ember::PluginLibrary>("/opt/first/gcs_a.so", FakeStorage<2>::entry("gcs_a", "gs, gcs")));
  static ember_plugin_entry_t logger{};
  logger.abi_major = EMBER_ABI_MAJOR;
  logger.struct_size = sizeof logger;
  logger.id = ember::cstr("some_logger");
  logger.get_interface = &no_interfaces;
  c.add(std::make_shared<ember::PluginLibrary>("/opt/first/some_logger.so", &logger));
  return c;
}

json::value cfg(const std::string& text) { return json::parse(text); }

}  // namespace

BOOST_AUTO_TEST_CASE(claims_are_read_without_creating_the_plugin_and_split_on_commas) {
  auto c = catalog_of_two_gs_claims();
  auto schemes = ember::claimed_schemes(*c.find("gcs_a"));
  BOOST_TEST(schemes.size() == 2u);
  BOOST_TEST(schemes[0] == "gs");
  BOOST_TEST(schemes[1] == "gcs");
  BOOST_TEST(ember::claimed_schemes(*c.find("some_logger")).empty());
}

BOOST_AUTO_TEST_CASE(the_first_plugin_directory_wins_a_scheme_and_the_other_claim_is_reported) {
  auto owners = ember::scheme_owners(catalog_of_two_gs_claims());
  BOOST_TEST(owners.owner.at("gs") == "gcs_a");
  BOOST_TEST(owners.owner.at("gcs") == "gcs_a");
  BOOST_REQUIRE(owners.conflicts.size() == 1u);
  BOOST_TEST(owners.conflicts[0].find("scheme 'gs'") != std::string::npos);
  BOOST_TEST(owners.conflicts[0].find("/opt/second/gcs_b.so") != std::string::npos);
  BOOST_TEST(owners.conflicts[0].find("gcs_a (/opt/first/gcs_a.so) serves it") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_scheme_in_the_config_loads_the_plugin_that_claims_it_once) {
  auto c = catalog_of_two_gs_claims();
  auto ids = ember::auto_storage_plugins(
      cfg(R"({"trainer": {"default_root_dir": "gs://bucket/run"},
              "data": {"train": ["gcs://bucket/train.csv"]},
              "trainer2": {"logger": [{"plugin": "some_logger", "config": {"save_dir": "/tmp/x", "url": "https://api.example"}}]}})"),
      c, "run.json");
  BOOST_REQUIRE(ids.size() == 1u);
  BOOST_TEST(ids[0] == "gcs_a");
}

BOOST_AUTO_TEST_CASE(a_configured_storage_plugin_serves_its_schemes_and_nothing_is_loaded_for_them) {
  auto c = catalog_of_two_gs_claims();
  auto ids = ember::auto_storage_plugins(
      cfg(R"({"plugins": {"storage": [{"plugin": "gcs_b"}]}, "trainer": {"default_root_dir": "gs://bucket/run"}})"), c,
      "run.json");
  BOOST_TEST(ids.empty());
}

BOOST_AUTO_TEST_CASE(builtin_schemes_and_http_endpoints_need_no_plugin) {
  auto c = catalog_of_two_gs_claims();
  auto ids = ember::auto_storage_plugins(
      cfg(R"({"trainer": {"default_root_dir": "file:///tmp/run"}, "x": ["memory://a", "https://h/p", "http://127.0.0.1:9/"],
              "y": "not a url", "z": "://nothing"})"),
      c, "run.json");
  BOOST_TEST(ids.empty());
}

BOOST_AUTO_TEST_CASE(an_unknown_scheme_is_refused_naming_key_scheme_what_is_available_and_the_provider) {
  auto c = catalog_of_two_gs_claims();
  try {
    ember::auto_storage_plugins(cfg(R"({"trainer": {"default_root_dir": "az://container/run"}})"), c, "run.json");
    BOOST_FAIL("az:// was accepted with no plugin claiming it");
  } catch (const ember::ConfigError& e) {
    std::string m = e.what();
    BOOST_TEST_MESSAGE(m);
    BOOST_TEST(m.find("run.json: trainer.default_root_dir: unknown URL scheme 'az://'") != std::string::npos);
    BOOST_TEST(m.find("file://") != std::string::npos);
    BOOST_TEST(m.find("gs://") != std::string::npos);
    BOOST_TEST(m.find("the 'azure' storage plugin provides az://") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(a_url_from_outside_the_config_is_checked_too) {
  auto c = catalog_of_two_gs_claims();
  BOOST_CHECK_THROW(ember::auto_storage_plugins(cfg("{}"), c, "run.json", {{"--ckpt-path", "hdfs://nn:9870/x.ckpt"}}),
                    ember::ConfigError);
  auto ids = ember::auto_storage_plugins(cfg("{}"), c, "run.json", {{"--ckpt-path", "gs://b/x.ckpt"}});
  BOOST_REQUIRE(ids.size() == 1u);
  BOOST_TEST(ids[0] == "gcs_a");
}
