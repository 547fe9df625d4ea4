// SIGTERM / SIGINT stop a run cleanly: the real `ember fit` is signalled once it has reached a
// step (the signal_probe plugin tells us through a named pipe and holds the training thread until
// the signal is sent: a handshake, no sleeps), then metrics.csv must hold every row up to that
// step, last.ckpt must be that step's, and the exit status 128 + signo; a second signal during
// the cleanup ends the process at once. In process: the opt-in guard an embedding application
// uses, and Trainer::request_interrupt.
#define BOOST_TEST_MODULE trainer_signals
#include <algorithm>
#include <boost/test/unit_test.hpp>

#include "../support/child_process.hpp"
#include "../support/temp_dir.hpp"
#include "cli_paths.hpp"
#include "tiny.hpp"

#include <ember/signals.hpp>
#include <ember/trainer.hpp>

#include <boost/json.hpp>
#include <signal.h>

#include <sstream>

namespace json = boost::json;
using ember::test::Child;
using ember::test::Fifo;
using ember::test::TempDir;

namespace {

using namespace ember::test::cli_paths;

// 200 batches of Fashion-MNIST, a row per step held back by csv_logger (it flushes only every
// 1000 steps: before this fix, whatever it held died with the process), last.ckpt every step.
json::object fit_config(const std::filesystem::path& root, json::object probe) {
  return json::object{
      {"seed_everything", 1},
      {"trainer", json::object{{"max_epochs", 1}, {"limit_train_batches", 200}, {"default_root_dir", root.string()},
                               {"enable_progress_bar", false}, {"log_every_n_steps", 1}, {"num_sanity_val_steps", 0},
                               {"logger", json::array{json::object{{"plugin", "csv_logger"},
                                                                   {"config", json::object{{"save_dir", root.string()},
                                                                                           {"flush_logs_every_n_steps", 1000},
                                                                                           {"flush_every_seconds", 0}}}}}},
                               {"callbacks", json::array{json::object{{"plugin", "model_checkpoint"},
                                                                      {"config", json::object{{"every_n_train_steps", 1}, {"save_top_k", 1}}}},
                                                         json::object{{"plugin", "signal_probe"}, {"config", std::move(probe)}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"batch_size", 64}}}};
}

std::vector<std::string> fit_argv(const std::filesystem::path& config) {
  return {exe(), "fit", "--config", config.string(), "--plugin-dir", plugins(), "--plugin-dir", test_plugins()};
}

// The comma-separated cells of a line, empty ones included (no quoted fields here).
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> f(1);
  for (char c : line) {
    if (c == ',')
      f.emplace_back();
    else
      f.back().push_back(c);
  }
  return f;
}

// The steps of the rows with a training loss in metrics.csv (Lightning's wide layout: a row
// per logged step, a column per metric).
std::vector<std::int64_t> loss_steps(const std::filesystem::path& csv) {
  std::vector<std::int64_t> steps;
  std::istringstream in(ember::test::read_file(csv));
  std::string line;
  std::getline(in, line);
  const auto header = cells(line);
  const auto step_col = std::find(header.begin(), header.end(), "step") - header.begin();
  BOOST_REQUIRE_MESSAGE(step_col < static_cast<std::ptrdiff_t>(header.size()), "no step column: " + line);
  while (std::getline(in, line)) {
    auto f = cells(line);
    BOOST_REQUIRE_EQUAL(f.size(), header.size());
    bool loss = false;
    for (size_t c = 0; c < f.size(); ++c) loss = loss || (header[c].rfind("train_loss", 0) == 0 && !f[c].empty());
    if (loss) steps.push_back(std::stoll(f[static_cast<size_t>(step_col)]));
  }
  return steps;
}

std::int64_t checkpoint_step(const std::filesystem::path& ckpt) {
  std::string bytes = ember::test::read_file(ckpt);
  auto d = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
  return d.at("global_step").toInt();
}

void stops_cleanly_on(int signo) {
  TempDir dir;
  const auto root = dir.path() / "run";
  Fifo reached((dir.path() / "reached").string()), resume((dir.path() / "resume").string());
  const auto events = dir.path() / "events";
  const auto config = dir.path() / "run.json";
  ember::test::write_file(config.string(), json::serialize(fit_config(root, json::object{{"at_step", 25},
                                                                                        {"reached_fifo", reached.path()},
                                                                                        {"resume_fifo", resume.path()},
                                                                                        {"events_file", events.string()}})));
  Child child(fit_argv(config), dir.path());
  BOOST_REQUIRE_EQUAL(child.read_line(reached), "reached 25\n");
  // The training thread is parked in the plugin's on_train_batch_end of step 25: signal, then
  // let it go; the trainer sees the signal at the boundary right after this batch.
  child.signal(signo);
  resume.put('1');
  const int status = child.wait();
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + signo, child.describe());
  const std::string name = signo == SIGINT ? "SIGINT" : "SIGTERM";
  BOOST_TEST(child.err().find("ember: " + name + " received: stopping after this batch (again: stop at once)") != std::string::npos,
             child.describe());
  BOOST_TEST(child.err().find("ember: interrupted: " + name + " received: stopped at global_step 25 (epoch 0); loggers finalized") !=
                 std::string::npos,
             child.describe());

  // Every row up to the stopping step, once each, and nothing after it.
  std::vector<std::int64_t> expected;
  for (std::int64_t s = 1; s <= 25; ++s) expected.push_back(s);
  const auto csv = root / "lightning_logs" / "version_0" / "metrics.csv";
  BOOST_REQUIRE_MESSAGE(std::filesystem::exists(csv), "no metrics.csv\n" << child.describe());
  auto steps = loss_steps(csv);
  BOOST_TEST(steps == expected, boost::test_tools::per_element());
  // The checkpoint callback saved step 25 before the stop; the last row is that step.
  BOOST_TEST(checkpoint_step(root / "checkpoints" / "last.ckpt") == 25);
  BOOST_TEST(std::filesystem::exists(root / "lightning_logs" / "version_0" / "hparams.yaml"));
  // Lightning's SIGTERM path: on_exception with the reason, then teardown.
  BOOST_TEST(ember::test::read_file(events) ==
                 "on_exception: " + name + " received: stopped at global_step 25 (epoch 0)\nteardown\n",
             ember::test::read_file(events));
}

}  // namespace

BOOST_AUTO_TEST_CASE(sigterm_stops_at_the_step_with_every_row_and_the_checkpoint) { stops_cleanly_on(SIGTERM); }

BOOST_AUTO_TEST_CASE(sigint_stops_at_the_step_with_every_row_and_the_checkpoint) { stops_cleanly_on(SIGINT); }

// The plugin blocks inside on_exception (as a stuck upload would): the second SIGTERM must end
// the process with the default action, at once.
BOOST_AUTO_TEST_CASE(second_signal_during_cleanup_kills_at_once) {
  TempDir dir;
  const auto root = dir.path() / "run";
  Fifo reached((dir.path() / "reached").string()), resume((dir.path() / "resume").string()),
      in_exception((dir.path() / "in_exception").string());
  const auto hold = dir.path() / "hold";  // never opened by the test: opening it blocks forever
  BOOST_REQUIRE(::mkfifo(hold.c_str(), 0600) == 0);
  const auto config = dir.path() / "run.json";
  ember::test::write_file(config.string(), json::serialize(fit_config(root, json::object{{"at_step", 3},
                                                                                        {"reached_fifo", reached.path()},
                                                                                        {"resume_fifo", resume.path()},
                                                                                        {"exception_fifo", in_exception.path()},
                                                                                        {"hold_fifo", hold.string()}})));
  Child child(fit_argv(config), dir.path());
  BOOST_REQUIRE_EQUAL(child.read_line(reached), "reached 3\n");
  child.signal(SIGTERM);
  resume.put('1');
  BOOST_REQUIRE_EQUAL(child.read_line(in_exception), "on_exception\n");
  child.signal(SIGTERM);
  const int status = child.wait();
  BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM), child.describe());
}

// A signal after the last batch boundary (here: in on_fit_end) does not undo a finished run:
// it completes, every row is written, exit 0, and stderr says when the signal came.
BOOST_AUTO_TEST_CASE(signal_after_the_last_batch_lets_the_run_complete) {
  TempDir dir;
  const auto root = dir.path() / "run";
  Fifo reached((dir.path() / "reached").string()), resume((dir.path() / "resume").string());
  auto cfg = fit_config(root, json::object{{"hand_over_in", "on_fit_end"}, {"reached_fifo", reached.path()}, {"resume_fifo", resume.path()}});
  cfg["trainer"].as_object()["limit_train_batches"] = 12;
  const auto config = dir.path() / "run.json";
  ember::test::write_file(config.string(), json::serialize(cfg));
  Child child(fit_argv(config), dir.path());
  BOOST_REQUIRE_EQUAL(child.read_line(reached), "reached 12\n");
  child.signal(SIGTERM);
  resume.put('1');
  const int status = child.wait();
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 0, child.describe());
  BOOST_TEST(child.err().find("ember: SIGTERM received after the last step; the run completed") != std::string::npos, child.describe());
  BOOST_TEST(child.out().find("fit done: epoch 1, global_step 12") != std::string::npos, child.describe());
  std::vector<std::int64_t> expected;
  for (std::int64_t s = 1; s <= 12; ++s) expected.push_back(s);
  auto steps = loss_steps(root / "lightning_logs" / "version_0" / "metrics.csv");
  BOOST_TEST(steps == expected, boost::test_tools::per_element());
}

// --- in process: the opt-in for embedding applications --------------------------------------

namespace {
// Raises signo from inside on_train_batch_end of batch at, as a signal arriving mid-batch.
class RaiseAt : public ember::Callback {
 public:
  RaiseAt(std::int64_t at, int signo) : at_(at), signo_(signo) {}
  void on_train_batch_end(const ember::HookArgs& a) override {
    if (a.batch_idx == at_) ::raise(signo_);
  }
  void on_exception(const ember::HookArgs& a) override { message = std::string(a.message.data, a.message.size); }
  std::string message;

 private:
  std::int64_t at_;
  int signo_;
};

struct FinalizeStatus {
  std::string status;
  ember_logger_v1_t table{};
  FinalizeStatus() {
    table.struct_size = sizeof table;
    table.log_metrics = [](void*, const ember_log_context_t*, const ember_metric_t*, size_t) -> ember_status_t { return EMBER_OK; };
    table.finalize = [](void* self, ember_str_t s) -> ember_status_t {
      static_cast<FinalizeStatus*>(self)->status.assign(s.data, s.size);
      return EMBER_OK;
    };
  }
  ember::LoggerSlot slot() {
    return {"status_logger", &table, this, [](void*) -> ember_str_t { return {"", 0}; }};
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(guard_stops_the_trainer_at_the_batch_boundary_and_restores_handlers) {
  struct sigaction before {};
  before.sa_handler = SIG_IGN;  // an application's own disposition for SIGTERM...
  struct sigaction saved {};
  BOOST_REQUIRE(::sigaction(SIGTERM, &before, &saved) == 0);
  {
    // ...which a guard keeps (an ignored signal stays ignored); SIGINT is the one it takes.
    ember::StopOnSignals guard;
    tiny::Model model;
    ember::TrainerOptions opt;
    opt.max_epochs = 1;
    opt.log_every_n_steps = 1;
    opt.num_sanity_val_steps = 0;
    ember::Trainer trainer(opt, model);
    ember::data::Loader train(tiny::make_data(64, 1), 8, true, 1);
    trainer.set_data(&train, nullptr, nullptr, nullptr);
    RaiseAt cb(2, SIGINT);
    trainer.add_callback(cb, "raise_at");
    FinalizeStatus logger;
    trainer.add_logger(logger.slot());
    try {
      trainer.fit();
      BOOST_FAIL("fit returned after SIGINT");
    } catch (const ember::Interrupted& e) {
      BOOST_TEST(e.signal_number() == SIGINT);
      BOOST_TEST(e.exit_status() == 130);
      BOOST_TEST(std::string(e.what()) == "SIGINT received: stopped at global_step 3 (epoch 0)");
    }
    BOOST_TEST(trainer.global_step() == 3);
    BOOST_TEST(trainer.should_stop());
    BOOST_TEST(cb.message == "SIGINT received: stopped at global_step 3 (epoch 0)");
    BOOST_TEST(logger.status == "interrupted");
    // After the first signal the default action is back for the next one.
    struct sigaction now {};
    ::sigaction(SIGINT, nullptr, &now);
    BOOST_TEST((now.sa_handler == SIG_DFL));
    ::sigaction(SIGTERM, nullptr, &now);
    BOOST_TEST((now.sa_handler == SIG_IGN));
    BOOST_TEST(ember::caught_stop_signal() == SIGINT);
  }
  struct sigaction after {};
  ::sigaction(SIGTERM, nullptr, &after);
  BOOST_TEST((after.sa_handler == SIG_IGN));
  BOOST_TEST(ember::caught_stop_signal() == 0);
  ::sigaction(SIGTERM, &saved, nullptr);
}

BOOST_AUTO_TEST_CASE(request_interrupt_stops_validate_without_handlers) {
  tiny::Model model;
  ember::TrainerOptions opt;
  ember::Trainer trainer(opt, model);
  ember::data::Loader val(tiny::make_data(64, 2), 8, false, 1);
  trainer.set_data(nullptr, &val, nullptr, nullptr);
  struct sigaction now {};
  ::sigaction(SIGTERM, nullptr, &now);
  BOOST_TEST((now.sa_handler == SIG_DFL));  // the library installed nothing
  trainer.request_interrupt(SIGTERM);
  BOOST_CHECK_THROW(trainer.validate(), ember::Interrupted);
}
