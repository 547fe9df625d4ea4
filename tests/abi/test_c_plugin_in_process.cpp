// Loads the real, built C plugin (samples/c_plugin, c_counter.so) with the host's loader and
// drives it through the hook registry: a plugin written in C against abi.h alone works with the
// C++ host, every hook lands in exactly one slot, and a failing hook reaches the host as a
// HookError naming the plugin and the hook.
#define BOOST_TEST_MODULE c_plugin_in_process
#include <boost/test/unit_test.hpp>

#include <ember/loader.hpp>
#include <ember/registry.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

std::filesystem::path plugin_path() {
  const char* p = std::getenv("EMBER_C_COUNTER_SO");
  if (!p || !*p)
    throw std::runtime_error("EMBER_C_COUNTER_SO is not set: run this test with `meson test`");
  return p;
}

ember_hook_args_t args(ember_stage_t stage = EMBER_STAGE_FIT) {
  ember_hook_args_t a{};
  a.struct_size = sizeof a;
  a.stage = stage;
  a.batch_idx = -1;
  a.optimizer_idx = -1;
  return a;
}

// Redirects the process's stdout (fd 1) to a temporary file while alive. The plugin prints with
// the same libc stdio as the test, so flushing here flushes its lines too.
class CaptureStdout {
 public:
  CaptureStdout() : file_(std::tmpfile()) {
    if (!file_) throw std::runtime_error("tmpfile failed");
    std::fflush(stdout);
    saved_ = ::dup(1);
    ::dup2(::fileno(file_), 1);
  }
  ~CaptureStdout() {
    restore();
    std::fclose(file_);
  }
  CaptureStdout(const CaptureStdout&) = delete;
  CaptureStdout& operator=(const CaptureStdout&) = delete;

  // Stops capturing and returns what was written.
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stdout);
    ::dup2(saved_, 1);
    ::close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_ = -1;
};

// The loaded library, and instances of it configured from JSON text.
struct Fixture {
  ember::Services services;
  std::shared_ptr<ember::PluginLibrary> lib = ember::open_library(plugin_path());

  std::unique_ptr<ember::PluginInstance> make(const char* config_json) {
    return std::make_unique<ember::PluginInstance>(lib, boost::json::parse(config_json), services,
                                                   "test: trainer.callbacks[0]");
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(c_counter, Fixture)

BOOST_AUTO_TEST_CASE(loads_with_its_entry_and_offers_only_callbacks) {
  BOOST_CHECK_EQUAL(lib->id(), "c_counter");
  BOOST_CHECK_EQUAL(lib->version(), "1.0.0");
  BOOST_CHECK_EQUAL(lib->abi(), std::to_string(EMBER_ABI_MAJOR) + "." + std::to_string(EMBER_ABI_MINOR));
  BOOST_CHECK_EQUAL(lib->entry().struct_size, sizeof(ember_plugin_entry_t));
  BOOST_CHECK_EQUAL(ember::check_entry(lib->entry()), "");
  const auto interfaces = lib->interfaces();
  BOOST_REQUIRE_EQUAL(interfaces.size(), 1u);
  BOOST_CHECK_EQUAL(interfaces[0], EMBER_CALLBACKS_V1);
}

BOOST_AUTO_TEST_CASE(every_hook_gets_exactly_one_slot) {
  auto instance = make("{}");
  const auto* table = instance->interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1);
  BOOST_REQUIRE(table);
  BOOST_CHECK_EQUAL(table->struct_size, sizeof(ember_callbacks_v1_t));
  ember::HookRegistry registry;
  instance->register_hooks(registry);
  for (int i = 0; i < EMBER_HOOK_COUNT; ++i) {
    const auto id = static_cast<ember_hook_id_t>(i);
    BOOST_TEST_CONTEXT(ember::hook_name(id)) { BOOST_CHECK_EQUAL(registry.size(id), 1u); }
  }
}

BOOST_AUTO_TEST_CASE(counts_each_hook_and_prints_nonzero_counts_at_teardown) {
  auto instance = make("{}");
  BOOST_CHECK_EQUAL(instance->config_json(), R"({"verbose":false})");  // default filled in
  ember::HookRegistry registry;
  instance->register_hooks(registry);

  CaptureStdout out;
  const auto a = args();
  registry.call(EMBER_HOOK_ID_setup, a);
  registry.call(EMBER_HOOK_ID_on_fit_start, a);
  for (int batch = 0; batch < 3; ++batch) {
    auto b = args();
    b.batch_idx = batch;
    registry.call(EMBER_HOOK_ID_on_train_batch_start, b);
  }
  registry.call(EMBER_HOOK_ID_on_before_zero_grad, a);
  registry.call(EMBER_HOOK_ID_teardown, a);
  BOOST_CHECK_EQUAL(out.text(),
                    "c_counter: setup 1\n"
                    "c_counter: teardown 1\n"
                    "c_counter: on_fit_start 1\n"
                    "c_counter: on_train_batch_start 3\n"
                    "c_counter: on_before_zero_grad 1\n");
}

BOOST_AUTO_TEST_CASE(verbose_prints_each_call_as_it_happens) {
  auto instance = make(R"({"verbose": true})");
  ember::HookRegistry registry;
  instance->register_hooks(registry);

  CaptureStdout out;
  registry.call(EMBER_HOOK_ID_on_train_start, args());
  registry.call(EMBER_HOOK_ID_on_exception, args());
  BOOST_CHECK_EQUAL(out.text(),
                    "c_counter: call on_train_start\n"
                    "c_counter: call on_exception\n");
}

BOOST_AUTO_TEST_CASE(fail_on_throws_hook_error_naming_plugin_and_hook) {
  auto instance = make(R"({"fail_on": "on_train_start"})");
  ember::HookRegistry registry;
  instance->register_hooks(registry);

  BOOST_CHECK_NO_THROW(registry.call(EMBER_HOOK_ID_on_fit_start, args()));
  try {
    registry.call(EMBER_HOOK_ID_on_train_start, args());
    BOOST_FAIL("on_train_start did not throw");
  } catch (const ember::HookError& e) {
    BOOST_CHECK_EQUAL(e.owner(), "c_counter");
    BOOST_CHECK_EQUAL(static_cast<int>(e.hook()), static_cast<int>(EMBER_HOOK_ID_on_train_start));
    BOOST_CHECK_NE(e.message().find("failing on purpose"), std::string::npos);
    BOOST_CHECK_EQUAL(e.message(), "c_counter: failing on purpose in on_train_start");
    BOOST_CHECK_NE(std::string(e.what()).find("hook on_train_start failed"), std::string::npos);
  }
  // The plugin keeps its message until its next call.
  BOOST_CHECK_EQUAL(instance->last_error(), "c_counter: failing on purpose in on_train_start");
}

BOOST_AUTO_TEST_CASE(fail_on_teardown_is_collected_by_call_all_after_printing) {
  auto instance = make(R"({"fail_on": "teardown"})");
  ember::HookRegistry registry;
  instance->register_hooks(registry);

  CaptureStdout out;
  const auto errors = registry.call_all(EMBER_HOOK_ID_teardown, args());
  BOOST_CHECK_EQUAL(out.text(), "c_counter: teardown 1\n");
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  BOOST_CHECK_EQUAL(errors[0].owner(), "c_counter");
  BOOST_CHECK_EQUAL(static_cast<int>(errors[0].hook()), static_cast<int>(EMBER_HOOK_ID_teardown));
}

BOOST_AUTO_TEST_CASE(instances_count_separately) {
  auto first = make("{}");
  auto second = make("{}");
  ember::HookRegistry registry;
  first->register_hooks(registry);
  second->register_hooks(registry);
  BOOST_CHECK_EQUAL(registry.size(EMBER_HOOK_ID_on_train_end), 2u);

  const auto first_hooks = first->interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1);
  CaptureStdout out;
  registry.call(EMBER_HOOK_ID_on_train_end, args());
  first_hooks->on_train_end(first->self(), nullptr);  // args unused by c_counter
  first_hooks->teardown(first->self(), nullptr);
  second->interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1)->teardown(second->self(), nullptr);
  BOOST_CHECK_EQUAL(out.text(),
                    "c_counter: teardown 1\n"
                    "c_counter: on_train_end 2\n"
                    "c_counter: teardown 1\n"
                    "c_counter: on_train_end 1\n");
}

BOOST_AUTO_TEST_CASE(a_hook_name_that_does_not_exist_is_refused_before_create) {
  try {
    make(R"({"fail_on": "on_trian_start"})");
    BOOST_FAIL("a misspelt hook name was accepted");
  } catch (const ember::ConfigError& e) {
    const std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_CHECK_NE(what.find("config.fail_on"), std::string::npos);
    BOOST_CHECK_NE(what.find("did you mean \"on_train_start\"?"), std::string::npos);
  }
  BOOST_CHECK_THROW(make(R"({"verbose": "yes"})"), ember::ConfigError);
  BOOST_CHECK_THROW(make(R"({"colour": "red"})"), ember::ConfigError);
}

// The plugin's own parser, called directly (as a host that skipped the schema check would): it
// accepts what the schema accepts, in any spacing, and refuses the rest with a reason.
BOOST_AUTO_TEST_CASE(create_parses_the_config_itself_and_refuses_what_it_does_not_know) {
  const ember_plugin_entry_t& e = lib->entry();
  auto create = [&](const std::string& json) -> ember_status_t {
    void* self = nullptr;
    // c_counter uses no host service; a null host table is enough here.
    ember_status_t rc = e.create(nullptr, ember::cstr(json), &self);
    if (self) e.destroy(self);
    BOOST_CHECK_EQUAL(self != nullptr, rc == EMBER_OK);
    return rc;
  };
  auto error = [&] { return std::string(ember::sv(e.last_error(nullptr))); };

  BOOST_CHECK_EQUAL(create(""), EMBER_OK);
  BOOST_CHECK_EQUAL(create("{}"), EMBER_OK);
  BOOST_CHECK_EQUAL(create(R"({"verbose":true,"fail_on":"on_train_start"})"), EMBER_OK);
  BOOST_CHECK_EQUAL(create(" { \"fail_on\" : \"\" ,\n \"verbose\" : false } "), EMBER_OK);

  BOOST_CHECK_EQUAL(create(R"({"verbose":1})"), EMBER_E_INVALID);
  BOOST_CHECK_EQUAL(error(), "c_counter: config: verbose: expected a boolean");
  BOOST_CHECK_EQUAL(create(R"({"fail_on":"nope"})"), EMBER_E_INVALID);
  BOOST_CHECK_EQUAL(error(), "c_counter: config: fail_on: 'nope' is not a hook name");
  BOOST_CHECK_EQUAL(create(R"({"fail_on":"on_train_start_"})"), EMBER_E_INVALID);
  BOOST_CHECK_EQUAL(create(R"({"colour":"red"})"), EMBER_E_INVALID);
  BOOST_CHECK_EQUAL(error(), "c_counter: config: unknown key 'colour' (known: verbose, fail_on)");
  BOOST_CHECK_EQUAL(create(R"({"verbose":true)"), EMBER_E_INVALID);
  BOOST_CHECK_NE(error().find("malformed JSON"), std::string::npos);
  BOOST_CHECK_EQUAL(create("[]"), EMBER_E_INVALID);
}

BOOST_AUTO_TEST_SUITE_END()
