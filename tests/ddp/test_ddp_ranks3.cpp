// Three ranks through each launcher (issue 14's "2 and 3 ranks"): Ember's own (trainer.devices=3),
// a fake SLURM environment (srun's variables, three processes) and torchrun (Debian's, with
// torchrun_patch.py). After 4 steps every rank holds the same parameters (`ember fit` checks and
// rank 0 prints it) and rank 0's checkpoint equals, within float tolerance, one process trained
// on the same global batches. And a peer that never arrives: both present ranks of a world of
// three exit 1 naming rank 2 and the timeout. 127.0.0.1 only; small data, 4 steps.
#define BOOST_TEST_MODULE ddp_ranks3
#include <boost/test/unit_test.hpp>

#include "../support/child_process.hpp"
#include "ddp_cli_support.hpp"
#include "../support/run_process.hpp"
#include "../support/temp_dir.hpp"

#include <boost/json.hpp>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

namespace json = boost::json;
namespace fs = std::filesystem;
using ember::test::run_process;
using ember::test::TempDir;

using namespace ember::test::ddp_cli;

namespace {

constexpr std::int64_t kPerRank = 16, kSteps = 4;

// The data: write_data's 256 rows. Unshuffled, 3 ranks of 4 x 16 rows use rows 0..191: step b's
// three rank batches are together rows 48b..48b+47, one global batch of 48 (no padding reached).

json::object config(const std::string& data, const std::string& root, std::int64_t batch, int devices) {
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
                               {"logger", json::array{json::object{{"plugin", "csv_logger"}}}},
                               {"callbacks", json::array{json::object{{"plugin", "model_checkpoint"},
                                                                      {"config", json::object{{"save_top_k", 1}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}, {"config", json::object{{"lr", 0.001}, {"hidden1", 32}, {"hidden2", 32}}}}},
      {"data", json::object{{"format", "tensors"}, {"train", json::array{data}}, {"batch_size", batch}, {"shuffle", false}}}};
}

// The data and one process's run on the global batches (3 x 16 = 48 rows a step), made once.
struct Reference {
  TempDir dir;
  std::string data;
  fs::path ckpt;
  Reference() {
    data = write_data(dir);
    const fs::path root = dir / "single";
    auto r = run_process(ember_argv({"fit", "--config", write_config(dir, config(data, root.string(), 3 * kPerRank, 1), "single.json")}));
    BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
    BOOST_REQUIRE_MESSAGE(contains(r.out, "global_step " + std::to_string(kSteps)), r.describe());
    ckpt = root / "checkpoints" / "last.ckpt";
  }
};

Reference& reference() {
  static Reference ref;
  return ref;
}

// What every 3-rank run must show: rank 0 reports identical parameters on the 3 ranks after
// kSteps steps, wrote the only metrics.csv, and its checkpoint equals the 1-process run's.
void check_three_ranks(const std::string& rank0_out, const fs::path& root, const std::string& describe) {
  BOOST_CHECK_MESSAGE(contains(rank0_out, "ddp: 3 ranks hold identical parameters"), describe);
  BOOST_CHECK_MESSAGE(contains(rank0_out, "global_step " + std::to_string(kSteps)), describe);
  BOOST_CHECK_EQUAL(find(root, "metrics.csv").size(), 1u);
  auto a = state_dict(root / "checkpoints" / "last.ckpt"), b = state_dict(reference().ckpt);
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  BOOST_REQUIRE_GT(a.size(), 0u);
  for (const auto& kv : a) {
    auto x = kv.value().toTensor(), y = b.at(kv.key()).toTensor();
    BOOST_CHECK_MESSAGE(torch::allclose(x, y, 1e-4, 1e-5),
                        kv.key().toStringRef() << " differs from the 1-process run by " << (x - y).abs().max().item<double>());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(own_launcher_three_ranks_equal_one_process_on_the_global_batch) {
  const Reference& ref = reference();
  TempDir dir;
  const fs::path root = dir / "three";
  auto r = run_process(ember_argv({"fit", "--config", write_config(dir, config(ref.data, root.string(), kPerRank, 1), "three.json"),
                                   "--set", "trainer.devices=3", "--set", "trainer.strategy=\"ddp\""}));
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  check_three_ranks(r.out, root, r.describe());
}

BOOST_AUTO_TEST_CASE(fake_slurm_three_tasks_equal_one_process_on_the_global_batch) {
  const Reference& ref = reference();
  TempDir dir;
  const fs::path root = dir / "slurm";
  const std::string path = write_config(dir, config(ref.data, root.string(), kPerRank, 3), "slurm.json");
  const std::string port = std::to_string(free_port());
  std::vector<std::unique_ptr<ember::test::Child>> ranks;
  std::vector<std::unique_ptr<TempDir>> logs;
  for (int r = 0; r < 3; ++r) {
    logs.push_back(std::make_unique<TempDir>());
    ranks.push_back(std::make_unique<ember::test::Child>(
        with_env({"SLURM_PROCID=" + std::to_string(r), "SLURM_NTASKS=3", "SLURM_LOCALID=" + std::to_string(r),
                  "SLURM_NODEID=0", "SLURM_JOB_ID=4243", "SLURM_JOB_NODELIST=127.0.0.[1-3]", "MASTER_PORT=" + port},
                 ember_argv({"fit", "--config", path})),
        logs.back()->path()));
  }
  bool ok = true;
  for (auto& c : ranks) {
    int st = c->wait();
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 0, c->describe());
  }
  if (!ok) return;
  for (int r = 1; r < 3; ++r) BOOST_CHECK_MESSAGE(!contains(ranks[r]->out(), "fit done"), ranks[r]->describe());
  check_three_ranks(ranks[0]->out(), root, ranks[0]->describe());
}

BOOST_AUTO_TEST_CASE(torchrun_three_ranks_equal_one_process_on_the_global_batch) {
  const Reference& ref = reference();
  TempDir dir;
  const fs::path root = dir / "torchrun";
  const std::string path = write_config(dir, config(ref.data, root.string(), kPerRank, 3), "torchrun.json");
  const std::string here = ember::test::require_env("EMBER_SOURCE_ROOT") + "/tests/ddp";
  // torchrun itself: torch.distributed.run.main from Debian's python3-torch, its Python 3.11 fix
  // (torchrun_patch.py) imported first.
  json::array argv{"--nnodes=1", "--nproc_per_node=3", "--no_python", "--master_addr=127.0.0.1",
                   "--master_port=" + std::to_string(free_port()), "--max_restarts=0", exe(), "fit", "--config", path,
                   "--plugin-dir", plugins()};
  const std::string code = "import sys, json; sys.path.insert(0, " + json::serialize(json::value(here)) +
                           "); import torchrun_patch; from torch.distributed.run import main; main(json.loads(" +
                           json::serialize(json::value(json::serialize(argv))) + "))";
  auto r = run_process(with_env({"GLOO_SOCKET_IFNAME=lo"}, {"/usr/bin/python3", "-c", code}));
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  check_three_ranks(r.out, root, r.describe());
}

BOOST_AUTO_TEST_CASE(present_ranks_name_the_rank_that_never_arrives_and_the_timeout) {
  const Reference& ref = reference();
  TempDir dir;
  auto cfg = config(ref.data, (dir / "run").string(), kPerRank, 3);
  cfg["trainer"].as_object()["ddp_timeout_s"] = 3;
  const std::string path = write_config(dir, cfg, "run.json");
  const std::string port = std::to_string(free_port());
  // A world of three; rank 2 is never started.
  std::vector<std::unique_ptr<ember::test::Child>> ranks;
  std::vector<std::unique_ptr<TempDir>> logs;
  const auto started = std::chrono::steady_clock::now();
  for (int r = 0; r < 2; ++r) {
    logs.push_back(std::make_unique<TempDir>());
    ranks.push_back(std::make_unique<ember::test::Child>(
        with_env({"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r), "WORLD_SIZE=3", "LOCAL_WORLD_SIZE=3",
                  "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port},
                 ember_argv({"fit", "--config", path})),
        logs.back()->path()));
  }
  for (int r = 0; r < 2; ++r) {
    int st = ranks[r]->wait();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    BOOST_TEST_MESSAGE("rank " << r << " exited " << seconds << " s after the start (ddp_timeout_s 3)");
    BOOST_TEST_CONTEXT("rank " << r) {
      BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 1, ranks[r]->describe());
      const std::string err = ranks[r]->err();
      BOOST_CHECK_MESSAGE(contains(err, "ddp rank " + std::to_string(r) + ":"), ranks[r]->describe());
      BOOST_CHECK_MESSAGE(contains(err, "the process group did not form within 3 s"), ranks[r]->describe());
      BOOST_CHECK_MESSAGE(contains(err, "rank 2 never arrived"), ranks[r]->describe());
    }
  }
  BOOST_CHECK(!fs::exists(dir / "run" / "checkpoints" / "last.ckpt"));
}
