// `ember plot`: the metrics of a run read from csv_logger's metrics.csv (Lightning's wide layout
// or the long one) or from TensorBoard event files, drawn as line charts: one panel per metric,
// the train / val / test variants of a metric (train_loss, val_loss, train_loss_epoch ...) on the
// panel's shared axes, the step on x. Output: an RGB raster (host/plot_cmd.cpp encodes it as PNG
// with libpng) or SVG text.
//
// Header-only; Boost.JSON-free, no libtorch. Boost.CRC checks the event files' CRC-32C.
#pragma once

#include <ember/csv.hpp>
#include <ember/plot_font.hpp>

#include <algorithm>
#include <boost/crc.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ember::plot {

// A file that cannot be read as metrics; the message names it and what was expected.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Point {
  double step, value;
};

struct Series {
  std::string name;
  std::vector<Point> points;  // in logged order
};

// Every metric of a run by name.
using Metrics = std::map<std::string, Series>;

inline void add_point(Metrics& m, const std::string& name, double step, double value) {
  Series& s = m[name];
  if (s.name.empty()) s.name = name;
  s.points.push_back({step, value});
}

// --- metrics.csv -------------------------------------------------------------------------------
namespace detail {

inline double number(const std::string& cell, const std::string& where, size_t line, const std::string& column) {
  const char* begin = cell.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end == begin || *end != '\0')
    throw Error(where + ":" + std::to_string(line) + ": column " + column + ": expected a number, got \"" + cell + "\"");
  return v;
}

}  // namespace detail

// Lightning's layout (a "step" column and one column per metric; empty cells are absent values;
// "epoch" is not plotted) or csv_logger's long one (step,epoch,stage,name,value). where names
// the file in errors.
inline Metrics parse_csv(std::string_view text, const std::string& where) {
  Metrics m;
  size_t pos = 0;
  if (text.empty()) throw Error(where + ": empty file; expected a metrics.csv header");
  const auto header = csv::record(text, pos);
  const bool long_layout = header == std::vector<std::string>{"step", "epoch", "stage", "name", "value"};
  size_t step_col = header.size();
  for (size_t c = 0; c < header.size(); ++c)
    if (header[c] == "step") step_col = c;
  if (step_col == header.size())
    throw Error(where + ":1: no \"step\" column; expected a metrics.csv of csv_logger or Lightning's CSVLogger (header: " +
                std::string(text.substr(0, text.find('\n'))) + ")");
  for (size_t line = 2; pos < text.size(); ++line) {
    auto f = csv::record(text, pos);
    if (f.size() == 1 && f[0].empty()) continue;  // a blank line
    if (f.size() != header.size())
      throw Error(where + ":" + std::to_string(line) + ": " + std::to_string(f.size()) + " fields; the header has " +
                  std::to_string(header.size()));
    double step = detail::number(f[step_col], where, line, "step");
    if (long_layout) {
      add_point(m, f[3], step, detail::number(f[4], where, line, "value"));
      continue;
    }
    for (size_t c = 0; c < f.size(); ++c)
      if (c != step_col && header[c] != "epoch" && !f[c].empty())
        add_point(m, header[c], step, detail::number(f[c], where, line, header[c]));
  }
  return m;
}

// --- TensorBoard event files --------------------------------------------------------------------
namespace detail {

inline std::uint32_t masked_crc32c(const char* data, size_t n) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, n);
  std::uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

inline std::uint64_t le(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// A protobuf message read field by field (wire types 0, 1, 2, 5).
class Fields {
 public:
  explicit Fields(std::string_view data) : d_(data) {}
  // The next field; false at the end. Throws on a malformed message.
  bool next() {
    if (pos_ >= d_.size()) return false;
    std::uint64_t key = varint();
    field = static_cast<std::uint32_t>(key >> 3);
    wire = static_cast<int>(key & 7);
    switch (wire) {
      case 0: value = varint(); break;
      case 1: bytes = take(8); value = le(bytes.data(), 8); break;
      case 5: bytes = take(4); value = le(bytes.data(), 4); break;
      case 2: bytes = take(static_cast<size_t>(varint())); break;
      default: throw std::runtime_error("unsupported wire type " + std::to_string(wire));
    }
    return true;
  }
  std::uint32_t field = 0;
  int wire = 0;
  std::uint64_t value = 0;
  std::string_view bytes;

 private:
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) throw std::runtime_error("truncated varint");
      auto b = static_cast<unsigned char>(d_[pos_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  }
  std::string_view take(size_t n) {
    if (n > d_.size() - pos_) throw std::runtime_error("truncated field");
    auto s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view d_;
  size_t pos_ = 0;
};

inline float f32(std::uint64_t bits) {
  auto b = static_cast<std::uint32_t>(bits);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline double f64(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

// A scalar TensorProto (dtype DT_FLOAT 1 / DT_DOUBLE 2, one value in float_val, double_val or
// tensor_content), as TensorFlow 2 and the scalars plugin write them; false for anything else.
inline bool tensor_scalar(std::string_view msg, double& out) {
  Fields f(msg);
  std::uint64_t dtype = 0;
  std::vector<double> vals;
  std::string_view content;
  while (f.next()) {
    if (f.field == 1 && f.wire == 0) dtype = f.value;
    if (f.field == 4 && f.wire == 2) content = f.bytes;
    if (f.field == 5 && f.wire == 5) vals.push_back(f32(f.value));
    if (f.field == 5 && f.wire == 2)
      for (size_t i = 0; i + 4 <= f.bytes.size(); i += 4) vals.push_back(f32(le(f.bytes.data() + i, 4)));
    if (f.field == 6 && f.wire == 1) vals.push_back(f64(f.value));
    if (f.field == 6 && f.wire == 2)
      for (size_t i = 0; i + 8 <= f.bytes.size(); i += 8) vals.push_back(f64(le(f.bytes.data() + i, 8)));
  }
  if (dtype == 1 && content.size() == 4) vals.push_back(f32(le(content.data(), 4)));
  if (dtype == 2 && content.size() == 8) vals.push_back(f64(le(content.data(), 8)));
  if ((dtype != 1 && dtype != 2) || vals.size() != 1) return false;
  out = vals[0];
  return true;
}

}  // namespace detail

// The scalars of one event file (TFRecord framing, both CRCs checked; Event.step and
// Summary.Value simple_value or a scalar tensor) added to m. A truncated last record (a writer
// still writing) ends the file quietly; a CRC mismatch or a malformed record is an Error naming
// where and the byte offset.
inline void parse_tfevents(std::string_view bytes, const std::string& where, Metrics& m) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < 12) break;
    const char* p = bytes.data() + pos;
    const std::uint64_t len = detail::le(p, 8);
    if (detail::masked_crc32c(p, 8) != detail::le(p + 8, 4))
      throw Error(where + ": byte " + std::to_string(pos) + ": the length's CRC does not match; not a TFRecord event file?");
    if (len > bytes.size() - pos - 12 || bytes.size() - pos - 12 - len < 4) break;  // truncated tail
    std::string_view data = bytes.substr(pos + 12, static_cast<size_t>(len));
    if (detail::masked_crc32c(data.data(), data.size()) != detail::le(data.data() + data.size(), 4))
      throw Error(where + ": byte " + std::to_string(pos) + ": the record's data CRC does not match");
    try {
      detail::Fields ev(data);
      std::int64_t step = 0;
      std::vector<std::string_view> summaries;
      while (ev.next()) {
        if (ev.field == 2 && ev.wire == 0) step = static_cast<std::int64_t>(ev.value);
        if (ev.field == 5 && ev.wire == 2) summaries.push_back(ev.bytes);
      }
      for (auto summary : summaries) {
        detail::Fields s(summary);
        while (s.next()) {
          if (s.field != 1 || s.wire != 2) continue;
          detail::Fields v(s.bytes);
          std::string tag;
          bool has = false;
          double value = 0;
          while (v.next()) {
            if (v.field == 1 && v.wire == 2) tag = std::string(v.bytes);
            if (v.field == 2 && v.wire == 5) value = detail::f32(v.value), has = true;
            if (v.field == 8 && v.wire == 2 && !has) has = detail::tensor_scalar(v.bytes, value);
          }
          if (has && !tag.empty()) add_point(m, tag, static_cast<double>(step), value);
        }
      }
    } catch (const std::runtime_error& e) {
      throw Error(where + ": byte " + std::to_string(pos) + ": malformed Event record: " + e.what());
    }
    pos += 12 + static_cast<size_t>(len) + 4;
  }
}

// --- panels ------------------------------------------------------------------------------------
enum class Role { train, val, test, other };

// The metric a series shows and its role: "train_loss", "val_loss", "loss/val", "train/loss",
// "train_loss_step", "train_loss_epoch" -> "loss". Names without a stage mark are their own
// metric (role other), e.g. "lr".
inline std::string base_name(std::string_view name, Role* role = nullptr) {
  Role r = Role::other;
  std::string_view s = name;
  auto strip_suffix = [&](std::string_view suf) {
    if (s.size() > suf.size() && s.substr(s.size() - suf.size()) == suf) {
      s.remove_suffix(suf.size());
      return true;
    }
    return false;
  };
  if (!strip_suffix("_step")) strip_suffix("_epoch");
  static const std::pair<const char*, Role> marks[] = {
      {"train", Role::train}, {"training", Role::train}, {"val", Role::val}, {"valid", Role::val},
      {"validation", Role::val}, {"test", Role::test}};
  for (const auto& [mark, mr] : marks) {
    for (char sep : {'_', '/', '-'}) {
      std::string pre = std::string(mark) + sep, suf = std::string(1, sep) + mark;
      if (s.size() > pre.size() && s.substr(0, pre.size()) == pre) {
        if (role) *role = mr;
        return std::string(s.substr(pre.size()));
      }
      if (s.size() > suf.size() && s.substr(s.size() - suf.size()) == suf) {
        if (role) *role = mr;
        return std::string(s.substr(0, s.size() - suf.size()));
      }
    }
  }
  if (role) *role = r;
  return std::string(name);
}

struct Panel {
  std::string title;
  std::vector<const Series*> lines;  // train, val, test, other; by name within a role
};

// The panels for m, in title order. only (names or base names) keeps just those; a name that
// matches nothing is an Error listing what there is.
inline std::vector<Panel> make_panels(const Metrics& m, const std::vector<std::string>& only = {}) {
  std::map<std::string, std::vector<std::pair<Role, const Series*>>> by_base;
  for (const auto& [name, s] : m) {
    Role r;
    std::string base = base_name(name, &r);
    bool keep = only.empty();
    for (const auto& o : only) keep = keep || o == name || o == base;
    if (keep && !s.points.empty()) by_base[base].push_back({r, &s});
  }
  for (const auto& o : only) {
    bool found = false;
    for (const auto& [name, s] : m) found = found || o == name || o == base_name(name);
    if (!found) {
      std::string names;
      for (const auto& [name, s] : m) names += (names.empty() ? "" : ", ") + name;
      throw Error("--metrics: no metric named \"" + o + "\" (nor a train/val/test variant of it); the run has: " +
                  (names.empty() ? "none" : names));
    }
  }
  std::vector<Panel> out;
  for (auto& [base, lines] : by_base) {
    std::stable_sort(lines.begin(), lines.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    Panel p{base, {}};
    for (auto& l : lines) p.lines.push_back(l.second);
    out.push_back(std::move(p));
  }
  return out;
}

// --- layout ------------------------------------------------------------------------------------
// Panels of kPanelW x kPanelH pixels, two per row (one when there is one panel).
constexpr int kPanelW = 480, kPanelH = 300;
constexpr int kLeft = 64, kRight = 14, kTop = 26, kBottom = 36;  // the plot area inside a panel

struct Size {
  int width, height, cols;
};
inline Size image_size(size_t panels) {
  int cols = panels <= 1 ? 1 : 2;
  int rows = static_cast<int>((std::max<size_t>(panels, 1) + cols - 1) / cols);
  return {cols * kPanelW, rows * kPanelH, cols};
}

struct Rgb {
  std::uint8_t r, g, b;
};
inline constexpr Rgb kBackground{255, 255, 255}, kInk{40, 40, 40}, kFrame{110, 110, 110}, kGrid{228, 228, 228};
// train blue, val orange, test green, then others.
inline constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                   {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {23, 190, 207}};

inline Rgb line_color(const Panel& p, size_t i) {
  // Role colours when the roles differ; in order otherwise.
  Role r;
  base_name(p.lines[i]->name, &r);
  size_t same_role_before = 0;
  for (size_t j = 0; j < i; ++j) {
    Role rj;
    base_name(p.lines[j]->name, &rj);
    same_role_before += rj == r;
  }
  size_t idx = r == Role::other ? 4 : static_cast<size_t>(r);
  if (same_role_before) idx = (idx + 3 * same_role_before) % (sizeof kPalette / sizeof kPalette[0]);
  return kPalette[idx];
}

// Round tick steps (1, 2, 5 x 10^k) over [lo, hi], about n of them.
inline std::vector<double> ticks(double lo, double hi, int n, double min_step = 0) {
  double span = hi - lo;
  double raw = span / std::max(n, 1);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double k : {1.0, 2.0, 5.0, 10.0})
    if (k * mag >= raw) {
      step = k * mag;
      break;
    }
  step = std::max(step, min_step);
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return out;
}

inline std::string tick_label(double v, double step) {
  char buf[32];
  double a = std::max(std::fabs(v), std::fabs(step));
  if (a >= 1e6 || (step > 0 && step < 1e-4))
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9))), v);
  return buf;
}

// What a renderer draws: lines, filled rectangles, text (anchor: 0 left, 1 centre, 2 right; y is
// the text's top).
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void fill(int x, int y, int w, int h, Rgb c) = 0;
  virtual void line(double x0, double y0, double x1, double y1, Rgb c, int width) = 0;
  virtual void text(int x, int y, const std::string& s, Rgb c, int anchor) = 0;
  // A series as one path (SVG draws a polyline); by default its segments.
  virtual void path(const std::vector<std::pair<double, double>>& pts, Rgb c, int width) {
    for (size_t i = 1; i < pts.size(); ++i) line(pts[i - 1].first, pts[i - 1].second, pts[i].first, pts[i].second, c, width);
    if (pts.size() == 1) fill(static_cast<int>(pts[0].first) - 1, static_cast<int>(pts[0].second) - 1, 3, 3, c);
  }
};

inline void draw_panel(const Panel& p, int px, int py, Canvas& cv) {
  const int x0 = px + kLeft, x1 = px + kPanelW - kRight, y0 = py + kTop, y1 = py + kPanelH - kBottom;
  double sx0 = 0, sx1 = 0, vy0 = 0, vy1 = 0;
  bool any = false;
  for (const Series* s : p.lines)
    for (const auto& pt : s->points) {
      if (!std::isfinite(pt.value) || !std::isfinite(pt.step)) continue;
      if (!any) sx0 = sx1 = pt.step, vy0 = vy1 = pt.value, any = true;
      sx0 = std::min(sx0, pt.step), sx1 = std::max(sx1, pt.step);
      vy0 = std::min(vy0, pt.value), vy1 = std::max(vy1, pt.value);
    }
  if (sx1 <= sx0) sx0 -= 1, sx1 += 1;
  if (vy1 <= vy0) {
    double d = std::max(std::fabs(vy0) * 0.1, 1e-9);
    if (vy0 == 0) d = 1;
    vy0 -= d, vy1 += d;
  } else {
    double pad = (vy1 - vy0) * 0.05;
    vy0 -= pad, vy1 += pad;
  }
  auto X = [&](double s) { return x0 + (s - sx0) / (sx1 - sx0) * (x1 - x0); };
  auto Y = [&](double v) { return y1 - (v - vy0) / (vy1 - vy0) * (y1 - y0); };

  cv.text(px + kPanelW / 2, py + 8, p.title, kInk, 1);
  auto xt = ticks(sx0, sx1, 6, 1.0), yt = ticks(vy0, vy1, 5);
  double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : (vy1 - vy0);
  for (double t : xt) {
    double x = X(t);
    cv.line(x, y0, x, y1, kGrid, 1);
    cv.line(x, y1, x, y1 + 4, kFrame, 1);
    cv.text(static_cast<int>(std::lround(x)), y1 + 7, tick_label(t, xstep), kInk, 1);
  }
  for (double t : yt) {
    double y = Y(t);
    cv.line(x0, y, x1, y, kGrid, 1);
    cv.line(x0 - 4, y, x0, y, kFrame, 1);
    cv.text(x0 - 7, static_cast<int>(std::lround(y)) - 3, tick_label(t, ystep), kInk, 2);
  }
  cv.text((x0 + x1) / 2, y1 + 20, "step", kInk, 1);
  // The frame.
  cv.line(x0, y0, x1, y0, kFrame, 1);
  cv.line(x0, y1, x1, y1, kFrame, 1);
  cv.line(x0, y0, x0, y1, kFrame, 1);
  cv.line(x1, y0, x1, y1, kFrame, 1);
  // The series; a non-finite value breaks its line.
  for (size_t i = 0; i < p.lines.size(); ++i) {
    Rgb c = line_color(p, i);
    std::vector<std::pair<double, double>> run;
    for (const auto& pt : p.lines[i]->points) {
      if (!std::isfinite(pt.value) || !std::isfinite(pt.step)) {
        if (!run.empty()) cv.path(run, c, 2);
        run.clear();
        continue;
      }
      run.emplace_back(X(pt.step), Y(pt.value));
    }
    if (!run.empty()) cv.path(run, c, 2);
  }
  // The legend, top right inside the plot area.
  for (size_t i = 0; i < p.lines.size(); ++i) {
    int ly = y0 + 6 + static_cast<int>(i) * 11;
    cv.fill(x1 - 6 - font::kAdvance * static_cast<int>(p.lines[i]->name.size()) - 16, ly + 2, 12, 3, line_color(p, i));
    cv.text(x1 - 6, ly, p.lines[i]->name, kInk, 2);
  }
}

inline void draw(const std::vector<Panel>& panels, Canvas& cv) {
  Size sz = image_size(panels.size());
  cv.fill(0, 0, sz.width, sz.height, kBackground);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(panels[i], static_cast<int>(i % sz.cols) * kPanelW, static_cast<int>(i / sz.cols) * kPanelH, cv);
  if (panels.empty()) cv.text(sz.width / 2, sz.height / 2, "no metrics", kInk, 1);
}

// --- raster ------------------------------------------------------------------------------------
class Raster final : public Canvas {
 public:
  Raster(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255) {}
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<std::uint8_t>& pixels() const { return px_; }  // RGB rows, top first

  void fill(int x, int y, int w, int h, Rgb c) override {
    for (int j = std::max(y, 0); j < std::min(y + h, h_); ++j)
      for (int i = std::max(x, 0); i < std::min(x + w, w_); ++i) set(i, j, c);
  }
  void line(double fx0, double fy0, double fx1, double fy1, Rgb c, int width) override {
    int x0 = static_cast<int>(std::lround(fx0)), y0 = static_cast<int>(std::lround(fy0));
    int x1 = static_cast<int>(std::lround(fx1)), y1 = static_cast<int>(std::lround(fy1));
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
      fill(x0, y0, width, width, c);
      if (x0 == x1 && y0 == y1) break;
      int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  void text(int x, int y, const std::string& s, Rgb c, int anchor) override {
    int w = font::kAdvance * static_cast<int>(s.size()) - 1;
    int left = anchor == 0 ? x : anchor == 1 ? x - w / 2 : x - w;
    for (size_t k = 0; k < s.size(); ++k) {
      const auto& g = font::glyph(s[k]);
      for (int row = 0; row < font::kHeight; ++row)
        for (int col = 0; col < font::kWidth; ++col)
          if (g[static_cast<size_t>(row)] & (0x10 >> col)) set(left + static_cast<int>(k) * font::kAdvance + col, y + row, c);
    }
  }

 private:
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    auto* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  int w_, h_;
  std::vector<std::uint8_t> px_;
};

inline Raster render(const std::vector<Panel>& panels) {
  Size sz = image_size(panels.size());
  Raster r(sz.width, sz.height);
  draw(panels, r);
  return r;
}

// --- SVG ---------------------------------------------------------------------------------------
class Svg final : public Canvas {
 public:
  Svg(int w, int h) {
    out_ = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
           std::to_string(w) + "\" height=\"" + std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " +
           std::to_string(h) + "\" font-family=\"monospace\" font-size=\"10\">\n";
  }
  std::string finish() { return out_ + "</svg>\n"; }

  void fill(int x, int y, int w, int h, Rgb c) override {
    out_ += "<rect x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y) + "\" width=\"" + std::to_string(w) +
            "\" height=\"" + std::to_string(h) + "\" fill=\"" + color(c) + "\"/>\n";
  }
  void line(double x0, double y0, double x1, double y1, Rgb c, int width) override {
    out_ += "<line x1=\"" + num(x0) + "\" y1=\"" + num(y0) + "\" x2=\"" + num(x1) + "\" y2=\"" + num(y1) +
            "\" stroke=\"" + color(c) + "\" stroke-width=\"" + std::to_string(width) + "\"/>\n";
  }
  void path(const std::vector<std::pair<double, double>>& pts, Rgb c, int width) override {
    if (pts.size() == 1) {
      out_ += "<circle cx=\"" + num(pts[0].first) + "\" cy=\"" + num(pts[0].second) + "\" r=\"2\" fill=\"" + color(c) + "\"/>\n";
      return;
    }
    out_ += "<polyline fill=\"none\" stroke=\"" + color(c) + "\" stroke-width=\"" + std::to_string(width) +
            "\" stroke-linejoin=\"round\" points=\"";
    for (size_t i = 0; i < pts.size(); ++i) out_ += (i ? " " : "") + num(pts[i].first) + "," + num(pts[i].second);
    out_ += "\"/>\n";
  }
  void text(int x, int y, const std::string& s, Rgb c, int anchor) override {
    static const char* anchors[] = {"start", "middle", "end"};
    out_ += "<text x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y + font::kHeight) + "\" fill=\"" + color(c) +
            "\" text-anchor=\"" + anchors[anchor] + "\">" + escape(s) + "</text>\n";
  }

  // XML text: &, <, >, quotes escaped; control characters (not allowed in XML 1.0) dropped.
  static std::string escape(const std::string& s) {
    std::string out;
    for (char ch : s) {
      switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
          if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\t') out += ch;
      }
    }
    return out;
  }

 private:
  static std::string color(Rgb c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
    return buf;
  }
  static std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
  }
  std::string out_;
};

inline std::string render_svg(const std::vector<Panel>& panels) {
  Size sz = image_size(panels.size());
  Svg s(sz.width, sz.height);
  draw(panels, s);
  return s.finish();
}

}  // namespace ember::plot
