// JSON configuration: FILE:LINE:COL parse errors, --set overrides, schema checks with key paths
// and "did you mean", defaults, and load_run_config end to end on a file; strict JSON (repeated
// keys, non-finite numbers), range checks of every count, secrets (writeOnly) kept out of messages
// and printed configs, and the plugin helper's reader (plugin_config.hpp).
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include <ember/config.hpp>
#include <ember/sdk/plugin_config.hpp>
#include <ember/redact.hpp>
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

// ---------------------------------------------------------------------------------------------
// Issue 10 item 13: JSON a config may not hold.
BOOST_AUTO_TEST_SUITE(strict_json)

BOOST_AUTO_TEST_CASE(repeated_key_is_refused_at_the_second_one) {
  // Last-wins would turn TLS verification off without a word.
  const std::string what = parse_error("{\n  \"verify_tls\": true,\n  \"verify_tls\": false\n}\n");
  BOOST_TEST(what.rfind("run.json:3:3: ", 0) == 0u, what);
  BOOST_TEST(contains(what, "duplicate key \"verify_tls\""), what);
}

BOOST_AUTO_TEST_CASE(repeated_key_in_a_nested_object_is_refused_and_located) {
  const std::string what =
      parse_error("{\"a\": {\"x\": 1},\n \"b\": [{\"k\": 1}, {\"k\": 2, \"q\\\"\": 0, \"q\\\"\": 1}]}");
  BOOST_TEST(what.rfind("run.json:2:37: ", 0) == 0u, what);
  BOOST_TEST(contains(what, "duplicate key \"q\\\"\""), what);
}

BOOST_AUTO_TEST_CASE(same_key_in_different_objects_is_fine) {
  json::value v = ember::config::parse(R"({"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 3}, {"k": 4}], "k": 5})", "x");
  BOOST_TEST(v.at("c").as_array()[1].at("k").as_int64() == 4);
  BOOST_TEST(v.at("k").as_int64() == 5);
}

BOOST_AUTO_TEST_CASE(number_beyond_double_is_refused_at_its_start) {
  // 1e999 used to become Infinity, which `ember config` then printed as invalid JSON.
  const std::string what = parse_error("{\n  \"lr\": 1e999\n}");
  BOOST_TEST(what.rfind("run.json:2:9: ", 0) == 0u, what);
  BOOST_TEST(contains(what, "finite"), what);
  const std::string neg = parse_error("[0, -1e999]");
  BOOST_TEST(neg.rfind("run.json:1:5: ", 0) == 0u, neg);
}

BOOST_AUTO_TEST_CASE(tiny_and_huge_finite_numbers_still_parse) {
  json::value v = ember::config::parse(R"({"a": 1e-999, "b": 1e300, "c": 18446744073709551615})", "x");
  BOOST_TEST(v.at("a").as_double() == 0.0);
  BOOST_TEST(v.at("b").as_double() == 1e300);
  BOOST_TEST(v.at("c").is_uint64());
}

BOOST_AUTO_TEST_CASE(load_run_config_names_the_file_for_a_repeated_key) {
  ember::test::TempDir tmp;
  const auto path = tmp / "dup.json";
  ember::test::write_file(path, "{\"trainer\": {\"max_epochs\": 3,\n \"max_epochs\": 4}}");
  const std::string what = ember::test::error_of([&] { ember::load_run_config(path.string(), {}); });
  BOOST_TEST(contains(what, path.string() + ":2:2: duplicate key \"max_epochs\""), what);
}

BOOST_AUTO_TEST_CASE(set_with_a_non_finite_number_is_refused_without_echoing_it) {
  const std::string what = load_error("{}", {"model.optimizer.lr=1e999"});
  BOOST_TEST(contains(what, "--set model.optimizer.lr"), what);
  BOOST_TEST(contains(what, "finite"), what);
  BOOST_TEST(!contains(what, "1e999"), what);
}

BOOST_AUTO_TEST_CASE(set_with_a_repeated_key_is_refused) {
  const std::string what = load_error("{}", {R"(trainer.watch={"log": "all", "log": "gradients"})"});
  BOOST_TEST(contains(what, "--set trainer.watch"), what);
  BOOST_TEST(contains(what, "duplicate key \"log\""), what);
}

BOOST_AUTO_TEST_CASE(printed_config_is_always_valid_json) {
  json::value cfg = load_text(R"({"model": {"optimizer": {"lr": 1e-300}}, "data": {"val_fraction": 0.5}})");
  const std::string text = json::serialize(cfg);
  BOOST_CHECK_NO_THROW(json::parse(text));
  BOOST_TEST(!contains(text, "Infinity"), text);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// Issue 10 item 13: every count and number of the run config is range-checked, with its key path.
BOOST_AUTO_TEST_SUITE(ranges)

BOOST_AUTO_TEST_CASE(batch_size_beyond_int64_is_refused) {
  // Was cast to int64 (undefined), ran 0 steps and exited 0.
  const std::string what = load_error(R"({"data": {"batch_size": 1e300}})");
  BOOST_TEST(contains(what, "run.json: data.batch_size: expected a value <= 9007199254740991, got 1e+300"), what);
}

BOOST_AUTO_TEST_CASE(integer_past_int64_without_bounds_is_refused_as_such) {
  json::value schema = ember::config::parse(R"({"properties": {"n": {"type": "integer"}}})", "s");
  for (const char* text : {R"({"n": 1e300})", R"({"n": -1e19})", R"({"n": 9223372036854775808})"}) {
    json::value v = json::parse(text);
    const std::string what = ember::test::error_of([&] { ember::config::check(v, schema, "src"); });
    BOOST_TEST(contains(what, "src: n: expected an integer between -9223372036854775808 and 9223372036854775807"), what);
  }
  json::value ok = json::parse(R"({"n": 9223372036854775807})");
  BOOST_CHECK_NO_THROW(ember::config::check(ok, schema, "src"));
}

BOOST_AUTO_TEST_CASE(batch_size_beyond_the_largest_count_is_refused) {
  const std::string what = load_error("{}", {"data.batch_size=9007199254740992"});
  BOOST_TEST(contains(what, "data.batch_size: expected a value <= 9007199254740991, got 9007199254740992"), what);
  BOOST_CHECK_NO_THROW(load_text("{}", {"data.batch_size=9007199254740991"}));
}

BOOST_AUTO_TEST_CASE(negative_fast_dev_run_is_refused) {
  const std::string what = load_error(R"({"trainer": {"fast_dev_run": -3}})");
  BOOST_TEST(contains(what, "trainer.fast_dev_run: expected a value >= 0, got -3"), what);
  BOOST_CHECK_NO_THROW(load_text(R"({"trainer": {"fast_dev_run": true}})"));
  BOOST_CHECK_NO_THROW(load_text(R"({"trainer": {"fast_dev_run": 5}})"));
}

BOOST_AUTO_TEST_CASE(seed_everything_is_lightnings_range) {
  // A negative seed was cast to unsigned.
  const std::string what = load_error(R"({"seed_everything": -1})");
  BOOST_TEST(contains(what, "run.json: seed_everything: expected a value >= 0, got -1"), what);
  const std::string what2 = load_error("{}", {"seed_everything=4294967296"});
  BOOST_TEST(contains(what2, "seed_everything: expected a value <= 4294967295"), what2);
  BOOST_TEST(load_text("{}", {"seed_everything=4294967295"}).at("seed_everything").as_int64() == 4294967295);
}

BOOST_AUTO_TEST_CASE(integer_past_int64_written_out_is_refused) {
  const std::string what = load_error(R"({"trainer": {"max_steps": 9223372036854775808}})");
  BOOST_TEST(contains(what, "trainer.max_steps: expected a value <= 9007199254740991, got 9223372036854775808"), what);
}

BOOST_AUTO_TEST_CASE(every_trainer_count_is_bounded_both_ways) {
  // Each key with a value below its minimum and one above its maximum (or past int64).
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"trainer.max_epochs", {"-2", "1e17"}},
      {"trainer.min_epochs", {"-1", "1e17"}},
      {"trainer.max_steps", {"-2", "1e300"}},
      {"trainer.val_check_interval", {"0", "1e17"}},
      {"trainer.check_val_every_n_epoch", {"0", "1e17"}},
      {"trainer.limit_train_batches", {"-1", "1e300"}},
      {"trainer.limit_val_batches", {"-0.5", "1e17"}},
      {"trainer.limit_test_batches", {"-1", "1e17"}},
      {"trainer.limit_predict_batches", {"-1", "1e17"}},
      {"trainer.num_sanity_val_steps", {"-2", "1e17"}},
      {"trainer.accumulate_grad_batches", {"0", "1e17"}},
      {"trainer.log_every_n_steps", {"0", "1e17"}},
      {"trainer.fast_dev_run", {"-1", "1e17"}},
      {"trainer.num_threads", {"0", "100000"}},
      {"trainer.watch.log_freq", {"0", "1e17"}},
      {"model.lr_scheduler.step_size", {"0", "4294967296"}},
      {"model.lr_scheduler.t_max", {"0", "4294967296"}},
      {"model.optimizer.lr", {"0", "-1"}},
      {"data.batch_size", {"0", "1e17"}},
      {"data.label_column", {"-2147483649", "2147483648"}},
      {"seed_everything", {"-1", "1e10"}},
  };
  for (const auto& [key, values] : cases)
    for (const auto& value : values) {
      BOOST_TEST_CONTEXT(key << "=" << value) {
        const std::string what = load_error("{}", {key + "=" + value});
        BOOST_TEST(contains(what, "run.json: " + key + ": expected "), what);
      }
    }
}

BOOST_AUTO_TEST_CASE(in_range_values_are_accepted_unchanged) {
  json::value cfg = load_text(R"({"trainer": {"max_epochs": -1, "limit_train_batches": 0.25, "limit_val_batches": 10,
    "val_check_interval": 100, "num_sanity_val_steps": -1}, "data": {"label_column": -1, "batch_size": 1e3}})");
  BOOST_TEST(cfg.at("trainer").at("limit_train_batches").as_double() == 0.25);
  BOOST_TEST(cfg.at("data").at("batch_size").as_double() == 1000.0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// Issue 10 item 5: secrets (schema "writeOnly": true) never reach a message or a printed config.
BOOST_AUTO_TEST_SUITE(secrets)

const char* kS3LikeSchema = R"({
  "type": "object", "additionalProperties": false,
  "properties": {
    "access_key_id": {"type": "string", "default": ""},
    "secret_access_key": {"type": "string", "writeOnly": true, "default": ""},
    "session_token": {"type": "string", "writeOnly": true, "default": ""},
    "pin": {"type": "integer", "writeOnly": true, "maximum": 9999},
    "mode": {"enum": ["a", "b"], "writeOnly": true},
    "nested": {"type": "object", "properties": {"token": {"anyOf": [{"type": "string", "writeOnly": true}, {"type": "null"}]}}}
  }
})";

ember::PluginSchemas schemas_with_s3() {
  ember::PluginSchemas s;
  s.emplace("s3", ember::config::parse(kS3LikeSchema, "s3 schema"));
  s.emplace("csv_logger", json::value());  // a plugin without a schema: no config, no secrets
  return s;
}

BOOST_AUTO_TEST_CASE(messages_about_a_secret_never_quote_it) {
  json::value schema = ember::config::parse(kS3LikeSchema, "s");
  json::value v = json::parse(R"({"pin": 123456789, "mode": "hunter2", "secret_access_key": 42})");
  const std::string what = ember::test::error_of([&] { ember::config::check(v, schema, "run.json", "cfg"); });
  BOOST_TEST(contains(what, "cfg.pin: expected a value <= 9999, got ***"), what);
  BOOST_TEST(contains(what, "cfg.mode: expected one of \"a\", \"b\", got ***"), what);
  BOOST_TEST(contains(what, "cfg.secret_access_key: expected string, got integer"), what);
  BOOST_TEST(!contains(what, "123456789"), what);
  BOOST_TEST(!contains(what, "hunter2"), what);
  BOOST_TEST(!contains(what, "did you mean"), what);
}

BOOST_AUTO_TEST_CASE(redact_replaces_set_secrets_and_keeps_the_rest) {
  json::value schema = ember::config::parse(kS3LikeSchema, "s");
  json::value v = json::parse(R"({"access_key_id": "AKIA", "secret_access_key": "SECRET", "session_token": "",
                                  "pin": 1234, "nested": {"token": "TOK"}})");
  ember::config::redact(v, schema);
  BOOST_TEST(v.at("access_key_id").as_string() == "AKIA");
  BOOST_TEST(v.at("secret_access_key").as_string() == "***");
  BOOST_TEST(v.at("session_token").as_string() == "");  // not set: nothing to hide
  BOOST_TEST(v.at("pin").as_string() == "***");
  BOOST_TEST(v.at("nested").at("token").as_string() == "***");
}

BOOST_AUTO_TEST_CASE(redact_run_config_follows_plugin_references) {
  json::value cfg = load_text(R"({
    "plugins": {"storage": [{"plugin": "s3", "config": {"secret_access_key": "SECRET", "access_key_id": "AKIA"}}]},
    "trainer": {"logger": [{"plugin": "mystery", "config": {"password": "PW"}}, {"plugin": "csv_logger"}]}})");
  ember::redact_run_config(cfg, schemas_with_s3());
  const std::string text = json::serialize(cfg);
  BOOST_TEST(!contains(text, "SECRET"), text);
  BOOST_TEST(!contains(text, "PW"), text);  // a plugin whose schema is unknown: its whole config
  BOOST_TEST(contains(text, "AKIA"), text);
  BOOST_TEST(cfg.at("plugins").at("storage").as_array()[0].at("config").at("secret_access_key").as_string() == "***");
  BOOST_TEST(cfg.at("trainer").at("logger").as_array()[0].at("config").as_string() == "***");
}

BOOST_AUTO_TEST_CASE(redact_override_hides_secrets_inside_a_set_value) {
  const auto schemas = schemas_with_s3();
  const std::string set =
      R"(plugins.storage=[{"plugin": "s3", "config": {"secret_access_key": "SECRET", "region": "eu-west-1"}}])";
  const std::string shown = ember::redact_override(set, schemas);
  BOOST_TEST(!contains(shown, "SECRET"), shown);
  BOOST_TEST(contains(shown, "plugins.storage=["), shown);
  BOOST_TEST(contains(shown, "eu-west-1"), shown);
  BOOST_TEST(ember::redact_override("trainer.max_epochs=3", schemas) == "trainer.max_epochs=3");
  BOOST_TEST(ember::redact_override("data.train=[\"a b\" ,\"c\"]", schemas) == "data.train=[\"a b\" ,\"c\"]");
}

BOOST_AUTO_TEST_CASE(redact_override_uses_the_resolved_config_for_context) {
  ember::PluginSchemas schemas;
  schemas.emplace("m", ember::config::parse(
                           R"({"type": "object", "properties": {"api_key": {"type": "string", "writeOnly": true}}})", "m"));
  const json::value base = json::parse(R"({"model": {"plugin": "m", "config": {"lr": 0.1}}})");
  BOOST_TEST(ember::redact_override("model.config.api_key=abc123", schemas, base) == "model.config.api_key=***");
  BOOST_TEST(ember::redact_override("model.config.lr=0.5", schemas, base) == "model.config.lr=0.5");
  // Without the context the model plugin is unknown, so its whole config counts as secret.
  BOOST_TEST(ember::redact_override("model.config.lr=0.5", schemas) == "model.config.lr=***");
}

BOOST_AUTO_TEST_CASE(redact_override_of_an_invalid_value_keeps_only_the_key) {
  const std::string shown = ember::redact_override(R"(plugins.storage={"a": 1, "a": "SECRET"})", schemas_with_s3());
  BOOST_TEST(shown == "plugins.storage=***");
}

BOOST_AUTO_TEST_CASE(redact_argv_redacts_every_set_form) {
  const std::string secret = R"(plugins.storage=[{"plugin": "s3", "config": {"session_token": "TOKEN"}}])";
  const std::vector<std::string> argv = {"ember", "fit", "--config", "run.json", "--set", "trainer.max_epochs=1",
                                         secret, "--set=" + secret, "--plugin-dir", "plugins"};
  const auto shown = ember::redact_argv(argv, schemas_with_s3());
  BOOST_TEST(shown.size() == argv.size());
  std::string all;
  for (const auto& a : shown) all += a + " ";
  BOOST_TEST(!contains(all, "TOKEN"), all);
  BOOST_TEST(shown[5] == "trainer.max_epochs=1");
  BOOST_TEST(shown[7].rfind("--set=plugins.storage=[", 0) == 0u, shown[7]);
  BOOST_TEST(shown[9] == "plugins");
  BOOST_TEST(shown[3] == "run.json");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// The plugin helper's reader: as strict as the host's, bounded both ways, secrets unquoted.
BOOST_AUTO_TEST_SUITE(plugin_config)

BOOST_AUTO_TEST_CASE(repeated_key_is_refused_with_line_and_column) {
  const std::string what = ember::test::error_of([] { ember::plugin::Config c("{\"a\": 1,\n \"a\": 2}", "p"); });
  BOOST_TEST(contains(what, "p: config: not valid JSON at line 2, column 2: duplicate key \"a\""), what);
}

BOOST_AUTO_TEST_CASE(integer_and_number_take_a_maximum) {
  ember::plugin::Config c(R"({"n": 2147483648, "x": 1e300, "ok": 7})", "p");
  const std::string what = ember::test::error_of([&] { c.integer("n", 0, 1, 2147483647); });
  BOOST_TEST(contains(what, "p: config key n: expected an integer from 1 to 2147483647, got 2147483648"), what);
  const std::string what2 = ember::test::error_of([&] { c.number("x", 0, 0, 86400); });
  BOOST_TEST(contains(what2, "p: config key x: expected a finite number from 0 to 86400, got 1e+300"), what2);
  BOOST_TEST(c.integer("ok", 0, 1, 10) == 7);
  BOOST_TEST(c.integer("absent", 5, 1, 10) == 5);
}

BOOST_AUTO_TEST_CASE(secret_keys_are_not_quoted) {
  ember::plugin::Config c(R"({"api_key": 12345, "mode": "hunter2"})", "p");
  c.set_secret_keys({"api_key", "mode"});
  const std::string what = ember::test::error_of([&] { c.optional_string("api_key"); });
  BOOST_TEST(contains(what, "p: config key api_key: expected a string, got ***"), what);
  const std::string what2 = ember::test::error_of([&] { c.one_of("mode", "a", {"a", "b"}); });
  BOOST_TEST(!contains(what2, "hunter2"), what2);
}

BOOST_AUTO_TEST_SUITE_END()
