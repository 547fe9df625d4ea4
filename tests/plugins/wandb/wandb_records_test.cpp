// What the plugin writes and uploads, checked by readers that share nothing with it:
//  - offline runs: run-<id>.wandb decoded by wandb_records.py (LevelDB-style framing and CRC-32
//    from the format notes, records parsed with Debian's python3-protobuf from wandb_records.proto,
//    a schema written from W&B's published field numbers, and the checks `wandb sync` needs);
//  - checkpoint artifacts: committed only if the strict test server's own check (W&B's manifest
//    digest rule, every file's MD5 and size against the uploaded manifest) passes.
// The decoder needs protoc and python3-protobuf: skipped with the reason without them, failed
// under CI=true (needs_tools.hpp).
#define BOOST_TEST_MODULE wandb_records
#define BOOST_TEST_NO_MAIN
#include <algorithm>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <string>

#include "../../support/run_process.hpp"
#include "needs_tools.hpp"
#include "plugin_fixture.hpp"
#include "wandb_api.hpp"
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
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

class Wandb {
 public:
  Wandb(FakeTrainer& t, const std::string& config) : p_(lib(), config, t) {}
  void log(std::int64_t step, std::vector<std::pair<std::string, double>> ms) {
    std::vector<ember_metric_t> raw;
    for (auto& m : ms) raw.push_back({ember::cstr(m.first), m.second});
    ember_log_context_t ctx{sizeof(ember_log_context_t), EMBER_STAGE_FIT, step, 0};
    p_.check(p_.logger().log_metrics(p_.self(), &ctx, raw.data(), raw.size()), "log_metrics");
  }
  void hparams(const std::string& j) { p_.check(p_.logger().log_hyperparams(p_.self(), ember::cstr(j)), "log_hyperparams"); }
  void checkpoint(const std::string& url) {
    p_.check(p_.logger().after_save_checkpoint(p_.self(), ember::cstr(url)), "after_save_checkpoint");
  }
  void hook(ember_hook_id_t id) { p_.call(id, ember::test::hook_args(EMBER_STAGE_FIT)); }
  void finalize(const char* status = "success") { p_.check(p_.logger().finalize(p_.self(), ember::cstr(status)), "finalize"); }

 private:
  LoadedPlugin p_;
};

// protoc and python3-protobuf for Debian's python3 (what wandb_records.py compiles and imports).
const ember::test::tools::Needs kDecoder{[]() -> std::string {
  if (ember::test::tools::find_on_path("protoc").empty())
    return "protoc is not on PATH (Debian package protobuf-compiler; scripts/bootstrap installs it)";
  if (ember::test::run_process({"/usr/bin/python3", "-c", "import google.protobuf"}).exit_code != 0)
    return "/usr/bin/python3 cannot import google.protobuf (Debian package python3-protobuf; scripts/bootstrap installs it)";
  return "";
}};

ember::test::ProcessResult decode(const fs::path& run_dir) {
  return ember::test::run_process({"/usr/bin/python3", ember::test::require_env("EMBER_WANDB_RECORDS"), run_dir.string()});
}

fs::path only_run_dir(const fs::path& save_dir) {
  fs::path run_dir;
  int n = 0;
  for (auto& e : fs::directory_iterator(save_dir / "wandb"))
    if (e.is_directory()) run_dir = e.path(), ++n;
  BOOST_REQUIRE_EQUAL(n, 1);
  return run_dir;
}

// An offline run of 2000 rows (records span several 32 KiB blocks) with a config.
fs::path offline_run(const TempDir& dir, const std::string& id) {
  ember::test::wandb::CleanEnv env("");
  ::unsetenv("WANDB_API_KEY");
  FakeTrainer t;
  {
    Wandb w(t, R"({"mode": "offline", "project": "proj", "id": ")" + id + R"(", "save_dir": ")" + dir.path().string() + R"("})");
    w.hparams(R"({"lr": 0.5, "layers": [64, 32]})");
    for (int i = 0; i < 2000; ++i) w.log(i, {{"loss", 1.0 / (i + 1)}, {"acc", i * 0.001}});
    w.finalize();
  }
  return only_run_dir(dir.path());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb_records)

BOOST_AUTO_TEST_CASE(offline_run_file_is_one_wandb_sync_reads_decoded_with_wandbs_schema, *boost::unit_test::precondition(kDecoder)) {
  kDecoder.require();
  TempDir dir("wandb-records");
  fs::path run_dir = offline_run(dir, "rec00001");
  auto r = decode(run_dir);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe().substr(0, 3000));
  json::object out = json::parse(r.out).as_object();
  BOOST_TEST(out.at("file").as_string() == "run-rec00001.wandb");
  const auto& recs = out.at("records").as_array();
  std::vector<std::string> types;
  for (auto& x : recs) types.emplace_back(x.at("type").as_string());
  BOOST_TEST(types.front() == "header");
  BOOST_TEST(types[1] == "run");
  BOOST_TEST(types.back() == "footer");

  const auto& run = recs[1].at("run").as_object();
  BOOST_TEST(run.at("run_id").as_string() == "rec00001");
  BOOST_TEST(run.at("project").as_string() == "proj");
  BOOST_TEST(run.contains("start_time"));

  // The config: in the run record or in a config record, each key's value as JSON.
  json::object config = recs[1].at("config_values").as_object();
  for (auto& x : recs)
    if (x.at("type") == "config")
      for (auto& [k, v] : x.at("values").as_object()) config[k] = v;
  BOOST_TEST(config.at("lr").to_number<double>() == 0.5);
  BOOST_TEST(json::serialize(config.at("layers")) == "[64,32]");

  // Every row, in order, with W&B's system keys (the decoder checked _step == step.num).
  std::vector<const json::object*> hist;
  for (auto& x : recs)
    if (x.at("type") == "history") hist.push_back(&x.at("values").as_object());
  BOOST_REQUIRE_EQUAL(hist.size(), 2000u);
  for (int i : {0, 7, 1999}) {
    const auto& row = *hist[static_cast<std::size_t>(i)];
    BOOST_TEST(row.at("_step").to_number<int>() == i);
    BOOST_TEST(row.at("loss").to_number<double>() == 1.0 / (i + 1));
    BOOST_TEST(row.at("acc").to_number<double>() == i * 0.001);
    BOOST_TEST(row.at("_runtime").to_number<double>() >= 0);
    BOOST_TEST(row.at("_timestamp").to_number<double>() > 1.6e9);
  }

  // The summary wandb sync sends (the sender makes none), the exit record, the listed files.
  json::object summary, exit;
  std::vector<std::string> files;
  for (auto& x : recs) {
    if (x.at("type") == "summary") summary = x.at("values").as_object();
    if (x.at("type") == "exit") exit = x.at("exit").as_object();
    if (x.at("type") == "files")
      for (auto& f : x.at("files").at("files").as_array()) files.emplace_back(f.at("path").as_string());
  }
  BOOST_TEST(summary.at("acc").to_number<double>() == 1.999);
  BOOST_TEST(summary.at("_step").to_number<int>() == 1999);
  BOOST_TEST(!exit.contains("exit_code"));  // proto3: exit code 0 is the default, not written
  BOOST_TEST((std::find(files.begin(), files.end(), "wandb-metadata.json") != files.end()));
}

BOOST_AUTO_TEST_CASE(the_decoder_refuses_a_damaged_file, *boost::unit_test::precondition(kDecoder)) {
  kDecoder.require();
  TempDir dir("wandb-records");
  fs::path run_dir = offline_run(dir, "rec00002");
  fs::path file = run_dir / "run-rec00002.wandb";
  std::string bytes = ember::test::read_file(file);
  // One flipped data byte of the chunk that opens the second block (a chunk header is at 32768):
  // its CRC-32 no longer matches.
  BOOST_REQUIRE(bytes.size() > 32768 + 9);
  const std::size_t len = static_cast<unsigned char>(bytes[32768 + 4]) | static_cast<unsigned char>(bytes[32768 + 5]) << 8;
  BOOST_REQUIRE(len >= 2);
  const std::size_t at = 32768 + 7 + 1;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
  ember::test::write_file(file, bytes);
  auto r = decode(run_dir);
  BOOST_TEST(r.exit_code == 1, r.describe().substr(0, 2000));
  BOOST_TEST(r.err.find("CRC-32") != std::string::npos, r.err);
  // Repaired it reads again; a second .wandb file next to it does not: wandb sync needs one.
  bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
  ember::test::write_file(file, bytes);
  r = decode(run_dir);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe().substr(0, 2000));
  ember::test::write_file(run_dir / "run-other.wandb", bytes);
  r = decode(run_dir);
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err.find("exactly one") != std::string::npos, r.err);
}

// `ember wandb sync` turns a StatsRecord into a wandb-events.jsonl line as W&B's sender
// (send_stats) does: its items plus _wandb: true, _timestamp (the record's timestamp) and
// _runtime; the strict server notes lines without them in the run's "warnings".
BOOST_AUTO_TEST_CASE(synced_offline_system_metrics_carry_runtime_and_timestamp) {
  TempDir dir("wandb-records");
  fs::path run_dir = offline_run(dir, "rec00003");
  ember::test::wandb::CleanEnv env;
  Server srv;
  ember::wandb::ApiOptions o;
  o.base_url = srv.url();
  o.api_key = kKey;
  ember::wandb::Api api(o);
  ember::wandb::upload_run(api, ember::wandb::read_offline_dir(run_dir));
  json::object run = srv.run("rec00003");
  BOOST_REQUIRE(!run.empty());
  BOOST_REQUIRE(!run.at("events").as_array().empty());  // the offline run has a stats record
  BOOST_TEST(run.at("history").as_array().size() == 2000u);
  BOOST_TEST(run.at("warnings").as_array().empty(), json::serialize(run.at("warnings")));
}

BOOST_AUTO_TEST_CASE(checkpoint_artifacts_pass_the_servers_independent_digest_and_md5_check) {
  ember::test::wandb::CleanEnv env;
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
  FakeTrainer t;
  {
    Wandb w(t, R"({"project": "proj", "id": "art00001", "base_url": ")" + srv.url() + R"(", "spool_dir": ")" +
                   spool.path().string() + R"(", "retry_initial_s": 0.05, "retry_max_s": 0.2, "finalize_timeout_s": 20, "log_model": "all"})");
    w.log(10, {{"val_loss", 0.25}});
    w.checkpoint(best);
    w.checkpoint(last);
    w.hook(EMBER_HOOK_ID_on_train_epoch_start);
    w.finalize();
  }
  json::object st = srv.state();
  const auto& arts = st.at("artifacts").as_array();
  BOOST_REQUIRE_EQUAL(arts.size(), 2u);
  for (auto& a : arts) {
    // COMMITTED means the server recomputed W&B's manifest digest from the uploaded manifest and
    // found it equal to the digest the plugin created the artifact with, and every file's bytes
    // had the manifest's MD5 and size.
    BOOST_TEST(a.at("state").as_string() == "COMMITTED");
    BOOST_TEST(a.at("verified").at("manifest_digest").as_string() == a.at("digest").as_string());
    BOOST_TEST(a.at("verified").at("files").as_object().size() == 1u);
  }
  // Nothing the plugin sent was refused (a refusal it retried past would still show here).
  for (auto& q : st.at("requests").as_array()) {
    if (q.at("status").is_null()) continue;
    BOOST_TEST(q.at("status").to_number<int>() < 400, json::serialize(q));
  }
  BOOST_TEST(t.joined().find(kKey) == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

int main(int argc, char* argv[]) { return ember::test::tools::main_with_skip(argc, argv, "wandb_records"); }
