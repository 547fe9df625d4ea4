// progress_bar: the built .so driven in-process, with stderr sent to a file (plain lines) or to
// a pseudo-terminal (in-place redraws).
#define BOOST_TEST_MODULE progress_bar
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "plugin_fixture.hpp"

using ember::test::FakeTrainer;
using ember::test::hook_args;
using ember::test::LoadedPlugin;
using ember::test::TempDir;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_PROGRESS_BAR_SO");
  return l;
}

// Points fd 2 at another file for its lifetime (the plugin checks isatty when created).
class StderrTo {
 public:
  explicit StderrTo(int fd) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    BOOST_REQUIRE(saved_ >= 0);
    BOOST_REQUIRE(::dup2(fd, STDERR_FILENO) >= 0);
  }
  ~StderrTo() {
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
  }

 private:
  int saved_ = -1;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Run one training epoch of n batches through the plugin's hooks, with a validation run after
// the last batch (as the trainer does), and return what reached stderr (a file: not a TTY).
struct Captured {
  std::string text;
  std::vector<std::string> lines;
};

template <class Body>
Captured capture_plain(FakeTrainer& t, const std::string& config, Body&& body) {
  TempDir tmp("progress");
  const auto file = tmp / "stderr.txt";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  BOOST_REQUIRE(fd >= 0);
  {
    StderrTo redirect(fd);
    LoadedPlugin p(lib(), config, t);
    body(p);
  }
  ::close(fd);
  Captured c;
  c.text = ember::test::read_file(file);
  c.lines = lines_of(c.text);
  return c;
}

void train_epoch(LoadedPlugin& p, FakeTrainer& t, std::int64_t epoch, std::int64_t n,
                 bool validate) {
  t.state.epoch = epoch;
  p.call(EMBER_HOOK_ID_on_train_epoch_start, hook_args(EMBER_STAGE_FIT, epoch));
  for (std::int64_t b = 0; b < n; ++b) {
    p.call(EMBER_HOOK_ID_on_train_batch_start, hook_args(EMBER_STAGE_FIT, epoch, b));
    p.call(EMBER_HOOK_ID_on_train_batch_end, hook_args(EMBER_STAGE_FIT, epoch, b));
  }
  if (validate) {
    p.call(EMBER_HOOK_ID_on_validation_start, hook_args(EMBER_STAGE_VALIDATE, epoch));
    for (std::int64_t b = 0; b < 3; ++b)
      p.call(EMBER_HOOK_ID_on_validation_batch_end, hook_args(EMBER_STAGE_VALIDATE, epoch, b));
    t.set_metric("val_loss", 0.312149);
    p.call(EMBER_HOOK_ID_on_validation_end, hook_args(EMBER_STAGE_VALIDATE, epoch));
  }
  p.call(EMBER_HOOK_ID_on_train_epoch_end, hook_args(EMBER_STAGE_FIT, epoch));
}

FakeTrainer trainer(std::int64_t batches, std::int64_t epochs) {
  FakeTrainer t;
  t.state.num_training_batches = batches;
  t.state.num_val_batches = 3;
  t.state.max_epochs = epochs;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE(plain_output_shows_epoch_step_total_and_metrics) {
  FakeTrainer t = trainer(8, 3);
  t.set_metric("train_loss", 0.42);
  t.set_metric("train_loss_step", 0.4);  // twins of train_loss: not shown
  t.set_metric("train_loss_epoch", 0.5);
  t.set_metric("val_accuracy", 0.8612345);
  auto out = capture_plain(t, "{}", [&](LoadedPlugin& p) { train_epoch(p, t, 0, 8, true); });

  // Four lines per epoch by default (at 2, 4, 6 of 8 and the epoch end) plus validation's.
  BOOST_REQUIRE_MESSAGE(out.lines.size() == 5u, out.text);
  BOOST_TEST(starts_with(out.lines[0], "Epoch 1/3:  25%|██▌       | 2/8 ["), out.lines[0]);
  BOOST_TEST(starts_with(out.lines[1], "Epoch 1/3:  50%|█████     | 4/8 ["), out.lines[1]);
  BOOST_TEST(starts_with(out.lines[2], "Epoch 1/3:  75%|███████▌  | 6/8 ["), out.lines[2]);
  BOOST_TEST(out.lines[3] == "validation: val_accuracy=0.8612, val_loss=0.3121");
  BOOST_TEST(starts_with(out.lines[4], "Epoch 1/3: 100%|██████████| 8/8 ["), out.lines[4]);
  for (size_t i : {0, 1, 2}) {
    BOOST_TEST(
        out.lines[i].find("it/s, train_loss=0.42, val_accuracy=0.8612]") != std::string::npos,
        out.lines[i]);
    BOOST_TEST(out.lines[i].find("_step") == std::string::npos);
  }
  BOOST_TEST(out.lines[4].find("train_loss=0.42, val_accuracy=0.8612, val_loss=0.3121]") !=
                 std::string::npos,
             out.lines[4]);
  BOOST_TEST(out.text.find('\r') == std::string::npos, "no carriage returns when not a TTY");
}

BOOST_AUTO_TEST_CASE(plain_every_n_batches_sets_the_line_interval) {
  FakeTrainer t = trainer(8, -1);
  auto out = capture_plain(t, R"({"plain_every_n_batches": 3})", [&](LoadedPlugin& p) {
    train_epoch(p, t, 0, 8, false);
    train_epoch(p, t, 1, 8, false);
  });
  BOOST_REQUIRE_MESSAGE(out.lines.size() == 6u, out.text);
  BOOST_TEST(starts_with(out.lines[0], "Epoch 1:  37%|███▊      | 3/8 ["), out.lines[0]);
  BOOST_TEST(starts_with(out.lines[1], "Epoch 1:  75%|███████▌  | 6/8 ["), out.lines[1]);
  BOOST_TEST(starts_with(out.lines[2], "Epoch 1: 100%|"), out.lines[2]);
  BOOST_TEST(starts_with(out.lines[5], "Epoch 2: 100%|"), out.lines[5]);
}

BOOST_AUTO_TEST_CASE(metrics_are_capped_and_shown_with_four_significant_digits) {
  FakeTrainer t = trainer(4, 1);
  const char* names[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"};
  for (const char* n : names) t.set_metric(n, 3.14159265);
  auto out = capture_plain(t, "{}", [&](LoadedPlugin& p) { train_epoch(p, t, 0, 4, false); });
  BOOST_REQUIRE(!out.lines.empty());
  const std::string& last = out.lines.back();
  BOOST_TEST(last.find("m6=3.142]") != std::string::npos, last);
  BOOST_TEST(last.find("m7") == std::string::npos, last);

  auto chosen = capture_plain(t, R"({"metrics": ["m8", "absent", "m2"], "max_metrics": 6})",
                              [&](LoadedPlugin& p) { train_epoch(p, t, 0, 4, false); });
  BOOST_TEST(chosen.lines.back().find("it/s, m8=3.142, m2=3.142]") != std::string::npos,
             chosen.lines.back());
}

BOOST_AUTO_TEST_CASE(an_unknown_epoch_length_counts_batches) {
  FakeTrainer t = trainer(-1, 2);
  auto out = capture_plain(t, "{}", [&](LoadedPlugin& p) { train_epoch(p, t, 0, 5, false); });
  BOOST_REQUIRE_MESSAGE(out.lines.size() == 1u, out.text);
  BOOST_TEST(starts_with(out.lines[0], "Epoch 1/2: 5it ["), out.lines[0]);
}

BOOST_AUTO_TEST_CASE(the_sanity_check_prints_nothing_and_test_prints_a_line) {
  FakeTrainer t = trainer(4, 1);
  auto out = capture_plain(t, "{}", [&](LoadedPlugin& p) {
    t.state.sanity_checking = 1;
    p.call(EMBER_HOOK_ID_on_validation_start, hook_args(EMBER_STAGE_SANITY_CHECK));
    p.call(EMBER_HOOK_ID_on_validation_batch_end, hook_args(EMBER_STAGE_SANITY_CHECK, 0, 0));
    p.call(EMBER_HOOK_ID_on_validation_end, hook_args(EMBER_STAGE_SANITY_CHECK));
    t.state.sanity_checking = 0;
    t.set_metric("train_loss", 1.0);
    t.set_metric("test_acc", 0.9);
    p.call(EMBER_HOOK_ID_on_test_start, hook_args(EMBER_STAGE_TEST));
    p.call(EMBER_HOOK_ID_on_test_batch_end, hook_args(EMBER_STAGE_TEST, 0, 0));
    p.call(EMBER_HOOK_ID_on_test_end, hook_args(EMBER_STAGE_TEST));
  });
  BOOST_TEST(out.text == "test: test_acc=0.9\n");
}

BOOST_AUTO_TEST_CASE(disabled_prints_nothing) {
  FakeTrainer t = trainer(8, 1);
  t.set_metric("train_loss", 1.0);
  auto out = capture_plain(t, R"({"enabled": false})",
                           [&](LoadedPlugin& p) { train_epoch(p, t, 0, 8, true); });
  BOOST_TEST(out.text.empty(), out.text);
}

BOOST_AUTO_TEST_CASE(a_terminal_gets_the_line_redrawn_in_place) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  BOOST_REQUIRE(master >= 0);
  BOOST_REQUIRE(::grantpt(master) == 0 && ::unlockpt(master) == 0);
  int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  BOOST_REQUIRE(slave >= 0);
  struct winsize ws {};
  ws.ws_row = 24;
  ws.ws_col = 200;  // wide enough that no line is cut
  BOOST_REQUIRE(::ioctl(master, TIOCSWINSZ, &ws) == 0);

  FakeTrainer t = trainer(4, 1);
  t.set_metric("train_loss", 0.5);
  {
    StderrTo redirect(slave);
    LoadedPlugin p(lib(), R"({"refresh_rate": 0})", t);
    train_epoch(p, t, 0, 4, false);
  }
  ::close(slave);
  std::string text;
  char buf[4096];
  pollfd pfd{master, POLLIN, 0};
  while (::poll(&pfd, 1, 200) > 0) {
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  // refresh_rate 0 redraws at every batch: 0/4 at the start, 1..4, and the final redraw.
  for (const char* step : {" 0/4 ", " 1/4 ", " 2/4 ", " 3/4 ", " 4/4 "})
    BOOST_TEST(text.find(std::string("|") + step) != std::string::npos, step << " in: " << text);
  BOOST_TEST(text.find("\rEpoch 1/1:  50%|█████     | 2/4 [") != std::string::npos, text);
  BOOST_TEST(text.find('\n') == text.size() - 1, "one newline, at the epoch end: " << text);
}
