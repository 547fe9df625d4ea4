// The test server's fidelity, checked with a real W&B client: @wandb/sdk from npm (installed by
// scripts/bootstrap into .deps/npm) runs sdk_client.mjs under node against wandb_server.py —
// init with a project and config, history rows, finish — and the test asserts what the server
// recorded and what the SDK was told. Skipped (meson SKIP, exit 77, with the reason), never
// passed, when node or the package is missing; under CI=true that is a failure (needs_tools.hpp).
#define BOOST_TEST_MODULE wandb_sdk
#define BOOST_TEST_NO_MAIN
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "../../support/run_process.hpp"
#include "../../support/temp_dir.hpp"
#include "needs_tools.hpp"
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using ember::test::run_process;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

std::string find_node() { return ember::test::tools::find_on_path("node"); }

fs::path sdk_dir() { return fs::path(ember::test::require_env("EMBER_SOURCE_ROOT")) / ".deps/npm/node_modules/@wandb/sdk"; }

// node and @wandb/sdk: skipped with the reason when missing, failed under CI.
const ember::test::tools::Needs kSdk{[]() -> std::string {
  if (find_node().empty()) return "node is not on PATH (scripts/bootstrap installs it)";
  if (!fs::exists(sdk_dir() / "package.json"))
    return "@wandb/sdk is not installed in " + sdk_dir().string() + " (scripts/bootstrap installs it)";
  return "";
}};

// The node child inherits this environment: the server's URL and a key, nothing else of W&B's.
struct Env {
  Env(const Server& srv, const std::string& key) {
    ::setenv("WANDB_BASE_URL", srv.url().c_str(), 1);
    ::setenv("WANDB_API_KEY", key.c_str(), 1);
    for (const char* v : {"WANDB_MODE", "WANDB_DEBUG", "WANDB_WORKER", "WANDB_ENV", "WANDB_APP_URL"}) ::unsetenv(v);
  }
  ~Env() {
    ::unsetenv("WANDB_BASE_URL");
    ::unsetenv("WANDB_API_KEY");
  }
};

ember::test::ProcessResult run_sdk_client(const std::string& run_id) {
  std::string script = ember::test::require_env("EMBER_WANDB_SDK_CLIENT");
  // coreutils' timeout bounds a client that would hang (its sender loops forever if the run
  // never starts).
  return run_process({"/usr/bin/timeout", "120", find_node(), script, sdk_dir().string(), run_id});
}

// The server's request log as (op or path, status, auth) entries.
std::vector<json::object> requests(Server& srv) {
  std::vector<json::object> out;
  std::stringstream in(srv.request_log());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line).as_object());
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb_sdk)

BOOST_AUTO_TEST_CASE(js_sdk_run_is_recorded_with_config_history_summary_and_exit, *boost::unit_test::precondition(kSdk)) {
  kSdk.require();
  Server srv;
  Env env(srv, kKey);
  auto r = run_sdk_client("sdk00001");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(r.out.find("finished") != std::string::npos, r.describe());

  json::object run = srv.run("sdk00001");
  BOOST_REQUIRE_MESSAGE(!run.empty(), json::serialize(srv.state()).substr(0, 3000));
  // The null entity became the viewer's; the run got a display name, and the SDK shows it.
  BOOST_TEST(run.at("entity").as_string() == "ember-test");
  BOOST_TEST(run.at("project").as_string() == "sdk-proj");
  const std::string name(run.at("displayName").as_string());
  BOOST_TEST(!name.empty());
  BOOST_TEST(r.out.find("run ember-test/sdk-proj/sdk00001 name=" + name + "\n") != std::string::npos, r.describe());

  // The config as this SDK sends it: plain JSON, not wrapped in {"desc", "value"}.
  json::object config = json::parse(run.at("config").as_string()).as_object();
  BOOST_TEST(config.size() == 3u);
  BOOST_TEST(config.at("lr").to_number<double>() == 0.01);
  BOOST_TEST(json::serialize(config.at("layers")) == "[64,32]");
  BOOST_TEST(config.at("optimizer").as_string() == "adam");

  // History: one line per committed step, the uncommitted values merged into the next.
  const auto& hist = run.at("history").as_array();
  BOOST_REQUIRE_EQUAL(hist.size(), 4u);
  const std::int64_t steps[] = {0, 1, 5, 6};
  for (std::size_t i = 0; i < hist.size(); ++i) {
    const auto& row = hist[i].as_object();
    BOOST_TEST(row.at("_step").to_number<std::int64_t>() == steps[i], json::serialize(row));
    BOOST_TEST(row.at("_runtime").to_number<double>() >= 0);
    BOOST_TEST(row.at("_timestamp").to_number<double>() > 1.6e9);
  }
  BOOST_TEST(run.at("history_offsets").as_array().back().to_number<int>() == 3);
  BOOST_TEST(hist[0].at("loss").to_number<double>() == 1.0);
  BOOST_TEST(hist[1].at("acc").to_number<double>() == 0.75);
  BOOST_TEST(hist[2].at("loss").to_number<double>() == 0.25);
  BOOST_TEST(!hist[2].as_object().contains("acc"));
  BOOST_TEST(hist[3].at("acc").to_number<double>() == 0.875);
  BOOST_TEST(hist[3].at("loss").to_number<double>() == 0.125);
  BOOST_TEST(hist[3].at("note").as_string() == "last");

  // Summary: the latest value of every key.
  const auto& summary = run.at("summary").as_object();
  BOOST_TEST(summary.at("loss").to_number<double>() == 0.125);
  BOOST_TEST(summary.at("acc").to_number<double>() == 0.875);
  BOOST_TEST(summary.at("_step").to_number<std::int64_t>() == 6);
  BOOST_TEST(summary.at("note").as_string() == "last");

  BOOST_TEST(run.at("complete").as_bool());
  BOOST_TEST(run.at("exitcode").to_number<int>() == 0);

  // The requests: Viewer, UpsertBucket, then file_stream posts ending with complete; every one
  // authenticated and answered 200 (an unknown operation or a server error would show here).
  auto reqs = requests(srv);
  // (a missing field fails with the request printed, not with Boost.JSON's out_of_range)
  auto field = [](const json::object& q, std::initializer_list<const char*> keys) -> std::string {
    const json::value* v = nullptr;
    const json::object* o = &q;
    for (const char* k : keys) {
      v = o ? o->if_contains(k) : nullptr;
      if (!v) return "<missing " + std::string(k) + ">";
      o = v->if_object();
    }
    return json::serialize(*v);
  };
  BOOST_REQUIRE(reqs.size() >= 3u);
  BOOST_TEST(field(reqs[0], {"op"}) == "\"Viewer\"", json::serialize(reqs[0]).substr(0, 500));
  BOOST_TEST(field(reqs[1], {"op"}) == "\"UpsertBucket\"", json::serialize(reqs[1]).substr(0, 500));
  BOOST_TEST(field(reqs[1], {"variables", "name"}) == "\"sdk00001\"");
  BOOST_TEST(field(reqs[1], {"variables", "entity"}) == "\"ember-test\"");
  for (std::size_t i = 2; i < reqs.size(); ++i)
    BOOST_TEST(field(reqs[i], {"path"}) == "\"/files/ember-test/sdk-proj/sdk00001/file_stream\"",
               json::serialize(reqs[i]).substr(0, 500));
  BOOST_TEST(field(reqs.back(), {"body", "complete"}) == "true", json::serialize(reqs.back()).substr(0, 500));
  for (const auto& q : reqs) {
    BOOST_TEST(field(q, {"status"}) == "200", json::serialize(q).substr(0, 500));
    BOOST_TEST(field(q, {"auth"}) == "\"ok\"", json::serialize(q).substr(0, 500));
    BOOST_TEST(!q.contains("error"), json::serialize(q).substr(0, 500));
  }
}

BOOST_AUTO_TEST_CASE(js_sdk_with_a_wrong_key_stops_at_the_viewer_401, *boost::unit_test::precondition(kSdk)) {
  kSdk.require();
  Server srv;
  Env env(srv, "wrongwrongwrongwrongwrongwrongwrongwrong");
  auto r = run_sdk_client("sdk00002");
  BOOST_TEST(r.exit_code != 0, r.describe());
  BOOST_TEST(r.err.find("Unable to determine default entity") != std::string::npos, r.describe());
  auto reqs = requests(srv);
  BOOST_REQUIRE_EQUAL(reqs.size(), 1u);
  BOOST_TEST(reqs[0].at("op").as_string() == "Viewer");
  BOOST_TEST(reqs[0].at("status").to_number<int>() == 401);
  BOOST_TEST(reqs[0].at("auth").as_string() == "bad");
  BOOST_TEST(srv.run("sdk00002").empty());
}

BOOST_AUTO_TEST_SUITE_END()

// A run with skipped cases (no node, no package) exits 77: meson SKIP, not OK.
int main(int argc, char* argv[]) { return ember::test::tools::main_with_skip(argc, argv, "wandb_sdk"); }
