// bench_s3: a 512 MiB object up and down against a local s3rver, the s3 plugin vs `aws s3 cp`,
// doing the same work: both upload the same file from disk (src.bin) and download the same
// object (ref.bin) into a file on disk. One untimed warm-up of each side first (page cache,
// s3rver's JIT, the plugin's connections), then rounds that alternate which side goes first.
// aws's start-up (a Python process importing botocore; `aws s3 ls` of one key, one tiny
// request) is timed separately and printed beside the ratios with it taken out. Prints MB/s, the
// ratios and the plugin's peak RSS during the upload. Figures only; nothing is asserted.
//   meson test -C build --benchmark bench_s3        (EMBER_S3_BENCH_MIB=64 for a quick run,
//   EMBER_S3_BENCH_ROUNDS=5 for medians of five rounds)
// To show how much of an upload is the server's, it also prints how long s3rver took over each
// CompleteMultipartUpload (from its log), and times a "server floor" upload after aws's: the
// same bytes as parts of one block hashed once up front, sent as they are — no per-byte work
// in the client but the socket's copy, i.e. the best any client can do against this server.
// EMBER_S3_BENCH_BASELINE_SO=/path/to/an/older/s3.so adds that build's upload and download to the
// same run (baseline up before plugin up, baseline down before plugin down), for before/after
// figures against the same server and the same aws run.
#include "checksum.hpp"
#include "s3_fixture.hpp"
#include "sigv4.hpp"

#include <ember/net/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <regex>

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

// A multipart upload of total bytes as parts of one pseudo-random block of part bytes, whose
// SHA-256 and CRC-32C are computed once, on conc connections; returns the seconds it took.
double server_floor_upload(const S3rver& server, const std::string& key, std::size_t total, std::size_t part, int conc) {
  namespace s3 = ember::s3;
  const std::string block = pattern_bytes(part, 7);
  const std::string sha = s3::sha256_hex(block);
  const std::string crc = s3::crc32c_base64(s3::crc32c(block));
  const std::string host = "127.0.0.1:" + server.port(), path = "/bench/" + key;
  const s3::Credentials creds{"S3RVER", "unused", ""};
  auto send = [&](ember::http::Client& c, const char* method, const s3::Params& query, s3::Params headers,
                  std::string_view body, const std::string& hash) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[32];
    std::strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    std::string q = s3::canonical_query(query);
    headers.emplace_back("host", host);
    headers.emplace_back("x-amz-content-sha256", hash);
    headers.emplace_back("x-amz-date", date);
    s3::SigningInput in{method, path, q, headers, hash};
    headers.emplace_back("Authorization", s3::sign(creds, "us-east-1", "s3", date, in).authorization);
    auto r = c.send({method, path + "?" + q, headers, body});
    if (r.status != 200) throw std::runtime_error(std::string("floor upload: ") + method + " " + path + "?" + q + ": HTTP " + std::to_string(r.status));
    return r;
  };
  const std::size_t parts = (total + part - 1) / part;
  auto t0 = std::chrono::steady_clock::now();
  ember::http::Client c0("http", "127.0.0.1", server.port());
  auto r = send(c0, "POST", {{"uploads", ""}}, {}, "", s3::kEmptySha256);
  std::smatch m;
  if (!std::regex_search(r.body, m, std::regex("<UploadId>([^<]+)</UploadId>"))) throw std::runtime_error("floor upload: no UploadId");
  const std::string id = m[1];
  std::vector<std::string> etags(parts + 1);
  std::atomic<std::size_t> next{1};
  std::vector<std::thread> threads;
  std::exception_ptr failure;
  std::mutex mu;
  for (int i = 0; i < conc; ++i)
    threads.emplace_back([&] {
      try {
        ember::http::Client c("http", "127.0.0.1", server.port());
        for (std::size_t n; (n = next++) <= parts;) {
          std::string_view body(block.data(), n < parts ? part : total - (parts - 1) * part);
          // The last part is shorter: its hashes are computed here (small).
          bool full = body.size() == part;
          auto pr = send(c, "PUT", {{"partNumber", std::to_string(n)}, {"uploadId", id}},
                         {{"x-amz-checksum-crc32c", full ? crc : s3::crc32c_base64(s3::crc32c(body))}}, body,
                         full ? sha : s3::sha256_hex(body));
          std::lock_guard<std::mutex> lock(mu);
          etags[n] = pr.header("ETag");
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        failure = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  std::string xml = "<CompleteMultipartUpload>";
  for (std::size_t n = 1; n <= parts; ++n)
    xml += "<Part><PartNumber>" + std::to_string(n) + "</PartNumber><ETag>" + etags[n] + "</ETag></Part>";
  xml += "</CompleteMultipartUpload>";
  send(c0, "POST", {{"uploadId", id}}, {}, xml, s3::sha256_hex(xml));
  return seconds_since(t0);
}

// Seconds s3rver's log says each CompleteMultipartUpload of key took ("…/key?uploadId=… 200
// 1,698ms"; its logger cuts the bucket name short), in order.
std::vector<double> complete_seconds(const S3rver& server, const std::string& key) {
  std::string log = server.log();
  std::regex line("/" + key + "\\?uploadId=[0-9a-f]+ 200 ([0-9,.]+)(m?s)");
  std::vector<double> out;
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    std::string n = (*it)[1];
    n.erase(std::remove(n.begin(), n.end(), ','), n.end());
    out.push_back(std::stod(n) / ((*it)[2] == "ms" ? 1000.0 : 1.0));
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The plugin's defaults (plugins/s3/README.md), for the floor upload and the RSS budget.
constexpr std::size_t kPartSize = 16 << 20;
constexpr int kConcurrency = 4;

}  // namespace

int main() try {
  const char* mib_env = std::getenv("EMBER_S3_BENCH_MIB");
  const std::size_t mib = mib_env && *mib_env ? std::stoul(mib_env) : 512;
  const std::size_t bytes = mib << 20;
  S3rver server({"bench"});
  TempDir dir("ember-s3-bench");
  const std::string src = (dir / "src.bin").string();
  {
    const std::string block = pattern_bytes(1 << 20, 42);
    std::ofstream f(src, std::ios::binary);
    for (std::size_t i = 0; i < mib; ++i) f.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  // Defaults (16 MiB parts, 4 in flight) unless EMBER_S3_BENCH_CONFIG adds keys, e.g.
  // '"max_concurrency": 8'.
  const char* extra = std::getenv("EMBER_S3_BENCH_CONFIG");
  S3Urls s3(local_config(server.endpoint(), extra ? extra : ""));
  const double mb = static_cast<double>(bytes) / 1e6;

  // From src.bin, 1 MiB reads, as aws reads it.
  auto upload = [&](S3Urls& u, const std::string& url) {
    auto t = std::chrono::steady_clock::now();
    std::FILE* in = std::fopen(src.c_str(), "rb");
    if (!in) throw std::runtime_error("cannot open " + src);
    std::vector<char> buf(1 << 20);
    auto w = u.urls.open_write(url);
    while (std::size_t n = std::fread(buf.data(), 1, buf.size(), in)) w->write(buf.data(), n);
    std::fclose(in);
    w->commit();
    return seconds_since(t);
  };
  // Into a file, as aws writes one.
  auto download = [&](S3Urls& u, const std::string& url, const std::string& to) {
    auto t = std::chrono::steady_clock::now();
    std::FILE* out = std::fopen(to.c_str(), "wb");
    if (!out) throw std::runtime_error("cannot create " + to);
    std::size_t got = 0;
    {
      auto r = u.urls.open_read(url);
      std::vector<char> buf(1 << 20);
      while (std::size_t n = r->read(buf.data(), buf.size())) {
        if (std::fwrite(buf.data(), 1, n, out) != n) throw std::runtime_error("cannot write " + to);
        got += n;
      }
    }
    if (std::fclose(out) != 0) throw std::runtime_error("cannot write " + to);
    double d = seconds_since(t);
    if (got != bytes) throw std::runtime_error("plugin read " + std::to_string(got) + " bytes, expected " + std::to_string(bytes));
    return d;
  };
  auto aws_timed = [&](const std::vector<std::string>& args) {
    auto t0 = std::chrono::steady_clock::now();
    aws(server, dir, args);
    return seconds_since(t0);
  };
  const std::string aws_dst = (dir / "dst-aws.bin").string(), plugin_dst = (dir / "dst-plugin.bin").string();
  auto aws_up_once = [&] { return aws_timed({"s3", "cp", src, "s3://bench/aws.bin"}); };
  auto aws_down_once = [&] {
    double d = aws_timed({"s3", "cp", "s3://bench/ref.bin", aws_dst});
    if (std::filesystem::file_size(aws_dst) != bytes) throw std::runtime_error("aws download has the wrong size");
    return d;
  };
  const char* base_so = std::getenv("EMBER_S3_BENCH_BASELINE_SO");
  std::unique_ptr<S3Urls> base;
  if (base_so && *base_so) {
    std::string own = require_env("EMBER_S3_SO");
    ::setenv("EMBER_S3_SO", base_so, 1);
    base = std::make_unique<S3Urls>(local_config(server.endpoint(), extra ? extra : ""));
    ::setenv("EMBER_S3_SO", own.c_str(), 1);
  }

  // Warm-up, untimed: the object both sides download, then one of everything.
  upload(s3, "s3://bench/ref.bin");
  upload(s3, "s3://bench/plugin.bin");
  aws_up_once();
  download(s3, "s3://bench/ref.bin", plugin_dst);
  aws_down_once();
  if (base) upload(*base, "s3://bench/baseline.bin"), download(*base, "s3://bench/ref.bin", plugin_dst);

  // EMBER_S3_BENCH_ROUNDS=N: N rounds, medians (and each round's ratios): on a shared machine
  // one round's ratio moves with the load. Even rounds run the plugin first, odd rounds aws.
  const char* rounds_env = std::getenv("EMBER_S3_BENCH_ROUNDS");
  const int rounds = rounds_env && *rounds_env ? std::max(1, std::stoi(rounds_env)) : 1;
  std::vector<double> plugin_up, aws_up, floor_up, base_up, plugin_down, aws_down, base_down, aws_start;
  // Peak RSS is taken in the first round only: later rounds start with what the downloads'
  // threads left in malloc's arenas.
  const double rss_before = rss_mib();
  double peak = 0;
  for (int round = 0; round < rounds; ++round) {
    const bool plugin_first = round % 2 == 0;
    auto plugin_up_once = [&] {
      if (base) base_up.push_back(upload(*base, "s3://bench/baseline.bin"));
      if (round == 0) reset_peak();
      plugin_up.push_back(upload(s3, "s3://bench/plugin.bin"));
      if (round == 0) peak = peak_rss_mib();
    };
    auto plugin_down_once = [&] {
      if (base) base_down.push_back(download(*base, "s3://bench/ref.bin", plugin_dst));
      plugin_down.push_back(download(s3, "s3://bench/ref.bin", plugin_dst));
    };
    // aws's start-up and one tiny request, for reading its transfer times without them.
    aws_start.push_back(aws_timed({"s3", "ls", "s3://bench/ref.bin"}));
    if (plugin_first) {
      plugin_up_once();
      aws_up.push_back(aws_up_once());
      plugin_down_once();
      aws_down.push_back(aws_down_once());
    } else {
      aws_up.push_back(aws_up_once());
      plugin_up_once();
      aws_down.push_back(aws_down_once());
      plugin_down_once();
    }
    // The server's floor, with the plugin's default part size and concurrency.
    floor_up.push_back(server_floor_upload(server, "floor.bin", bytes, kPartSize, kConcurrency));
  }
  auto ratios = [&](const std::vector<double>& num, const std::vector<double>& den) {
    std::string out;
    for (std::size_t i = 0; i < num.size(); ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, " %.2f", num[i] / den[i]);
      out += buf;
    }
    return out;
  };
  const double start = median(aws_start);

  std::printf("bench_s3: %zu MiB against s3rver %s (plugin config extra: %s), warm-up then %d round(s)%s, alternating "
              "which side goes first; both sides read src.bin from disk and write their download to disk\n",
              mib, server.endpoint().c_str(), extra ? extra : "none: part_size 16 MiB, max_concurrency 4", rounds,
              rounds > 1 ? ", medians" : "");
  std::printf("  aws start-up (aws s3 ls of one key: Python, botocore, one tiny request): %.2f s\n", start);
  std::printf("  upload   plugin %8.1f MB/s (%6.2f s)   aws s3 cp %8.1f MB/s (%6.2f s; %6.2f s without start-up)   "
              "plugin/aws %.2fx (%.2fx without aws's start-up)\n",
              mb / median(plugin_up), median(plugin_up), mb / median(aws_up), median(aws_up), median(aws_up) - start,
              median(aws_up) / median(plugin_up), (median(aws_up) - start) / median(plugin_up));
  std::printf("  download plugin %8.1f MB/s (%6.2f s)   aws s3 cp %8.1f MB/s (%6.2f s; %6.2f s without start-up)   "
              "plugin/aws %.2fx (%.2fx without aws's start-up)\n",
              mb / median(plugin_down), median(plugin_down), mb / median(aws_down), median(aws_down),
              median(aws_down) - start, median(aws_down) / median(plugin_down), (median(aws_down) - start) / median(plugin_down));
  std::printf("  upload   server floor %6.1f MB/s (%6.2f s)   floor/aws %.2fx (%.2fx without start-up): a client with no "
              "per-byte work, from memory, about the most any client reaches here\n",
              mb / median(floor_up), median(floor_up), median(aws_up) / median(floor_up),
              (median(aws_up) - start) / median(floor_up));
  std::printf("  s3rver CompleteMultipartUpload (rereads, MD5s and rewrites the object): plugin %.2f s, aws %.2f s, floor %.2f s",
              median(complete_seconds(server, "plugin.bin")), median(complete_seconds(server, "aws.bin")),
              median(complete_seconds(server, "floor.bin")));
  if (base) std::printf(", baseline %.2f s", median(complete_seconds(server, "baseline.bin")));
  std::printf("\n");
  if (base) {
    std::printf("  baseline %s\n", base_so);
    std::printf("  upload   baseline %6.1f MB/s (%6.2f s)   baseline/aws %.2fx\n", mb / median(base_up), median(base_up),
                median(aws_up) / median(base_up));
    std::printf("  download baseline %6.1f MB/s (%6.2f s)   baseline/aws %.2fx\n", mb / median(base_down), median(base_down),
                median(aws_down) / median(base_down));
  }
  if (rounds > 1) {
    std::printf("  per round: upload plugin/aws%s; floor/aws%s", ratios(aws_up, plugin_up).c_str(), ratios(aws_up, floor_up).c_str());
    if (base) std::printf("; baseline/aws%s", ratios(aws_up, base_up).c_str());
    std::printf("; download plugin/aws%s", ratios(aws_down, plugin_down).c_str());
    if (base) std::printf("; baseline/aws%s", ratios(aws_down, base_down).c_str());
    std::printf("; aws start-up s");
    for (double v : aws_start) std::printf(" %.2f", v);
    std::printf("\n");
  }
  std::printf("  plugin upload peak RSS %.1f MiB%s (process RSS before %.1f MiB; budget with the defaults 64 + %d x %zu = %zu MiB)\n",
              peak, rounds > 1 ? " in the first round" : "", rss_before, kConcurrency, kPartSize >> 20,
              64 + kConcurrency * (kPartSize >> 20));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_s3: %s\n", e.what());
  return 1;
}
