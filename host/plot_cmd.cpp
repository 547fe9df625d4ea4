// `ember plot RUN_DIR_OR_METRICS_URL [--metrics a,b] [-o out.png|out.svg] [--config C] [--plugin-dir D]`:
// a picture of a run without a service. The input is a metrics.csv (csv_logger's or Lightning's
// CSVLogger's, either layout), a TensorBoard event file, or a directory holding one of them
// (metrics.csv first, else every events.out.tfevents.* in name order, also one level down as
// Lightning's sub_dir). Every path is a URL: local, or any scheme a storage plugin of --config's
// plugins.storage serves (s3://...); the output goes through the same URL space (atomic).
// Drawing is include/ember/plot.hpp; PNG encoding is the wandb plugin's libpng helper.
#include "commands.hpp"

#include <ember/loader.hpp>
#include <ember/plot.hpp>
#include <ember/plugin_backend.hpp>
#include <ember/run_config.hpp>

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <sstream>

#include <ember/sdk/png.hpp>

namespace ember::cli {

Catalog scan_plugins(const Options& opt, const boost::json::value* cfg);  // commands.cpp

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string basename_of(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  auto slash = url.rfind('/');
  return std::string(slash == std::string_view::npos ? url : url.substr(slash + 1));
}

bool is_event_file(std::string_view name) { return name.find("tfevents") != std::string_view::npos; }

// The metrics at target: a file, or a directory with metrics.csv or event files.
plot::Metrics read_metrics(const storage::UrlSpace& urls, const std::string& target) {
  plot::Metrics m;
  const std::string name = basename_of(target);
  if (ends_with(name, ".csv")) return plot::parse_csv(urls.read_all(target), target);
  if (is_event_file(name)) {
    plot::parse_tfevents(urls.read_all(target), target, m);
    return m;
  }
  auto st = urls.stat(target);
  if (st && !st->is_dir)
    throw plot::Error(target + ": expected a metrics.csv, an events.out.tfevents.* file or a run directory");
  std::vector<storage::Stat> entries = urls.list(target);
  for (const auto& e : entries)
    if (!e.is_dir && basename_of(e.url) == "metrics.csv") return plot::parse_csv(urls.read_all(e.url), e.url);
  std::vector<std::string> events;
  for (const auto& e : entries)
    if (!e.is_dir && is_event_file(basename_of(e.url))) events.push_back(e.url);
  if (events.empty())  // Lightning's sub_dir: one level down
    for (const auto& d : entries)
      if (d.is_dir)
        for (const auto& e : urls.list(d.url))
          if (!e.is_dir && is_event_file(basename_of(e.url))) events.push_back(e.url);
  if (events.empty())
    throw plot::Error(target + ": no metrics.csv and no events.out.tfevents.* file there" +
                      std::string(entries.empty() ? " (nothing found: does it exist?)" : ""));
  std::sort(events.begin(), events.end());
  for (const auto& url : events) plot::parse_tfevents(urls.read_all(url), url, m);
  return m;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

int run_plot(int argc, char** argv) {
  CLI::App app{"draw the metrics of a run (metrics.csv or TensorBoard event files) as line charts, one panel per "
               "metric with its train/val/test variants, step on x; PNG or SVG by the output's extension"};
  app.name("ember plot");
  std::string target, out = "metrics.png", metrics;
  Options opt;
  app.add_option("RUN_DIR_OR_METRICS_URL", target, "a run directory (version_N), a metrics.csv or an event file; any URL")
      ->required();
  app.add_option("--metrics", metrics, "only these metrics (names or base names: loss = train_loss, val_loss ...), comma-separated");
  app.add_option("-o,--output", out, "the image to write: *.png or *.svg (a URL too)")->capture_default_str();
  app.add_option("--config,-c", opt.config, "a run config whose plugins.storage serve the URLs' schemes (s3://...)");
  app.add_option("--plugin-dir", opt.plugin_dirs, "a directory of plugins (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  const bool svg = ends_with(out, ".svg");
  if (!svg && !ends_with(out, ".png")) {
    std::cerr << "ember plot: -o " << out << ": expected a file name ending in .png or .svg\n";
    return 2;
  }

  Services services;
  std::vector<std::unique_ptr<PluginInstance>> storage;
  try {
    if (!opt.config.empty()) {
      boost::json::value cfg = load_run_config(opt.config, {});
      Catalog catalog = scan_plugins(opt, &cfg);
      for (auto& ref : plugin_refs(cfg, "plugins", "storage")) {
        auto lib = catalog.require(ref.id, opt.config + ": " + ref.where + ".plugin");
        storage.push_back(std::make_unique<PluginInstance>(lib, ref.config, services, opt.config + ": plugin " + ref.id + " at " + ref.where));
        register_storage(*storage.back(), services.urls());
      }
    }
  } catch (const ConfigError& e) {
    std::cerr << "ember: config error:\n" << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ember plot: " << e.what() << "\n";
    return 1;
  }

  try {
    plot::Metrics m = read_metrics(services.urls(), target);
    auto panels = plot::make_panels(m, split_list(metrics));
    if (panels.empty()) throw plot::Error(target + ": no values to plot");
    std::string bytes;
    if (svg) {
      bytes = plot::render_svg(panels);
    } else {
      plot::Raster r = plot::render(panels);
      bytes = png::encode(r.pixels().data(), static_cast<std::uint32_t>(r.width()),
                                 static_cast<std::uint32_t>(r.height()), 3);
    }
    services.urls().put_atomic(out, bytes);
    plot::Size sz = plot::image_size(panels.size());
    std::size_t points = 0;
    for (const auto& [name, s] : m) points += s.points.size();
    std::cout << "wrote " << out << " (" << sz.width << "x" << sz.height << ", " << panels.size() << " panel"
              << (panels.size() == 1 ? "" : "s") << ", " << points << " points)\n";
    return 0;
  } catch (const plot::Error& e) {
    std::cerr << "ember plot: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ember plot: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ember::cli
