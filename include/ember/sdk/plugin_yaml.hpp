// hparams.yaml for loggers: Lightning's save_hparams_to_yaml writes the hyper-parameters with
// PyYAML's block style; this writes the same shape from a JSON object so that yaml.safe_load
// (and Lightning's load_hparams_from_yaml) reads back the values that were logged.
// Header-only; needs Boost.JSON (no libtorch). Shared by csv_logger and tensorboard.
#pragma once

#include <boost/json.hpp>

#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>

namespace ember::plugin {

namespace yaml_detail {

// Strings double-quoted (JSON escapes are YAML escapes), floats always with a dot and a signed
// exponent (PyYAML's YAML 1.1 resolver takes "1e-05" for a string), .nan / .inf.
inline void scalar(std::string& out, const boost::json::value& v) {
  if (v.is_string()) {
    out += boost::json::serialize(v);
  } else if (v.is_double()) {
    double d = v.as_double();
    if (std::isnan(d)) {
      out += ".nan";
    } else if (std::isinf(d)) {
      out += d > 0 ? ".inf" : "-.inf";
    } else {
      char buf[40];
      auto r = std::to_chars(buf, buf + sizeof buf, d);
      std::string s(buf, r.ptr);
      auto e = s.find('e');
      if (s.find('.') == std::string::npos) s.insert(e == std::string::npos ? s.size() : e, ".0");
      e = s.find('e');
      if (e != std::string::npos && s[e + 1] != '-' && s[e + 1] != '+') s.insert(e + 1, "+");
      out += s;
    }
  } else {
    out += boost::json::serialize(v);  // integers, true/false, null
  }
}

inline bool plain_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '-')) return false;
  return !std::isdigit(static_cast<unsigned char>(k[0])) && k[0] != '-' && k[0] != '.';
}

inline void block(std::string& out, const boost::json::value& v, int indent);

inline void item(std::string& out, const boost::json::value& v, int indent) {
  const bool nested = (v.is_object() && !v.as_object().empty()) || (v.is_array() && !v.as_array().empty());
  if (nested) {
    out += '\n';
    block(out, v, indent + 2);
  } else {
    out += ' ';
    if (v.is_object())
      out += "{}";
    else if (v.is_array())
      out += "[]";
    else
      scalar(out, v);
    out += '\n';
  }
}

inline void block(std::string& out, const boost::json::value& v, int indent) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  if (v.is_object()) {
    for (const auto& kv : v.as_object()) {
      out += pad;
      out += plain_key(kv.key()) ? std::string(kv.key()) : boost::json::serialize(boost::json::string(kv.key()));
      out += ':';
      item(out, kv.value(), indent);
    }
  } else {
    for (const auto& it : v.as_array()) {
      out += pad + "-";
      item(out, it, indent);
    }
  }
}

}  // namespace yaml_detail

// The object as a YAML block mapping, keys in the object's order ("{}\n" when empty).
inline std::string to_yaml(const boost::json::object& o) {
  if (o.empty()) return "{}\n";
  std::string out;
  yaml_detail::block(out, o, 0);
  return out;
}

}  // namespace ember::plugin
