// Hostile data files: the CSV and idx readers answer with a message naming the file (and line),
// never a crash, a silently misread number or a libtorch backtrace; and `ember fit` says the same,
// before any logger has written anything (as `ember predict` does for a config without its data).
#define BOOST_TEST_MODULE trainer_data
#include <boost/test/unit_test.hpp>

#include "../support/expect.hpp"
#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"
#include "cli_paths.hpp"

#include <ember/data.hpp>

#include <boost/json.hpp>

namespace json = boost::json;
using ember::test::error_of;
using ember::test::TempDir;
using namespace ember::test::cli_paths;

namespace {

std::string write(const TempDir& dir, const std::string& name, const std::string& bytes) {
  auto p = (dir.path() / name).string();
  ember::test::write_file(p, bytes);
  return p;
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// bytes as one gzip member.
std::string gzip(const std::string& bytes) {
  z_stream zs{};
  BOOST_REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, bytes.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  BOOST_REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

// The gunzip buffer starts at the size the gzip trailer records; where that is wrong (a second
// member's trailer) or far beyond the data (capped), the whole first member is still read.
BOOST_AUTO_TEST_CASE(gzipped_idx_reads_whole_whatever_the_trailer_says) {
  TempDir dir;
  ember::storage::UrlSpace urls;
  std::string idx = std::string("\x00\x00\x08\x02", 4) + be32(1000) + be32(784);
  for (int i = 0; i < 784000; ++i) idx += static_cast<char>((i * 7) % 251);
  auto plain = ember::data::read_idx_file(urls, write(dir, "plain.idx", idx));
  // A second, tiny member: its trailer (ISIZE 1) is the last 4 bytes of the file.
  auto two = ember::data::read_idx_file(urls, write(dir, "two.idx.gz", gzip(idx) + gzip("x")));
  BOOST_TEST(two.sizes() == plain.sizes());
  BOOST_TEST(torch::equal(two, plain));
  // A trailer claiming 4 GiB - 1 for a tiny file: the buffer is capped, not 4 GiB.
  std::string claims = gzip(idx);
  for (int i = 1; i <= 4; ++i) claims[claims.size() - i] = '\xff';
  auto msg = error_of([&] { ember::data::read_idx_file(urls, write(dir, "claims.idx.gz", claims)); });
  BOOST_TEST(msg.find("corrupt gzip data") != std::string::npos, msg);
  // Zeros compress about 1000:1: the cap still leaves room for all of them.
  std::string zeros = std::string("\x00\x00\x08\x01", 4) + be32(4000000) + std::string(4000000, '\0');
  auto z = ember::data::read_idx_file(urls, write(dir, "zeros.idx.gz", gzip(zeros)));
  BOOST_TEST(z.size(0) == 4000000);
  BOOST_TEST(z.sum().item<std::int64_t>() == 0);
}

BOOST_AUTO_TEST_CASE(csv_label_column_out_of_range_names_file_and_line) {
  TempDir dir;
  ember::storage::UrlSpace urls;
  auto f = write(dir, "d.csv", "a,b,c\n1,2,0\n3,4,1\n");
  for (std::int64_t lc : std::initializer_list<std::int64_t>{3, 7, -4, std::int64_t{1} << 40}) {
    auto msg = error_of([&] { ember::data::read_csv(urls, f, lc, true); });
    BOOST_TEST(msg == f + ":2: label_column " + std::to_string(lc) +
                          " is out of range for 3 columns (expected -3 to 2; config key data.label_column)",
               msg);
  }
  // In range from either end still works.
  BOOST_TEST(ember::data::read_csv(urls, f, -3, true).y[1].item<std::int64_t>() == 3);
  BOOST_TEST(ember::data::read_csv(urls, f, 2, true).x.sizes() == torch::IntArrayRef({2, 2}));
}

BOOST_AUTO_TEST_CASE(csv_number_with_trailing_text_is_refused) {
  TempDir dir;
  ember::storage::UrlSpace urls;
  auto f = write(dir, "g.csv", "a,b,c\n1,2,0\n1abc,2,0\n");
  BOOST_TEST(error_of([&] { ember::data::read_csv(urls, f, -1, true); }) == f + ":3: '1abc' is not a number");
  auto g = write(dir, "h.csv", "1,2 x,0\n");
  BOOST_TEST(error_of([&] { ember::data::read_csv(urls, g, -1, false); }) == g + ":1: '2 x' is not a number");
  auto h = write(dir, "i.csv", "1,1e999,0\n");
  BOOST_TEST(error_of([&] { ember::data::read_csv(urls, h, -1, false); }) == h + ":1: '1e999' is not a finite number");
  // Blanks around a number and CRLF line ends are not garbage.
  auto ok = write(dir, "ok.csv", "a,b,c\r\n 1 , 2.5\t,1\r\n3,4,0\r\n");
  auto d = ember::data::read_csv(urls, ok, -1, true);
  BOOST_TEST(d.x[0][1].item<float>() == 2.5f);
  BOOST_TEST(d.y[0].item<std::int64_t>() == 1);
}

// Four dimensions of 65536: 2^64 elements wrap to 0 in 64 bits, which "matched" an empty body;
// libtorch then refused the shape with a backtrace.
BOOST_AUTO_TEST_CASE(idx_element_count_overflow_is_a_message_naming_the_file) {
  TempDir dir;
  ember::storage::UrlSpace urls;
  std::string header("\x00\x00\x08\x04", 4);
  for (int i = 0; i < 4; ++i) header += be32(65536);
  auto f = write(dir, "wrap.idx", header);
  auto msg = error_of([&] { ember::data::read_idx_file(urls, f); });
  BOOST_TEST(msg == f + ": idx body has 0 bytes, header says 65536 x 65536 x 65536 x 65536 (more than 2^64 elements)", msg);
  // 3 x 2^31 x 2^31 bytes: more than int64 holds, less than uint64: a plain size mismatch.
  std::string h2("\x00\x00\x08\x03", 4);
  h2 += be32(3) + be32(1u << 31) + be32(1u << 31);
  auto g = write(dir, "big.idx", h2 + "abc");
  msg = error_of([&] { ember::data::read_idx_file(urls, g); });
  BOOST_TEST(msg == g + ": idx body has 3 bytes, header says 13835058055282163712", msg);
  auto e = write(dir, "empty.idx", std::string("\x00\x00\x08\x02", 4) + be32(0) + be32(28));
  msg = error_of([&] { ember::data::read_idx(urls, {e}, false); });
  BOOST_TEST(msg == e + ": idx file holds no data (0 x 28)", msg);
}

BOOST_AUTO_TEST_CASE(tensors_file_that_is_not_a_pickle_names_the_file_without_a_backtrace) {
  TempDir dir;
  ember::storage::UrlSpace urls;
  auto f = write(dir, "t.pt", "not a pickle at all");
  auto msg = error_of([&] { ember::data::read_tensors(urls, f); });
  BOOST_TEST(msg.rfind(f + ": not a readable tensors file: ", 0) == 0u, msg);
  BOOST_TEST(msg.find('\n') == std::string::npos, msg);
}

// The crash users met: `ember fit` on a CSV with label_column past the last column.
BOOST_AUTO_TEST_CASE(ember_fit_with_label_column_out_of_range_exits_1_with_file_and_line) {
  TempDir dir;
  auto csv = write(dir, "d.csv", "a,b,c\n1,2,0\n3,4,1\n");
  json::object cfg{{"trainer", json::object{{"default_root_dir", (dir.path() / "run").string()}, {"max_epochs", 1},
                                            {"enable_progress_bar", false}}},
                   {"model", json::object{{"plugin", "fashion_mlp"}}},
                   {"data", json::object{{"format", "csv"}, {"label_column", 7}, {"train", json::array{csv}}}}};
  auto config = write(dir, "run.json", json::serialize(cfg));
  auto r = ember::test::run_process({exe(), "fit", "--config", config, "--plugin-dir",
                                     plugins()});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find(csv + ":2: label_column 7 is out of range for 3 columns") != std::string::npos, r.err);
  // The data is read before any logger exists: the default csv_logger wrote nothing.
  BOOST_TEST(!std::filesystem::exists(dir.path() / "run"), r.describe());
}

// Nothing at all is written when the config cannot run the command: `ember predict` without
// data.predict used to leave a csv_logger version directory (hparams.yaml) behind before saying so.
BOOST_AUTO_TEST_CASE(predict_without_data_writes_nothing) {
  TempDir dir;
  const auto root = dir.path() / "run";
  json::object cfg{{"trainer", json::object{{"default_root_dir", root.string()}, {"enable_progress_bar", false}}},
                   {"model", json::object{{"plugin", "fashion_mlp"}}},
                   {"data", json::object{{"train", json::array{kData + "t10k-images-idx3-ubyte.gz", kData + "t10k-labels-idx1-ubyte.gz"}}}}};
  auto config = write(dir, "run.json", json::serialize(cfg));
  auto r = ember::test::run_process({exe(), "predict", "--config", config, "--plugin-dir",
                                     plugins()});
  BOOST_TEST(r.exit_code == 2, r.describe());
  BOOST_TEST(r.err.find(config + ": predict: no data (config key data.predict)") != std::string::npos, r.err);
  BOOST_TEST(!std::filesystem::exists(root), "written before the config error: " << root);
}
