// `ember plot`: the metrics readers (both csv layouts, event files) and panels in-process, and the
// built command on a finished `ember fit` run: the PNG decodes (libpng) with the expected size
// and a drawn series in every panel; the SVG is XML (Python's parser) with a line per series.
#define BOOST_TEST_MODULE plot
#include <png.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <ember/plot.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "run_process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace plot = ember::plot;
using ember::test::run_process;
using ember::test::TempDir;

namespace {

std::string exe() { return ember::test::require_env("EMBER_EXE"); }

// One `ember fit` on Fashion-MNIST with csv_logger and tensorboard, shared by the cases below.
const fs::path& finished_run() {
  static TempDir dir("plot");
  static bool done = false;
  if (done) return dir.path();
  const std::string data = "/usr/share/datasets/fashion-mnist/";
  json::object cfg{
      {"seed_everything", 5},
      {"trainer", json::object{{"max_epochs", 3}, {"limit_train_batches", 8}, {"limit_val_batches", 2},
                               {"log_every_n_steps", 2}, {"enable_progress_bar", false}, {"enable_checkpointing", false},
                               {"default_root_dir", dir.path().string()},
                               {"logger", json::array{
                                   json::object{{"plugin", "csv_logger"}, {"config", json::object{{"name", "csv"}}}},
                                   json::object{{"plugin", "tensorboard"}, {"config", json::object{{"name", "tb"}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{data + "train-images-idx3-ubyte.gz", data + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
  ember::test::write_file(dir.path() / "fit.json", json::serialize(cfg));
  auto r = run_process({exe(), "fit", "--config", (dir.path() / "fit.json").string(), "--plugin-dir",
                        ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  done = true;
  return dir.path();
}

struct Image {
  std::uint32_t width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
  const std::uint8_t* at(std::uint32_t x, std::uint32_t y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

// Decoded by libpng to 8-bit RGB.
Image decode_png(const std::string& bytes) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  BOOST_REQUIRE_MESSAGE(png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()), img.message);
  img.format = PNG_FORMAT_RGB;
  Image out;
  out.width = img.width, out.height = img.height;
  out.rgb.resize(PNG_IMAGE_SIZE(img));
  BOOST_REQUIRE_MESSAGE(png_image_finish_read(&img, nullptr, out.rgb.data(), 0, nullptr), img.message);
  return out;
}

// Pixels of colour c inside the plot area of panel i (a drawn series, not text or grid: those are grey).
size_t count_in_panel(const Image& im, int i, int cols, plot::Rgb c) {
  const int px = (i % cols) * plot::kPanelW, py = (i / cols) * plot::kPanelH;
  size_t n = 0;
  for (int y = py + plot::kTop; y < py + plot::kPanelH - plot::kBottom; ++y)
    for (int x = px + plot::kLeft; x < px + plot::kPanelW - plot::kRight; ++x) {
      const auto* p = im.at(static_cast<std::uint32_t>(x), static_cast<std::uint32_t>(y));
      n += p[0] == c.r && p[1] == c.g && p[2] == c.b;
    }
  return n;
}

plot::Metrics csv_metrics(const fs::path& run) {
  auto f = run / "csv" / "version_0" / "metrics.csv";
  return plot::parse_csv(ember::test::read_file(f), f.string());
}

}  // namespace

BOOST_AUTO_TEST_CASE(both_csv_layouts_read_as_the_same_series) {
  const std::string wide =
      "epoch,lr,step,train_loss,val_loss\n"
      "0,0.1,0,2.5,\n"
      "0,,1,2,1.75\n"
      "1,0.05,2,,nan\n";
  const std::string long_ =
      "step,epoch,stage,name,value\n"
      "0,0,fit,lr,0.1\n0,0,fit,train_loss,2.5\n"
      "1,0,fit,train_loss,2\n1,0,validate,val_loss,1.75\n"
      "2,1,fit,lr,0.05\n2,1,validate,val_loss,nan\n";
  auto w = plot::parse_csv(wide, "wide.csv"), l = plot::parse_csv(long_, "long.csv");
  BOOST_REQUIRE_EQUAL(w.size(), 3u);  // epoch is not a metric
  BOOST_REQUIRE_EQUAL(l.size(), 3u);
  for (const auto& [name, s] : w) {
    BOOST_REQUIRE(l.count(name));
    const auto& o = l.at(name);
    BOOST_REQUIRE_EQUAL(s.points.size(), o.points.size());
    for (size_t i = 0; i < s.points.size(); ++i) {
      BOOST_TEST(s.points[i].step == o.points[i].step);
      BOOST_TEST((s.points[i].value == o.points[i].value || (std::isnan(s.points[i].value) && std::isnan(o.points[i].value))));
    }
  }
  BOOST_TEST(w.at("train_loss").points.size() == 2u);
  try {
    plot::parse_csv("epoch,loss\n0,1\n", "runs/x/metrics.csv");
    BOOST_FAIL("a header without step was accepted");
  } catch (const plot::Error& e) {
    BOOST_TEST(std::string(e.what()).find("runs/x/metrics.csv:1") != std::string::npos, e.what());
  }
  try {
    plot::parse_csv("step,loss\n0,1\n1,abc\n", "m.csv");
    BOOST_FAIL("a non-number was accepted");
  } catch (const plot::Error& e) {
    BOOST_TEST(std::string(e.what()).find("m.csv:3: column loss") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(train_val_and_test_variants_share_a_panel) {
  plot::Metrics m;
  for (const char* n : {"train_loss_step", "train_loss_epoch", "val_loss", "test/loss", "lr-Adam", "val_acc", "train_acc"})
    plot::add_point(m, n, 1, 1.0);
  auto panels = plot::make_panels(m);
  BOOST_REQUIRE_EQUAL(panels.size(), 3u);
  BOOST_TEST(panels[0].title == "acc");
  BOOST_TEST(panels[1].title == "loss");
  BOOST_TEST(panels[2].title == "lr-Adam");
  std::vector<std::string> loss;
  for (auto* s : panels[1].lines) loss.push_back(s->name);
  BOOST_TEST((loss == std::vector<std::string>{"train_loss_epoch", "train_loss_step", "val_loss", "test/loss"}));
  BOOST_TEST(plot::make_panels(m, {"loss"}).size() == 1u);
  BOOST_TEST(plot::make_panels(m, {"val_acc", "lr-Adam"}).size() == 2u);
  try {
    plot::make_panels(m, {"los"});
    BOOST_FAIL("an unknown metric was accepted");
  } catch (const plot::Error& e) {
    BOOST_TEST(std::string(e.what()).find("\"los\"") != std::string::npos, e.what());
    BOOST_TEST(std::string(e.what()).find("train_loss_step") != std::string::npos, e.what());
  }
  BOOST_TEST(plot::image_size(1).width == plot::kPanelW);
  BOOST_TEST(plot::image_size(3).width == 2 * plot::kPanelW);
  BOOST_TEST(plot::image_size(3).height == 2 * plot::kPanelH);
}

// The event files the tensorboard logger wrote hold the scalars csv_logger wrote in the same run
// (as float32): the reader finds every record and checks both CRCs.
BOOST_AUTO_TEST_CASE(event_files_read_as_the_scalars_of_the_csv) {
  const fs::path& run = finished_run();
  plot::Metrics tb;
  for (auto& e : fs::directory_iterator(run / "tb" / "version_0"))
    if (e.path().filename().string().find("tfevents") != std::string::npos)
      plot::parse_tfevents(ember::test::read_file(e.path()), e.path().string(), tb);
  auto csv = csv_metrics(run);
  BOOST_REQUIRE(csv.count("train_loss"));
  BOOST_REQUIRE(csv.count("val_loss"));
  for (const auto& [name, s] : csv) {
    BOOST_REQUIRE_MESSAGE(tb.count(name), "no " << name << " in the event files");
    const auto& t = tb.at(name);
    BOOST_REQUIRE_EQUAL(t.points.size(), s.points.size());
    for (size_t i = 0; i < s.points.size(); ++i) {
      BOOST_TEST(t.points[i].step == s.points[i].step);
      BOOST_TEST(static_cast<float>(t.points[i].value) == static_cast<float>(s.points[i].value));
    }
  }
  // A corrupted byte is an error naming the file, not a silently different plot.
  for (auto& e : fs::directory_iterator(run / "tb" / "version_0"))
    if (e.path().filename().string().find("tfevents") != std::string::npos) {
      std::string bytes = ember::test::read_file(e.path());
      bytes[bytes.size() / 2] ^= 0x40;
      plot::Metrics m;
      BOOST_CHECK_THROW(plot::parse_tfevents(bytes, "x.tfevents", m), plot::Error);
      break;
    }
}

BOOST_AUTO_TEST_CASE(ember_plot_writes_a_png_with_a_drawn_series_in_every_panel) {
  const fs::path& run = finished_run();
  TempDir out("plot-out");
  const fs::path png = out.path() / "run.png";
  auto r = run_process({exe(), "plot", (run / "csv" / "version_0").string(), "-o", png.string()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("wrote " + png.string()) != std::string::npos, r.out);
  Image im = decode_png(ember::test::read_file(png));
  // fashion_mlp logs train/val loss and accuracy: two panels, side by side.
  auto panels = plot::make_panels(csv_metrics(run));
  BOOST_REQUIRE_EQUAL(panels.size(), 2u);
  BOOST_TEST(im.width == static_cast<std::uint32_t>(2 * plot::kPanelW));
  BOOST_TEST(im.height == static_cast<std::uint32_t>(plot::kPanelH));
  for (int i = 0; i < 2; ++i) {
    BOOST_TEST_CONTEXT("panel " << i << " (" << panels[static_cast<size_t>(i)].title << ")") {
      // train in the first palette colour, val in the second: both drawn.
      BOOST_TEST(count_in_panel(im, i, 2, plot::kPalette[0]) > 50u);
      BOOST_TEST(count_in_panel(im, i, 2, plot::kPalette[1]) > 20u);
    }
  }
  // Text and ticks: dark pixels left of each plot area (the y tick labels).
  size_t ink = 0;
  for (std::uint32_t y = 0; y < im.height; ++y)
    for (std::uint32_t x = 0; x < static_cast<std::uint32_t>(plot::kLeft); ++x) ink += im.at(x, y)[0] == plot::kInk.r;
  BOOST_TEST(ink > 100u);

  // The event files of the same run give the same picture size; --metrics keeps one panel.
  const fs::path tb_png = out.path() / "tb.png";
  r = run_process({exe(), "plot", (run / "tb" / "version_0").string(), "--metrics", "loss", "-o", tb_png.string()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  Image one = decode_png(ember::test::read_file(tb_png));
  BOOST_TEST(one.width == static_cast<std::uint32_t>(plot::kPanelW));
  BOOST_TEST(one.height == static_cast<std::uint32_t>(plot::kPanelH));
  BOOST_TEST(count_in_panel(one, 0, 1, plot::kPalette[0]) > 50u);
}

BOOST_AUTO_TEST_CASE(ember_plot_writes_svg_that_parses_as_xml_with_a_line_per_series) {
  const fs::path& run = finished_run();
  TempDir out("plot-out");
  const fs::path svg = out.path() / "run.svg";
  auto r = run_process({exe(), "plot", (run / "csv" / "version_0" / "metrics.csv").string(), "-o", svg.string()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  size_t series = 0;
  for (const auto& [name, s] : csv_metrics(run)) series += s.points.size() > 1;
  auto py = run_process({"/usr/bin/python3", "-c",
                         "import sys, xml.etree.ElementTree as ET\n"
                         "root = ET.parse(sys.argv[1]).getroot()\n"
                         "ns = '{http://www.w3.org/2000/svg}'\n"
                         "print(root.get('width'), root.get('height'), len(root.findall(ns + 'polyline')),\n"
                         "      ' '.join(t.text for t in root.findall(ns + 'text') if t.text in ('loss', 'accuracy')))\n",
                         svg.string()});
  BOOST_REQUIRE_MESSAGE(py.exit_code == 0, py.describe());
  BOOST_TEST(py.out == std::to_string(2 * plot::kPanelW) + " " + std::to_string(plot::kPanelH) + " " +
                           std::to_string(series) + " accuracy loss\n");
}

BOOST_AUTO_TEST_CASE(ember_plot_refuses_bad_input_naming_it) {
  TempDir out("plot-out");
  auto r = run_process({exe(), "plot", (out.path() / "nowhere").string(), "-o", (out.path() / "x.png").string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(r.err.find((out.path() / "nowhere").string()) != std::string::npos, r.err);
  BOOST_TEST(!fs::exists(out.path() / "x.png"));
  r = run_process({exe(), "plot", out.path().string(), "-o", (out.path() / "x.gif").string()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(r.err.find(".png or .svg") != std::string::npos, r.err);
}
