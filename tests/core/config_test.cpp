// JSON configuration: FILE:LINE:COL parse errors, --set overrides, schema checks with key paths
// and "did you mean", defaults, and load_run_config end to end on a file.
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include <ember/config.hpp>
#include <ember/run_config.hpp>

#include "expect.hpp"
#include "temp_dir.hpp"

#include <string>
#include <vector>

namespace json = boost::json;
using ember::ConfigError;

namespace {

using ember::test::contains;

std::string parse_error(const std::string& text, const std::string& name = "run.json") {
  try {
    ember::config::parse(text, name);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(parsed without error)";
}

// The run config from text, through a temporary file, with overrides.
json::value load_text(const std::string& text, const std::vector<std::string>& overrides = {}) {
  ember::test::TempDir tmp;
  const auto path = tmp / "run.json";
  ember::test::write_file(path, text);
  return ember::load_run_config(path.string(), overrides);
}

std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    load_text(text, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(loaded without error)";
}

json::value with_override(json::value root, const std::string& assignment) {
  ember::config::apply_override(root, assignment);
  return root;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(parse_errors)

BOOST_AUTO_TEST_CASE(missing_comma_points_at_the_next_key) {
  const std::string text =
      "{\n"
      "  \"a\": 1,\n"
      "  \"b\": 2\n"
      "  \"c\": 3\n"
      "}\n";
  const std::string what = parse_error(text);
  BOOST_TEST(what.rfind("run.json:4:3: ", 0) == 0u, what);
  BOOST_TEST(contains(what, "expected valid JSON"), what);
}

BOOST_AUTO_TEST_CASE(trailing_garbage_is_a_parse_error) {
  const std::string what = parse_error("{\"a\": 1}\n  x\n");
  BOOST_TEST(what.rfind("run.json:2:3: ", 0) == 0u, what);
}

BOOST_AUTO_TEST_CASE(bad_literal_points_at_its_start) {
  const std::string what = parse_error("{\"a\": tru}");
  BOOST_TEST(what.rfind("run.json:1:7: ", 0) == 0u, what);
}

BOOST_AUTO_TEST_CASE(bad_value_after_a_comment_line_is_located) {
  // Comments are allowed and still count as lines.
  const std::string what = parse_error("// a comment\n{\"a\": @}\n");
  BOOST_TEST(what.rfind("run.json:2:7: ", 0) == 0u, what);
}

BOOST_AUTO_TEST_CASE(truncated_document_points_at_its_end) {
  const std::string what = parse_error("{\n  \"a\": 1,\n");
  BOOST_TEST(what.rfind("run.json:3:1: ", 0) == 0u, what);
}

BOOST_AUTO_TEST_CASE(first_line_error_uses_the_given_name) {
  const std::string what = parse_error("[1 2]", "/etc/ember/x.json");
  BOOST_TEST(what.rfind("/etc/ember/x.json:1:4: ", 0) == 0u, what);
}

BOOST_AUTO_TEST_CASE(comments_and_trailing_commas_are_accepted) {
  json::value v = ember::config::parse("{\n  // why\n  \"a\": [1, 2,],\n  /* b */ \"b\": 3,\n}\n", "x");
  BOOST_TEST(v.at("a").as_array().size() == 2u);
  BOOST_TEST(v.at("b").as_int64() == 3);
}

BOOST_AUTO_TEST_CASE(missing_file_names_the_file) {
  ember::test::TempDir tmp;
  const std::string path = (tmp / "absent.json").string();
  try {
    ember::config::load_file(path);
    BOOST_FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    BOOST_TEST(contains(e.what(), path + ": cannot open"), e.what());
  }
}

BOOST_AUTO_TEST_CASE(load_run_config_reports_parse_error_with_file_line_col) {
  ember::test::TempDir tmp;
  const auto path = tmp / "bad.json";
  ember::test::write_file(path, "{\n  \"trainer\": {\n    \"max_epochs\": 3\n    \"max_steps\": 4\n  }\n}\n");
  try {
    ember::load_run_config(path.string(), {});
    BOOST_FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    BOOST_TEST(contains(e.what(), path.string() + ":4:5: "), e.what());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(schema_checks)

BOOST_AUTO_TEST_CASE(unknown_key_gives_path_and_did_you_mean) {
  const std::string what = load_error(R"({"trainer": {"max_epoch": 3}})");
  BOOST_TEST(contains(what, "run.json: trainer.max_epoch: unknown key"), what);
  BOOST_TEST(contains(what, "did you mean 'trainer.max_epochs'?"), what);
}

BOOST_AUTO_TEST_CASE(unknown_key_far_from_any_lists_valid_keys) {
  const std::string what = load_error(R"({"model": {"optimizer": {"zzzzzzzzzz": 1}}})");
  BOOST_TEST(contains(what, "model.optimizer.zzzzzzzzzz: unknown key"), what);
  BOOST_TEST(contains(what, "valid keys here:"), what);
  BOOST_TEST(contains(what, "lr"), what);
  BOOST_TEST(!contains(what, "did you mean"), what);
}

BOOST_AUTO_TEST_CASE(unknown_top_level_key_is_refused) {
  const std::string what = load_error(R"({"trainr": {}})");
  BOOST_TEST(contains(what, "trainr: unknown key"), what);
  BOOST_TEST(contains(what, "did you mean 'trainer'?"), what);
}

BOOST_AUTO_TEST_CASE(type_error_gives_path_and_expected_type) {
  const std::string what = load_error(R"({"trainer": {"max_epochs": "ten"}})");
  BOOST_TEST(contains(what, "trainer.max_epochs: expected integer or null, got string"), what);
}

BOOST_AUTO_TEST_CASE(type_error_inside_array_item_gives_index_in_path) {
  const std::string what = load_error(R"({"trainer": {"callbacks": [{"plugin": "a"}, {"plugin": 5}]}})");
  BOOST_TEST(contains(what, "trainer.callbacks[1].plugin: expected string, got integer"), what);
}

BOOST_AUTO_TEST_CASE(missing_required_key_is_named) {
  const std::string what = load_error(R"({"trainer": {"callbacks": [{"config": {}}]}})");
  BOOST_TEST(contains(what, "trainer.callbacks[0].plugin: required key is missing"), what);
}

BOOST_AUTO_TEST_CASE(range_errors_name_the_bound) {
  const std::string what = load_error(R"({"trainer": {"accumulate_grad_batches": 0}})");
  BOOST_TEST(contains(what, "trainer.accumulate_grad_batches: expected a value >= 1, got 0"), what);
  const std::string what2 = load_error(R"({"model": {"optimizer": {"lr": 0}}})");
  BOOST_TEST(contains(what2, "model.optimizer.lr: expected a value > 0"), what2);
  const std::string what3 = load_error(R"({"data": {"val_fraction": 0.95}})");
  BOOST_TEST(contains(what3, "data.val_fraction: expected a value <= 0.9, got 0.95"), what3);
}

BOOST_AUTO_TEST_CASE(enum_value_gets_did_you_mean) {
  const std::string what = load_error(R"({"trainer": {"gradient_clip_algorithm": "nrom"}})");
  BOOST_TEST(contains(what, "trainer.gradient_clip_algorithm: expected one of \"norm\", \"value\""), what);
  BOOST_TEST(contains(what, "did you mean \"norm\"?"), what);
}

BOOST_AUTO_TEST_CASE(every_problem_is_reported_at_once) {
  const std::string what =
      load_error(R"({"trainer": {"max_epoch": 3, "max_steps": "x"}, "data": {"batch_size": 0}})");
  BOOST_TEST(contains(what, "trainer.max_epoch"), what);
  BOOST_TEST(contains(what, "trainer.max_steps"), what);
  BOOST_TEST(contains(what, "data.batch_size"), what);
}

BOOST_AUTO_TEST_CASE(root_that_is_not_an_object_is_refused) {
  const std::string what = load_error("[1, 2]");
  BOOST_TEST(contains(what, "run.json: (root): expected"), what);
}

BOOST_AUTO_TEST_CASE(anyof_accepts_either_alternative) {
  BOOST_CHECK_NO_THROW(load_text(R"({"trainer": {"logger": false}})"));
  BOOST_CHECK_NO_THROW(load_text(R"({"trainer": {"logger": [{"plugin": "csv_logger"}]}})"));
  const std::string what = load_error(R"({"trainer": {"logger": "csv"}})");
  BOOST_TEST(contains(what, "trainer.logger"), what);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(defaults)

BOOST_AUTO_TEST_CASE(empty_config_gets_trainer_and_plugins_defaults) {
  json::value cfg = load_text("{}");
  const auto& trainer = cfg.at("trainer");
  BOOST_TEST(trainer.at("max_steps").as_int64() == -1);
  BOOST_TEST(trainer.at("log_every_n_steps").as_int64() == 50);
  BOOST_TEST(trainer.at("num_sanity_val_steps").as_int64() == 2);
  BOOST_TEST(trainer.at("gradient_clip_algorithm").as_string() == "norm");
  BOOST_TEST(trainer.at("max_epochs").is_null());
  BOOST_TEST(trainer.at("logger").as_bool() == true);
  BOOST_TEST(trainer.at("callbacks").as_array().empty());
  BOOST_TEST(cfg.at("plugins").at("dirs").as_array().empty());
  BOOST_TEST(cfg.at("seed_everything").is_null());
}

BOOST_AUTO_TEST_CASE(given_values_are_kept_and_nested_defaults_filled) {
  json::value cfg = load_text(R"({"trainer": {"max_epochs": 3}, "model": {"optimizer": {"lr": 0.1}}})");
  BOOST_TEST(cfg.at("trainer").at("max_epochs").as_int64() == 3);
  BOOST_TEST(cfg.at("trainer").at("max_steps").as_int64() == -1);
  const auto& opt = cfg.at("model").at("optimizer");
  BOOST_TEST(opt.at("lr").as_double() == 0.1);
  BOOST_TEST(opt.at("name").as_string() == "adam");
  // model.loss has no default: a model plugin must not be handed TorchScript-only keys.
  BOOST_TEST(!cfg.at("model").as_object().contains("loss"));
}

BOOST_AUTO_TEST_CASE(check_fills_defaults_only_when_asked) {
  json::value schema = ember::config::parse(
      R"({"type": "object", "properties": {"n": {"type": "integer", "default": 7}}})", "schema");
  json::value a = json::object{};
  ember::config::check(a, schema, "src");
  BOOST_TEST(!a.as_object().contains("n"));
  ember::config::check(a, schema, "src", "", true);
  BOOST_TEST(a.at("n").as_int64() == 7);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(overrides)

BOOST_AUTO_TEST_CASE(set_replaces_an_existing_value_with_json) {
  json::value v = with_override(json::parse(R"({"trainer": {"max_epochs": 1}})"), "trainer.max_epochs=5");
  BOOST_TEST(v.at("trainer").at("max_epochs").as_int64() == 5);
}

BOOST_AUTO_TEST_CASE(set_creates_nested_objects) {
  json::value v = with_override(json::object{}, "model.optimizer.name=sgd");
  BOOST_TEST(v.at("model").at("optimizer").at("name").as_string() == "sgd");
}

BOOST_AUTO_TEST_CASE(set_value_is_json_when_it_parses_else_a_string) {
  json::value v = json::object{};
  ember::config::apply_override(v, "a.int=3");
  ember::config::apply_override(v, "a.float=0.25");
  ember::config::apply_override(v, "a.bool=true");
  ember::config::apply_override(v, "a.null=null");
  ember::config::apply_override(v, "a.list=[1,2]");
  ember::config::apply_override(v, "a.obj={\"k\":1}");
  ember::config::apply_override(v, "a.text=hello world");
  ember::config::apply_override(v, "a.quoted=\"42\"");
  ember::config::apply_override(v, "a.path=/tmp/x=y");
  ember::config::apply_override(v, "a.empty=");
  const auto& a = v.at("a");
  BOOST_TEST(a.at("int").as_int64() == 3);
  BOOST_TEST(a.at("float").as_double() == 0.25);
  BOOST_TEST(a.at("bool").as_bool() == true);
  BOOST_TEST(a.at("null").is_null());
  BOOST_TEST(a.at("list").as_array().size() == 2u);
  BOOST_TEST(a.at("obj").at("k").as_int64() == 1);
  BOOST_TEST(a.at("text").as_string() == "hello world");
  BOOST_TEST(a.at("quoted").as_string() == "42");
  BOOST_TEST(a.at("path").as_string() == "/tmp/x=y");
  BOOST_TEST(a.at("empty").as_string() == "");
}

BOOST_AUTO_TEST_CASE(set_keeps_sibling_keys) {
  json::value v = with_override(json::parse(R"({"trainer": {"max_epochs": 1, "max_steps": 9}})"),
                                "trainer.max_epochs=2");
  BOOST_TEST(v.at("trainer").at("max_steps").as_int64() == 9);
}

BOOST_AUTO_TEST_CASE(malformed_set_is_a_config_error_naming_it) {
  json::value v = json::parse(R"({"trainer": 3})");
  for (const char* bad : {"no_equals_sign", "=5", "a..b=1", "trainer.max_epochs=1"}) {
    BOOST_TEST_CONTEXT("--set " << bad) {
      try {
        ember::config::apply_override(v, bad);
        BOOST_FAIL("expected ConfigError");
      } catch (const ConfigError& e) {
        BOOST_TEST(contains(e.what(), "--set"), e.what());
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(overrides_are_checked_like_the_file) {
  json::value cfg = load_text(R"({"trainer": {"max_epochs": 1}})", {"trainer.max_epochs=4", "data.batch_size=8"});
  BOOST_TEST(cfg.at("trainer").at("max_epochs").as_int64() == 4);
  BOOST_TEST(cfg.at("data").at("batch_size").as_int64() == 8);
  const std::string what = load_error("{}", {"trainer.max_epoch=4"});
  BOOST_TEST(contains(what, "trainer.max_epoch: unknown key"), what);
  BOOST_TEST(contains(what, "did you mean 'trainer.max_epochs'?"), what);
  const std::string what2 = load_error("{}", {"trainer.max_epochs=many"});
  BOOST_TEST(contains(what2, "trainer.max_epochs: expected integer or null, got string"), what2);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(suggestions)

BOOST_AUTO_TEST_CASE(edit_distance_counts_insertions_deletions_and_substitutions) {
  BOOST_TEST(ember::config::edit_distance("", "") == 0u);
  BOOST_TEST(ember::config::edit_distance("abc", "abc") == 0u);
  BOOST_TEST(ember::config::edit_distance("max_epoch", "max_epochs") == 1u);
  BOOST_TEST(ember::config::edit_distance("kitten", "sitting") == 3u);
  BOOST_TEST(ember::config::edit_distance("", "abc") == 3u);
}

BOOST_AUTO_TEST_CASE(nearest_suggests_only_plausible_typos) {
  const std::vector<std::string> keys{"max_epochs", "max_steps", "min_epochs"};
  BOOST_TEST(ember::config::nearest("max_epoch", keys) == "max_epochs");
  BOOST_TEST(ember::config::nearest("max_stesp", keys) == "max_steps");
  BOOST_TEST(ember::config::nearest("learning_rate", keys) == "");
  BOOST_TEST(ember::config::nearest("anything", {}) == "");
}

BOOST_AUTO_TEST_SUITE_END()
