// libFuzzer target: an offline W&B run directory as `ember wandb sync` reads it
// (wandb::read_offline_dir: the run-*.wandb transaction log's blocks and CRCs, every record's
// protobuf, the JSON values inside). The first byte picks what the input is:
//   even: the .wandb file itself (framing, CRCs, chunk types);
//   odd:  a list of records, each a 2-byte little-endian length and that many bytes, which this
//         target frames with the plugin's own writer (txlog::frame) so that the CRCs are right
//         and the search reaches the record decoder.
// The directory is per process under $TMPDIR and holds nothing but the log. A refusal (an
// exception) is expected; a crash or sanitizer report is a finding.
#include "wandb_api.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace wb = ember::wandb;

namespace {

// The run directory, created once per process and removed at exit (a crash leaves it, next to
// the crash input, for inspection).
struct RunDir {
  RunDir() {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/ember-fuzz-wandb.XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    path = tmpl;
  }
  ~RunDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path path;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string file;
  if (data[0] % 2 == 0) {
    file.assign(in);
  } else {
    file = wb::txlog::file_header();
    std::uint64_t offset = file.size();
    while (!in.empty()) {
      std::size_t n = in.size() >= 2 ? (static_cast<unsigned char>(in[0]) | static_cast<unsigned char>(in[1]) << 8) : 0;
      in.remove_prefix(std::min<std::size_t>(2, in.size()));
      n = std::min(n, in.size());
      wb::txlog::frame(file, offset, in.substr(0, n));
      in.remove_prefix(n);
    }
  }
  static const RunDir run_dir;
  const auto& dir = run_dir.path;
  {
    std::ofstream out(dir / "run-fuzz.wandb", std::ios::binary | std::ios::trunc);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  try {
    (void)wb::read_offline_dir(dir);
  } catch (const std::exception&) {
  }
  return 0;
}
