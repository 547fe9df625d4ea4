// The static hook registry: order, zero-cost absent hooks, old plugin tables, error wrapping.
#define BOOST_TEST_MODULE registry
#include <boost/test/unit_test.hpp>

#include <ember/registry.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using ember::HookError;
using ember::HookRegistry;

using Trace = std::vector<std::string>;

ember::HookArgs args_for(std::int64_t batch_idx = -1) {
  ember::HookArgs a{};
  a.struct_size = sizeof a;
  a.stage = EMBER_STAGE_FIT;
  a.batch_idx = batch_idx;
  a.optimizer_idx = -1;
  return a;
}

// An in-process callback overriding exactly two hooks.
class TwoHooks : public ember::Callback {
 public:
  TwoHooks(std::string name, Trace& trace) : name_(std::move(name)), trace_(trace) {}
  void on_fit_start(const ember::HookArgs&) override { trace_.push_back(name_ + ".on_fit_start"); }
  void on_train_batch_end(const ember::HookArgs& a) override {
    trace_.push_back(name_ + ".on_train_batch_end:" + std::to_string(a.batch_idx));
  }

 private:
  std::string name_;
  Trace& trace_;
};

class Throws : public ember::Callback {
 public:
  void on_train_start(const ember::HookArgs&) override {
    throw std::runtime_error("in-process boom");
  }
};

class ThrowsNonStd : public ember::Callback {
 public:
  void on_train_start(const ember::HookArgs&) override { throw 42; }
};

class Records : public ember::Callback {
 public:
  explicit Records(Trace& trace) : trace_(trace) {}
  void on_train_start(const ember::HookArgs&) override { trace_.push_back("records.on_train_start"); }
  void teardown(const ember::HookArgs&) override { trace_.push_back("records.teardown"); }

 private:
  Trace& trace_;
};

// A "plugin" as the C ABI sees it: self is this struct; the hooks append to its trace.
struct CPlugin {
  std::string name;
  Trace* trace;
  std::string error;  // what last_error returns
};

ember_status_t c_on_fit_start(void* self, const ember_hook_args_t*) {
  auto* p = static_cast<CPlugin*>(self);
  p->trace->push_back(p->name + ".on_fit_start");
  return EMBER_OK;
}
ember_status_t c_on_train_batch_end(void* self, const ember_hook_args_t* a) {
  auto* p = static_cast<CPlugin*>(self);
  p->trace->push_back(p->name + ".on_train_batch_end:" + std::to_string(a->batch_idx));
  return EMBER_OK;
}
ember_status_t c_fails(void* self, const ember_hook_args_t*) {
  auto* p = static_cast<CPlugin*>(self);
  p->trace->push_back(p->name + ".fails");
  p->error = p->name + " refuses";
  return EMBER_E_FAILED;
}
ember_status_t c_records(void* self, const ember_hook_args_t*) {
  auto* p = static_cast<CPlugin*>(self);
  p->trace->push_back(p->name + ".records");
  return EMBER_OK;
}
ember_str_t c_last_error(void* self) {
  auto* p = static_cast<CPlugin*>(self);
  return {p->error.data(), p->error.size()};
}
ember_str_t c_no_last_error(void*) { return {nullptr, 0}; }

ember_callbacks_v1_t empty_table() {
  ember_callbacks_v1_t t{};
  t.struct_size = sizeof t;
  return t;
}

std::size_t total_slots(const HookRegistry& r) {
  std::size_t n = 0;
  for (int h = 0; h < EMBER_HOOK_COUNT; ++h) n += r.size(static_cast<ember_hook_id_t>(h));
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(registry)

BOOST_AUTO_TEST_CASE(dispatches_in_registration_order_across_callbacks_and_plugin_tables) {
  Trace trace;
  TwoHooks first("first", trace);
  TwoHooks third("third", trace);
  CPlugin second{"second", &trace, ""};
  auto table = empty_table();
  table.on_fit_start = &c_on_fit_start;
  table.on_train_batch_end = &c_on_train_batch_end;

  HookRegistry r;
  r.add(first, "first");
  r.add_table(r.add_owner("second", &c_last_error, &second), table, &second);
  r.add(third, "third");

  r.call(EMBER_HOOK_ID_on_fit_start, args_for());
  r.call(EMBER_HOOK_ID_on_train_batch_end, args_for(7));
  const Trace expected{"first.on_fit_start",         "second.on_fit_start",
                       "third.on_fit_start",         "first.on_train_batch_end:7",
                       "second.on_train_batch_end:7", "third.on_train_batch_end:7"};
  BOOST_TEST(trace == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(callback_overriding_two_hooks_gets_exactly_two_slots) {
  Trace trace;
  TwoHooks cb("cb", trace);
  HookRegistry r;
  r.add(cb, "cb");
  for (int h = 0; h < EMBER_HOOK_COUNT; ++h) {
    auto id = static_cast<ember_hook_id_t>(h);
    const bool implemented = id == EMBER_HOOK_ID_on_fit_start || id == EMBER_HOOK_ID_on_train_batch_end;
    BOOST_TEST_CONTEXT("hook " << ember::hook_name(id)) {
      BOOST_TEST(r.size(id) == (implemented ? 1u : 0u));
      BOOST_TEST(r.empty(id) == !implemented);
    }
  }
  BOOST_TEST(total_slots(r) == 2u);
  // An absent hook is an empty loop: calling it does nothing and does not fail.
  r.call(EMBER_HOOK_ID_on_train_start, args_for());
  BOOST_TEST(trace.empty());
}

BOOST_AUTO_TEST_CASE(plugin_table_registers_only_non_null_slots) {
  Trace trace;
  CPlugin p{"p", &trace, ""};
  auto table = empty_table();
  table.on_fit_start = &c_on_fit_start;
  HookRegistry r;
  r.add_table(r.add_owner("p", &c_last_error, &p), table, &p);
  BOOST_TEST(r.size(EMBER_HOOK_ID_on_fit_start) == 1u);
  BOOST_TEST(total_slots(r) == 1u);
}

BOOST_AUTO_TEST_CASE(old_plugin_table_registers_only_hooks_within_its_struct_size) {
  Trace trace;
  CPlugin p{"old", &trace, ""};
  // Every pointer is set, but the table claims to end before on_fit_end: an old plugin built
  // when the list stopped at on_fit_start. What lies beyond struct_size must not be read.
  ember_callbacks_v1_t table{};
#define EMBER_HOOK(name, since, doc) table.name = &c_records;
#include <ember/abi/hooks.def>
  table.struct_size = offsetof(ember_callbacks_v1_t, on_fit_end);

  HookRegistry r;
  r.add_table(r.add_owner("old", &c_last_error, &p), table, &p);
  BOOST_TEST(r.size(EMBER_HOOK_ID_setup) == 1u);
  BOOST_TEST(r.size(EMBER_HOOK_ID_teardown) == 1u);
  BOOST_TEST(r.size(EMBER_HOOK_ID_on_fit_start) == 1u);
  BOOST_TEST(r.size(EMBER_HOOK_ID_on_fit_end) == 0u);
  BOOST_TEST(r.size(EMBER_HOOK_ID_on_before_zero_grad) == 0u);
  BOOST_TEST(total_slots(r) == 3u);
}

BOOST_AUTO_TEST_CASE(table_cut_mid_pointer_does_not_register_that_hook) {
  Trace trace;
  CPlugin p{"odd", &trace, ""};
  ember_callbacks_v1_t table{};
  table.setup = &c_records;
  table.teardown = &c_records;
  // Ends half-way through the teardown pointer.
  table.struct_size = static_cast<uint32_t>(offsetof(ember_callbacks_v1_t, teardown) + 4);
  HookRegistry r;
  r.add_table(r.add_owner("odd", &c_last_error, &p), table, &p);
  BOOST_TEST(r.size(EMBER_HOOK_ID_setup) == 1u);
  BOOST_TEST(r.size(EMBER_HOOK_ID_teardown) == 0u);
}

BOOST_AUTO_TEST_CASE(throwing_callback_becomes_hook_error_with_owner_and_hook) {
  Throws cb;
  HookRegistry r;
  r.add(cb, "my_callback");
  try {
    r.call(EMBER_HOOK_ID_on_train_start, args_for());
    BOOST_FAIL("expected HookError");
  } catch (const HookError& e) {
    BOOST_TEST(e.owner() == "my_callback");
    BOOST_TEST(e.hook() == EMBER_HOOK_ID_on_train_start);
    BOOST_TEST(e.message() == "in-process boom");
    const std::string what = e.what();
    BOOST_TEST(what.find("my_callback") != std::string::npos, what);
    BOOST_TEST(what.find("on_train_start") != std::string::npos, what);
    BOOST_TEST(what.find("in-process boom") != std::string::npos, what);
  }
}

BOOST_AUTO_TEST_CASE(non_std_exception_from_callback_becomes_hook_error) {
  ThrowsNonStd cb;
  HookRegistry r;
  r.add(cb, "weird");
  try {
    r.call(EMBER_HOOK_ID_on_train_start, args_for());
    BOOST_FAIL("expected HookError");
  } catch (const HookError& e) {
    BOOST_TEST(e.owner() == "weird");
    BOOST_TEST(e.message() == "unknown exception");
  }
}

BOOST_AUTO_TEST_CASE(failing_plugin_status_becomes_hook_error_with_its_last_error) {
  Trace trace;
  CPlugin p{"c_plugin", &trace, ""};
  auto table = empty_table();
  table.on_train_start = &c_fails;
  HookRegistry r;
  r.add_table(r.add_owner("c_plugin", &c_last_error, &p), table, &p);
  try {
    r.call(EMBER_HOOK_ID_on_train_start, args_for());
    BOOST_FAIL("expected HookError");
  } catch (const HookError& e) {
    BOOST_TEST(e.owner() == "c_plugin");
    BOOST_TEST(e.hook() == EMBER_HOOK_ID_on_train_start);
    BOOST_TEST(e.message() == "c_plugin refuses");
  }
}

BOOST_AUTO_TEST_CASE(failing_plugin_without_message_still_names_owner) {
  Trace trace;
  CPlugin p{"quiet", &trace, ""};
  auto table = empty_table();
  table.on_train_start = &c_fails;
  HookRegistry r;
  r.add_table(r.add_owner("quiet", &c_no_last_error, &p), table, &p);
  try {
    r.call(EMBER_HOOK_ID_on_train_start, args_for());
    BOOST_FAIL("expected HookError");
  } catch (const HookError& e) {
    BOOST_TEST(e.owner() == "quiet");
    BOOST_TEST(!e.message().empty());
  }
}

BOOST_AUTO_TEST_CASE(call_stops_at_first_failure) {
  Trace trace;
  CPlugin bad{"bad", &trace, ""};
  Records after(trace);
  auto table = empty_table();
  table.on_train_start = &c_fails;
  HookRegistry r;
  r.add_table(r.add_owner("bad", &c_last_error, &bad), table, &bad);
  r.add(after, "after");
  BOOST_CHECK_THROW(r.call(EMBER_HOOK_ID_on_train_start, args_for()), HookError);
  const Trace expected{"bad.fails"};
  BOOST_TEST(trace == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(call_all_keeps_going_past_failures_and_returns_them) {
  Trace trace;
  CPlugin bad{"bad_plugin", &trace, ""};
  CPlugin good{"good_plugin", &trace, ""};
  Throws thrower;
  Records records(trace);
  auto bad_table = empty_table();
  bad_table.on_train_start = &c_fails;
  auto good_table = empty_table();
  good_table.on_train_start = &c_records;

  HookRegistry r;
  r.add_table(r.add_owner("bad_plugin", &c_last_error, &bad), bad_table, &bad);
  r.add(thrower, "thrower");
  r.add_table(r.add_owner("good_plugin", &c_last_error, &good), good_table, &good);
  r.add(records, "records");

  std::vector<HookError> errors = r.call_all(EMBER_HOOK_ID_on_train_start, args_for());
  BOOST_REQUIRE_EQUAL(errors.size(), 2u);
  BOOST_TEST(errors[0].owner() == "bad_plugin");
  BOOST_TEST(errors[0].message() == "bad_plugin refuses");
  BOOST_TEST(errors[1].owner() == "thrower");
  BOOST_TEST(errors[1].message() == "in-process boom");
  for (const auto& e : errors) BOOST_TEST(e.hook() == EMBER_HOOK_ID_on_train_start);
  const Trace expected{"bad_plugin.fails", "good_plugin.records", "records.on_train_start"};
  BOOST_TEST(trace == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(call_all_returns_nothing_when_all_succeed) {
  Trace trace;
  Records records(trace);
  HookRegistry r;
  r.add(records, "records");
  BOOST_TEST(r.call_all(EMBER_HOOK_ID_teardown, args_for()).empty());
  BOOST_TEST(r.call_all(EMBER_HOOK_ID_on_fit_end, args_for()).empty());
  BOOST_TEST(trace.size() == 1u);
}

BOOST_AUTO_TEST_CASE(callback_added_through_base_type_gets_every_slot_and_dispatches_virtually) {
  Trace trace;
  TwoHooks cb("base", trace);
  ember::Callback& base = cb;
  HookRegistry r;
  r.add(base, "base");  // static type Callback: the overrides are unknown, so every hook gets a slot
  BOOST_TEST(total_slots(r) == static_cast<std::size_t>(EMBER_HOOK_COUNT));
  r.call(EMBER_HOOK_ID_on_fit_start, args_for());
  r.call(EMBER_HOOK_ID_on_train_start, args_for());  // the base's empty default
  const Trace expected{"base.on_fit_start"};
  BOOST_TEST(trace == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(owner_ids_are_kept_for_reports) {
  Trace trace;
  Records records(trace);
  HookRegistry r;
  auto a = r.add_owner("plugin_a");
  auto b = r.add(records, "records");
  BOOST_TEST(r.owner_id(a) == "plugin_a");
  BOOST_TEST(r.owner_id(b) == "records");
}

BOOST_AUTO_TEST_CASE(hook_names_follow_hooks_def) {
  BOOST_TEST(std::string(ember::hook_name(EMBER_HOOK_ID_setup)) == "setup");
  BOOST_TEST(std::string(ember::hook_name(EMBER_HOOK_ID_on_train_batch_end)) == "on_train_batch_end");
  BOOST_TEST(std::string(ember::hook_name(EMBER_HOOK_COUNT)) == "unknown_hook");
  BOOST_TEST(std::string(ember::hook_doc(EMBER_HOOK_ID_on_fit_start)).size() > 0u);
}

BOOST_AUTO_TEST_SUITE_END()
