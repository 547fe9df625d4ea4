// wandb: the built plugin (.so) driven in-process by the plugin fixture against the W&B-protocol
// test server (tests/plugins/wandb/wandb_server.py, started per test on a free loopback port). No sleeps
// as synchronisation: finalize is synchronous, and mid-run conditions are awaited with one blocking
// GET /_wait on the server.
#define BOOST_TEST_MODULE wandb
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <boost/test/unit_test.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "../../support/run_process.hpp"
#include "plugin_fixture.hpp"
#include "wandb_api.hpp"
#include <ember/sdk/png.hpp>
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace wb = ember::wandb;
using ember::test::FakeTrainer;
using ember::test::LoadedPlugin;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_WANDB_SO");
  return l;
}

// FakeTrainer's log is thread-safe: the plugin's worker logs too.
using Trainer = FakeTrainer;

using Env = ember::test::wandb::CleanEnv;

class Wandb {
 public:
  Wandb(Trainer& t, const std::string& config) : p_(lib(), config, t) {}
  void log(std::int64_t step, std::vector<std::pair<std::string, double>> ms, std::int64_t epoch = 0) {
    std::vector<ember_metric_t> raw;
    for (auto& m : ms) raw.push_back({ember::cstr(m.first), m.second});
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, epoch};
    p_.check(p_.logger().log_metrics(p_.self(), &ctx, raw.data(), raw.size()), "log_metrics");
  }
  void hparams(const std::string& j) {
    p_.check(p_.logger().log_hyperparams(p_.self(), ember::cstr(j)), "log_hyperparams");
  }
  void checkpoint(const std::string& url) {
    p_.check(p_.logger().after_save_checkpoint(p_.self(), ember::cstr(url)), "after_save_checkpoint");
  }
  void hook(ember_hook_id_t id) { p_.call(id, ember::test::hook_args(EMBER_STAGE_FIT)); }
  void finalize(const char* status = "success") {
    p_.check(p_.logger().finalize(p_.self(), ember::cstr(status)), "finalize");
  }

  // ember.media/1: the status, for tests of refusals; ok() turns a failure into an exception.
  const ember_media_v1_t& media() {
    auto* m = p_.instance().interface<ember_media_v1_t>(EMBER_MEDIA_V1);
    if (!m) throw std::runtime_error("wandb offers no " EMBER_MEDIA_V1);
    return *m;
  }
  ember_status_t image(const std::string& key, const std::vector<ember_image_t>& images, std::int64_t step) {
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, 0};
    return media().log_image(p_.self(), &ctx, ember::cstr(key), images.data(), images.size());
  }
  ember_status_t table(const std::string& key, const std::string& columns, const std::string& rows, std::int64_t step) {
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, 0};
    return media().log_table(p_.self(), &ctx, ember::cstr(key), ember::cstr(columns), ember::cstr(rows));
  }
  ember_status_t hist(const std::string& key, const DLTensor& values, std::int32_t bins, std::int64_t step) {
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, 0};
    return media().log_histogram(p_.self(), &ctx, ember::cstr(key), &values, bins);
  }
  void ok(ember_status_t rc, const char* what) { p_.check(rc, what); }
  std::string error() const { return p_.last_error(); }

 private:
  LoadedPlugin p_;
};

std::string base_config(const Server& s, const std::string& id, const std::string& spool, const std::string& extra = "") {
  return R"({"project": "proj", "id": ")" + id + R"(", "base_url": ")" + s.url() + R"(", "spool_dir": ")" + spool +
         R"(", "retry_initial_s": 0.05, "retry_max_s": 0.2, "finalize_timeout_s": 20)" + extra + "}";
}

std::string all_files_text(const fs::path& dir) {
  std::string s;
  if (!fs::exists(dir)) return s;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) s += ember::test::read_file(e.path());
  return s;
}

// A DLPack view of host memory (shape borrowed from the caller).
template <class T>
DLTensor view_of(const std::vector<T>& data, std::vector<std::int64_t>& shape, DLDataType dtype) {
  DLTensor t{};
  t.data = const_cast<T*>(data.data());
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int32_t>(shape.size());
  t.dtype = dtype;
  t.shape = shape.data();
  return t;
}
constexpr DLDataType kU8{kDLUInt, 8, 1}, kF32{kDLFloat, 32, 1}, kI32{kDLInt, 32, 1};

// Decode a PNG with libpng into packed rows of its own channel count.
std::vector<std::uint8_t> decode_png(const std::string& bytes, std::uint32_t& w, std::uint32_t& h, std::uint32_t& c) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  BOOST_REQUIRE_MESSAGE(png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()), img.message);
  w = img.width, h = img.height, c = PNG_IMAGE_SAMPLE_CHANNELS(img.format);
  std::vector<std::uint8_t> px(PNG_IMAGE_SIZE(img));
  BOOST_REQUIRE_MESSAGE(png_image_finish_read(&img, nullptr, px.data(), 0, nullptr), img.message);
  return px;
}

std::uint32_t be32(const std::string& b, std::size_t at) {
  auto u = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + i])); };
  return u(0) << 24 | u(1) << 16 | u(2) << 8 | u(3);
}

// The history row holding key (the first), or an empty object.
json::object row_with(const json::object& run, const std::string& key) {
  for (auto& r : run.at("history").as_array())
    if (r.as_object().contains(key)) return r.as_object();
  return {};
}

std::size_t rows_with(const json::object& run, const std::string& key) {
  std::size_t n = 0;
  for (auto& r : run.at("history").as_array()) n += r.as_object().contains(key);
  return n;
}

std::string run_file_key(const std::string& run, const std::string& path) {
  return "runs/ember-test/proj/" + run + "/" + path;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb)

BOOST_AUTO_TEST_CASE(history_rows_carry_global_step_and_summary_follows_define_metric) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "run00001", spool.path().string(),
                           R"(, "tags": ["a", "b"], "name": "nice", "define_metric": {"val_accuracy": {"summary": "max"}})"));
    w.hparams(R"({"lr": 0.01, "layers": [64, 32]})");
    for (int i = 0; i < 5; ++i) w.log(i * 10, {{"loss", 1.0 / (i + 1)}, {"val_accuracy", i == 2 ? 0.9 : 0.5 + 0.01 * i}});
    w.log(50, {{"weird", std::nan("")}});
    w.finalize();
  }
  BOOST_TEST_MESSAGE(t.joined());
  json::object run = srv.run("run00001");
  BOOST_REQUIRE(!run.empty());
  BOOST_TEST(run.at("entity").as_string() == "ember-test");  // null entity -> the viewer's
  BOOST_TEST(run.at("displayName").as_string() == "nice");
  BOOST_TEST(run.at("tags").as_array().size() == 2u);
  auto& hist = run.at("history").as_array();
  BOOST_REQUIRE_EQUAL(hist.size(), 6u);
  for (std::size_t i = 0; i < hist.size(); ++i) {
    auto& row = hist[i].as_object();
    BOOST_TEST(row.at("_step").to_number<std::int64_t>() == static_cast<std::int64_t>(i));
    BOOST_TEST(row.at("trainer/global_step").to_number<std::int64_t>() == static_cast<std::int64_t>(i * 10));
    BOOST_TEST(row.contains("_runtime"));
    BOOST_TEST(row.at("_timestamp").to_number<double>() > 1.6e9);
    BOOST_TEST(row.contains("epoch"));
  }
  BOOST_TEST(hist[5].at("weird").as_string() == "NaN");  // sent as the bare NaN token
  auto& summary = run.at("summary").as_object();
  BOOST_TEST(summary.at("val_accuracy").at("max").as_double() == 0.9);
  BOOST_TEST(summary.at("loss").as_double() == 0.2);
  BOOST_TEST(summary.at("_step").to_number<std::int64_t>() == 5);
  BOOST_TEST(summary.at("_wandb").as_object().contains("runtime"));
  json::object config = json::parse(run.at("config").as_string()).as_object();
  BOOST_TEST(config.at("lr").at("value").as_double() == 0.01);
  BOOST_TEST(config.at("lr").at("desc").is_null());
  auto& m = config.at("_wandb").at("value").at("m").as_array();
  bool found = false;
  for (auto& e : m)
    if (e.as_object().contains("1") && e.at("1").as_string() == "val_accuracy") {
      found = true;
      BOOST_TEST(json::serialize(e.at("7")) == "[2]");
    }
  BOOST_TEST(found);
  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(run.at("exitcode").to_number<int>() == 0);
  auto& files = run.at("files").as_object();
  BOOST_TEST(files.contains("wandb-metadata.json"));
  BOOST_TEST(files.contains("config.yaml"));
  BOOST_TEST(files.contains("wandb-summary.json"));
  BOOST_TEST(files.at("config.yaml").as_string().find("wandb_version: 1") == 0u);
  auto& events = run.at("events").as_array();
  BOOST_REQUIRE(!events.empty());
  BOOST_TEST(events[0].as_object().contains("system.proc.memory.rssMB"));
  BOOST_TEST(events[0].as_object().contains("system.cpu"));
  BOOST_TEST(t.joined().find(kKey) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(failed_run_completes_with_exitcode_1) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "run00002", spool.path().string()));
    w.log(1, {{"loss", 1}});
    w.finalize("failed");
  }
  json::object run = srv.run("run00002");
  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(run.at("exitcode").to_number<int>() == 1);
}

BOOST_AUTO_TEST_CASE(wrong_key_gives_one_line_no_retry_storm_and_the_spool_is_sent_at_next_start) {
  Env env("wrongwrongwrongwrongwrongwrongwrongwrong");
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "run00003", spool.path().string()));
    for (int i = 0; i < 20; ++i) w.log(i, {{"loss", i * 0.5}});
    w.finalize();
  }
  std::size_t auth_lines = 0;
  for (auto& l : t.all_lines())
    if (l.find("401") != std::string::npos) ++auth_lines;
  BOOST_TEST(auth_lines == 1u);
  std::size_t requests = srv.state().at("requests").as_array().size();
  BOOST_TEST(requests <= 2u);  // Viewer refused, then nothing
  BOOST_TEST(srv.run("run00003").empty());
  BOOST_TEST(t.joined().find("wrongwrong") == std::string::npos);
  BOOST_TEST(all_files_text(spool.path()).find("wrongwrong") == std::string::npos);

  // The next start with the right key sends the spooled run first.
  ::setenv("WANDB_API_KEY", kKey.c_str(), 1);
  Trainer t2;
  {
    Wandb w(t2, base_config(srv, "run00004", spool.path().string()));
    w.log(0, {{"loss", 1}});
    w.finalize();
  }
  json::object old = srv.run("run00003");
  BOOST_REQUIRE(!old.empty());
  BOOST_TEST(old.at("history").as_array().size() == 20u);
  BOOST_TEST(old.at("complete").as_bool());
  BOOST_TEST(old.at("summary").at("loss").as_double() == 9.5);
}

BOOST_AUTO_TEST_CASE(outage_in_the_middle_loses_nothing) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "run00005", spool.path().string(), R"(, "post_interval_s": 0.02)"));
    for (int i = 0; i < 10; ++i) w.log(i, {{"loss", i}});
    srv.wait_for("history", "run00005", 10);
    srv.control(R"({"fail": {"status": 503, "count": 6, "path_regex": "file_stream"}})");
    for (int i = 10; i < 20; ++i) w.log(i, {{"loss", i}});
    srv.wait_for("injected", "", 6);
    for (int i = 20; i < 30; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  json::object run = srv.run("run00005");
  auto& hist = run.at("history").as_array();
  BOOST_REQUIRE_EQUAL(hist.size(), 30u);
  for (std::size_t i = 0; i < hist.size(); ++i)
    BOOST_TEST(hist[i].at("trainer/global_step").to_number<std::int64_t>() == static_cast<std::int64_t>(i));
  auto& offs = run.at("history_offsets").as_array();
  BOOST_TEST(offs.back().to_number<std::int64_t>() == 29);
  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(t.joined().find(kKey) == std::string::npos);
}

// A reader for run-<id>.wandb written from the format notes: header, 32 KiB blocks, chunks with
// CRC-32 over type + data.
std::vector<std::string> decode_wandb_file(const std::string& f) {
  BOOST_REQUIRE(f.size() >= 7);
  BOOST_REQUIRE(f.substr(0, 4) == ":W&B");
  BOOST_REQUIRE_EQUAL(static_cast<unsigned char>(f[4]), 0xE1);
  BOOST_REQUIRE_EQUAL(static_cast<unsigned char>(f[5]), 0xBE);
  BOOST_REQUIRE_EQUAL(f[6], 0);
  std::vector<std::string> out;
  std::string cur;
  std::size_t off = 7;
  while (off + 7 <= f.size()) {
    std::size_t left = 32768 - off % 32768;
    if (left < 7) {
      off += left;
      continue;
    }
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(f[off + i])); };
    std::uint32_t crc = b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24;
    std::size_t len = b(4) | b(5) << 8;
    unsigned char type = static_cast<unsigned char>(f[off + 6]);
    BOOST_REQUIRE(len + 7 <= left);
    uLong c = ::crc32(0L, &type, 1);
    c = ::crc32(c, reinterpret_cast<const Bytef*>(f.data() + off + 7), static_cast<uInt>(len));
    BOOST_REQUIRE_EQUAL(static_cast<std::uint32_t>(c), crc);
    cur.append(f, off + 7, len);
    if (type == 1 || type == 4) out.push_back(cur), cur.clear();
    off += 7 + len;
  }
  return out;
}

BOOST_AUTO_TEST_CASE(offline_run_makes_no_request_decodes_and_syncs_the_same_rows) {
  Env env("");
  ::unsetenv("WANDB_API_KEY");
  Server srv;
  TempDir dir("wandb-offline");
  Trainer t;
  {
    Wandb w(t, R"({"mode": "offline", "project": "proj", "id": "off00001", "save_dir": ")" + dir.path().string() +
                   R"(", "base_url": ")" + srv.url() + R"("})");
    w.hparams(R"({"lr": 0.5})");
    // Enough rows that records span several 32 KiB blocks.
    for (int i = 0; i < 2000; ++i) w.log(i, {{"loss", 1.0 / (i + 1)}, {"acc", i * 0.001}});
    w.finalize();
  }
  BOOST_TEST(srv.state().at("requests").as_array().empty());
  fs::path run_dir;
  for (auto& e : fs::directory_iterator(dir.path() / "wandb")) run_dir = e.path();
  BOOST_REQUIRE(run_dir.filename().string().rfind("offline-run-", 0) == 0);
  BOOST_TEST(fs::exists(run_dir / "files" / "wandb-summary.json"));
  BOOST_TEST(fs::exists(run_dir / "files" / "wandb-metadata.json"));
  BOOST_TEST(fs::exists(run_dir / "files" / "config.yaml"));
  std::string bytes = ember::test::read_file(run_dir / "run-off00001.wandb");
  BOOST_TEST(bytes.size() > 32768u);
  auto recs = decode_wandb_file(bytes);
  std::vector<int> types;
  int history = 0;
  for (auto& r : recs) {
    int type = wb::decode_record(r).type;
    types.push_back(type);
    if (type == wb::kHistory) ++history;
  }
  BOOST_TEST(history == 2000);
  BOOST_TEST(types.front() == wb::kHeader);
  BOOST_TEST(types[1] == wb::kRun);
  BOOST_TEST(types.back() == wb::kFooter);
  BOOST_TEST(std::count(types.begin(), types.end(), wb::kExit) == 1);
  BOOST_TEST(std::count(types.begin(), types.end(), wb::kSummary) == 1);

  // `ember wandb sync DIR` is read_offline_dir + upload_run.
  wb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  wb::Api api(o);
  wb::upload_run(api, wb::read_offline_dir(run_dir));
  json::object run = srv.run("off00001");
  auto& hist = run.at("history").as_array();
  BOOST_REQUIRE_EQUAL(hist.size(), 2000u);
  BOOST_TEST(hist[7].at("_step").to_number<int>() == 7);
  BOOST_TEST(hist[7].at("trainer/global_step").to_number<int>() == 7);
  BOOST_TEST(hist[7].at("loss").as_double() == 1.0 / 8);
  BOOST_TEST(run.at("summary").at("acc").as_double() == 1.999);
  BOOST_TEST(json::parse(run.at("config").as_string()).at("lr").at("value").as_double() == 0.5);
  BOOST_TEST(run.at("complete").as_bool());
}

BOOST_AUTO_TEST_CASE(checkpoint_artifacts_get_latest_and_best_and_download_matches) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool"), ck("wandb-ckpt");
  std::string d = ck.path().string();
  std::string best = d + "/epoch=0-step=10.ckpt", last = d + "/last.ckpt";
  ember::test::write_file(best, std::string(5000, 'B') + "best");
  ember::test::write_file(last, std::string(7000, 'L') + "last");
  ember::test::write_file(ck.path() / "checkpoints.json",
                          R"({"best": ")" + best + R"(", "best_score": 0.25, "last": ")" + last +
                              R"(", "monitor": "val_loss", "mode": "min", "top_k": [{"url": ")" + best +
                              R"(", "score": 0.25, "epoch": 0, "step": 10}]})");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "run00006", spool.path().string(), R"(, "log_model": "all")"));
    w.log(10, {{"val_loss", 0.25}});
    w.checkpoint(best);
    w.checkpoint(last);
    w.hook(EMBER_HOOK_ID_on_train_epoch_start);
    w.finalize();
  }
  json::object st = srv.state();
  BOOST_REQUIRE_EQUAL(st.at("collections").as_array().size(), 1u);
  auto& col = st.at("collections").as_array()[0].as_object();
  BOOST_TEST(col.at("name").as_string() == "model-run00006");
  BOOST_TEST(col.at("versions").as_array().size() == 2u);
  wb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  wb::Api api(o);
  auto got = wb::download_artifact(api, "ember-test/proj/model-run00006:best");
  BOOST_TEST(got.version == "v0");
  BOOST_TEST(got.files.at("model.ckpt") == ember::test::read_file(best));
  BOOST_TEST(got.metadata.at("score").as_double() == 0.25);
  BOOST_TEST(got.metadata.at("monitor").as_string() == "val_loss");
  auto latest = wb::download_artifact(api, "ember-test/proj/model-run00006:latest");
  BOOST_TEST(latest.version == "v1");
  BOOST_TEST(latest.files.at("model.ckpt") == ember::test::read_file(last));
  BOOST_TEST(t.joined().find(kKey) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(rank_above_zero_and_disabled_send_nothing) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  ::setenv("RANK", "1", 1);
  {
    Wandb w(t, base_config(srv, "run00007", spool.path().string()));
    w.log(1, {{"loss", 1}});
    w.finalize();
  }
  ::unsetenv("RANK");
  {
    Wandb w(t, base_config(srv, "run00008", spool.path().string(), R"(, "mode": "disabled")"));
    w.log(1, {{"loss", 1}});
    std::vector<float> v{1, 2, 3};
    std::vector<std::int64_t> shape{3};
    DLTensor values = view_of(v, shape, kF32);
    w.ok(w.hist("parameters/w", values, 64, 1), "log_histogram");
    w.ok(w.table("t", R"(["a"])", R"([[1]])", 1), "log_table");
    w.finalize();
  }
  BOOST_TEST(srv.state().at("requests").as_array().empty());
}

namespace {
// The server's history of a run: offsets 0..n-1 with no gap, and _step equal to the offset
// (one client logged every row), _runtime never going back.
void check_contiguous_history(Server& srv, const std::string& id, std::size_t n) {
  json::object run = srv.run(id);
  BOOST_REQUIRE(!run.empty());
  auto& hist = run.at("history").as_array();
  auto& offsets = run.at("history_offsets").as_array();
  BOOST_REQUIRE_EQUAL(hist.size(), n);
  double rt = -1;
  for (std::size_t i = 0; i < n; ++i) {
    BOOST_TEST(offsets[i].to_number<std::int64_t>() == static_cast<std::int64_t>(i));
    BOOST_TEST(hist[i].at("_step").to_number<std::int64_t>() == static_cast<std::int64_t>(i), "row " << i);
    BOOST_TEST(hist[i].at("loss").to_number<double>() == static_cast<double>(i), "row " << i);
    double r = hist[i].at("_runtime").to_number<double>();
    BOOST_TEST(r >= rt, "row " << i << " _runtime " << r << " after " << rt);
    rt = r;
  }
  BOOST_TEST(run.at("summary").at("_step").to_number<std::int64_t>() == static_cast<std::int64_t>(n - 1));
}

// The first part of a run: rows 0..4 logged online, then finished.
void first_part(Server& srv, const std::string& id, const fs::path& spool) {
  Trainer t;
  Wandb w(t, base_config(srv, id, spool.string()));
  for (int i = 0; i < 5; ++i) w.log(i, {{"loss", i}});
  w.finalize();
}
}  // namespace

BOOST_AUTO_TEST_CASE(resume_allow_continues_after_the_rows_the_server_has) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  first_part(srv, "res00001", spool.path());
  Trainer t;
  {
    Wandb w(t, base_config(srv, "res00001", spool.path().string(), R"(, "resume": "allow")"));
    for (int i = 5; i < 8; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  BOOST_TEST(t.joined().find("resuming run res00001 at _step 5") != std::string::npos, t.joined());
  check_contiguous_history(srv, "res00001", 8);
}

// W&B refuses the first requests: rows logged meanwhile are numbered locally, and moved after the
// server's rows once RunResumeStatus answers.
BOOST_AUTO_TEST_CASE(resume_when_the_server_answers_late_moves_rows_logged_before_after_its_rows) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  first_part(srv, "res00002", spool.path());
  srv.control(R"({"fail": {"status": 503, "count": 2, "op_regex": "Viewer"}})");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "res00002", spool.path().string(), R"(, "resume": "allow", "retry_initial_s": 0.3)"));
    w.log(5, {{"loss", 5}});           // starts the run
    srv.wait_for("injected", "", 1);  // the worker is in its backoff now
    for (int i = 6; i < 9; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  check_contiguous_history(srv, "res00002", 9);
}

// W&B is down for the whole resumed run: the spool does not know where the run continues; the next
// start (or `ember wandb sync`) asks the server and sends the rows after its rows.
BOOST_AUTO_TEST_CASE(resume_spooled_while_the_server_was_down_is_sent_after_the_rows_it_has) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  first_part(srv, "res00003", spool.path());
  srv.control(R"({"fail": {"status": 503, "count": 100000}})");
  Trainer t;
  {
    Wandb w(t, base_config(srv, "res00003", spool.path().string(),
                           R"(, "resume": "allow", "finalize_timeout_s": 0.5, "sync_spool_on_start": false)"));
    for (int i = 5; i < 10; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  BOOST_TEST(t.joined().find("5 history rows") != std::string::npos, t.joined());
  BOOST_REQUIRE_EQUAL(srv.run("res00003").at("history").as_array().size(), 5u);
  srv.control(R"({"fail": null})");
  Trainer t2;
  {
    Wandb w(t2, base_config(srv, "res00004", spool.path().string()));
    w.finalize();
  }
  BOOST_TEST(t2.joined().find("sent run res00003") != std::string::npos, t2.joined());
  check_contiguous_history(srv, "res00003", 10);
}

BOOST_AUTO_TEST_CASE(unreachable_server_for_the_whole_run_spools_and_says_so) {
  Env env;
  TempDir spool("wandb-spool");
  Trainer t;
  {
    // Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    Wandb w(t, R"({"project": "proj", "id": "run00009", "base_url": "http://127.0.0.1:9", "spool_dir": ")" +
                   spool.path().string() + R"(", "retry_initial_s": 0.05, "retry_max_s": 0.1, "finalize_timeout_s": 0.5})");
    for (int i = 0; i < 25; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  std::string lines = t.joined();
  BOOST_TEST(lines.find("25 history rows") != std::string::npos, lines);
  BOOST_TEST(lines.find(kKey) == std::string::npos);
  std::string spooled = all_files_text(spool.path());
  BOOST_TEST(spooled.find("\"trainer/global_step\": 24") != std::string::npos);
  BOOST_TEST(spooled.find(kKey) == std::string::npos);
}

// A server that stalls every request (0.3 s) still gets every row, in order: the training
// thread hands rows over and goes on, the worker waits out the stalls. (The figures for this
// case, the training thread's cost per row and rows/s end to end, are bench_wandb's: meson test
// --benchmark bench_wandb.)
BOOST_AUTO_TEST_CASE(stalling_server_gets_every_row_in_order) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  srv.control(R"({"stall_seconds": 0.3})");
  const int rows = 2000;
  std::vector<std::pair<std::string, double>> ms;
  for (int k = 0; k < 10; ++k) ms.emplace_back("metric_" + std::to_string(k), 0.0);
  {
    Wandb w(t, base_config(srv, "stall001", spool.path().string(), R"(, "finalize_timeout_s": 120, "stats_interval_s": 0)"));
    for (int i = 0; i < rows; ++i) {
      for (auto& m : ms) m.second = i * 0.5;
      w.log(i, ms);
    }
    w.finalize();
  }
  json::object run = srv.run("stall001");
  const json::array& history = run.at("history").as_array();
  BOOST_REQUIRE_EQUAL(history.size(), static_cast<std::size_t>(rows));
  for (int i : {0, 1, rows / 2, rows - 1}) {
    const json::object& row = history[static_cast<std::size_t>(i)].as_object();
    BOOST_TEST(row.at("trainer/global_step").to_number<int>() == i);
    BOOST_TEST(row.at("metric_9").to_number<double>() == i * 0.5);
  }
}

// ---- ember.media/1 ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(image_is_a_png_run_file_named_by_step_and_sha256_with_an_image_file_row) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  std::vector<std::uint8_t> px(5 * 7 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 37 % 256);
  std::vector<std::int64_t> shape{5, 7, 3};  // HWC
  DLTensor img = view_of(px, shape, kU8);
  {
    Wandb w(t, base_config(srv, "media001", spool.path().string()));
    w.log(3, {{"loss", 1}});
    w.ok(w.image("samples", {{&img, nullptr, 0, ember::cstr("a caption")}}, 3), "log_image");
    std::fill(px.begin(), px.end(), 0);  // the view was borrowed: the plugin kept its own copy
    w.finalize();
  }
  json::object run = srv.run("media001");
  json::object row = row_with(run, "samples");
  BOOST_REQUIRE(!row.empty());
  BOOST_TEST(row.at("trainer/global_step").to_number<int>() == 3);
  const json::object& v = row.at("samples").as_object();
  BOOST_TEST(v.at("_type").as_string() == "image-file");
  BOOST_TEST(v.at("format").as_string() == "png");
  BOOST_TEST(v.at("width").to_number<int>() == 7);
  BOOST_TEST(v.at("height").to_number<int>() == 5);
  BOOST_TEST(v.at("caption").as_string() == "a caption");
  const std::string sha(v.at("sha256").as_string());
  const std::string path(v.at("path").as_string());
  BOOST_TEST(sha.size() == 64u);
  BOOST_TEST(path == "media/images/samples_" + std::to_string(row.at("_step").to_number<int>()) + "_" + sha.substr(0, 20) + ".png");
  // The file reached the server by PUT; the server's own SHA-256 of it matches the row.
  BOOST_TEST(run.at("file_sha256").at(path).as_string() == sha);
  BOOST_TEST(run.at("file_sizes").at(path).to_number<std::size_t>() == v.at("size").to_number<std::size_t>());
  BOOST_TEST(srv.request_log().find("\"method\": \"PUT\", \"path\": \"/storage/" + run_file_key("media001", path)) != std::string::npos);
  bool listed = false;
  for (auto& u : run.at("uploaded").as_array()) listed = listed || u.as_string() == path;
  BOOST_TEST(listed);
  // A PNG: signature, IHDR with the size, and libpng decodes the original pixels.
  std::string png = srv.blob(run_file_key("media001", path));
  BOOST_TEST(wb::sha256_hex(png) == sha);
  BOOST_REQUIRE(png.size() > 33u);
  BOOST_TEST(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  BOOST_TEST(png.substr(12, 4) == "IHDR");
  BOOST_TEST(be32(png, 16) == 7u);
  BOOST_TEST(be32(png, 20) == 5u);
  std::uint32_t w = 0, h = 0, c = 0;
  auto decoded = decode_png(png, w, h, c);
  BOOST_TEST(c == 3u);
  for (std::size_t i = 0; i < decoded.size(); ++i)
    BOOST_REQUIRE_EQUAL(static_cast<int>(decoded[i]), static_cast<int>(i * 37 % 256));
  BOOST_TEST(run.at("summary").at("samples").at("_type").as_string() == "image-file");
}

BOOST_AUTO_TEST_CASE(several_images_are_one_images_separated_value_and_png_bytes_pass_unchanged) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  // A float CHW image (3 x 4 x 6), values in [0, 1] except two clamped ones.
  std::vector<float> f(3 * 4 * 6);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i) / static_cast<float>(f.size());
  f[1] = 1.5f, f[2] = -0.25f;
  std::vector<std::int64_t> chw{3, 4, 6};
  DLTensor fimg = view_of(f, chw, kF32);
  std::vector<std::uint8_t> gray{0, 50, 100, 150, 200, 250};
  std::string png = ember::png::encode(gray.data(), 3, 2, 1);
  {
    Wandb w(t, base_config(srv, "media002", spool.path().string()));
    w.ok(w.image("grid", {{&fimg, nullptr, 0, ember::cstr("first")}, {nullptr, png.data(), png.size(), {}}}, 8), "log_image");
    w.finalize();
  }
  json::object run = srv.run("media002");
  json::object row = row_with(run, "grid");
  BOOST_REQUIRE(!row.empty());
  const json::object& v = row.at("grid").as_object();
  BOOST_TEST(v.at("_type").as_string() == "images/separated");
  BOOST_TEST(v.at("count").to_number<int>() == 2);
  BOOST_TEST(v.at("width").to_number<int>() == 6);
  BOOST_TEST(v.at("height").to_number<int>() == 4);
  BOOST_TEST(v.at("format").as_string() == "png");
  auto& caps = v.at("captions").as_array();
  BOOST_REQUIRE_EQUAL(caps.size(), 2u);
  BOOST_TEST(caps[0].as_string() == "first");
  BOOST_TEST(caps[1].is_null());
  auto& names = v.at("filenames").as_array();
  BOOST_REQUIRE_EQUAL(names.size(), 2u);
  const std::string step = std::to_string(row.at("_step").to_number<int>());
  BOOST_TEST(names[0].as_string() == "media/images/grid_" + step + "_0.png");
  BOOST_TEST(names[1].as_string() == "media/images/grid_" + step + "_1.png");
  // The PNG given as bytes is uploaded byte for byte.
  BOOST_TEST(srv.blob(run_file_key("media002", std::string(names[1].as_string()))) == png);
  // The float CHW image: channels moved last, values scaled by 255 and rounded, clamped.
  std::uint32_t w = 0, h = 0, c = 0;
  auto px = decode_png(srv.blob(run_file_key("media002", std::string(names[0].as_string()))), w, h, c);
  BOOST_REQUIRE(w == 6u && h == 4u && c == 3u);
  auto expect = [&](std::size_t y, std::size_t x, std::size_t k) {
    float val = f[k * 24 + y * 6 + x];
    return val <= 0 ? 0 : val >= 1 ? 255 : static_cast<int>(std::lround(val * 255.0));
  };
  for (std::size_t y = 0; y < 4; ++y)
    for (std::size_t x = 0; x < 6; ++x)
      for (std::size_t k = 0; k < 3; ++k) BOOST_REQUIRE_EQUAL(static_cast<int>(px[(y * 6 + x) * 3 + k]), expect(y, x, k));
  BOOST_TEST(static_cast<int>(px[3]) == 255);  // f[1] = 1.5: pixel (0, 1), channel 0
  BOOST_TEST(static_cast<int>(px[6]) == 0);    // f[2] = -0.25: pixel (0, 2), channel 0
}

BOOST_AUTO_TEST_CASE(table_is_a_table_json_run_file_with_a_table_file_row) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  const std::string columns = R"(["id", "label", "score"])";
  const std::string rows = R"([[1, "shirt", 0.5], [2, "coat", null], [3, "bag", true]])";
  {
    Wandb w(t, base_config(srv, "media003", spool.path().string()));
    w.ok(w.table("val/preds", columns, rows, 12), "log_table");
    w.finalize();
  }
  json::object run = srv.run("media003");
  json::object row = row_with(run, "val/preds");
  BOOST_REQUIRE(!row.empty());
  const json::object& v = row.at("val/preds").as_object();
  BOOST_TEST(v.at("_type").as_string() == "table-file");
  BOOST_TEST(v.at("ncols").to_number<int>() == 3);
  BOOST_TEST(v.at("nrows").to_number<int>() == 3);
  const std::string sha(v.at("sha256").as_string()), path(v.at("path").as_string());
  BOOST_TEST(path == "media/table/val/preds_" + std::to_string(row.at("_step").to_number<int>()) + "_" + sha.substr(0, 20) +
                         ".table.json");
  BOOST_TEST(run.at("file_sha256").at(path).as_string() == sha);
  std::string text = srv.blob(run_file_key("media003", path));
  BOOST_TEST(text.size() == v.at("size").to_number<std::size_t>());
  json::value file = json::parse(text);
  BOOST_TEST(file.at("columns") == json::parse(columns));
  BOOST_TEST(file.at("data") == json::parse(rows));
}

BOOST_AUTO_TEST_CASE(histograms_of_one_step_share_a_row_and_count_every_finite_value) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  std::vector<float> a(1000);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(static_cast<float>(i)) * 3.0f;
  a[10] = std::nanf(""), a[20] = std::numeric_limits<float>::infinity();
  std::vector<std::int64_t> a_shape{10, 100};
  DLTensor at = view_of(a, a_shape, kF32);
  std::vector<std::int32_t> b{5, 5, 5};
  std::vector<std::int64_t> b_shape{3};
  DLTensor bt = view_of(b, b_shape, kI32);
  std::vector<float> nan(4, std::nanf(""));
  std::vector<std::int64_t> nan_shape{4};
  DLTensor nt = view_of(nan, nan_shape, kF32);
  {
    Wandb w(t, base_config(srv, "media004", spool.path().string()));
    w.ok(w.hist("gradients/w", at, 64, 10), "log_histogram");
    w.ok(w.hist("gradients/b", bt, 64, 10), "log_histogram");
    w.ok(w.hist("gradients/nan", nt, 64, 10), "log_histogram");
    w.ok(w.hist("gradients/w", at, 8, 20), "log_histogram");
    BOOST_TEST(w.hist("gradients/w", at, 0, 30) == EMBER_E_INVALID);
    BOOST_TEST(w.error().find("num_bins 0") != std::string::npos, w.error());
    w.log(20, {{"loss", 0.5}});
    w.finalize();
  }
  json::object run = srv.run("media004");
  BOOST_TEST(rows_with(run, "gradients/w") == 2u);
  BOOST_TEST(rows_with(run, "gradients/nan") == 0u);
  json::object first = row_with(run, "gradients/w");
  BOOST_TEST(first.contains("gradients/b"));  // same step: one row, as wandb.watch's
  BOOST_TEST(first.at("trainer/global_step").to_number<int>() == 10);
  const json::object& h = first.at("gradients/w").as_object();
  BOOST_TEST(h.at("_type").as_string() == "histogram");
  auto& values = h.at("values").as_array();
  auto& bins = h.at("bins").as_array();
  BOOST_REQUIRE_EQUAL(values.size(), 64u);
  BOOST_REQUIRE_EQUAL(bins.size(), 65u);
  std::int64_t sum = 0;
  for (auto& x : values) sum += x.to_number<std::int64_t>();
  BOOST_TEST(sum == 998);  // numel minus the NaN and the infinity
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (float x : a)
    if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
  BOOST_TEST(bins.front().to_number<double>() == static_cast<double>(lo));
  BOOST_TEST(bins.back().to_number<double>() == static_cast<double>(hi));
  // One distinct value: torch.histc's range [v - 1, v + 1], every value in the middle bin.
  const json::object& hb = first.at("gradients/b").as_object();
  BOOST_TEST(hb.at("bins").as_array().front().to_number<double>() == 4.0);
  BOOST_TEST(hb.at("bins").as_array().back().to_number<double>() == 6.0);
  BOOST_TEST(hb.at("values").as_array()[32].to_number<int>() == 3);
  json::object second = row_with(run, "loss");
  BOOST_TEST(!second.contains("gradients/w"));
  std::int64_t sum8 = 0;
  for (auto& r : run.at("history").as_array())
    if (r.as_object().contains("gradients/w") && r.at("trainer/global_step").to_number<int>() == 20) {
      BOOST_TEST(r.at("gradients/w").at("values").as_array().size() == 8u);
      for (auto& x : r.at("gradients/w").at("values").as_array()) sum8 += x.to_number<std::int64_t>();
    }
  BOOST_TEST(sum8 == 998);
}

BOOST_AUTO_TEST_CASE(bad_images_are_refused_naming_key_index_and_the_expected_shapes) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  std::vector<std::uint8_t> px(2 * 2 * 2 * 2);
  std::vector<std::int64_t> four{2, 2, 2, 2}, two{2, 2}, five{5, 5, 5};
  std::vector<std::int32_t> ints(4);
  std::vector<std::uint8_t> cube(125);
  DLTensor dims = view_of(px, four, kU8), dtype = view_of(ints, two, kI32), chans = view_of(cube, five, kU8);
  std::string not_png = "GIF89a....";
  {
    Wandb w(t, base_config(srv, "media005", spool.path().string()));
    BOOST_TEST(w.image("bad", {{&dims, nullptr, 0, {}}}, 1) == EMBER_E_INVALID);
    std::string e = w.error();
    BOOST_TEST(e.find("log_image 'bad': image 0 has shape [2, 2, 2, 2] (4 dimensions)") != std::string::npos, e);
    BOOST_TEST(e.find("expected HW, CHW or HWC with C = 1, 3 or 4") != std::string::npos, e);
    BOOST_TEST(w.image("bad", {{&chans, nullptr, 0, {}}, {&dtype, nullptr, 0, {}}}, 1) == EMBER_E_INVALID);
    e = w.error();
    BOOST_TEST(e.find("image 0 has shape [5, 5, 5]") != std::string::npos, e);
    BOOST_TEST(w.image("bad", {{&dtype, nullptr, 0, {}}}, 1) == EMBER_E_INVALID);
    BOOST_TEST(w.error().find("image 0 has dtype int32; expected") != std::string::npos, w.error());
    BOOST_TEST(w.image("bad", {{nullptr, not_png.data(), not_png.size(), {}}}, 1) == EMBER_E_INVALID);
    BOOST_TEST(w.error().find("log_image 'bad': image 0: not a readable PNG") != std::string::npos, w.error());
    BOOST_TEST(w.table("bad", R"(["a", "b"])", R"([[1, 2], [3]])", 1) == EMBER_E_INVALID);
    BOOST_TEST(w.error().find("log_table 'bad': row 1 is 1 values; expected an array of 2 values") != std::string::npos, w.error());
    BOOST_TEST(w.table("bad", R"(["a")", R"([])", 1) == EMBER_E_INVALID);
    BOOST_TEST(w.error().find("columns_json is not valid JSON") != std::string::npos, w.error());
    w.log(1, {{"loss", 1}});
    w.finalize();
  }
  json::object run = srv.run("media005");
  BOOST_TEST(rows_with(run, "bad") == 0u);
  BOOST_TEST(rows_with(run, "loss") == 1u);
}

BOOST_AUTO_TEST_CASE(offline_media_go_to_files_and_sync_uploads_them) {
  Env env("");
  ::unsetenv("WANDB_API_KEY");
  Server srv;
  TempDir dir("wandb-offline");
  Trainer t;
  std::vector<std::uint8_t> px{0, 64, 128, 255};
  std::vector<std::int64_t> hw{2, 2};
  DLTensor img = view_of(px, hw, kU8);
  {
    Wandb w(t, R"({"mode": "offline", "project": "proj", "id": "offmedia", "save_dir": ")" + dir.path().string() +
                   R"(", "base_url": ")" + srv.url() + R"("})");
    w.log(1, {{"loss", 1}});
    w.ok(w.image("img", {{&img, nullptr, 0, {}}}, 1), "log_image");
    w.ok(w.table("tab", R"(["text"])", R"([["hello"]])", 1), "log_table");
    w.finalize();
  }
  BOOST_TEST(srv.state().at("requests").as_array().empty());
  fs::path run_dir;
  for (auto& e : fs::directory_iterator(dir.path() / "wandb")) run_dir = e.path();
  std::vector<std::string> media;
  for (auto& e : fs::recursive_directory_iterator(run_dir / "files" / "media"))
    if (e.is_regular_file()) media.push_back(fs::relative(e.path(), run_dir / "files").string());
  BOOST_REQUIRE_EQUAL(media.size(), 2u);
  std::set<std::string> listed;
  std::string img_path;
  for (auto& r : decode_wandb_file(ember::test::read_file(run_dir / "run-offmedia.wandb"))) {
    auto d = wb::decode_record(r);
    if (d.type == wb::kFiles) listed.insert(d.files.begin(), d.files.end());
    if (d.type == wb::kHistory)
      for (auto& [k, v] : d.items)
        if (k == "img") img_path = std::string(json::parse(v).at("path").as_string());
  }
  for (auto& m : media) BOOST_TEST(listed.count(m) == 1u, m);
  BOOST_TEST(fs::exists(run_dir / "files" / img_path));

  wb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  wb::Api api(o);
  wb::upload_run(api, wb::read_offline_dir(run_dir));
  json::object run = srv.run("offmedia");
  BOOST_TEST(run.at("file_sha256").at(img_path).as_string() == wb::sha256_hex(ember::test::read_file(run_dir / "files" / img_path)));
  BOOST_TEST(row_with(run, "img").at("img").at("_type").as_string() == "image-file");
  BOOST_TEST(row_with(run, "tab").at("tab").at("_type").as_string() == "table-file");
}

BOOST_AUTO_TEST_CASE(media_files_wait_in_the_spool_while_wandb_is_away) {
  Env env;
  TempDir spool("wandb-spool");
  Trainer t;
  std::vector<std::uint8_t> px{1, 2, 3, 4, 5, 6};
  std::vector<std::int64_t> hw{2, 3};
  DLTensor img = view_of(px, hw, kU8);
  {
    Wandb w(t, R"({"project": "proj", "id": "spmedia1", "base_url": "http://127.0.0.1:9", "spool_dir": ")" +
                   spool.path().string() + R"(", "retry_initial_s": 0.05, "retry_max_s": 0.1, "finalize_timeout_s": 0.5})");
    w.ok(w.image("img", {{&img, nullptr, 0, {}}}, 2), "log_image");
    w.finalize();
  }
  BOOST_TEST(t.joined().find("1 media files") != std::string::npos, t.joined());
  fs::path dir;
  for (auto& e : fs::directory_iterator(spool.path())) dir = e.path();
  std::size_t spooled = 0;
  for (auto& e : fs::directory_iterator(dir)) spooled += e.path().filename().string().rfind("file-media%2Fimages%2Fimg_0_", 0) == 0;
  BOOST_TEST(spooled == 1u);
  // `ember wandb sync DIR` sends it as the run file the row names.
  Server srv;
  struct LocalStore : wb::Store {
    std::optional<std::string> read(const std::string& u) override {
      if (!fs::exists(u)) return std::nullopt;
      return ember::test::read_file(u);
    }
    void write(const std::string&, std::string_view) override {}
    std::vector<std::string> list(const std::string& d) override {
      std::vector<std::string> out;
      for (auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
      std::sort(out.begin(), out.end());
      return out;
    }
    void remove(const std::string&) override {}
  } store;
  wb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  wb::Api api(o);
  wb::upload_run(api, wb::read_spool_dir(store, dir.string(), nullptr, nullptr));
  json::object run = srv.run("spmedia1");
  json::object row = row_with(run, "img");
  BOOST_REQUIRE(!row.empty());
  const std::string path(row.at("img").at("path").as_string());
  BOOST_TEST(run.at("file_sha256").at(path).as_string() == row.at("img").at("sha256").as_string());
}

BOOST_AUTO_TEST_SUITE_END()

// ---- hardening (issue 10: items 5-8, 15) -----------------------------------------------------------

namespace {

std::string construct_error(Trainer& t, const std::string& config) {
  try {
    Wandb w(t, config);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string mode_of(const fs::path& p) {
  char m[8];
  std::snprintf(m, sizeof m, "%03o", static_cast<unsigned>(fs::status(p).permissions() & fs::perms::all));
  return m;
}

// A spool run directory as a process with pid `pid` on this host would have left it.
void plant_spool_run(const fs::path& root, const std::string& id, std::int64_t pid, const std::string& base_url,
                     fs::perms mode) {
  fs::path dir = root / ("run-" + id + "-" + std::to_string(pid));
  fs::create_directories(dir);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::ofstream(dir / "meta.json") << json::serialize(json::object{
      {"project", "proj"}, {"run_id", id}, {"base_url", base_url}, {"pid", pid}, {"hostname", host}});
  std::ofstream(dir / "hist-000000000000000.jsonl") << "{\"loss\": 1, \"_step\": 0, \"_runtime\": 0.5, \"_timestamp\": 1700000000}\n";
  fs::permissions(dir, mode);
}

// A pid that no process has now: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st;
  ::waitpid(p, &st, 0);
  return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hardening)

BOOST_AUTO_TEST_CASE(argv_values_of_secret_looking_keys_are_redacted) {
  std::vector<std::string> in{"fit",  "--set", "s3.secret_access_key=AKIA/abc", "--set=logger.API_KEY=k1",
                              "AWS_SESSION_TOKEN=t1", "--api-token", "t2", "--set", "trainer.max_epochs=3",
                              "--config", "c.json", "db.Password=p", "aws.credentials=c"};
  auto out = wb::redact_argv(in);
  std::vector<std::string> want{"fit", "--set", "s3.secret_access_key=<redacted>", "--set=logger.API_KEY=<redacted>",
                                "AWS_SESSION_TOKEN=<redacted>", "--api-token", "<redacted>", "--set", "trainer.max_epochs=3",
                                "--config", "c.json", "db.Password=<redacted>", "aws.credentials=<redacted>"};
  BOOST_TEST(out == want, boost::test_tools::per_element());
}

// Run by run_metadata_args_hide_secret_values in a child process whose argv carries the secrets
// (wandb-metadata.json's "args" is the process's own argv); not run on its own.
BOOST_AUTO_TEST_CASE(argv_child, *boost::unit_test::disabled()) {
  const char* url = std::getenv("EMBER_ARGV_CHILD_URL");
  BOOST_REQUIRE(url);
  TempDir spool("wandb-spool");
  Trainer t;
  Wandb w(t, R"({"project": "proj", "id": "argv0001", "base_url": ")" + std::string(url) + R"(", "spool_dir": ")" +
                 spool.path().string() + R"("})");
  w.log(1, {{"loss", 1}});
  w.finalize();
}

BOOST_AUTO_TEST_CASE(run_metadata_args_hide_secret_values) {
  Env env;
  Server srv;
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  BOOST_REQUIRE(n > 0);
  self[n] = 0;
  ::setenv("EMBER_ARGV_CHILD_URL", srv.url().c_str(), 1);
  auto r = ember::test::run_process({self, "--run_test=hardening/argv_child", "--", "--set",
                                     "s3.secret_access_key=SEKRIT1", "--set=logger.api_key=SEKRIT2",
                                     "AWS_SESSION_TOKEN=SEKRIT3", "--set", "trainer.max_epochs=3"});
  ::unsetenv("EMBER_ARGV_CHILD_URL");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  std::string meta(srv.run("argv0001").at("files").at("wandb-metadata.json").as_string());
  BOOST_TEST(meta.find("SEKRIT") == std::string::npos, meta);
  BOOST_TEST(meta.find("s3.secret_access_key=<redacted>") != std::string::npos, meta);
  BOOST_TEST(meta.find("trainer.max_epochs=3") != std::string::npos, meta);
}

BOOST_AUTO_TEST_CASE(query_strings_of_urls_never_reach_messages) {
  // The exact shapes of ember::http's messages: a failed send quotes the request target, a parse
  // error the whole URL.
  BOOST_TEST(wb::strip_query_strings("http http://h:1: send PUT /b/k?X-Goog-Signature=abc&X-Goog-Date=1 failed: EPIPE") ==
             "http http://h:1: send PUT /b/k?... failed: EPIPE");
  BOOST_TEST(wb::strip_query_strings("invalid URL 'https://s.example/k?X-Amz-Signature=abc': bad") ==
             "invalid URL 'https://s.example/k?...': bad");
  BOOST_TEST(wb::strip_query_strings("is W&B down? retrying") == "is W&B down? retrying");
  // Api::put with an upload URL that does not parse: the error names it without its signature.
  wb::ApiOptions o;
  o.base_url = "http://127.0.0.1:9";
  o.api_key = kKey;
  wb::Api api(o);
  try {
    api.put("http://127.0.0.1:9/up load?X-Goog-Signature=SIGSECRET", "x");
    BOOST_FAIL("an invalid URL was accepted");
  } catch (const std::exception& e) {
    BOOST_TEST(std::string(e.what()).find("SIGSECRET") == std::string::npos, e.what());
    BOOST_TEST(std::string(e.what()).find("up load") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(plain_http_to_a_non_loopback_host_needs_allow_insecure_http_and_no_tls_check_warns) {
  Env env;
  Trainer t;
  std::string e = construct_error(t, R"({"mode": "disabled", "base_url": "http://wandb.example.invalid"})");
  BOOST_TEST(e.find("allow_insecure_http") != std::string::npos, e);
  BOOST_TEST(e.find(kKey) == std::string::npos);
  BOOST_TEST(construct_error(t, R"({"mode": "disabled", "base_url": "http://wandb.example.invalid", "allow_insecure_http": true})")
                 .empty());
  for (const char* ok : {"http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://wandb.example.invalid"})
    BOOST_TEST(construct_error(t, std::string(R"({"mode": "disabled", "base_url": ")") + ok + "\"}").empty(), ok);
  Trainer t2;
  BOOST_TEST(construct_error(t2, R"({"mode": "disabled", "base_url": "https://wandb.example.invalid", "verify_tls": false})").empty());
  BOOST_TEST(t2.joined().find("verify_tls is false") != std::string::npos, t2.joined());
}

BOOST_AUTO_TEST_CASE(project_with_control_characters_is_refused_and_path_segments_are_escaped) {
  Env env;
  Trainer t;
  std::string e = construct_error(t, R"({"mode": "disabled", "project": "a b\r\nX-Injected: yes"})");
  BOOST_TEST(e.find("control characters") != std::string::npos, e);
  BOOST_TEST(construct_error(t, R"({"mode": "disabled", "entity": "me\n"})").find("entity") != std::string::npos);
  BOOST_TEST(wb::encode_path_segment("a b/c?d\r\n") == "a%20b%2Fc%3Fd%0D%0A");

  // A project with a space, '/', '?' and '#' reaches file_stream as one segment.
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t2;
  {
    Wandb w(t2, R"({"project": "my proj/x?y#z", "id": "esc00001", "base_url": ")" + srv.url() + R"(", "spool_dir": ")" +
                    spool.path().string() + R"(", "retry_initial_s": 0.05, "retry_max_s": 0.1, "finalize_timeout_s": 10})");
    for (int i = 0; i < 3; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  json::object run = srv.run("esc00001");
  BOOST_REQUIRE_MESSAGE(!run.empty(), t2.joined());
  BOOST_TEST(run.at("project").as_string() == "my proj/x?y#z");
  BOOST_TEST(run.at("history").as_array().size() == 3u, t2.joined());
  BOOST_TEST(run.at("complete").as_bool());
}

BOOST_AUTO_TEST_CASE(default_spool_is_a_private_per_user_directory_with_private_files) {
  Env env;
  TempDir tmp("wandb-tmpdir");
  const char* old = std::getenv("TMPDIR");
  std::string saved = old ? old : "";
  ::setenv("TMPDIR", tmp.path().c_str(), 1);
  Trainer t;
  {
    Wandb w(t, R"({"project": "proj", "id": "priv0001", "base_url": "http://127.0.0.1:9", "retry_initial_s": 0.05,
                   "retry_max_s": 0.1, "finalize_timeout_s": 0.3, "stats_interval_s": 0})");
    for (int i = 0; i < 5; ++i) w.log(i, {{"loss", i}});
    w.finalize();
  }
  if (old) ::setenv("TMPDIR", saved.c_str(), 1);
  else ::unsetenv("TMPDIR");
  fs::path root = tmp.path() / ("ember-wandb-spool-" + std::to_string(::geteuid()));
  BOOST_REQUIRE_MESSAGE(fs::is_directory(root), t.joined());
  BOOST_TEST(mode_of(root) == "700");
  std::size_t files = 0;
  for (auto& run : fs::directory_iterator(root)) {
    BOOST_TEST(mode_of(run.path()) == "700", run.path());
    for (auto& f : fs::directory_iterator(run.path())) {
      BOOST_TEST(mode_of(f.path()) == "600", f.path());
      ++files;
    }
  }
  BOOST_TEST(files >= 3u);  // meta.json, a history segment, summary.json, exit.json
}

BOOST_AUTO_TEST_CASE(spool_root_open_to_others_is_refused_and_nothing_is_written_there) {
  Env env;
  TempDir tmp("wandb-tmpdir");
  fs::path root = tmp.path() / "shared-spool";
  fs::create_directories(root);
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);
  Trainer t;
  {
    Wandb w(t, R"({"project": "proj", "id": "open0001", "base_url": "http://127.0.0.1:9", "spool_dir": ")" + root.string() +
                   R"(", "retry_initial_s": 0.05, "retry_max_s": 0.1, "finalize_timeout_s": 0.3, "stats_interval_s": 0})");
    w.log(1, {{"loss", 1}});
    w.finalize();
  }
  BOOST_TEST(t.joined().find("mode 755") != std::string::npos, t.joined());
  BOOST_TEST(fs::is_empty(root));
}

// Leftover runs in the spool are sent at the next start only when they are ours: a run directory
// open to others is skipped, and a pid that kill() answers with EPERM (another user's process) is
// alive, not a leftover.
BOOST_AUTO_TEST_CASE(leftover_spool_sync_sends_only_private_runs_of_dead_processes) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  const auto priv = fs::perms::owner_all;
  const auto open = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                    fs::perms::others_exec;
  plant_spool_run(spool.path(), "good0001", dead_pid(), srv.url(), priv);
  plant_spool_run(spool.path(), "open0002", dead_pid(), srv.url(), open);
  bool root_user = ::geteuid() == 0;
  plant_spool_run(spool.path(), "eperm003", 1, srv.url(), priv);  // pid 1: init, not ours
  Trainer t;
  {
    Wandb w(t, base_config(srv, "next0001", spool.path().string()));
    w.log(1, {{"loss", 1}});
    w.finalize();
  }
  BOOST_TEST(srv.run("good0001").at("history").as_array().size() == 1u, t.joined());
  BOOST_TEST(srv.run("open0002").empty(), t.joined());
  BOOST_TEST(srv.run("eperm003").empty(), t.joined());
  BOOST_TEST(t.joined().find("open0002") != std::string::npos, t.joined());
  if (!root_user) BOOST_TEST(::kill(1, 0) != 0);  // the case the EPERM rule is for
}

BOOST_AUTO_TEST_SUITE_END()
