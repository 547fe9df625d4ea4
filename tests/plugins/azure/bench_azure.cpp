// bench_azure: a 512 MiB blob up and down on Azurite (in memory), the azure plugin vs Microsoft's
// @azure/storage-blob (Node 20) with its defaults (uploadData: 4 MiB blocks, 5 in parallel;
// downloadToBuffer: 4 MiB ranges, 5 in parallel), in one run and alternating which goes first.
// Both sides work from memory: the plugin writes the same 1 MiB pattern 512 times and discards
// what it reads; the client uploads a 512 MiB Buffer and downloads into one. One untimed warm-up
// of each side first (at up to 64 MiB). Prints MB/s per round, the medians, the ratios (plugin / client) and the
// plugin's peak RSS (VmHWM of this process, reset before each transfer; Azurite runs in a child).
// The client's time excludes Node's start-up (timed inside the script). Figures only.
//   meson test -C build --benchmark bench_azure     (EMBER_AZURE_BENCH_MIB=64 for a quick run,
//   EMBER_AZURE_BENCH_ROUNDS=5 for medians of five rounds)
#include "azurite_fixture.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

using namespace ember::test;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// VmHWM of this process in MiB; reset_peak() starts a new measurement.
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::size_t env_size(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoul(v) : fallback;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure as it is measured
  try {
    std::size_t mib = env_size("EMBER_AZURE_BENCH_MIB", 512);
    const std::size_t rounds = env_size("EMBER_AZURE_BENCH_ROUNDS", 3);
    Azurite server;
    create_container(server, "bench");
    // The plugin's defaults: 8 MiB blocks, 4 in flight, 4 MiB read chunks.
    AzureUrls plugin(azurite_config(server.endpoint()));
    const std::string piece = pattern_bytes(1 << 20, 5);
    std::string sink(1 << 20, '\0');

    std::vector<double> up_e, down_e, up_n, down_n, rss_up, rss_down;
    auto ember_up = [&](bool timed) {
      reset_peak();
      auto t0 = std::chrono::steady_clock::now();
      auto w = plugin.urls.open_write("az://bench/ember.bin");
      for (std::size_t i = 0; i < mib; ++i) w->write(piece.data(), piece.size());
      w->commit();
      double s = seconds_since(t0), mb = static_cast<double>(mib) * 1048576.0 / 1e6;
      if (timed) up_e.push_back(mb / s), rss_up.push_back(peak_rss_mib());
    };
    auto ember_down = [&](bool timed) {
      reset_peak();
      auto t0 = std::chrono::steady_clock::now();
      auto r = plugin.urls.open_read("az://bench/ember.bin");
      std::size_t total = 0;
      while (std::size_t n = r->read(&sink[0], sink.size())) total += n;
      double s = seconds_since(t0), mb = static_cast<double>(mib) * 1048576.0 / 1e6;
      if (total != mib << 20) throw std::runtime_error("the plugin read " + std::to_string(total) + " bytes");
      if (timed) down_e.push_back(mb / s), rss_down.push_back(peak_rss_mib());
    };
    auto node = [&](const std::string& way, bool timed) {
      auto r = blob_client(server.connection_string(), {"bench", "bench", "node.bin", std::to_string(mib), way});
      if (r.exit_code != 0) throw std::runtime_error("blob_client.js bench " + way + ": " + r.err);
      double s = std::stod(r.out), mb = static_cast<double>(mib) * 1048576.0 / 1e6;
      double rss = std::stod(r.out.substr(r.out.find(' ') + 1)) / 1024.0;
      if (timed) {
        (way == "up" ? up_n : down_n).push_back(mb / s);
        std::printf("  client %-4s %8.1f MB/s  (client peak RSS %.0f MiB, its %zu MiB buffer included)\n", way.c_str(),
                    mb / s, rss, mib);
      }
    };

    std::printf("bench_azure: %zu MiB on Azurite %s, %zu rounds\n", mib, server.endpoint().c_str(), rounds);
    // Warm-up (Azurite's and Node's JIT, connections) at up to 64 MiB: the figures that follow
    // overwrite the same blobs at full size.
    const std::size_t full = mib;
    mib = std::min<std::size_t>(mib, 64);
    ember_up(false), node("up", false), ember_down(false), node("down", false);
    mib = full;
    for (std::size_t i = 0; i < rounds; ++i) {
      std::printf("round %zu (%s first)\n", i + 1, i % 2 ? "client" : "plugin");
      if (i % 2) {
        node("up", true), ember_up(true), node("down", true), ember_down(true);
      } else {
        ember_up(true), node("up", true), ember_down(true), node("down", true);
      }
      std::printf("  plugin up   %8.1f MB/s  (peak RSS %.0f MiB)\n  plugin down %8.1f MB/s  (peak RSS %.0f MiB)\n",
                  up_e.back(), rss_up.back(), down_e.back(), rss_down.back());
    }
    std::printf("median up:   plugin %.1f MB/s, @azure/storage-blob %.1f MB/s, ratio %.2fx\n", median(up_e), median(up_n),
                median(up_e) / median(up_n));
    std::printf("median down: plugin %.1f MB/s, @azure/storage-blob %.1f MB/s, ratio %.2fx\n", median(down_e),
                median(down_n), median(down_e) / median(down_n));
    std::printf("plugin peak RSS: up %.0f MiB, down %.0f MiB (goal: 64 MiB + 4 blocks x 8 MiB = 96 MiB)\n",
                *std::max_element(rss_up.begin(), rss_up.end()), *std::max_element(rss_down.begin(), rss_down.end()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_azure: %s\n", e.what());
    return 1;
  }
}
