// Only rank 0 writes W&B rows (issue 14): `ember fit --set trainer.devices=2` with the wandb
// logger against the W&B-protocol test server (tests/plugins/wandb/wandb_server.py, a free loopback
// port). The server must see one run with one row per step, and those rows must be rank 0's:
// the first step's train_loss (logged without sync_dist, so a rank's own) equals a one-process
// run on rank 0's shard and differs from one on rank 1's.
#define BOOST_TEST_MODULE ddp_wandb
#include <boost/test/unit_test.hpp>

#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"
#include "../plugins/wandb/wandb_server.hpp"

#include <boost/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <set>

namespace json = boost::json;
namespace fs = std::filesystem;
using ember::test::run_process;
using ember::test::TempDir;
using ember::test::wandb::Server;

namespace {

constexpr std::int64_t kBatch = 16, kSteps = 4;

std::string exe() { return ember::test::require_env("EMBER_EXE"); }
std::string plugins() { return ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"; }

std::string save(const TempDir& dir, const std::string& name, const torch::Tensor& x, const torch::Tensor& y) {
  c10::Dict<std::string, torch::Tensor> d;
  d.insert("x", x.contiguous());
  d.insert("y", y.contiguous());
  auto bytes = torch::pickle_save(d);
  std::string path = (dir.path() / name).string();
  ember::test::write_file(path, std::string(bytes.begin(), bytes.end()));
  return path;
}

// wandb logger, no run id: a rank that started a run of its own would show as a second run.
json::object config(const std::string& data, const std::string& root, const Server& srv, const std::string& spool,
                    int devices, std::optional<std::string> run_id) {
  json::object wandb{{"project", "ddp"},
                     {"base_url", srv.url()},
                     {"spool_dir", spool},
                     {"post_interval_s", 0.2},
                     {"retry_initial_s", 0.05},
                     {"retry_max_s", 0.2},
                     {"finalize_timeout_s", 60}};
  if (run_id) wandb["id"] = *run_id;
  return json::object{
      {"seed_everything", 1},
      {"trainer", json::object{{"max_epochs", 1},
                               {"limit_train_batches", kSteps},
                               {"num_sanity_val_steps", 0},
                               {"log_every_n_steps", 1},
                               {"default_root_dir", root},
                               {"enable_progress_bar", false},
                               {"strategy", devices > 1 ? "ddp" : "auto"},
                               {"devices", devices},
                               {"ddp_timeout_s", 60},
                               {"logger", json::array{json::object{{"plugin", "wandb"}, {"config", wandb}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}, {"config", json::object{{"hidden1", 32}, {"hidden2", 32}, {"log_examples", 0}}}}},
      {"data", json::object{{"format", "tensors"}, {"train", json::array{data}}, {"batch_size", kBatch}, {"shuffle", false}}}};
}

ember::test::ProcessResult fit(const TempDir& dir, const json::object& cfg, const std::string& name) {
  std::string path = (dir.path() / name).string();
  ember::test::write_file(path, json::serialize(cfg));
  return run_process({exe(), "fit", "--config", path, "--plugin-dir", plugins()});
}

// The train_loss values of a run's history rows, in order, and their global steps.
void rows_of(const json::object& run, std::vector<double>& loss, std::vector<std::int64_t>& steps) {
  for (const auto& r : run.at("history").as_array()) {
    const auto& row = r.as_object();
    if (auto* v = row.if_contains("train_loss")) {
      loss.push_back(v->to_number<double>());
      steps.push_back(row.at("trainer/global_step").to_number<std::int64_t>());
    }
  }
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_ranks_give_one_wandb_run_with_rank_zeros_rows) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir dir("ddp-wandb"), spool("ddp-wandb-spool");
  torch::manual_seed(5);
  auto x = torch::randn({256, 784});
  auto y = torch::randint(0, 10, {256}, torch::kInt64);
  const std::string all = save(dir, "all.pt", x, y);
  // Unshuffled, rank r of 2 reads rows r, r + 2, ...: its shard alone, for the references.
  const std::string even = save(dir, "even.pt", x.slice(0, 0, 256, 2), y.slice(0, 0, 256, 2));
  const std::string odd = save(dir, "odd.pt", x.slice(0, 1, 256, 2), y.slice(0, 1, 256, 2));

  auto r = fit(dir, config(all, (dir.path() / "ddp").string(), srv, spool.path().string(), 2, std::nullopt), "ddp.json");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_REQUIRE_MESSAGE(r.out.find("ddp: 2 ranks hold identical parameters") != std::string::npos, r.describe());
  json::object st = srv.state();
  const auto& runs = st.at("runs").as_array();
  BOOST_REQUIRE_MESSAGE(runs.size() == 1u, runs.size() << " runs on the server: " << json::serialize(runs).substr(0, 2000));
  const json::object& run = runs[0].as_object();
  BOOST_CHECK(run.at("complete").as_bool());
  BOOST_CHECK_EQUAL(run.at("upserts").as_array().size() > 0, true);
  std::vector<double> loss;
  std::vector<std::int64_t> steps;
  rows_of(run, loss, steps);
  // One row a step, each step once (two writers would double them or be refused as a gap).
  BOOST_REQUIRE_EQUAL(loss.size(), static_cast<std::size_t>(kSteps));
  BOOST_CHECK_EQUAL(std::set<std::int64_t>(steps.begin(), steps.end()).size(), static_cast<std::size_t>(kSteps));
  const std::string log_ddp = srv.request_log();

  // The first step's loss (rank 0's parameters, broadcast, before any update) on each shard alone.
  auto r0 = fit(dir, config(even, (dir.path() / "even").string(), srv, spool.path().string(), 1, std::string("rank0ref")),
                "even.json");
  BOOST_REQUIRE_MESSAGE(r0.exit_code == 0, r0.describe());
  const std::string log_one = srv.request_log().substr(log_ddp.size());
  auto r1 = fit(dir, config(odd, (dir.path() / "odd").string(), srv, spool.path().string(), 1, std::string("rank1ref")),
                "odd.json");
  BOOST_REQUIRE_MESSAGE(r1.exit_code == 0, r1.describe());
  std::vector<double> loss0, loss1;
  std::vector<std::int64_t> s0, s1;
  rows_of(srv.run("rank0ref"), loss0, s0);
  rows_of(srv.run("rank1ref"), loss1, s1);
  BOOST_REQUIRE(!loss0.empty() && !loss1.empty());
  BOOST_TEST_MESSAGE("step 1 train_loss: 2-rank run " << loss[0] << ", rank 0's shard " << loss0[0] << ", rank 1's shard "
                                                      << loss1[0]);
  BOOST_CHECK_MESSAGE(std::abs(loss[0] - loss0[0]) < 1e-5, "the W&B row is not rank 0's: " << loss[0] << " vs " << loss0[0]);
  BOOST_CHECK_MESSAGE(std::abs(loss[0] - loss1[0]) > 1e-4, "rank 0's and rank 1's first losses are too close to tell apart");
  // The 2-rank run made as many run-creating requests (upsertBucket) as one process does.
  BOOST_CHECK_EQUAL(count(log_ddp, "upsertBucket"), count(log_one, "upsertBucket"));
  BOOST_CHECK_GT(count(log_one, "upsertBucket"), 0u);
}
