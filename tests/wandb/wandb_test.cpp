// wandb: the built plugin (.so) driven in-process by the plugin fixture against the W&B-protocol
// test server (tests/wandb/wandb_server.py, started per test on a free loopback port). No sleeps
// as synchronisation: finalize is synchronous, and mid-run conditions are awaited by polling the
// server's /_state with a bounded loop.
#define BOOST_TEST_MODULE wandb
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "plugin_fixture.hpp"
#include "wandb_api.hpp"
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
    w.finalize();
  }
  BOOST_TEST(srv.state().at("requests").as_array().empty());
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

// Figures, not assertions on time: the training thread's cost per row while the server stalls
// every request for 2 s, and the rows per second delivered end to end.
BOOST_AUTO_TEST_CASE(figures_hot_path_and_throughput_with_a_stalling_server) {
  Env env;
  Server srv;
  TempDir spool("wandb-spool");
  Trainer t;
  srv.control(R"({"stall_seconds": 2})");
  const int rows = 100000;
  std::vector<std::pair<std::string, double>> ms;
  for (int k = 0; k < 10; ++k) ms.emplace_back("metric_" + std::to_string(k), 0.0);
  double hot = 0, total = 0;
  {
    Wandb w(t, base_config(srv, "bench001", spool.path().string(), R"(, "finalize_timeout_s": 120, "stats_interval_s": 0)"));
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < rows; ++i) {
      for (auto& m : ms) m.second = i * 0.5;
      w.log(i, ms);
    }
    auto t1 = std::chrono::steady_clock::now();
    w.finalize();
    auto t2 = std::chrono::steady_clock::now();
    hot = std::chrono::duration<double>(t1 - t0).count();
    total = std::chrono::duration<double>(t2 - t0).count();
  }
  json::object run = srv.run("bench001");
  BOOST_REQUIRE_EQUAL(run.at("history").as_array().size(), static_cast<std::size_t>(rows));
  BOOST_TEST_MESSAGE("wandb figures: log_metrics (10 metrics) " << (hot / rows * 1e9) << " ns/row on the training thread "
                     "with every request stalled 2 s; " << (rows / total) << " rows/s delivered end to end (incl. the "
                     "stalls and the Python test server)");
  std::cout << "wandb figures: log_metrics " << (hot / rows * 1e9) << " ns/row; " << (rows / total) << " rows/s end to end\n";
}

BOOST_AUTO_TEST_SUITE_END()
