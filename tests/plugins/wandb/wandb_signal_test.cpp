// SIGTERM during `ember fit` with the wandb logger: the rows the plugin still held reach the
// W&B-protocol test server and the run is completed (exit code 1: not a success), instead of
// dying with the process. The signal_probe plugin (tests/trainer/plugins) says when step 25 is
// done and holds the training thread until the signal is sent: a handshake, no sleeps.
#define BOOST_TEST_MODULE wandb_signal
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "../../support/child_process.hpp"
#include "../../support/temp_dir.hpp"
#include "wandb_server.hpp"

#include <set>

namespace json = boost::json;
using ember::test::Child;
using ember::test::Fifo;
using ember::test::TempDir;

BOOST_AUTO_TEST_CASE(sigterm_sends_every_held_row_and_completes_the_run) {
  ember::test::wandb::CleanEnv env;
  ember::test::wandb::Server srv;
  TempDir dir("wandb-signal"), spool("wandb-signal-spool");
  Fifo reached((dir.path() / "reached").string()), resume((dir.path() / "resume").string());
  const std::string data = "/usr/share/datasets/fashion-mnist/";
  // One file_stream post an hour: everything logged stays in the plugin until finalize.
  json::object wandb{{"project", "fmnist"}, {"id", "sig00001"},        {"base_url", srv.url()},
                     {"spool_dir", spool.path().string()}, {"post_interval_s", 3600}, {"console", "off"},
                     {"finalize_timeout_s", 60}};
  json::object cfg{
      {"seed_everything", 1},
      {"trainer",
       json::object{{"max_epochs", 1}, {"limit_train_batches", 200}, {"default_root_dir", (dir.path() / "run").string()},
                    {"enable_progress_bar", false}, {"log_every_n_steps", 1}, {"num_sanity_val_steps", 0},
                    {"logger", json::array{json::object{{"plugin", "wandb"}, {"config", wandb}}}},
                    {"callbacks", json::array{json::object{{"plugin", "signal_probe"},
                                                           {"config", json::object{{"at_step", 25},
                                                                                   {"reached_fifo", reached.path()},
                                                                                   {"resume_fifo", resume.path()}}}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{data + "train-images-idx3-ubyte.gz", data + "train-labels-idx1-ubyte.gz"}},
                            {"batch_size", 64}}}};
  const auto config = dir.path() / "run.json";
  ember::test::write_file(config, json::serialize(cfg));
  const std::string build = ember::test::require_env("EMBER_BUILD_ROOT");
  Child child({ember::test::require_env("EMBER_EXE"), "fit", "--config", config.string(), "--plugin-dir", build + "/plugins",
               "--plugin-dir", build + "/tests/trainer/plugins"},
              dir.path());
  BOOST_REQUIRE_EQUAL(child.read_line(reached), "reached 25\n");
  child.signal(SIGTERM);
  resume.put('1');
  const int status = child.wait();
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 143, child.describe());

  json::object run = srv.run("sig00001");
  BOOST_REQUIRE_MESSAGE(!run.empty(), child.describe());
  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(run.at("exitcode").to_number<std::int64_t>() == 1);
  std::set<std::int64_t> steps;
  for (const auto& row : run.at("history").as_array())
    if (row.as_object().contains("train_loss")) steps.insert(row.at("trainer/global_step").to_number<std::int64_t>());
  std::set<std::int64_t> expected;
  for (std::int64_t s = 1; s <= 25; ++s) expected.insert(s);
  BOOST_TEST(steps == expected, boost::test_tools::per_element());
}
