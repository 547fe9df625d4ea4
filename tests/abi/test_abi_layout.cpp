// Pins the C ABI: every public struct re-declared by hand, and checked field by field (offset,
// size, integer type) against the real one; status codes, enum values, versions, interface ids
// and the hook order. A change to any of these breaks plugins already built, so it must fail
// here loudly, printing both values. (PipeWire's test/test-spa-node.c does the same.)
#define BOOST_TEST_MODULE abi_layout
#include <boost/test/unit_test.hpp>

#include <ember/abi.h>
#include <ember/callback.hpp>

#include "abi_layout_c.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace pinned {

// Hand-written mirrors of the ABI 1.0 structs. Edit these only with an ABI major bump (or to
// append a field in a minor one).
using fn = void (*)(void);

struct str {
  const char* data;
  std::size_t size;
};

struct sink {
  void* ctx;
  fn write;
};

struct hook_args {
  std::uint32_t struct_size;
  std::int32_t stage;
  std::int64_t epoch;
  std::int64_t global_step;
  std::int64_t batch_idx;
  std::int64_t dataloader_idx;
  std::int32_t optimizer_idx;
  std::int32_t reserved0;
  const void* loss;
  const void* outputs;
  str message;
  str url;
};

// The first and last four slots by name; the 29 between are checked by hook order below.
struct callbacks_v1 {
  std::uint32_t struct_size;
  fn setup;
  fn teardown;
  fn on_fit_start;
  fn on_fit_end;
  fn middle[29];
  fn on_before_backward;
  fn on_after_backward;
  fn on_before_optimizer_step;
  fn on_before_zero_grad;
};

struct state_v1 {
  std::uint32_t struct_size;
  fn state_dict;
  fn load_state_dict;
};

struct log_context {
  std::uint32_t struct_size;
  std::int32_t stage;
  std::int64_t step;
  std::int64_t epoch;
};

struct metric {
  str name;
  double value;
};

struct logger_v1 {
  std::uint32_t struct_size;
  fn log_hyperparams;
  fn log_metrics;
  fn after_save_checkpoint;
  fn save;
  fn finalize;
};

// ember.media/1 (appended in 1.0 as a new interface id; no existing struct changed).
struct image {
  const void* tensor;
  const void* png;
  std::size_t png_size;
  str caption;
};

struct media_v1 {
  std::uint32_t struct_size;
  fn log_image;
  fn log_table;
  fn log_histogram;
};

struct stat {
  std::uint32_t struct_size;
  std::int32_t is_dir;
  std::uint64_t size;
  std::int64_t mtime_ns;
  str url;
};

struct storage_v1 {
  std::uint32_t struct_size;
  str schemes;
  fn open_read;
  fn read;
  fn open_write;
  fn write;
  fn commit;
  fn close;
  fn stat;
  fn list;
  fn remove;
};

struct checkpoints_v1 {
  std::uint32_t struct_size;
  fn resolve;
};

struct trainer_state {
  std::uint32_t struct_size;
  std::int32_t stage;
  std::int64_t epoch;
  std::int64_t global_step;
  std::int64_t max_epochs;
  std::int64_t max_steps;
  std::int64_t num_training_batches;
  std::int64_t num_val_batches;
  std::int32_t sanity_checking;
  std::int32_t should_stop;
  str default_root_dir;
  std::int32_t fn;
  std::int32_t reserved0;
  std::int64_t num_test_batches;
  std::int64_t num_predict_batches;
};

struct host {
  std::uint32_t struct_size;
  std::uint16_t abi_major;
  std::uint16_t abi_minor;
  void* ctx;
  str host_version;
  fn log;
  fn get_state;
  fn get_metric;
  fn list_metrics;
  fn request_stop;
  fn open_read;
  fn read;
  fn open_write;
  fn write;
  fn commit;
  fn close;
  fn stat;
  fn list;
  fn remove;
  fn last_error;
  fn save_checkpoint;
  fn list_progress_metrics;
  // 1.1: data parallel
  std::int32_t global_rank;
  std::int32_t local_rank;
  std::int32_t world_size;
  std::int32_t reserved1;
  fn barrier;
  fn broadcast;
  fn all_reduce;
};

struct plugin_entry {
  std::uint16_t abi_major;
  std::uint16_t abi_minor;
  std::uint32_t struct_size;
  str id;
  str version;
  str description;
  str config_schema;
  str build_tag;
  fn create;
  fn destroy;
  fn get_interface;
  fn last_error;
};

// The hooks of ABI 1.0 in slot order, written out by hand.
const char* const hooks_v1_0[] = {
    "setup",
    "teardown",
    "on_fit_start",
    "on_fit_end",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_start",
    "on_train_end",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_validation_start",
    "on_validation_end",
    "on_validation_epoch_start",
    "on_validation_epoch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_start",
    "on_test_end",
    "on_test_epoch_start",
    "on_test_epoch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_start",
    "on_predict_end",
    "on_predict_epoch_start",
    "on_predict_epoch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "on_exception",
    "on_save_checkpoint",
    "on_load_checkpoint",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
};

}  // namespace pinned

namespace {

// Integers and floats must keep their exact type (a uint32_t turned int32_t keeps its size);
// pointers and nested structs are pinned by size and offset.
template <class Real, class Mirror>
constexpr bool same_scalar_type() {
  using R = std::remove_cv_t<Real>;
  if constexpr (std::is_arithmetic_v<R> || std::is_arithmetic_v<Mirror>)
    return std::is_same_v<R, Mirror>;
  else
    return true;
}

struct Item {
  std::string what;
  std::size_t offset;
  std::size_t size;
};

// The same list as abi_layout_c.c, computed by the C++ compiler.
std::vector<Item> cpp_layout() {
  return {
#define EMBER_LAYOUT_TYPE(type, mirror) {#type, 0, sizeof(type)},
#define EMBER_LAYOUT_FIELD(type, mirror, field) \
  {#type "." #field, offsetof(type, field), sizeof(type::field)},
#include "layout_list.h"
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_struct_matches_its_hand_written_mirror) {
#define EMBER_LAYOUT_TYPE(type, mirror)                                   \
  BOOST_TEST_CONTEXT(#type) {                                             \
    BOOST_CHECK_EQUAL(sizeof(type), sizeof(pinned::mirror));              \
    BOOST_CHECK_EQUAL(alignof(type), alignof(pinned::mirror));            \
  }
#define EMBER_LAYOUT_FIELD(type, mirror, field)                                           \
  BOOST_TEST_CONTEXT(#type "." #field) {                                                  \
    BOOST_CHECK_EQUAL(offsetof(type, field), offsetof(pinned::mirror, field));            \
    BOOST_CHECK_EQUAL(sizeof(type::field), sizeof(pinned::mirror::field));                \
    BOOST_CHECK_MESSAGE((same_scalar_type<decltype(type::field),                          \
                                          decltype(pinned::mirror::field)>()),            \
                        #type "." #field " changed its integer or floating-point type");   \
  }
#include "layout_list.h"
}

BOOST_AUTO_TEST_CASE(c_and_cpp_compilers_agree_on_every_layout) {
  const std::vector<Item> cpp = cpp_layout();
  BOOST_REQUIRE_EQUAL(ember_c_layout_count, cpp.size());
  for (std::size_t i = 0; i < cpp.size(); ++i) {
    BOOST_TEST_CONTEXT(cpp[i].what) {
      BOOST_CHECK_EQUAL(std::string(ember_c_layout[i].what), cpp[i].what);
      BOOST_CHECK_EQUAL(ember_c_layout[i].offset, cpp[i].offset);
      BOOST_CHECK_EQUAL(ember_c_layout[i].size, cpp[i].size);
    }
  }
}

BOOST_AUTO_TEST_CASE(callbacks_table_is_struct_size_then_one_pointer_per_hook) {
  // 4 bytes of struct_size, padding up to a pointer's alignment, then 37 pointers.
  const std::size_t head = (sizeof(std::uint32_t) + alignof(ember_hook_fn) - 1) /
                           alignof(ember_hook_fn) * alignof(ember_hook_fn);
  BOOST_CHECK_EQUAL(sizeof(ember_callbacks_v1_t), head + 37 * sizeof(ember_hook_fn));
  BOOST_CHECK_EQUAL(sizeof(ember_hook_fn), sizeof(void*));
  // Slot i holds hook id i, for every hook.
#define EMBER_HOOK(name, since, doc)                                                 \
  BOOST_TEST_CONTEXT(#name) {                                                        \
    BOOST_CHECK_EQUAL(offsetof(ember_callbacks_v1_t, name),                          \
                      head + static_cast<std::size_t>(EMBER_HOOK_ID_##name) *        \
                                 sizeof(ember_hook_fn));                             \
  }
#include <ember/abi/hooks.def>
}

BOOST_AUTO_TEST_CASE(hook_ids_keep_their_order) {
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_COUNT), 37);
  BOOST_REQUIRE_EQUAL(static_cast<std::size_t>(EMBER_HOOK_COUNT), std::size(pinned::hooks_v1_0));
  for (int i = 0; i < EMBER_HOOK_COUNT; ++i)
    BOOST_TEST_CONTEXT("hook id " << i) {
      BOOST_CHECK_EQUAL(std::string(ember::hook_name(static_cast<ember_hook_id_t>(i))),
                        pinned::hooks_v1_0[i]);
    }
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_setup), 0);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_teardown), 1);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_on_fit_start), 2);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_on_exception), 30);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_on_before_optimizer_step), 35);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_HOOK_ID_on_before_zero_grad), 36);
  BOOST_CHECK_EQUAL(std::string(ember::hook_name(EMBER_HOOK_COUNT)), "unknown_hook");
}

BOOST_AUTO_TEST_CASE(abi_version_is_1) {
  BOOST_CHECK_EQUAL(EMBER_ABI_MAJOR, 1);
  BOOST_CHECK_EQUAL(EMBER_ABI_MINOR, 1);  // 1.1 appended the ddp fields of ember_host_t
}

BOOST_AUTO_TEST_CASE(reduce_ops_keep_their_values) {
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_REDUCE_SUM), 0);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_REDUCE_MEAN), 1);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_REDUCE_MAX), 2);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_REDUCE_MIN), 3);
}

BOOST_AUTO_TEST_CASE(status_codes_keep_their_values) {
  BOOST_CHECK_EQUAL(sizeof(ember_status_t), 4u);
  BOOST_CHECK((std::is_same_v<ember_status_t, std::int32_t>));
  BOOST_CHECK_EQUAL(EMBER_OK, 0);
  BOOST_CHECK_EQUAL(EMBER_E_FAILED, -1);
  BOOST_CHECK_EQUAL(EMBER_E_INVALID, -2);
  BOOST_CHECK_EQUAL(EMBER_E_NOT_FOUND, -3);
  BOOST_CHECK_EQUAL(EMBER_E_UNSUPPORTED, -4);
  BOOST_CHECK_EQUAL(EMBER_E_IO, -5);
  BOOST_CHECK_EQUAL(EMBER_E_NOMEM, -6);
  BOOST_CHECK_EQUAL(EMBER_E_VERSION, -7);
  BOOST_CHECK_EQUAL(EMBER_E_STOPPED, -8);
}

BOOST_AUTO_TEST_CASE(enums_keep_their_values) {
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_NONE), 0);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_FIT), 1);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_VALIDATE), 2);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_TEST), 3);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_PREDICT), 4);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_STAGE_SANITY_CHECK), 5);

  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_LOG_DEBUG), 0);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_LOG_INFO), 1);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_LOG_WARN), 2);
  BOOST_CHECK_EQUAL(static_cast<int>(EMBER_LOG_ERROR), 3);
}

BOOST_AUTO_TEST_CASE(interface_ids_and_entry_symbol_keep_their_names) {
  BOOST_CHECK_EQUAL(std::string(EMBER_CALLBACKS_V1), "ember.callbacks/1");
  BOOST_CHECK_EQUAL(std::string(EMBER_STATE_V1), "ember.state/1");
  BOOST_CHECK_EQUAL(std::string(EMBER_LOGGER_V1), "ember.logger/1");
  BOOST_CHECK_EQUAL(std::string(EMBER_STORAGE_V1), "ember.storage/1");
  BOOST_CHECK_EQUAL(std::string(EMBER_MEDIA_V1), "ember.media/1");
  BOOST_CHECK_EQUAL(std::string(EMBER_CHECKPOINTS_V1), "ember.checkpoints/1");
  BOOST_CHECK_EQUAL(EMBER_MEDIA_MAX_BINS, 512);
  BOOST_CHECK_EQUAL(std::string(EMBER_ENTRY_SYMBOL), "ember_plugin_entry");
}

BOOST_AUTO_TEST_CASE(ember_str_literal_excludes_the_terminator) {
  const ember_str_t s = EMBER_STR("c_counter");
  BOOST_CHECK_EQUAL(s.size, 9u);
  BOOST_CHECK_EQUAL(std::string(s.data, s.size), "c_counter");
}

// tests/abi/meson.build compiles each header alone; it lists them by hand (meson does not glob),
// so a new header must be added there. This catches one that was not.
BOOST_AUTO_TEST_CASE(every_abi_header_is_compiled_alone) {
  const char* root = std::getenv("EMBER_SOURCE_ROOT");
  const char* listed = std::getenv("EMBER_ABI_HEADERS");
  BOOST_REQUIRE_MESSAGE(root && listed, "run with meson test (EMBER_SOURCE_ROOT, EMBER_ABI_HEADERS)");
  std::set<std::string> compiled;
  std::stringstream in(listed);
  for (std::string h; std::getline(in, h, ',');) compiled.insert(h);

  namespace fs = std::filesystem;
  const fs::path include = fs::path(root) / "include" / "ember";
  std::vector<std::string> headers = {"abi.h"};
  for (const auto& e : fs::directory_iterator(include / "abi"))
    if (e.path().extension() == ".h") headers.push_back("abi/" + e.path().filename().string());
  BOOST_CHECK_GT(headers.size(), 1u);
  for (const auto& h : headers)
    BOOST_CHECK_MESSAGE(compiled.count(h),
                        "include/ember/" << h << " is not compiled alone: add '" << h
                                         << "' to abi_headers in tests/abi/meson.build");
}
