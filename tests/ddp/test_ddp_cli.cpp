// `ember fit` under strategy "ddp" through each launcher: Ember's own (trainer.devices=2), a fake
// SLURM environment (srun's variables) and torchrun's environment; what rank 0 writes, resuming a
// 2-rank checkpoint on 1 and 3 ranks, a killed rank, Ctrl-C. 127.0.0.1 only.
#define BOOST_TEST_MODULE ddp_cli
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
#include <sstream>
#include <thread>

namespace json = boost::json;
namespace fs = std::filesystem;
using ember::test::run_process;
using ember::test::TempDir;

using namespace ember::test::ddp_cli;

namespace {

json::object config(const std::string& data, const std::string& root, std::int64_t batch) {
  return json::object{
      {"seed_everything", 1},
      {"trainer", json::object{{"max_epochs", 1},
                               {"limit_train_batches", 4},
                               {"num_sanity_val_steps", 0},
                               {"log_every_n_steps", 1},
                               {"default_root_dir", root},
                               {"enable_progress_bar", false},
                               {"strategy", "ddp"},
                               {"ddp_timeout_s", 20},
                               {"logger", json::array{json::object{{"plugin", "csv_logger"}}}},
                               {"callbacks", json::array{json::object{{"plugin", "model_checkpoint"},
                                                                      {"config", json::object{{"save_top_k", 1}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}, {"config", json::object{{"lr", 0.001}, {"hidden1", 32}, {"hidden2", 32}}}}},
      {"data", json::object{{"format", "tensors"}, {"train", json::array{data}}, {"batch_size", batch}, {"shuffle", false}}}};
}

// Wait (bounded) until path exists or child has ended (not reaped); true if it exists.
bool wait_for_file(const fs::path& path, ember::test::Child& child) {
  for (int i = 0; i < 6000; ++i) {  // a hang guard, not a timing: returns as soon as it appears
    if (fs::exists(path)) return true;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(child.pid()), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0)
      return fs::exists(path);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the file: the condition
  }
  return false;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t p; in >> p;) out.push_back(p);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(own_launcher_two_ranks_equal_one_process_on_the_global_batch_and_only_rank_zero_writes) {
  TempDir dir;
  const std::string data = write_data(dir);
  const fs::path two = dir / "two", one = dir / "one";
  auto r2 = run_process(ember_argv({"fit", "--config", write_config(dir, config(data, two.string(), 16), "two.json"),
                                    "--set", "trainer.devices=2"}));
  BOOST_REQUIRE_MESSAGE(r2.exit_code == 0, r2.describe());
  BOOST_CHECK_MESSAGE(contains(r2.out, "ddp: 2 ranks hold identical parameters"), r2.describe());
  BOOST_CHECK_MESSAGE(contains(r2.out, "global_step 4"), r2.describe());
  // Rank 0 alone logs and checkpoints: one version directory, one metrics.csv, one index.
  BOOST_CHECK_EQUAL(find(two, "metrics.csv").size(), 1u);
  BOOST_CHECK_EQUAL(find(two, "checkpoints.json").size(), 1u);
  BOOST_CHECK(!fs::exists(two / "lightning_logs" / "version_1"));

  auto r1 = run_process(ember_argv({"fit", "--config", write_config(dir, config(data, one.string(), 32), "one.json"),
                                    "--set", "trainer.strategy=\"auto\""}));
  BOOST_REQUIRE_MESSAGE(r1.exit_code == 0, r1.describe());
  auto a = state_dict(two / "checkpoints" / "last.ckpt"), b = state_dict(one / "checkpoints" / "last.ckpt");
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (const auto& kv : a) {
    auto x = kv.value().toTensor(), y = b.at(kv.key()).toTensor();
    BOOST_CHECK_MESSAGE(torch::allclose(x, y, 1e-4, 1e-5),
                        kv.key().toStringRef() << " differs by " << (x - y).abs().max().item<double>());
  }

  // The 2-rank checkpoint resumes on 1 rank and on 3 ranks.
  const std::string ckpt = (two / "checkpoints" / "last.ckpt").string();
  for (int devices : {1, 3}) {
    auto cfg = config(data, (dir / ("resume" + std::to_string(devices))).string(), 16);
    cfg["trainer"].as_object()["max_epochs"] = 2;
    auto r = run_process(ember_argv({"fit", "--config", write_config(dir, cfg, "resume.json"), "--ckpt-path", ckpt, "--set",
                                     "trainer.devices=" + std::to_string(devices)}));
    BOOST_CHECK_MESSAGE(r.exit_code == 0, r.describe());
    BOOST_CHECK_MESSAGE(contains(r.out, "fit done: epoch 2, global_step 8"), r.describe());
  }
}

BOOST_AUTO_TEST_CASE(fake_slurm_environment_forms_the_group_from_srun_variables) {
  TempDir dir;
  const std::string data = write_data(dir);
  auto cfg = config(data, (dir / "run").string(), 16);
  cfg["trainer"].as_object()["devices"] = 2;
  cfg["trainer"].as_object()["enable_progress_bar"] = true;
  cfg["trainer"].as_object()["callbacks"].as_array().push_back(
      json::object{{"plugin", "progress_bar"}, {"config", json::object{{"plain_every_n_batches", 1}}}});
  const std::string path = write_config(dir, cfg, "run.json");
  const std::string port = std::to_string(free_port());
  std::vector<std::unique_ptr<ember::test::Child>> ranks;
  std::vector<std::unique_ptr<TempDir>> logs;
  for (int r = 0; r < 2; ++r) {
    logs.push_back(std::make_unique<TempDir>());
    ranks.push_back(std::make_unique<ember::test::Child>(
        with_env({"SLURM_PROCID=" + std::to_string(r), "SLURM_NTASKS=2", "SLURM_LOCALID=" + std::to_string(r),
                  "SLURM_NODEID=0", "SLURM_JOB_ID=4242", "SLURM_JOB_NODELIST=127.0.0.[1-3]", "MASTER_PORT=" + port},
                 ember_argv({"fit", "--config", path})),
        logs.back()->path()));
  }
  for (auto& c : ranks) {
    int st = c->wait();
    BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 0, c->describe());
  }
  BOOST_CHECK_MESSAGE(contains(ranks[0]->out(), "ddp: 2 ranks hold identical parameters"), ranks[0]->describe());
  BOOST_CHECK_MESSAGE(!contains(ranks[1]->out(), "fit done"), ranks[1]->describe());  // rank 0 reports
  // The progress bar draws on rank 0 only, as Lightning's does.
  BOOST_CHECK_MESSAGE(contains(ranks[0]->err(), "Epoch 1/1"), ranks[0]->describe());
  BOOST_CHECK_MESSAGE(!contains(ranks[1]->err(), "Epoch"), ranks[1]->describe());
  BOOST_CHECK_EQUAL(find(dir / "run", "metrics.csv").size(), 1u);
}

BOOST_AUTO_TEST_CASE(a_killed_rank_is_named_by_the_others_within_the_timeout) {
  TempDir dir;
  const std::string data = write_data(dir);
  auto cfg = config(data, (dir / "run").string(), 4);
  auto& t = cfg["trainer"].as_object();
  t["max_epochs"] = 100000;
  t["limit_train_batches"] = 32;
  t["ddp_timeout_s"] = 10;
  t["callbacks"] = json::array{json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"every_n_train_steps", 1}}}}};
  const std::string path = write_config(dir, cfg, "run.json");
  const std::string port = std::to_string(free_port());
  std::vector<std::unique_ptr<ember::test::Child>> ranks;
  std::vector<std::unique_ptr<TempDir>> logs;
  for (int r = 0; r < 2; ++r) {
    logs.push_back(std::make_unique<TempDir>());
    ranks.push_back(std::make_unique<ember::test::Child>(
        with_env({"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r), "WORLD_SIZE=2", "LOCAL_WORLD_SIZE=2",
                  "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port},
                 ember_argv({"fit", "--config", path})),
        logs.back()->path()));
  }
  // Training is under way once rank 0 has written a checkpoint index.
  // (the message is built after the wait: Boost evaluates a MESSAGE argument before the condition)
  if (!wait_for_file(dir / "run" / "checkpoints" / "checkpoints.json", *ranks[0])) BOOST_FAIL(ranks[0]->describe());
  const auto killed = std::chrono::steady_clock::now();
  ranks[1]->signal(SIGKILL);
  ranks[1]->wait();
  int st = ranks[0]->wait();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  BOOST_TEST_MESSAGE("rank 0 exited " << seconds << " s after rank 1 was killed (timeout 10 s)");
  BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 1, ranks[0]->describe());
  const std::string err = ranks[0]->err();
  BOOST_CHECK_MESSAGE(contains(err, "ddp rank 0:") && contains(err, "rank 1 stopped"), ranks[0]->describe());
  BOOST_CHECK_MESSAGE(contains(err, "trainer.ddp_timeout_s=10 s"), ranks[0]->describe());
}

BOOST_AUTO_TEST_CASE(own_launcher_reports_the_failed_rank_and_ctrl_c_stops_every_rank) {
  TempDir dir, logs_root;
  const std::string data = write_data(dir);
  for (bool interrupt : {false, true}) {
    BOOST_TEST_CONTEXT((interrupt ? "SIGINT to the launcher" : "rank 1 killed")) {
      const fs::path root = dir / (interrupt ? "int" : "kill");
      auto cfg = config(data, root.string(), 4);
      auto& t = cfg["trainer"].as_object();
      t["max_epochs"] = 100000;
      t["limit_train_batches"] = 32;
      t["ddp_timeout_s"] = 10;
      t["devices"] = 2;
      t["callbacks"] =
          json::array{json::object{{"plugin", "model_checkpoint"}, {"config", json::object{{"every_n_train_steps", 1}}}}};
      const fs::path logs = logs_root / (interrupt ? "int" : "kill");
      fs::create_directories(logs);
      ember::test::Child launcher(ember_argv({"fit", "--config", write_config(dir, cfg, "run.json")}), logs);
      if (!wait_for_file(root / "checkpoints" / "checkpoints.json", launcher)) BOOST_FAIL(launcher.describe());
      auto kids = children_of(launcher.pid());
      BOOST_REQUIRE_EQUAL(kids.size(), 2u);
      if (interrupt) launcher.signal(SIGINT);
      else ::kill(kids[1], SIGKILL);
      int st = launcher.wait();
      for (pid_t k : kids) BOOST_CHECK_MESSAGE(::kill(k, 0) != 0, "rank pid " << k << " still exists");
      const std::string err = launcher.err();
      if (interrupt) {
        BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 130, launcher.describe());
        BOOST_CHECK_MESSAGE(contains(err, "SIGINT passed on to 2 ranks"), launcher.describe());
      } else {
        BOOST_CHECK_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) != 0, launcher.describe());
        BOOST_CHECK_MESSAGE(contains(err, "rank 1 (pid " + std::to_string(kids[1]) + ") was killed by signal 9"),
                            launcher.describe());
        // rank 0's own error, relayed: it names the rank that stopped (whichever collective saw it)
        BOOST_CHECK_MESSAGE(contains(err, "[rank 0] ember: error: ") && contains(err, "rank 1 stopped"), launcher.describe());
      }
    }
  }
}
