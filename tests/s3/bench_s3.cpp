// bench_s3: a 512 MiB object up and down against a local s3rver, the s3 plugin vs `aws s3 cp`,
// alternating (plugin up, aws up, plugin down, aws down) in one run. Prints MB/s, the ratios and
// the plugin's peak RSS during the upload. Figures only; nothing is asserted.
//   meson test -C build --benchmark bench_s3        (EMBER_S3_BENCH_MIB=64 for a quick run)
// EMBER_S3_BENCH_BASELINE_SO=/path/to/an/older/s3.so adds that build's upload and download to the
// same run (baseline up before plugin up, baseline down before plugin down), for before/after
// figures against the same server and the same aws run.
#include "s3_fixture.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

using namespace ember::test;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// VmHWM of this process in MiB; reset_peak() starts a new measurement (Linux >= 4.0).
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}
double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

ProcessResult aws(const S3rver& s, const TempDir& dir, const std::vector<std::string>& args) {
  write_file(dir / "aws-config", "[default]\nregion = us-east-1\n");
  std::vector<std::string> argv{"/usr/bin/env", "AWS_CONFIG_FILE=" + (dir / "aws-config").string(),
                                "AWS_SHARED_CREDENTIALS_FILE=" + (dir / "none").string(), "AWS_ACCESS_KEY_ID=S3RVER",
                                "AWS_SECRET_ACCESS_KEY=S3RVER", "HOME=" + dir.path().string(), "/usr/bin/aws",
                                "--endpoint-url", s.endpoint(), "--no-cli-pager"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv);
  if (r.exit_code != 0) throw std::runtime_error("aws " + args[0] + " failed: " + r.describe());
  return r;
}

}  // namespace

int main() try {
  const char* mib_env = std::getenv("EMBER_S3_BENCH_MIB");
  const std::size_t mib = mib_env && *mib_env ? std::stoul(mib_env) : 512;
  const std::size_t bytes = mib << 20;
  S3rver server({"bench"});
  TempDir dir("ember-s3-bench");
  const std::string block = pattern_bytes(1 << 20, 42);
  {
    std::ofstream f(dir / "src.bin", std::ios::binary);
    for (std::size_t i = 0; i < mib; ++i) f.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  // Defaults (8 MiB parts, 4 in flight) unless EMBER_S3_BENCH_CONFIG adds keys, e.g.
  // '"max_concurrency": 8'.
  const char* extra = std::getenv("EMBER_S3_BENCH_CONFIG");
  S3Urls s3(local_config(server.endpoint(), extra ? extra : ""));
  const double mb = static_cast<double>(bytes) / 1e6;

  // Streamed from one 1 MiB block, as a checkpoint is serialised into the upload.
  auto upload = [&](S3Urls& u, const std::string& url) {
    auto t = std::chrono::steady_clock::now();
    auto w = u.urls.open_write(url);
    for (std::size_t i = 0; i < mib; ++i) w->write(block.data(), block.size());
    w->commit();
    return seconds_since(t);
  };
  // Into nothing: the read path, not the disk.
  auto download = [&](S3Urls& u, const std::string& url) {
    auto t = std::chrono::steady_clock::now();
    std::size_t got = 0;
    {
      auto r = u.urls.open_read(url);
      std::vector<char> buf(1 << 20);
      while (std::size_t n = r->read(buf.data(), buf.size())) got += n;
    }
    double d = seconds_since(t);
    if (got != bytes) throw std::runtime_error("plugin read " + std::to_string(got) + " bytes, expected " + std::to_string(bytes));
    return d;
  };
  const char* base_so = std::getenv("EMBER_S3_BENCH_BASELINE_SO");
  std::unique_ptr<S3Urls> base;
  double base_up = 0, base_down = 0;
  if (base_so && *base_so) {
    std::string own = require_env("EMBER_S3_SO");
    ::setenv("EMBER_S3_SO", base_so, 1);
    base = std::make_unique<S3Urls>(local_config(server.endpoint(), extra ? extra : ""));
    ::setenv("EMBER_S3_SO", own.c_str(), 1);
  }

  // 1. plugin up (the baseline first, when there is one)
  if (base) base_up = upload(*base, "s3://bench/baseline.bin");
  double rss_before = rss_mib();
  reset_peak();
  double plugin_up = upload(s3, "s3://bench/plugin.bin");
  double peak = peak_rss_mib();

  // 2. aws up
  auto t0 = std::chrono::steady_clock::now();
  aws(server, dir, {"s3", "cp", (dir / "src.bin").string(), "s3://bench/aws.bin"});
  double aws_up = seconds_since(t0);

  // 3. plugin down (the baseline first, when there is one)
  if (base) base_down = download(*base, "s3://bench/aws.bin");
  double plugin_down = download(s3, "s3://bench/aws.bin");

  // 4. aws down
  t0 = std::chrono::steady_clock::now();
  aws(server, dir, {"s3", "cp", "s3://bench/plugin.bin", (dir / "dst.bin").string()});
  double aws_down = seconds_since(t0);
  if (std::filesystem::file_size(dir / "dst.bin") != bytes) throw std::runtime_error("aws download has the wrong size");

  std::printf("bench_s3: %zu MiB against s3rver %s (plugin config extra: %s)\n", mib, server.endpoint().c_str(),
              extra ? extra : "none: part_size 8 MiB, max_concurrency 4");
  std::printf("  upload   plugin %8.1f MB/s (%6.2f s)   aws s3 cp %8.1f MB/s (%6.2f s)   plugin/aws %.2fx\n", mb / plugin_up,
              plugin_up, mb / aws_up, aws_up, aws_up / plugin_up);
  std::printf("  download plugin %8.1f MB/s (%6.2f s)   aws s3 cp %8.1f MB/s (%6.2f s)   plugin/aws %.2fx\n",
              mb / plugin_down, plugin_down, mb / aws_down, aws_down, aws_down / plugin_down);
  if (base) {
    std::printf("  baseline %s\n", base_so);
    std::printf("  upload   baseline %6.1f MB/s (%6.2f s)   baseline/aws %.2fx\n", mb / base_up, base_up, aws_up / base_up);
    std::printf("  download baseline %6.1f MB/s (%6.2f s)   baseline/aws %.2fx\n", mb / base_down, base_down,
                aws_down / base_down);
  }
  std::printf("  plugin upload peak RSS %.1f MiB (process RSS before %.1f MiB; budget 64 + 4 x 8 = 96 MiB)\n", peak,
              rss_before);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_s3: %s\n", e.what());
  return 1;
}
