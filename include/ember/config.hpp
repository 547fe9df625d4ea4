// JSON configuration: parsing with FILE:LINE:COL errors, `--set a.b=value` overrides, and
// validation against a JSON Schema subset (type, properties, additionalProperties, required,
// enum, const, minimum/maximum, exclusiveMinimum, minLength, items, anyOf/oneOf, default) with a
// "did you mean" for unknown keys. Needs Boost.JSON.
#pragma once

#include <ember/error.hpp>
#include <ember/sdk/json_parse.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace ember::config {

namespace json = boost::json;

// Levenshtein distance, for "did you mean".
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate nearest to word, or "" when none is close enough to be a plausible typo.
inline std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  return best_d <= limit ? best : std::string();
}

// The options every config text is read with: comments and trailing commas, as hand-written
// configs have them.
inline json::parse_options parse_options() {
  json::parse_options opt;
  opt.allow_comments = true;
  opt.allow_trailing_commas = true;
  return opt;
}

// Parse text; on error throw ConfigError "NAME:LINE:COL: message". Refuses, besides bad JSON, a
// key repeated in one object and numbers beyond double's range (json_parse.hpp says why).
inline json::value parse(std::string_view text, const std::string& name) {
  json_parse::Failure f;
  auto v = json_parse::parse(text, parse_options(), f);
  if (v) return std::move(*v);
  auto [line, col] = json_parse::line_col(text, f.offset);
  throw ConfigError(name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + f.message +
                    (f.kind == json_parse::Failure::Kind::syntax ? " (expected valid JSON)" : ""));
}

inline json::value load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

// Apply "a.b.c=value": value is JSON if it parses as JSON, else a string. Creates objects.
inline void apply_override(json::value& root, std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw ConfigError("--set " + std::string(assignment) + ": expected KEY.PATH=VALUE");
  std::string path(assignment.substr(0, eq));
  std::string raw(assignment.substr(eq + 1));
  // Text that is not JSON at all is a string; JSON a config may not hold (a repeated key, a
  // number beyond double's range) is an error. The message leaves VALUE out: it may be a secret.
  json_parse::Failure f;
  auto parsed = json_parse::parse(raw, parse_options(), f);
  if (!parsed && f.kind != json_parse::Failure::Kind::syntax)
    throw ConfigError("--set " + path + ": VALUE at column " + std::to_string(f.offset + 1) + ": " + f.message);
  json::value value = parsed ? std::move(*parsed) : json::value(raw);
  if (!root.is_object()) root = json::object();
  json::value* cur = &root;
  std::size_t start = 0;
  while (true) {
    auto dot = path.find('.', start);
    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (key.empty()) throw ConfigError("--set " + path + ": empty key in path");
    if (!cur->is_object()) throw ConfigError("--set " + path + ": '" + key + "' is inside a non-object");
    json::value& next = cur->as_object()[key];
    if (dot == std::string::npos) {
      next = value;
      return;
    }
    if (next.is_null()) next = json::object();
    cur = &next;
    start = dot + 1;
  }
}

// One problem found by validate().
struct Issue {
  std::string path;     // e.g. "trainer.callbacks[0].config.save_dir"
  std::string message;
};

inline std::string join_path(const std::string& base, std::string_view key) {
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}

inline const char* kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "boolean";
    case json::kind::int64:
    case json::kind::uint64: return "integer";
    case json::kind::double_: return "number";
    case json::kind::string: return "string";
    case json::kind::array: return "array";
    case json::kind::object: return "object";
  }
  return "?";
}

inline bool has_type(const json::value& v, std::string_view t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_bool();
  if (t == "null") return v.is_null();
  if (t == "integer")
    return v.is_int64() || v.is_uint64() ||
           (v.is_double() && std::floor(v.as_double()) == v.as_double());
  if (t == "number") return v.is_number();
  return false;
}

// Whether v is a whole number that int64 holds exactly. Every "integer" in a schema must be: the
// host and the plugins convert them to int64 (or narrower, bounded by the schema's maximum), and a
// conversion of 1e300 is undefined behaviour, not an error.
inline bool fits_int64(const json::value& v) {
  if (v.is_int64()) return true;
  if (v.is_uint64()) return v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX);
  if (!v.is_double()) return false;
  const double d = v.as_double();
  // 2^63 is exact in a double; int64 holds [-2^63, 2^63).
  return std::floor(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0;
}

// The schema keyword that marks a secret value (a key, a token, a password): JSON Schema's own
// annotation `writeOnly: true` ("may be set, never read back"), which validators that do not
// know Ember ignore, rather than a private "x-" keyword. A secret is never shown: `ember config`
// prints kRedacted in its place, and no message quotes it.
inline constexpr const char* kSecretKeyword = "writeOnly";
inline constexpr const char* kRedacted = "***";

inline bool is_secret(const json::object& schema) {
  const json::value* w = schema.if_contains(kSecretKeyword);
  return w && w->is_bool() && w->as_bool();
}

// A JSON value for messages: numbers in plain decimal (0.9, not 9E-1).
inline std::string show(const json::value& v) {
  if (v.is_double()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.15g", v.as_double());
    return buf;
  }
  return json::serialize(v);
}

inline double number_of(const json::value& v) {
  return v.is_double() ? v.as_double() : v.is_int64() ? double(v.as_int64()) : double(v.as_uint64());
}

namespace detail {

// validate() with `secret` set inside a value marked secret (kSecretKeyword): its messages say
// what was expected but never quote the value.
inline void validate(json::value& value, const json::value& schema, const std::string& path,
                     std::vector<Issue>& issues, bool fill_defaults, bool secret) {
  if (!schema.is_object()) return;
  const json::object& s = schema.as_object();
  const std::string here = path.empty() ? "(root)" : path;
  secret = secret || is_secret(s);
  auto shown = [&](const json::value& v) { return secret ? std::string(kRedacted) : show(v); };

  for (const char* combinator : {"anyOf", "oneOf"}) {
    if (auto* alts = s.if_contains(combinator)) {
      std::vector<Issue> best;
      bool ok = false;
      for (const auto& alt : alts->as_array()) {
        std::vector<Issue> trial;
        json::value copy = value;
        validate(copy, alt, path, trial, fill_defaults, secret);
        if (trial.empty()) {
          value = copy;
          ok = true;
          break;
        }
        if (best.empty() || trial.size() < best.size()) best = trial;
      }
      if (!ok) issues.insert(issues.end(), best.begin(), best.end());
      return;
    }
  }

  if (auto* t = s.if_contains("type")) {
    bool ok = false, too_big = false;
    std::string expected;
    auto check = [&](const json::value& one) {
      std::string_view name = one.as_string();
      if (has_type(value, name)) {
        if (name == "integer" && !fits_int64(value)) too_big = true;
        else ok = true;
      }
      if (!expected.empty()) expected += " or ";
      expected += std::string(name);
    };
    if (t->is_array())
      for (const auto& one : t->as_array()) check(one);
    else
      check(*t);
    if (!ok && too_big) {
      // Past int64: say so, unless the schema's own bounds (checked below) already refuse it.
      const double x = number_of(value);
      const json::value* lo = s.if_contains("minimum");
      const json::value* hi = s.if_contains("maximum");
      if (!((lo && lo->is_number() && x < number_of(*lo)) || (hi && hi->is_number() && x > number_of(*hi)))) {
        issues.push_back({here, "expected an integer between -9223372036854775808 and 9223372036854775807, got " +
                                    shown(value)});
        return;
      }
      ok = true;
    }
    if (!ok) {
      issues.push_back({here, std::string("expected ") + expected + ", got " + kind_of(value)});
      return;
    }
  }
  if (auto* e = s.if_contains("enum")) {
    bool found = false;
    std::string allowed;
    for (const auto& one : e->as_array()) {
      if (one == value) found = true;
      allowed += (allowed.empty() ? "" : ", ") + show(one);
    }
    if (!found) {
      std::string msg = "expected one of " + allowed + ", got " + shown(value);
      if (value.is_string() && !secret) {
        std::vector<std::string> names;
        for (const auto& one : e->as_array())
          if (one.is_string()) names.emplace_back(one.as_string());
        std::string n = nearest(value.as_string(), names);
        if (!n.empty()) msg += "; did you mean \"" + n + "\"?";
      }
      issues.push_back({here, msg});
    }
  }
  if (auto* c = s.if_contains("const"); c && *c != value)
    issues.push_back({here, "expected " + show(*c) + ", got " + shown(value)});
  if (value.is_number()) {
    double x = number_of(value);
    if (auto* m = s.if_contains("minimum"); m && x < number_of(*m))
      issues.push_back({here, "expected a value >= " + show(*m) + ", got " + shown(value)});
    if (auto* m = s.if_contains("exclusiveMinimum"); m && x <= number_of(*m))
      issues.push_back({here, "expected a value > " + show(*m) + ", got " + shown(value)});
    if (auto* m = s.if_contains("maximum"); m && x > number_of(*m))
      issues.push_back({here, "expected a value <= " + show(*m) + ", got " + shown(value)});
  }
  if (value.is_string()) {
    if (auto* m = s.if_contains("minLength"); m && value.as_string().size() < number_of(*m))
      issues.push_back({here, "expected a string of at least " + show(*m) + " characters"});
  }
  if (value.is_array()) {
    if (auto* items = s.if_contains("items")) {
      auto& arr = value.as_array();
      for (std::size_t i = 0; i < arr.size(); ++i)
        validate(arr[i], *items, path + "[" + std::to_string(i) + "]", issues, fill_defaults, secret);
    }
  }
  if (value.is_object()) {
    json::object& obj = value.as_object();
    const json::object* props = nullptr;
    if (auto* p = s.if_contains("properties")) props = &p->as_object();
    if (auto* r = s.if_contains("required"))
      for (const auto& k : r->as_array())
        if (!obj.contains(k.as_string()))
          issues.push_back({join_path(path, k.as_string()), "required key is missing"});
    const json::value* additional = s.if_contains("additionalProperties");
    for (auto& kv : obj) {
      std::string child = join_path(path, kv.key());
      if (props && props->contains(kv.key())) {
        validate(kv.value(), props->at(kv.key()), child, issues, fill_defaults, secret);
      } else if (additional && additional->is_bool() && !additional->as_bool()) {
        std::vector<std::string> names;
        if (props)
          for (const auto& p : *props) names.emplace_back(p.key());
        std::string msg = "unknown key";
        std::string n = nearest(kv.key(), names);
        if (!n.empty()) msg += "; did you mean '" + join_path(path, n) + "'?";
        else if (!names.empty()) {
          msg += "; valid keys here:";
          for (const auto& k : names) msg += " " + k;
        }
        issues.push_back({child, msg});
      } else if (additional && additional->is_object()) {
        validate(kv.value(), *additional, child, issues, fill_defaults, secret);
      }
    }
    if (fill_defaults && props)
      for (const auto& p : *props)
        if (!obj.contains(p.key()) && p.value().is_object())
          if (auto* d = p.value().as_object().if_contains("default")) obj[p.key()] = *d;
  }
}

}  // namespace detail

// Validate value against schema (a JSON Schema subset); append problems to issues. When
// fill_defaults is set, absent properties that declare a default get it. Numbers must be finite
// (parse() refuses others) and an "integer" must fit int64; a value marked secret
// (kSecretKeyword) is never quoted in an issue.
inline void validate(json::value& value, const json::value& schema, const std::string& path,
                     std::vector<Issue>& issues, bool fill_defaults = false) {
  detail::validate(value, schema, path, issues, fill_defaults, false);
}

// Replace every value that schema marks secret (kSecretKeyword) with kRedacted, for printing.
// Absent, null and empty-string secrets stay as they are: "not set" is worth seeing and tells
// nothing. Follows properties, additionalProperties, items, and every anyOf/oneOf alternative
// (redacting too much is the safe side).
inline void redact(json::value& value, const json::value& schema) {
  if (!schema.is_object()) return;
  const json::object& s = schema.as_object();
  if (is_secret(s)) {
    if (!value.is_null() && !(value.is_string() && value.as_string().empty())) value = kRedacted;
    return;
  }
  for (const char* combinator : {"anyOf", "oneOf"})
    if (auto* alts = s.if_contains(combinator); alts && alts->is_array())
      for (const auto& alt : alts->as_array()) redact(value, alt);
  if (value.is_array())
    if (auto* items = s.if_contains("items"))
      for (auto& e : value.as_array()) redact(e, *items);
  if (value.is_object()) {
    const json::object* props = nullptr;
    if (auto* p = s.if_contains("properties"); p && p->is_object()) props = &p->as_object();
    const json::value* additional = s.if_contains("additionalProperties");
    for (auto& kv : value.as_object()) {
      if (props && props->contains(kv.key())) redact(kv.value(), props->at(kv.key()));
      else if (additional && additional->is_object()) redact(kv.value(), *additional);
    }
  }
}

// Validate and throw one ConfigError listing every problem, each as "SOURCE: PATH: message".
inline void check(json::value& value, const json::value& schema, const std::string& source,
                  const std::string& base_path = "", bool fill_defaults = false) {
  std::vector<Issue> issues;
  validate(value, schema, base_path, issues, fill_defaults);
  if (issues.empty()) return;
  std::string msg;
  for (const auto& i : issues) {
    if (!msg.empty()) msg += "\n";
    msg += source + ": " + i.path + ": " + i.message;
  }
  throw ConfigError(msg);
}

}  // namespace ember::config
