// `ember plot` on s3://: a metrics.csv put into a local s3rver is drawn by `ember plot` with
// --config naming the s3 storage plugin, and the SVG and PNG are written back into the bucket
// (read back through the plugin in-process): the remote path of "a picture of a run without a
// service".
#define BOOST_TEST_MODULE plot_s3
#include <boost/test/unit_test.hpp>

#include "s3_fixture.hpp"

#include <boost/json.hpp>
#include <ember/plot.hpp>

namespace json = boost::json;
using namespace ember::test;

BOOST_AUTO_TEST_CASE(ember_plot_reads_a_run_on_s3_and_writes_the_picture_there) {
  S3rver server({"runs"});
  S3Urls s3(local_config(server.endpoint()));
  std::string csv = "epoch,step,train_loss,val_loss\n";
  for (int s = 0; s < 20; ++s)
    csv += "0," + std::to_string(s) + "," + std::to_string(2.0 / (s + 1)) + "," + (s % 5 == 4 ? std::to_string(2.5 / (s + 1)) : "") + "\n";
  s3.urls.put_atomic("s3://runs/exp/version_0/metrics.csv", csv);

  TempDir dir("plot-s3");
  json::object cfg{{"plugins", json::object{{"storage", json::array{json::object{
                                  {"plugin", "s3"}, {"config", json::parse(local_config(server.endpoint()))}}}}}}};
  write_file(dir / "s3.json", json::serialize(cfg));
  auto plot = [&](const std::string& out) {
    return run_process({require_env("EMBER_EXE"), "plot", "s3://runs/exp/version_0", "-o", out, "--config",
                        (dir / "s3.json").string(), "--plugin-dir", require_env("EMBER_BUILD_ROOT") + "/plugins"});
  };
  auto r = plot("s3://runs/exp/plot.svg");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  std::string svg = s3.urls.read_all("s3://runs/exp/plot.svg");
  BOOST_TEST(svg.find("<svg") != std::string::npos);
  BOOST_TEST(svg.find(">loss</text>") != std::string::npos);
  BOOST_TEST(svg.find("test-secret-DO-NOT-PRINT") == std::string::npos);
  BOOST_TEST(r.out.find("test-secret-DO-NOT-PRINT") == std::string::npos, r.out);
  BOOST_TEST(r.err.find("test-secret-DO-NOT-PRINT") == std::string::npos, r.err);

  r = plot("s3://runs/exp/plot.png");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  std::string png = s3.urls.read_all("s3://runs/exp/plot.png");
  BOOST_REQUIRE(png.size() > 8);
  BOOST_TEST(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);

  // Without --config there is no s3:// scheme: the error says so and names the URL.
  r = run_process({require_env("EMBER_EXE"), "plot", "s3://runs/exp/version_0", "-o", (dir / "x.png").string()});
  BOOST_TEST(r.exit_code != 0);
  BOOST_TEST(r.err.find("s3://runs/exp/version_0") != std::string::npos, r.err);
}
