// JSON configuration: parsing with FILE:LINE:COL errors, `--set a.b=value` overrides, and
// validation against a JSON Schema subset (type, properties, additionalProperties, required,
// enum, const, minimum/maximum, exclusiveMinimum, minLength, items, anyOf/oneOf, default) with a
// "did you mean" for unknown keys. Needs Boost.JSON.
#pragma once

#include <ember/error.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
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

// Parse text; on error throw ConfigError "NAME:LINE:COL: message".
inline json::value parse(std::string_view text, const std::string& name) {
  json::parse_options opt;
  opt.allow_comments = true;
  opt.allow_trailing_commas = true;
  json::stream_parser p(json::storage_ptr(), opt);
  boost::system::error_code ec;
  // write() (not write_some) so that text after a complete value is an error at its position.
  std::size_t used = p.write(text.data(), text.size(), ec);
  if (!ec) p.finish(ec), used = text.size();
  if (ec) {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < used && i < text.size(); ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    throw ConfigError(name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " +
                      ec.message() + " (expected valid JSON)");
  }
  return p.release();
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
  json::value value;
  boost::system::error_code ec;
  json::value parsed = json::parse(raw, ec);
  value = ec ? json::value(raw) : parsed;
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

// Validate value against schema (a JSON Schema subset); append problems to issues. When
// fill_defaults is set, absent properties that declare a default get it.
inline void validate(json::value& value, const json::value& schema, const std::string& path,
                     std::vector<Issue>& issues, bool fill_defaults = false) {
  if (!schema.is_object()) return;
  const json::object& s = schema.as_object();
  const std::string here = path.empty() ? "(root)" : path;

  for (const char* combinator : {"anyOf", "oneOf"}) {
    if (auto* alts = s.if_contains(combinator)) {
      std::vector<Issue> best;
      bool ok = false;
      for (const auto& alt : alts->as_array()) {
        std::vector<Issue> trial;
        json::value copy = value;
        validate(copy, alt, path, trial, fill_defaults);
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
    bool ok = false;
    std::string expected;
    auto check = [&](const json::value& one) {
      std::string_view name = one.as_string();
      if (has_type(value, name)) ok = true;
      if (!expected.empty()) expected += " or ";
      expected += std::string(name);
    };
    if (t->is_array())
      for (const auto& one : t->as_array()) check(one);
    else
      check(*t);
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
      std::string msg = "expected one of " + allowed + ", got " + show(value);
      if (value.is_string()) {
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
    issues.push_back({here, "expected " + show(*c) + ", got " + show(value)});
  if (value.is_number()) {
    double x = number_of(value);
    if (auto* m = s.if_contains("minimum"); m && x < number_of(*m))
      issues.push_back({here, "expected a value >= " + show(*m) + ", got " + show(value)});
    if (auto* m = s.if_contains("exclusiveMinimum"); m && x <= number_of(*m))
      issues.push_back({here, "expected a value > " + show(*m) + ", got " + show(value)});
    if (auto* m = s.if_contains("maximum"); m && x > number_of(*m))
      issues.push_back({here, "expected a value <= " + show(*m) + ", got " + show(value)});
  }
  if (value.is_string()) {
    if (auto* m = s.if_contains("minLength"); m && value.as_string().size() < number_of(*m))
      issues.push_back({here, "expected a string of at least " + show(*m) + " characters"});
  }
  if (value.is_array()) {
    if (auto* items = s.if_contains("items")) {
      auto& arr = value.as_array();
      for (std::size_t i = 0; i < arr.size(); ++i)
        validate(arr[i], *items, path + "[" + std::to_string(i) + "]", issues, fill_defaults);
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
        validate(kv.value(), props->at(kv.key()), child, issues, fill_defaults);
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
        validate(kv.value(), *additional, child, issues, fill_defaults);
      }
    }
    if (fill_defaults && props)
      for (const auto& p : *props)
        if (!obj.contains(p.key()) && p.value().is_object())
          if (auto* d = p.value().as_object().if_contains("default")) obj[p.key()] = *d;
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
