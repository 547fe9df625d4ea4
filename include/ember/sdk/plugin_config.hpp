// Read a plugin's JSON config (and other JSON objects a plugin is handed) with errors that name
// the plugin, the key and what was expected. Header-only; Boost.JSON only (no libtorch).
//
//   ember::plugin::Config cfg(config_json, "my_logger");
//   std::int64_t every = cfg.integer("every_n_steps", 100, /*min=*/1);
//   std::optional<std::string> dir = cfg.optional_string("save_dir");
//   // a bad value: "my_logger: config key every_n_steps: expected an integer >= 1, got 0"
//
// The host has already checked the config against the plugin's schema and filled its defaults
// (loader.hpp), so these checks are the plugin's own guard for a host that did not, not the
// user's first line of errors. An absent key and a null one both read as "use the default".
#pragma once

#include <ember/sdk/json_parse.hpp>

#include <boost/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ember::plugin {

// Parse text that must be one JSON object. `what` names it in errors: "config",
// "load_state_dict". Strict as the host's config reader (json_parse.hpp): a key repeated in one
// object or a number beyond double's range is refused. Throws std::invalid_argument
// "<plugin_id>: <what>: not valid JSON at line L, column C: ..." or
// "<plugin_id>: <what>: expected a JSON object".
inline boost::json::object parse_object(std::string_view text, std::string_view plugin_id,
                                        std::string_view what) {
  auto prefix = [&] { return std::string(plugin_id) + ": " + std::string(what) + ": "; };
  ember::json_parse::Failure f;
  auto v = ember::json_parse::parse(text, boost::json::parse_options(), f);
  if (!v) {
    auto [line, col] = ember::json_parse::line_col(text, f.offset);
    throw std::invalid_argument(prefix() + "not valid JSON at line " + std::to_string(line) + ", column " +
                                std::to_string(col) + ": " + f.message);
  }
  if (!v->is_object()) throw std::invalid_argument(prefix() + "expected a JSON object");
  return std::move(v->as_object());
}

// A plugin's config object with typed getters. Each getter returns the fallback when the key is
// absent or null, and otherwise throws std::invalid_argument
// "<plugin_id>: config key <key>: expected <what>, got <value>" for a value of the wrong type or
// out of range.
class Config {
 public:
  Config(std::string_view config_json, std::string_view plugin_id)
      : plugin_id_(plugin_id), object_(parse_object(config_json, plugin_id, "config")) {}

  const std::string& plugin_id() const { return plugin_id_; }
  const boost::json::object& object() const { return object_; }

  // The value of key; nullptr when absent or null.
  const boost::json::value* find(std::string_view key) const {
    const boost::json::value* v = object_.if_contains(key);
    return v && !v->is_null() ? v : nullptr;
  }

  std::optional<std::string> optional_string(std::string_view key) const {
    const boost::json::value* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail_got(key, "a string", *v);
    return std::string(v->as_string());
  }
  std::string string(std::string_view key, std::string_view fallback) const {
    auto s = optional_string(key);
    return s ? *std::move(s) : std::string(fallback);
  }

  // A string that must be one of choices: expected "min" or "max", got "minimum".
  std::string one_of(std::string_view key, std::string_view fallback,
                     std::initializer_list<std::string_view> choices) const {
    auto s = optional_string(key);
    if (!s) return std::string(fallback);
    for (std::string_view c : choices)
      if (*s == c) return *std::move(s);
    std::string expected;
    std::size_t i = 0;
    for (std::string_view c : choices) {
      if (i++) expected += i == choices.size() ? " or " : ", ";
      expected += "\"" + std::string(c) + "\"";
    }
    fail(key, "expected " + expected + ", got " + shown(key, "\"" + *s + "\""));
  }

  // An array of strings; empty when absent.
  std::vector<std::string> strings(std::string_view key) const {
    std::vector<std::string> out;
    const boost::json::value* v = find(key);
    if (!v) return out;
    if (!v->is_array()) fail_got(key, "an array of strings", *v);
    for (const auto& e : v->as_array()) {
      if (!e.is_string()) fail_got(key, "an array of strings", *v);
      out.emplace_back(e.as_string());
    }
    return out;
  }

  bool boolean(std::string_view key, bool fallback) const {
    const boost::json::value* v = find(key);
    if (!v) return fallback;
    if (!v->is_bool()) fail_got(key, "true or false", *v);
    return v->get_bool();
  }

  // A whole number (a JSON number that is exactly an int64, 3.0 included) in [min, max].
  std::int64_t integer(std::string_view key, std::int64_t fallback,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
    const boost::json::value* v = find(key);
    if (!v) return fallback;
    std::string expected = "an integer";
    const bool has_min = min != std::numeric_limits<std::int64_t>::min();
    const bool has_max = max != std::numeric_limits<std::int64_t>::max();
    if (has_min && has_max) expected += " from " + std::to_string(min) + " to " + std::to_string(max);
    else if (has_min) expected += " >= " + std::to_string(min);
    else if (has_max) expected += " <= " + std::to_string(max);
    boost::system::error_code ec;
    std::int64_t n = v->is_number() ? v->to_number<std::int64_t>(ec) : 0;
    if (!v->is_number() || ec) fail_got(key, expected, *v);
    if (n < min || n > max) fail(key, "expected " + expected + ", got " + shown(key, std::to_string(n)));
    return n;
  }

  // A finite number in [min, max].
  std::optional<double> optional_number(std::string_view key,
                                        double min = -std::numeric_limits<double>::infinity(),
                                        double max = std::numeric_limits<double>::infinity()) const {
    const boost::json::value* v = find(key);
    if (!v) return std::nullopt;
    std::string expected = "a finite number";
    const bool has_min = min != -std::numeric_limits<double>::infinity();
    const bool has_max = max != std::numeric_limits<double>::infinity();
    if (has_min && has_max) expected += " from " + shortest(min) + " to " + shortest(max);
    else if (has_min) expected += " >= " + shortest(min);
    else if (has_max) expected += " <= " + shortest(max);
    if (!v->is_number()) fail_got(key, expected, *v);
    double x = v->to_number<double>();
    if (!std::isfinite(x) || !(x >= min) || !(x <= max))
      fail(key, "expected " + expected + ", got " + shown(key, shortest(x)));
    return x;
  }
  double number(std::string_view key, double fallback,
                double min = -std::numeric_limits<double>::infinity(),
                double max = std::numeric_limits<double>::infinity()) const {
    return optional_number(key, min, max).value_or(fallback);
  }

  // Keys whose values no message may quote (a key, a token): the plugin's schema marks them
  // `"writeOnly": true`, as the host reads them (config.hpp); a plugin that reads its config here
  // names them once: cfg.set_secret_keys({"api_key"}).
  void set_secret_keys(std::vector<std::string> keys) { secret_keys_ = std::move(keys); }

  // Throws std::invalid_argument "<plugin_id>: config key <key>: <message>".
  [[noreturn]] void fail(std::string_view key, const std::string& message) const {
    throw std::invalid_argument(plugin_id_ + ": config key " + std::string(key) + ": " + message);
  }

 private:
  [[noreturn]] void fail_got(std::string_view key, const std::string& expected,
                             const boost::json::value& got) const {
    // Boost.JSON writes 2.5 as 2.5E0; the user wrote 2.5.
    fail(key, "expected " + expected + ", got " +
                  shown(key, got.is_double() ? shortest(got.get_double()) : boost::json::serialize(got)));
  }

  std::string shown(std::string_view key, std::string text) const {
    for (const auto& k : secret_keys_)
      if (k == key) return "***";
    return text;
  }

  static std::string shortest(double v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  }

  std::string plugin_id_;
  boost::json::object object_;
  std::vector<std::string> secret_keys_;
};

}  // namespace ember::plugin
