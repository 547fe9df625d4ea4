// The Lambda package (scripts/package-lambda) made from this build: within Lambda's size limit,
// every library it needs resolved inside it, and the packaged program running in a chroot of
// only the package plus a writable /tmp, with the root read-only and nothing written outside
// /tmp. The package is made once, on first use, and shared by the cases.
//
// Needs root (unshare -m, mount, chroot; CI runs as root) and patchelf, zip, unzip (scripts/
// bootstrap). Without them the cases are skipped; under CI=true they fail (needs_tools.hpp).
#define BOOST_TEST_MODULE lambda_package
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include "child_process.hpp"
#include "lambda_chroot.hpp"
#include "needs_tools.hpp"
#include "run_process.hpp"
#include "temp_dir.hpp"
#include "wandb_server.hpp"

#include <boost/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace ember::test;

namespace {

std::string missing_requirements() {
  if (::geteuid() != 0) return "not root: the chroot needs unshare -m, mount and chroot as root";
  for (const char* tool : {"patchelf", "zip", "unzip", "readelf", "nm", "strip", "unshare", "chroot", "mount"})
    if (tools::find_on_path(tool).empty()) return std::string(tool) + " not found (scripts/bootstrap installs it)";
  return {};
}
const tools::Needs kNeeds{missing_requirements};

const fs::path kFashion = "/usr/share/datasets/fashion-mnist";
#if defined(__aarch64__)
const char* const kLoader = "ld-linux-aarch64.so.1";
#else
const char* const kLoader = "ld-linux-x86-64.so.2";
#endif

// Lines of text.
std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool is_elf(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "\x7f" "ELF";
}

// The package, made on first use: scripts/package-lambda's output, and the zip unzipped into
// ROOT/var/task (ROOT is the chroot's root; ROOT/tmp an empty mount point).
struct Package {
  TempDir dir{"ember-lambda-package"};
  std::string output;  // package-lambda's stdout + stderr
  fs::path zip, chroot_root, task;
};

const Package& package() {
  static Package* made = [] {
    auto* p = new Package;
    const std::string src = require_env("EMBER_SOURCE_ROOT"), build = require_env("EMBER_BUILD_ROOT");
    // The predict weights the Lambda sample names (lambda.predict_ckpt_path: model.ckpt): a short
    // fit with this build.
    auto fit = run_process({require_env("EMBER_EXE"), "fit", "--config", src + "/samples/fashion_mnist/fit.json",
                            "--plugin-dir", build + "/plugins", "--set", "trainer.default_root_dir=" + (p->dir / "train").string(),
                            "--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=20",
                            "--set", "trainer.limit_val_batches=2", "--set", "trainer.num_sanity_val_steps=0",
                            "--set", "trainer.logger=false", "--set", "trainer.callbacks=[{\"plugin\":\"model_checkpoint\"}]"});
    if (fit.exit_code != 0) throw std::runtime_error("training the sample's weights failed: " + fit.describe());
    auto r = run_process({"/usr/bin/bash", src + "/scripts/package-lambda", "--build", build,
                          "--config", src + "/samples/lambda/fashion_mnist.json",
                          "--file", (p->dir / "train" / "checkpoints" / "last.ckpt").string() + ":model.ckpt",
                          "--file", src + "/samples/fashion_mnist/fit.json:fit.json",
                          "--out", (p->dir / "out").string()});
    p->output = r.out + r.err;
    BOOST_TEST_MESSAGE("package-lambda:\n" << r.err << r.out);
    if (r.exit_code != 0) throw std::runtime_error("package-lambda failed: " + r.describe());
    auto out_lines = lines(r.out);
    if (out_lines.empty()) throw std::runtime_error("package-lambda printed no zip path: " + r.describe());
    p->zip = out_lines.back();
    p->chroot_root = p->dir / "root";
    p->task = p->chroot_root / "var" / "task";
    fs::create_directories(p->task);
    make_chroot_root(p->chroot_root);
    auto u = run_process({tools::find_on_path("unzip"), "-q", p->zip.string(), "-d", p->task.string()});
    if (u.exit_code != 0) throw std::runtime_error("unzip failed: " + u.describe());
    return p;
  }();
  return *made;
}

// path -> "type size mode mtime" for every entry under root, skipping root/tmp (the writable
// mount): the tree before and after a run must be equal.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), root).string();
    if (rel == "tmp") {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    std::ostringstream d;
    d << (S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'f') << " " << st.st_size << " "
      << std::oct << (st.st_mode & 07777) << std::dec << " " << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    out[rel] = d.str();
  }
  return out;
}

// Every entry of after is in before, unchanged, and nothing went away.
void expect_unchanged(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
  for (const auto& [path, desc] : after) {
    auto it = before.find(path);
    BOOST_TEST((it != before.end() && it->second == desc), "changed or created outside /tmp: " << path << " " << desc);
  }
  for (const auto& [path, desc] : before) BOOST_TEST(after.count(path) == 1u, "removed outside /tmp: " << path);
}

std::uintmax_t unzipped_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink()) total += e.file_size();
  return total;
}

}  // namespace

// A config whose predict weights (lambda.predict_ckpt_path) are not given with --file is refused
// before any work, naming the config, the key and the option to add.
BOOST_AUTO_TEST_CASE(refuses_a_config_whose_predict_weights_are_not_packaged) {
  const std::string src = require_env("EMBER_SOURCE_ROOT"), build = require_env("EMBER_BUILD_ROOT");
  TempDir out("ember-lambda-refuse");
  auto r = run_process({"/usr/bin/bash", src + "/scripts/package-lambda", "--build", build,
                        "--config", src + "/samples/lambda/fashion_mnist.json", "--out", out.path().string()});
  BOOST_TEST(r.exit_code != 0, r.describe());
  BOOST_TEST(r.err.find("fashion_mnist.json: lambda.predict_ckpt_path 'model.ckpt' is not in the package") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("--file CKPT:model.ckpt") != std::string::npos, r.err);
  BOOST_TEST(!fs::exists(out / "package"));
}

BOOST_AUTO_TEST_CASE(package_is_within_lambdas_unzipped_limit_and_prints_its_zip_last,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  BOOST_TEST(fs::is_regular_file(p.zip));
  BOOST_TEST(p.zip.extension() == ".zip");
  const auto bytes = unzipped_bytes(p.task);
  BOOST_TEST_MESSAGE("unzipped: " << bytes << " bytes; zip: " << fs::file_size(p.zip) << " bytes");
  BOOST_TEST(bytes <= 250u * 1024 * 1024, "unzipped package " << bytes << " bytes > Lambda's 250 MiB");
  // The layout the bootstrap and `ember lambda` rely on.
  for (const std::string f : {"bootstrap", "bin/ember", "fashion_mnist.json", "model.ckpt", "fit.json"})
    BOOST_TEST(fs::exists(p.task / f), f << " missing from the package");
  BOOST_TEST(fs::exists(p.task / "lib" / kLoader), "lib/" << kLoader << " missing from the package");
  BOOST_TEST(fs::is_directory(p.task / "plugins"));
  BOOST_TEST(::access((p.task / "bootstrap").c_str(), X_OK) == 0, "bootstrap is not executable");
  BOOST_TEST(p.output.find("within Lambda's 250 MiB limit") != std::string::npos, p.output);
}

// The pruning keeps only NEEDED entries that are used: each library the packaged libtorch_cpu
// still lists defines at least one symbol libtorch_cpu imports (the loader excepted), and the
// package holds no library that nothing lists.
BOOST_AUTO_TEST_CASE(pruned_libtorch_lists_only_libraries_it_imports_from,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  fs::path torch;
  for (const auto& e : fs::directory_iterator(p.task / "lib"))
    if (e.path().filename().string().rfind("libtorch_cpu.so", 0) == 0) torch = e.path();
  BOOST_REQUIRE_MESSAGE(!torch.empty(), "no libtorch_cpu in the package's lib/");

  auto nm = [&](const std::string& which, const fs::path& f) {
    auto r = run_process({"/bin/sh", "-c", "nm -D " + which + " --without-symbol-versions \"$0\" | awk '{print $NF}'", f.string()});
    BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
    auto l = lines(r.out);
    return std::set<std::string>(l.begin(), l.end());
  };
  const auto imported = nm("--undefined-only", torch);
  auto needed = run_process({"/bin/sh", "-c", "readelf -dW \"$0\" | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]$/\\1/p'", torch.string()});
  BOOST_REQUIRE(needed.exit_code == 0);
  int checked = 0;
  for (const auto& name : lines(needed.out)) {
    if (name.rfind("ld-linux", 0) == 0) continue;
    BOOST_TEST_CONTEXT("libtorch_cpu NEEDED " << name) {
      BOOST_REQUIRE(fs::exists(p.task / "lib" / name));
      const auto defined = nm("--defined-only", fs::canonical(p.task / "lib" / name));
      bool used = false;
      for (const auto& s : imported) used = used || defined.count(s);
      BOOST_TEST(used, name << " defines nothing libtorch_cpu imports: package-lambda should have removed it");
      ++checked;
    }
  }
  BOOST_TEST(checked > 5);
}

// Every dynamic ELF in the package (the program, the plugins, every library) resolves each library
// it needs to a file inside the package, through the packaged loader with only lib/ on the path,
// with all symbols bound (LD_BIND_NOW, LD_WARN: `ldd -r`); the bootstrap is static.
BOOST_AUTO_TEST_CASE(every_needed_library_resolves_inside_the_package,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  const fs::path loader = p.task / "lib" / kLoader;
  const std::string inside = p.task.string() + "/";
  int elfs = 0;
  for (const auto& e : fs::recursive_directory_iterator(p.task)) {
    if (!e.is_regular_file() || e.is_symlink() || !is_elf(e.path()) || e.path() == loader) continue;
    BOOST_TEST_CONTEXT(e.path().string()) {
      auto dyn = run_process({tools::find_on_path("readelf"), "-dW", e.path().string()});
      if (dyn.out.find("(NEEDED)") == std::string::npos) {
        BOOST_TEST(e.path().filename() == "bootstrap", "only the bootstrap may be static (no NEEDED)");
        continue;
      }
      ++elfs;
      auto r = run_process({"/usr/bin/env", "-i", "LD_BIND_NOW=1", "LD_WARN=1", loader.string(),
                            "--library-path", (p.task / "lib").string(), "--list", e.path().string()});
      BOOST_TEST(r.exit_code == 0, r.describe());
      BOOST_TEST(r.err.find("undefined symbol") == std::string::npos, r.err);
      for (const auto& l : lines(r.out)) {
        std::istringstream words(l);
        std::string name, arrow, path;
        words >> name >> arrow >> path;
        if (name.rfind("linux-vdso", 0) == 0) continue;
        if (arrow != "=>") path = name;  // the loader's own line: "PATH (0x...)"
        BOOST_TEST(path.rfind(inside, 0) == 0, "'" << l << "' resolves outside the package");
      }
    }
  }
  BOOST_TEST(elfs > 10);
}

// `ember fit` then `ember predict` of the Fashion-MNIST sample, started by the packaged bootstrap
// in a chroot of only the package (at /var/task, as in Lambda), a writable /tmp and Lambda's
// /dev/{null,zero,random,urandom}: no /usr, no /proc, the root read-only. Plugins come from
// $LAMBDA_TASK_ROOT/plugins, found next to bin/ember without /proc (the loader's AT_EXECFN, as
// /proc/self/exe would name the loader); the data are copied to /tmp.
BOOST_AUTO_TEST_CASE(packaged_ember_fits_and_predicts_in_a_chroot_writing_only_tmp,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  TempDir tmp("ember-lambda-tmp");
  ::chmod(tmp.path().c_str(), 01777);
  fs::create_directories(tmp / "data");
  for (const char* f : {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    fs::copy_file(kFashion / f, tmp / "data" / f);
  const std::string images = "/tmp/data/t10k-images-idx3-ubyte.gz", labels = "/tmp/data/t10k-labels-idx1-ubyte.gz";
  const std::string split = "[\"" + images + "\",\"" + labels + "\"]";
  const std::vector<std::string> common = {
      "--config", "/var/task/fit.json", "--set", "trainer.default_root_dir=/tmp/runs",
      "--set", "data.train=" + split, "--set", "data.predict=" + split, "--set", "data.test=" + split,
      "--set", "trainer.limit_train_batches=3", "--set", "trainer.limit_val_batches=2",
      "--set", "trainer.limit_predict_batches=2", "--set", "trainer.num_sanity_val_steps=0",
      "--set", "trainer.max_epochs=1"};

  const auto before = snapshot(p.chroot_root);
  std::vector<std::string> fit = {"fit"};
  fit.insert(fit.end(), common.begin(), common.end());
  auto r = run_in_chroot(p.chroot_root, tmp.path(), fit);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("fit done: epoch 1, global_step 3") != std::string::npos, r.describe());
  BOOST_TEST(fs::exists(tmp / "runs" / "checkpoints" / "last.ckpt"));

  std::vector<std::string> predict = {"predict", "--ckpt-path", "last"};
  predict.insert(predict.end(), common.begin(), common.end());
  r = run_in_chroot(p.chroot_root, tmp.path(), predict);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("predictions: 128 rows written to /tmp/runs/predictions.pt") != std::string::npos, r.describe());
  BOOST_TEST(fs::exists(tmp / "runs" / "predictions.pt"));

  expect_unchanged(before, snapshot(p.chroot_root));
}

// With `package-lambda --layer`, lib/ comes from a layer, which Lambda extracts to /opt: the
// bootstrap finds no ROOT/lib and takes the loader and libraries from /opt/lib. The same package,
// rearranged that way (hard links), runs in the chroot.
BOOST_AUTO_TEST_CASE(bootstrap_takes_the_libraries_from_a_layer_in_opt_lib,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  TempDir root("ember-lambda-layer"), tmp("ember-lambda-tmp");
  ::chmod(tmp.path().c_str(), 01777);
  const auto links = fs::copy_options::recursive | fs::copy_options::create_hard_links;
  fs::create_directories(root / "var" / "task");
  for (const auto& e : fs::directory_iterator(p.task))
    if (e.path().filename() != "lib") fs::copy(e.path(), root / "var" / "task" / e.path().filename(), links);
  fs::create_directories(root / "opt");
  fs::copy(p.task / "lib", root / "opt" / "lib", links);
  make_chroot_root(root.path());
  ::chmod(root.path().c_str(), 0755);
  auto r = run_in_chroot(root.path(), tmp.path(), {"plugins"});
  BOOST_TEST(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("/var/task/plugins/fashion_mlp.so") != std::string::npos, r.describe());
}

// `ember lambda`, as Lambda starts it (the packaged bootstrap, no arguments, _HANDLER naming the
// sample config), in the chroot, against the local Runtime API server of tests/lambda: a predict,
// events it must refuse with an /error reply (bad JSON, an unknown command, inputs of the wrong
// shape) after each of which it goes on serving, a ping, and every samples/lambda/events/predict*.json as
// is. Nothing is written outside /tmp.
BOOST_AUTO_TEST_CASE(packaged_runtime_serves_events_in_a_chroot_writing_only_tmp,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  const std::string src = require_env("EMBER_SOURCE_ROOT");
  TempDir work("ember-lambda-e2e"), tmp("ember-lambda-tmp");
  ::chmod(tmp.path().c_str(), 01777);

  json::array events;
  auto add = [&](json::value ev) { events.push_back(json::object{{"event", std::move(ev)}}); };
  json::array zeros;
  for (int i = 0; i < 784; ++i) zeros.push_back(0.0);
  add(json::object{{"command", "predict"}, {"inputs", json::array{zeros}}});
  events.push_back(json::object{{"raw", "{\"command\": \"predict\", "}});
  add(json::object{{"command", "explode"}});
  add(json::object{{"command", "predict"}, {"inputs", json::array{json::array{1, 2, 3}}}});
  add(json::object{{"command", "ping"}});
  std::vector<std::string> sample_events;
  for (const auto& e : fs::directory_iterator(src + "/samples/lambda/events")) {
    const auto name = e.path().filename().string();
    if (name.rfind("predict", 0) == 0 && e.path().extension() == ".json") {
      add(json::parse(read_file(e.path())));
      sample_events.push_back(name);
    }
  }
  write_file(work / "events.json", json::serialize(events));

  const auto before = snapshot(p.chroot_root);
  Fifo fifo((work / "server.fifo").string());
  fs::create_directories(work / "server");
  // tests/lambda's server; EMBER_LAMBDA_RUNTIME_API_SERVER may name another copy.
  const char* server_py = std::getenv("EMBER_LAMBDA_RUNTIME_API_SERVER");
  Child server({"/usr/bin/python3", server_py ? server_py : src + "/tests/lambda/runtime_api_server.py",
                "--events", (work / "events.json").string(),
                "--log", (work / "server.log").string(), "--fifo", fifo.path()},
               work / "server");
  const std::string port_line = server.read_line(fifo);
  BOOST_REQUIRE_MESSAGE(port_line.rfind("port ", 0) == 0, port_line);
  const std::string port = port_line.substr(5, port_line.size() - 6);

  fs::create_directories(work / "runtime");
  Child runtime(chroot_command(p.chroot_root, tmp.path(), {},
                               {"AWS_LAMBDA_RUNTIME_API=127.0.0.1:" + port, "_HANDLER=fashion_mnist.json",
                                "AWS_LAMBDA_FUNCTION_NAME=ember-test", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512"}),
                work / "runtime");
  const std::string done = runtime.read_line(fifo);  // throws with the runtime's output if it ends first
  BOOST_TEST(done == "done\n");
  runtime.signal(SIGKILL);  // blocked in the next /next, where Lambda would freeze it
  runtime.wait();
  server.signal(SIGTERM);
  server.wait();

  std::vector<json::object> replies;
  std::istringstream log(read_file(work / "server.log"));
  for (std::string l; std::getline(log, l);) {
    auto e = json::parse(l).as_object();
    if (e.at("method") == "POST" && e.contains("kind")) replies.push_back(e);
  }
  BOOST_REQUIRE_MESSAGE(replies.size() == events.size(), "expected one reply per event; runtime:\n" << runtime.describe());
  auto body = [&](std::size_t i) { return json::parse(replies[i].at("body").as_string()).as_object(); };
  auto kind = [&](std::size_t i) { return std::string(replies[i].at("kind").as_string()); };
  auto error_type = [&](std::size_t i) { return std::string(body(i).at("errorType").as_string()); };

  BOOST_TEST_REQUIRE(kind(0) == "response", replies[0].at("body"));
  const auto first = body(0);
  const auto& pred = first.at("predictions").as_array();
  BOOST_TEST(pred.size() == 1u);
  BOOST_TEST(pred[0].at("probabilities").as_array().size() == 10u);
  BOOST_TEST(kind(1) == "error");
  BOOST_TEST(error_type(1) == "Ember.BadEvent");
  BOOST_TEST(kind(2) == "error");
  BOOST_TEST(std::string(body(2).at("errorMessage").as_string()).find("explode") != std::string::npos);
  BOOST_TEST(kind(3) == "error");
  BOOST_TEST(error_type(3) == "Ember.BadInput");
  BOOST_TEST(kind(4) == "response");
  for (std::size_t i = 0; i < sample_events.size(); ++i)
    BOOST_TEST_CONTEXT("samples/lambda/events/" << sample_events[i]) {
      BOOST_TEST(kind(5 + i) == "response", replies[5 + i].at("body"));
      BOOST_TEST(body(5 + i).contains("predictions"));
    }

  expect_unchanged(before, snapshot(p.chroot_root));
}

// Issue 13's end-to-end case: the packaged runtime (bootstrap, _HANDLER, no arguments) in the
// chroot of only the package plus /tmp, against the local Runtime API server, s3rver and the W&B
// test server, all on 127.0.0.1 (the chroot shares the test's network namespace; http:// endpoints,
// as the chroot has no CA bundle). Events, each fit with trainer.default_root_dir on s3:// and a
// W&B logger continuing one run (id + resume "allow"):
//   0 fit cut by the deadline (Lambda-Runtime-Deadline-Ms already past, margin 0): one batch,
//     stopped_by "deadline", last.ckpt in s3://
//   1 not JSON -> Ember.BadEvent
//   2 fit into a bucket that does not exist: the s3 plugin fails -> an /error naming the bucket
//   3 predict with the weights of event 0's s3:// checkpoint
//   4 fit with ckpt_path "last": resumed from s3:// at step 1, ends the epoch at step 4
// The runtime is killed right after the last reply (Lambda would freeze it): the W&B server must
// already hold every history row of both fits (delivered before each reply, nothing left in the
// /tmp spool), s3rver the checkpoint of step 4; nothing was written outside /tmp.
BOOST_AUTO_TEST_CASE(packaged_runtime_fits_to_s3_across_a_deadline_with_wandb_in_a_chroot,
                     *boost::unit_test::precondition(kNeeds)) {
  kNeeds.require();
  const auto& p = package();
  const std::string src = require_env("EMBER_SOURCE_ROOT");
  TempDir work("ember-lambda-e2e-s3"), tmp("ember-lambda-tmp");
  ::chmod(tmp.path().c_str(), 01777);
  fs::create_directories(tmp / "data");
  for (const char* f : {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    fs::copy_file(kFashion / f, tmp / "data" / f);

  // s3rver (npm, scripts/bootstrap) with bucket "runs", its stdout on a fifo for the port.
  const std::string s3rver_js = src + "/.deps/npm/node_modules/s3rver/bin/s3rver.js";
  BOOST_TEST_REQUIRE(fs::exists(s3rver_js), s3rver_js << " missing: run scripts/bootstrap");
  fs::create_directories(work / "s3rver" / "data");
  Fifo s3fifo((work / "s3rver.fifo").string());
  Child s3rver({"/usr/bin/env", "NODE_OPTIONS=--openssl-legacy-provider", "/bin/sh", "-c",
                "exec /usr/bin/node \"$0\" -d \"$1\" -a 127.0.0.1 -p 0 --configure-bucket runs >\"$2\"", s3rver_js,
                (work / "s3rver" / "data").string(), s3fifo.path()},
               work / "s3rver");
  std::string s3out;
  while (s3out.find("listening on ") == std::string::npos || s3out.back() != '\n') s3out += s3rver.read_line(s3fifo);
  const auto at = s3out.find("listening on 127.0.0.1:") + std::string("listening on 127.0.0.1:").size();
  const std::string s3port = s3out.substr(at, s3out.find('\n', at) - at);

  wandb::CleanEnv wandb_env;
  wandb::Server wb;

  const std::string images = "/tmp/data/t10k-images-idx3-ubyte.gz", labels = "/tmp/data/t10k-labels-idx1-ubyte.gz";
  auto fit_set = [&](const std::string& root, const std::string& run_id) {
    return json::object{
        {"trainer.default_root_dir", root},
        {"trainer.max_epochs", 1},
        {"trainer.limit_train_batches", 4},
        {"trainer.limit_val_batches", 1},
        {"trainer.log_every_n_steps", 1},
        {"trainer.logger", json::array{json::object{
                               {"plugin", "wandb"},
                               {"config", json::object{{"base_url", wb.url()}, {"project", "lambda-e2e"}, {"id", run_id},
                                                       {"resume", "allow"}, {"stats_interval_s", 0}, {"console", "off"},
                                                       {"finalize_timeout_s", 60}}}}}},
        {"data.train", json::array{images, labels}},
        {"lambda.deadline_margin_ms", 0}};
  };
  json::array events;
  events.push_back(json::object{{"event", json::object{{"command", "fit"}, {"set", fit_set("s3://runs/fn", "e2erun01")}}}, {"timeout_ms", 0}});
  events.push_back(json::object{{"raw", "{\"command\": \"fit\", \"set\": "}});
  events.push_back(json::object{{"event", json::object{{"command", "fit"}, {"set", fit_set("s3://no-such-bucket/fn", "e2efail1")}}}});
  json::array zeros;
  for (int i = 0; i < 784; ++i) zeros.push_back(0.0);
  events.push_back(json::object{{"event", json::object{{"command", "predict"}, {"inputs", json::array{zeros}},
                                                       {"ckpt_path", "s3://runs/fn/checkpoints/last.ckpt"}}}});
  events.push_back(json::object{{"event", json::object{{"command", "fit"}, {"set", fit_set("s3://runs/fn", "e2erun01")}, {"ckpt_path", "last"}}}});
  write_file(work / "events.json", json::serialize(events));

  const auto before = snapshot(p.chroot_root);
  Fifo fifo((work / "server.fifo").string());
  fs::create_directories(work / "server");
  const char* server_py = std::getenv("EMBER_LAMBDA_RUNTIME_API_SERVER");
  Child server({"/usr/bin/python3", server_py ? server_py : src + "/tests/lambda/runtime_api_server.py",
                "--events", (work / "events.json").string(),
                "--log", (work / "server.log").string(), "--fifo", fifo.path()},
               work / "server");
  const std::string port_line = server.read_line(fifo);
  BOOST_REQUIRE_MESSAGE(port_line.rfind("port ", 0) == 0, port_line);
  const std::string port = port_line.substr(5, port_line.size() - 6);

  fs::create_directories(work / "runtime");
  Child runtime(chroot_command(p.chroot_root, tmp.path(), {},
                               {"AWS_LAMBDA_RUNTIME_API=127.0.0.1:" + port, "_HANDLER=fashion_mnist.json",
                                "AWS_LAMBDA_FUNCTION_NAME=ember-test", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
                                "AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=test-secret-DO-NOT-PRINT",
                                "AWS_REGION=us-east-1", "AWS_ENDPOINT_URL=http://127.0.0.1:" + s3port,
                                "WANDB_API_KEY=" + wandb::kKey}),
                work / "runtime");
  const std::string done = runtime.read_line(fifo);  // throws with the runtime's output if it ends first
  BOOST_TEST(done == "done\n");
  runtime.signal(SIGKILL);  // frozen, as Lambda does once the reply is posted
  runtime.wait();
  BOOST_TEST_MESSAGE("runtime:\n" << runtime.describe());

  std::vector<json::object> replies;
  std::istringstream log(read_file(work / "server.log"));
  for (std::string l; std::getline(log, l);) {
    auto e = json::parse(l).as_object();
    if (e.at("method") == "POST" && e.contains("kind")) replies.push_back(e);
  }
  BOOST_REQUIRE_MESSAGE(replies.size() == events.size(), "expected one reply per event; runtime:\n" << runtime.describe());
  auto body = [&](std::size_t i) { return json::parse(replies[i].at("body").as_string()).as_object(); };
  auto kind = [&](std::size_t i) { return std::string(replies[i].at("kind").as_string()); };
  for (std::size_t i = 0; i < replies.size(); ++i) BOOST_TEST_MESSAGE("reply " << i << ": " << replies[i].at("body"));

  const std::string ckpt = "s3://runs/fn/checkpoints/last.ckpt";
  BOOST_TEST_REQUIRE(kind(0) == "response");
  auto fit0 = body(0);
  BOOST_TEST(fit0.at("stopped_by") == "deadline");
  BOOST_TEST(fit0.at("global_step") == 1);
  BOOST_TEST(fit0.at("epoch") == 0);
  BOOST_TEST(fit0.at("checkpoint") == json::value(ckpt));
  BOOST_TEST(fit0.at("resumed_from").is_null());

  BOOST_TEST(kind(1) == "error");
  BOOST_TEST(body(1).at("errorType") == "Ember.BadEvent");

  BOOST_TEST(kind(2) == "error");
  const std::string msg2(body(2).at("errorMessage").as_string());
  BOOST_TEST(msg2.find("no-such-bucket") != std::string::npos, msg2);
  BOOST_TEST(msg2.find("NoSuchBucket") != std::string::npos, msg2);
  BOOST_TEST(msg2.find("test-secret-DO-NOT-PRINT") == std::string::npos);
  BOOST_TEST(body(2).at("errorType") == "Ember.PluginFailure");
  BOOST_TEST(msg2.find("model_checkpoint") != std::string::npos, msg2);

  BOOST_TEST_REQUIRE(kind(3) == "response");
  BOOST_TEST(body(3).at("predictions").as_array().size() == 1u);

  BOOST_TEST_REQUIRE(kind(4) == "response");
  auto fit4 = body(4);
  BOOST_TEST(fit4.at("resumed_from") == json::value(ckpt));
  BOOST_TEST(fit4.at("stopped_by") == "max_epochs");
  BOOST_TEST(fit4.at("global_step") == 4);
  BOOST_TEST(fit4.at("checkpoint") == json::value(ckpt));

  // The checkpoint object in s3rver's store (FilesystemStore: KEY._S3rver_object).
  const fs::path object = work / "s3rver" / "data" / "runs" / "fn" / "checkpoints" / "last.ckpt._S3rver_object";
  BOOST_TEST(fs::exists(object));
  BOOST_TEST((fs::exists(object) && fs::file_size(object) > 100000u));
  BOOST_TEST(!fs::exists(work / "s3rver" / "data" / "no-such-bucket"));

  // W&B: one run across the two fits, every training row already on the server.
  auto run = wb.run("e2erun01");
  BOOST_TEST_REQUIRE(!run.empty(), "no W&B run e2erun01 on the server");
  // The rows of invocation 0 (step 1) and of invocation 4 (steps 2-4 and the epoch's validation),
  // one _step sequence: invocation 4's rows were on the server when the runtime was killed.
  std::vector<std::int64_t> loss_steps, history_steps;
  bool val_loss = false;
  for (const auto& h : run.at("history").as_array()) {
    const json::value row = h.is_string() ? json::parse(h.as_string()) : h;
    BOOST_TEST_MESSAGE("history: " << row);
    const auto& o = row.as_object();
    history_steps.push_back(o.at("_step").to_number<std::int64_t>());
    val_loss = val_loss || o.contains("val_loss");
    if (o.contains("train_loss")) {
      const auto* step = o.if_contains("trainer/global_step");
      loss_steps.push_back(step ? step->to_number<std::int64_t>() : -1);
    }
  }
  BOOST_TEST(loss_steps == (std::vector<std::int64_t>{1, 2, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(val_loss, "no val_loss row from the resumed fit's epoch end");
  for (std::size_t i = 0; i < history_steps.size(); ++i) BOOST_TEST(history_steps[i] == static_cast<std::int64_t>(i));
  // Delivered, not spooled: nothing left in the /tmp spool.
  for (const auto& e : fs::recursive_directory_iterator(tmp.path()))
    if (e.path().string().find("wandb-spool") != std::string::npos)
      BOOST_TEST(!e.is_regular_file(), "left in the W&B spool: " << e.path());

  server.signal(SIGTERM);
  server.wait();
  s3rver.signal(SIGTERM);
  s3rver.wait();
  expect_unchanged(before, snapshot(p.chroot_root));
}

int main(int argc, char* argv[]) { return tools::main_with_skip(argc, argv, "lambda_package"); }
