// model_checkpoint: what it may delete, its filename template, and a crash in the middle of a
// save. The plugin .so runs in-process behind a fake trainer (plugin_fixture.hpp) where a test
// hands it a crafted state, and under the real `ember fit` where runs resume from each other's
// checkpoints and one is killed with SIGKILL while a checkpoint is half written.
#define BOOST_TEST_MODULE model_checkpoint
#include <boost/test/unit_test.hpp>

#include "plugin_fixture.hpp"
#include "run_process.hpp"
#include "temp_dir.hpp"

#include <boost/json.hpp>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <map>

namespace fs = std::filesystem;
namespace json = boost::json;
using ember::test::FakeTrainer;
using ember::test::hook_args;
using ember::test::LoadedPlugin;
using ember::test::read_file;
using ember::test::run_process;
using ember::test::TempDir;
using ember::test::write_file;

namespace {

std::shared_ptr<ember::PluginLibrary> lib() {
  static auto l = ember::test::library_from_env("EMBER_MODEL_CHECKPOINT_SO");
  return l;
}

// A fake trainer whose save_checkpoint writes a small marker object where the plugin asks.
class SavingTrainer : public FakeTrainer {
 public:
  std::vector<std::string> saved;
  void save_checkpoint(const std::string& url, bool) override {
    urls().put_atomic(url, "checkpoint " + std::to_string(state.global_step));
    saved.push_back(url);
  }
};

// One end of a training epoch at global_step = step (model_checkpoint saves there).
void end_epoch(LoadedPlugin& p, SavingTrainer& t, std::int64_t epoch, std::int64_t step) {
  t.state.epoch = epoch;
  t.state.global_step = step;
  p.call(EMBER_HOOK_ID_on_train_epoch_end, hook_args(EMBER_STAGE_FIT, epoch, -1, step));
}

std::string config(const fs::path& dirpath, const std::string& more = "") {
  return "{\"dirpath\": " + json::serialize(json::value(dirpath.string())) + more + "}";
}

// Every regular file under dir with its bytes: a run's checkpoints, compared before and after.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().string()] = read_file(e.path());
  return out;
}

// --- `ember fit` ---------------------------------------------------------------------------
const std::string kData = "/usr/share/datasets/fashion-mnist/";

std::string exe() { return ember::test::require_env("EMBER_EXE"); }
std::string plugins() { return ember::test::require_env("EMBER_BUILD_ROOT") + "/plugins"; }

json::object fit_config(const fs::path& root, json::object checkpoint) {
  return json::object{
      {"seed_everything", 1},
      {"trainer", json::object{{"max_epochs", 2}, {"limit_train_batches", 4}, {"limit_val_batches", 2},
                               {"default_root_dir", root.string()}, {"logger", false}, {"enable_progress_bar", false},
                               {"callbacks", json::array{json::object{{"plugin", "model_checkpoint"}, {"config", std::move(checkpoint)}}}}}},
      {"model", json::object{{"plugin", "fashion_mlp"}}},
      {"data", json::object{{"train", json::array{kData + "train-images-idx3-ubyte.gz", kData + "train-labels-idx1-ubyte.gz"}},
                            {"val_fraction", 0.1},
                            {"batch_size", 64}}}};
}

ember::test::ProcessResult ember_fit(const TempDir& dir, const json::object& cfg, const std::string& name,
                                     std::vector<std::string> extra = {}) {
  const std::string path = (dir.path() / name).string();
  write_file(path, json::serialize(cfg));
  std::vector<std::string> argv{exe(), "fit", "--config", path, "--plugin-dir", plugins()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv);
}

}  // namespace

// Run B (its own dirpath) resumes from run A's last.ckpt. A's top-k entry arrives in B's state;
// B's first save evicts it from B's top-k (save_top_k=1, no monitor: the newest is kept). Before
// the fix that eviction deleted A's checkpoint and left A's index naming a missing file.
BOOST_AUTO_TEST_CASE(resume_into_another_dirpath_leaves_the_first_runs_checkpoints_intact) {
  TempDir dir;
  const fs::path a = dir / "a", b = dir / "b";
  auto ra = ember_fit(dir, fit_config(a, json::object{{"save_top_k", 1}}), "a.json");
  BOOST_REQUIRE_MESSAGE(ra.exit_code == 0, ra.describe());
  const auto before = snapshot(a);
  auto a_index = json::parse(before.at((a / "checkpoints" / "checkpoints.json").string())).as_object();
  BOOST_REQUIRE_EQUAL(a_index["top_k"].as_array().size(), 1u);
  const std::string a_top(a_index["top_k"].as_array()[0].as_object().at("url").as_string());

  auto cfg_b = fit_config(b, json::object{{"save_top_k", 1}});
  cfg_b["trainer"].as_object()["max_epochs"] = 4;
  auto rb = ember_fit(dir, cfg_b, "b.json", {"--ckpt-path", (a / "checkpoints" / "last.ckpt").string()});
  BOOST_REQUIRE_MESSAGE(rb.exit_code == 0, rb.describe());

  BOOST_TEST((snapshot(a) == before), "run B changed, added or removed files of run A");
  BOOST_TEST(fs::exists(a_top), a_top);
  BOOST_TEST(rb.err.find("kept as history, never removed: " + a_top) != std::string::npos, rb.err);
  // B's index: its own newest checkpoint as top-k and best, A's only as history.
  auto b_index = json::parse(read_file(b / "checkpoints" / "checkpoints.json")).as_object();
  BOOST_REQUIRE_EQUAL(b_index["top_k"].as_array().size(), 1u);
  const std::string b_top(b_index["top_k"].as_array()[0].as_object().at("url").as_string());
  BOOST_TEST(b_top.rfind((b / "checkpoints").string() + "/", 0) == 0, b_top);
  BOOST_TEST(fs::exists(b_top), b_top);
  BOOST_TEST(std::string(b_index["best"].as_string()) == b_top);
  BOOST_TEST(std::string(b_index["last"].as_string()) == (b / "checkpoints" / "last.ckpt").string());
  BOOST_REQUIRE_EQUAL(b_index["history"].as_array().size(), 1u);
  BOOST_TEST(std::string(b_index["history"].as_array()[0].as_object().at("url").as_string()) == a_top);
}

// A state naming files anywhere (outside dirpath, escaping it with "..", or inside it but not
// in this dirpath's own index) is never acted on: those files survive every later save.
BOOST_AUTO_TEST_CASE(crafted_state_never_gets_the_files_it_names_deleted) {
  TempDir dir;
  const fs::path ck = dir / "ck";
  fs::create_directories(ck);
  const fs::path outside = dir / "precious.txt", escaping = dir / "escape.ckpt", planted = ck / "planted.ckpt",
                 encoded = dir / "enc.ckpt";
  for (auto& p : {outside, escaping, planted, encoded}) write_file(p, "not yours");
  // This dirpath's index exists (a previous run saved here) but lists none of them.
  write_file(ck / "checkpoints.json", R"({"best":"","last":"","top_k":[]})");

  SavingTrainer t;
  LoadedPlugin p(lib(), config(ck), t);
  auto entry = [](const std::string& url, std::int64_t step) {
    return json::object{{"url", url}, {"score", nullptr}, {"epoch", 0}, {"step", step}};
  };
  json::object state{{"dirpath", ck.string()},
                     {"top_k", json::array{entry(outside.string(), 1), entry((ck / ".." / "escape.ckpt").string(), 2),
                                           entry(planted.string(), 3), entry((ck / "%2e%2e" / "enc.ckpt").string(), 4)}},
                     {"history", json::array{entry("/etc/hostname", 0)}},
                     {"last_model_path", outside.string()},
                     {"last_step_saved", 4}};
  p.load_state_dict(json::serialize(state));
  for (std::int64_t e = 1; e <= 3; ++e) end_epoch(p, t, e, 10 * e);

  for (auto& f : {outside, escaping, planted, encoded}) {
    BOOST_TEST(fs::exists(f), f.string() << " was deleted");
    if (fs::exists(f)) BOOST_TEST(read_file(f) == "not yours");
  }
  // Its own files are still trimmed to save_top_k=1: only the newest and last.ckpt remain.
  BOOST_TEST(!fs::exists(ck / "epoch=1-step=10.ckpt"));
  BOOST_TEST(!fs::exists(ck / "epoch=2-step=20.ckpt"));
  BOOST_TEST(fs::exists(ck / "epoch=3-step=30.ckpt"));
  auto index = json::parse(read_file(ck / "checkpoints.json")).as_object();
  BOOST_TEST(index["top_k"].as_array().size() == 1u);
  BOOST_TEST(index["history"].as_array().size() == 5u, json::serialize(index));
  BOOST_TEST(std::string(index["last"].as_string()) == (ck / "last.ckpt").string());
  BOOST_TEST(t.joined().find("kept as history, never removed") != std::string::npos, t.joined());
}

// The boundary still lets a run resumed in its own dirpath manage what it wrote there (Lightning's
// behaviour): entries its own index lists are taken back and trimmed as before.
BOOST_AUTO_TEST_CASE(resume_in_the_same_dirpath_still_trims_its_own_checkpoints) {
  TempDir dir;
  const fs::path ck = dir / "ck";
  std::string state;
  {
    SavingTrainer t;
    LoadedPlugin p(lib(), config(ck, ", \"monitor\": \"val_loss\", \"save_top_k\": 2"), t);
    t.set_metric("val_loss", 0.5);
    end_epoch(p, t, 0, 10);
    t.set_metric("val_loss", 0.4);
    end_epoch(p, t, 1, 20);
    state = p.state_dict();
  }
  BOOST_REQUIRE(fs::exists(ck / "epoch=0-step=10.ckpt"));
  SavingTrainer t;
  LoadedPlugin p(lib(), config(ck, ", \"monitor\": \"val_loss\", \"save_top_k\": 2"), t);
  p.load_state_dict(state);
  t.set_metric("val_loss", 0.3);
  end_epoch(p, t, 2, 30);
  BOOST_TEST(!fs::exists(ck / "epoch=0-step=10.ckpt"), "the worst of its own top-k was not trimmed");
  BOOST_TEST(fs::exists(ck / "epoch=1-step=20.ckpt"));
  BOOST_TEST(fs::exists(ck / "epoch=2-step=30.ckpt"));
  auto index = json::parse(read_file(ck / "checkpoints.json")).as_object();
  BOOST_TEST(index["history"].as_array().empty(), json::serialize(index));
  BOOST_TEST(std::string(index["best"].as_string()) == (ck / "epoch=2-step=30.ckpt").string());
}

// A spec used to be pasted into a printf format: "{epoch:.2f%s%s%s%s}" crashed and "%n" wrote
// memory. Only Python's [[fill]align][sign][0][width][.precision][type d f e g %] is accepted,
// refused at creation with the key and the spec named.
BOOST_AUTO_TEST_CASE(filename_format_spec_outside_the_whitelist_is_refused_at_config_time) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{epoch:.2f%s%s%s%s}", "'.2f%s%s%s%s'"}, {"{step:%n}", "'%n'"},  {"{epoch:d%n}", "'d%n'"},
      {"{val_loss:s}", "'s'"},                 {"{epoch:1000d}", "'1000d'"}, {"{val_loss:.99f}", "'.99f'"},
      {"{epoch:.2d}", "'.2d'"},                {"{val_loss:,.2f}", "',.2f'"}, {"{val_loss:/>9.2f}", "'/>9.2f'"},
      {"{val_loss:.f}", "'.f'"}};
  for (const auto& [tmpl, spec] : bad) {
    FakeTrainer t;
    try {
      LoadedPlugin p(lib(), config(dir.path(), ", \"filename\": " + json::serialize(json::value(tmpl))), t);
      BOOST_ERROR("filename " << tmpl << " was accepted");
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      BOOST_TEST(msg.find("config key filename: format spec " + spec) != std::string::npos, msg);
      BOOST_TEST(msg.find("expected [[fill]align][sign][0][width][.precision][type]") != std::string::npos, msg);
    }
  }
  for (const char* tmpl : {"{epoch", "{:.2f}", "{a{b}"}) {
    FakeTrainer t;
    BOOST_CHECK_THROW(LoadedPlugin(lib(), config(dir.path(), std::string(", \"filename\": \"") + tmpl + "\""), t),
                      std::exception);
  }
}

// What the accepted specs produce: the names Python's format(value, spec) gives (computed with
// python3 once and written here), nan for a metric that is not there.
BOOST_AUTO_TEST_CASE(filename_format_specs_format_like_python) {
  TempDir dir;
  SavingTrainer t;
  const std::string tmpl =
      "{epoch:03d}_{step:>5}_{val_loss:.2f}_{val_loss:*^10.3f}_{val_loss:+.1e}_{val_acc:.1%}_{val_loss:08.3f}"
      "_{neg:=+8.2f}_{neg:g}_{val_loss:.3}_{missing:.2f}_{val_acc}";
  LoadedPlugin p(lib(), config(dir.path(), ", \"filename\": \"" + tmpl + "\", \"auto_insert_metric_name\": false"), t);
  t.set_metric("val_loss", 0.52345);
  t.set_metric("val_acc", 0.8765);
  t.set_metric("neg", -3.25);
  end_epoch(p, t, 7, 42);
  // python3 -c 'print("_".join([format(7,"03d"), format(42,">5"), format(0.52345,".2f"), ...]))'
  const std::string want = "007_   42_0.52_**0.523***_+5.2e-01_87.6%_0000.523_-   3.25_-3.25_0.523_nan_0.8765.ckpt";
  BOOST_REQUIRE_EQUAL(t.saved.size(), 2u);  // the top-k file, then last.ckpt
  BOOST_TEST(fs::path(t.saved[0]).filename().string() == want);
}

// kill -9 while a checkpoint is half written. The child is frozen (SIGSTOP) as soon as inotify
// reports a write to a temporary checkpoint; the kill only lands once the frozen state is shown
// to be mid-write (the temporary file exists, has bytes, and has no zip end record yet) after at
// least one complete save, otherwise the child continues to the next write. After the kill: the partial temporary file is still
// there, the checkpoint it was replacing (or its absence) is as before, the index and everything
// it names load with Python's torch.load, and the run resumes.
BOOST_AUTO_TEST_CASE(kill_9_mid_write_leaves_a_partial_temp_file_and_the_previous_checkpoint_intact) {
  TempDir dir;
  const fs::path ck = dir / "run" / "checkpoints";
  fs::create_directories(ck);
  auto cfg = fit_config(dir / "run", json::object{{"every_n_train_steps", 1}, {"save_top_k", 1}});
  cfg["trainer"].as_object()["max_epochs"] = 1;
  cfg["trainer"].as_object()["limit_train_batches"] = 200;
  // A wider MLP (1024-1024: ~7 MB of weights instead of ~0.5 MB), so that writing one checkpoint
  // takes long enough for the freeze to land mid-write. With the default model a save could end
  // between the inotify event and SIGSTOP 150 times running on an idle machine.
  cfg["model"] = json::object{{"plugin", "fashion_mlp"}, {"config", json::object{{"hidden1", 1024}, {"hidden2", 1024}}}};
  const std::string path = (dir.path() / "run.json").string();
  write_file(path, json::serialize(cfg));

  int fd = inotify_init1(IN_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(inotify_add_watch(fd, ck.c_str(), IN_MODIFY) >= 0);
  std::vector<std::string> argv{exe(), "fit", "--config", path, "--plugin-dir", plugins()};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  // A failed check below must not leave the trainer running or frozen.
  struct Reaper {
    pid_t pid;
    bool reaped = false;
    ~Reaper() {
      if (reaped) return;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reaper{pid};
  // A partial checkpoint: bytes written, but no zip end-of-central-directory record yet (the
  // writer streams the zip in order and writes that record last).
  auto partial = [](const fs::path& p) {
    std::error_code ec;
    auto size = fs::file_size(p, ec);
    if (ec || size == 0) return false;
    return read_file(p).find(std::string("PK\x05\x06", 4)) == std::string::npos;
  };
  auto temp_files = [&] {
    std::vector<fs::path> out;
    for (auto& e : fs::directory_iterator(ck))
      if (e.path().filename().string().find(".ckpt.tmp-") != std::string::npos) out.push_back(e.path());
    return out;
  };
  fs::path caught;
  std::map<std::string, std::string> before;  // the finished files while the child was frozen
  int stops = 0;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (caught.empty()) {
    pollfd pf{fd, POLLIN, 0};
    int ready = poll(&pf, 1, 120000);
    BOOST_REQUIRE_MESSAGE(ready > 0, "no checkpoint write seen within 120 s (" << stops << " freezes)");
    ssize_t n = read(fd, buf, sizeof buf);
    bool temp_written = false;
    for (char* q = buf; q < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(q);
      if (ev->len && std::string(ev->name).find(".ckpt.tmp-") != std::string::npos) temp_written = true;
      q += sizeof(inotify_event) + ev->len;
    }
    if (!temp_written) continue;
    // Only once a whole save is done (index and last.ckpt exist), so there is a previous state;
    // the writes before that are not frozen and not counted (a save is many writes).
    if (!fs::exists(ck / "checkpoints.json") || !fs::exists(ck / "last.ckpt")) continue;
    BOOST_REQUIRE(kill(pid, SIGSTOP) == 0);
    siginfo_t info{};
    BOOST_REQUIRE(waitid(P_PID, pid, &info, WSTOPPED | WEXITED) == 0);  // frozen from here on
    if (info.si_code != CLD_STOPPED) reaper.reaped = true;  // WEXITED reaped it
    BOOST_REQUIRE_MESSAGE(info.si_code == CLD_STOPPED, "the trainer exited before a write was caught mid-way");
    ++stops;
    for (auto& t : temp_files())
      if (partial(t)) caught = t;
    if (caught.empty()) {
      BOOST_REQUIRE_MESSAGE(stops < 150, "150 freezes, none mid-write");
      kill(pid, SIGCONT);
      continue;
    }
    for (auto& e : fs::directory_iterator(ck))
      if (e.path().filename().string().find(".tmp-") == std::string::npos) before[e.path().string()] = read_file(e.path());
    BOOST_REQUIRE(kill(pid, SIGKILL) == 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  reaper.reaped = true;
  close(fd);
  BOOST_REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  // The kill landed mid-write: the partial temporary file outlived the process.
  BOOST_TEST(fs::exists(caught), caught.string());
  BOOST_TEST(partial(caught), caught.string() << " is not partial after the kill");
  // What it would have become: ".last.ckpt.tmp-<pid>-<n>" -> "last.ckpt".
  std::string final_name = caught.filename().string().substr(1);
  final_name.resize(final_name.find(".tmp-"));
  const fs::path target = ck / final_name;
  BOOST_TEST_MESSAGE("killed while writing " << target << " (" << fs::file_size(caught) << " bytes written)");
  // Every finished file is byte for byte what it was when the child was frozen.
  for (auto& [p, bytes] : before) BOOST_TEST((fs::exists(p) && read_file(p) == bytes), p << " changed");
  BOOST_TEST(fs::exists(target) == (before.count(target.string()) == 1), target.string());

  auto index = json::parse(read_file(ck / "checkpoints.json")).as_object();
  std::vector<std::string> named{std::string(index["last"].as_string()), std::string(index["best"].as_string())};
  for (auto& e : index["top_k"].as_array()) named.emplace_back(e.as_object().at("url").as_string());
  if (fs::exists(target)) named.push_back(target.string());  // the previous version of the one being written
  std::string script =
      "import sys, torch\nfor p in sys.argv[1:]:\n    c = torch.load(p)\n    assert 'state_dict' in c, p\nprint('ok', len(sys.argv) - 1)\n";
  std::vector<std::string> py{"/usr/bin/python3", "-c", script};
  py.insert(py.end(), named.begin(), named.end());
  auto r = run_process(py);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("ok " + std::to_string(named.size())) != std::string::npos, r.out);

  auto resumed = run_process({exe(), "fit", "--config", path, "--plugin-dir", plugins(), "--ckpt-path", "last",
                              "--set", "trainer.limit_train_batches=8"});
  BOOST_TEST(resumed.exit_code == 0, resumed.describe());
}
