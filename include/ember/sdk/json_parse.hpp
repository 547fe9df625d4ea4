// Strict JSON reading, shared by the host's config loader (config.hpp) and the plugin helper
// (plugin_config.hpp). Boost.JSON's own parse accepts two things a config must not: a key given
// twice in one object (the last silently wins, so `"verify_tls": true, ..., "verify_tls": false`
// turns verification off without a word) and numbers beyond double's range (1e999 becomes
// Infinity, which no JSON writer can print back). This parser refuses both, at the offset of the
// offending key or number. Boost.JSON only; no libtorch, nothing else of the host.
#pragma once

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::json_parse {

// Why a text was refused, and where: offset is a byte offset into the text.
struct Failure {
  enum class Kind {
    syntax,        // not JSON at all (or text after the value)
    duplicate_key, // valid JSON that a config may not contain
    non_finite,    // a number outside double's range
  };
  Kind kind = Kind::syntax;
  std::size_t offset = 0;
  std::string message;  // never echoes a value: a config may hold secrets
};

// 1-based line and column of offset in text.
inline std::pair<std::size_t, std::size_t> line_col(std::string_view text, std::size_t offset) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') ++line, col = 1;
    else ++col;
  }
  return {line, col};
}

namespace detail {

// A basic_parser handler that builds the value as Boost.JSON's own parser does (value_stack) and
// keeps the keys of each open object to refuse a repeated one.
class StrictHandler {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  StrictHandler() { stack_.reset(); }

  boost::json::value release() { return stack_.release(); }
  const std::optional<Failure>& failure() const { return failure_; }

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    keys_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t n, boost::system::error_code&) {
    keys_.pop_back();
    stack_.push_object(n);
    return true;
  }
  bool on_array_begin(boost::system::error_code&) { return true; }
  bool on_array_end(std::size_t n, boost::system::error_code&) {
    stack_.push_array(n);
    return true;
  }
  bool on_key_part(boost::json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    stack_.push_chars(s);
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, boost::system::error_code& ec) {
    key_.append(s.data(), s.size());
    auto& seen = keys_.back();
    for (const auto& k : seen)
      if (k == key_)
        return fail(ec, Failure::Kind::duplicate_key,
                    "duplicate key " + boost::json::serialize(boost::json::string(key_)) +
                        " (each key may appear once per object; "
                    "a repeated one would silently replace the first)");
    seen.push_back(std::move(key_));
    key_.clear();
    stack_.push_key(s);
    return true;
  }
  bool on_string_part(boost::json::string_view s, std::size_t, boost::system::error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t, boost::system::error_code&) {
    stack_.push_string(s);
    return true;
  }
  bool on_number_part(boost::json::string_view s, boost::system::error_code&) {
    number_len_ += s.size();
    return true;
  }
  bool on_int64(std::int64_t i, boost::json::string_view, boost::system::error_code&) {
    number_len_ = 0;
    stack_.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, boost::json::string_view, boost::system::error_code&) {
    number_len_ = 0;
    stack_.push_uint64(u);
    return true;
  }
  bool on_double(double d, boost::json::string_view s, boost::system::error_code& ec) {
    number_len_ += s.size();
    if (!std::isfinite(d))
      return fail(ec, Failure::Kind::non_finite,
                  "number out of range (expected a finite number, at most about 1.8e308 in magnitude)");
    number_len_ = 0;
    stack_.push_double(d);
    return true;
  }
  bool on_bool(bool b, boost::system::error_code&) {
    stack_.push_bool(b);
    return true;
  }
  bool on_null(boost::system::error_code&) {
    stack_.push_null();
    return true;
  }
  bool on_comment_part(boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::system::error_code&) { return true; }

  // Length of the number being refused (the parser stops right after it).
  std::size_t number_len() const { return number_len_; }

 private:
  bool fail(boost::system::error_code& ec, Failure::Kind kind, std::string message) {
    failure_ = Failure{kind, 0, std::move(message)};
    ec = boost::json::error::exception;  // any error stops the parser; the message is ours
    return false;
  }

  boost::json::value_stack stack_;
  // The keys seen so far in each open object. A vector, not a set: objects in a config are small.
  std::vector<std::vector<std::string>> keys_;
  std::string key_;
  std::size_t number_len_ = 0;
  std::optional<Failure> failure_;
};

// Where the key that ends at or just before `stop` begins (its opening quote). The parser stops
// at a refused key's closing quote; step back over the key text, skipping escaped quotes.
inline std::size_t key_start(std::string_view text, std::size_t stop) {
  std::size_t close = stop < text.size() && text[stop] == '"' ? stop
                      : stop > 0 && stop - 1 < text.size() && text[stop - 1] == '"' ? stop - 1
                                                                                     : std::string_view::npos;
  if (close == std::string_view::npos) return stop;
  for (std::size_t i = close; i-- > 0;) {
    if (text[i] != '"') continue;
    std::size_t backslashes = 0;
    for (std::size_t j = i; j-- > 0 && text[j] == '\\';) ++backslashes;
    if (backslashes % 2 == 0) return i;
  }
  return stop;
}

}  // namespace detail

// Parse text (one JSON value, nothing but whitespace and comments after it) with options.
// Returns the value, or nullopt with *failure filled.
inline std::optional<boost::json::value> parse(std::string_view text, const boost::json::parse_options& options,
                                               Failure& failure) {
  boost::json::basic_parser<detail::StrictHandler> p(options);
  boost::system::error_code ec;
  std::size_t used = p.write_some(false, text.data(), text.size(), ec);
  if (!ec && used < text.size()) ec = boost::json::error::extra_data;
  if (!ec) return p.handler().release();
  if (const auto& f = p.handler().failure()) {
    failure = *f;
    failure.offset = f->kind == Failure::Kind::duplicate_key ? detail::key_start(text, used)
                     : used >= p.handler().number_len()      ? used - p.handler().number_len()
                                                             : used;
  } else {
    failure = Failure{Failure::Kind::syntax, used, ec.message()};
  }
  return std::nullopt;
}

}  // namespace ember::json_parse
