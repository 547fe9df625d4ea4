// `ember wandb download` and `ember wandb sync` end to end: the built `ember` binary against the
// W&B-protocol test server (wandb_server.py) on loopback. Artifacts are logged through the same
// client code the plugin uses (so the server's signed-upload checks apply), or planted directly
// in the server (/_control plant_artifact) when the test needs what no honest client uploads:
// manifest paths that climb out of --to, a wrong MD5.
#define BOOST_TEST_MODULE wandb_cli
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../support/run_process.hpp"
#include "wandb_api.hpp"
#include "wandb_server.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace wb = ember::wandb;
using ember::test::read_file;
using ember::test::run_process;
using ember::test::TempDir;
using ember::test::wandb::kKey;
using ember::test::wandb::Server;

namespace {

std::string ember_exe() { return ember::test::require_env("EMBER_EXE"); }

wb::Api api_for(const Server& s) {
  wb::ApiOptions o;
  o.base_url = s.url();
  o.api_key = kKey;
  o.max_attempts = 1;
  return wb::Api(o);
}

// A run and one artifact version of `name` with `files`, logged as the plugin logs checkpoints.
wb::LoggedArtifact log_version(Server& s, const std::string& name, std::map<std::string, std::string> files,
                               std::vector<std::string> aliases) {
  wb::Api api = api_for(s);
  wb::RunMeta m;
  m.project = "proj";
  m.run_id = "cli00001";
  wb::RunRef run = wb::upsert_bucket(api, m, nullptr, true);
  wb::ArtifactSpec spec;
  spec.name = name;
  spec.files = std::move(files);
  spec.aliases = std::move(aliases);
  return wb::log_artifact(api, run, spec);
}

// /_control plant_artifact: files path -> (bytes, MD5 the manifest claims; "" = the true one).
void plant(Server& s, const std::string& collection, const std::map<std::string, std::pair<std::string, std::string>>& files) {
  json::object fs_;
  for (const auto& [path, f] : files) {
    json::object o{{"b64", wb::base64(f.first)}};
    if (!f.second.empty()) o["md5"] = f.second;
    fs_[path] = o;
  }
  s.control(json::serialize(json::object{
      {"plant_artifact", json::object{{"project", "proj"}, {"collection", collection}, {"files", fs_}}}}));
}

ember::test::ProcessResult download(const Server& s, const std::string& what, const fs::path& to) {
  return run_process({ember_exe(), "wandb", "download", what, "--to", to.string(), "--base-url", s.url()});
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  if (fs::exists(dir))
    for (auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() || e.is_symlink();
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb_download)

BOOST_AUTO_TEST_CASE(download_writes_every_file_with_its_md5_and_best_names_the_best_version) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-dl");
  const std::string best_ckpt = "checkpoint bytes of v0\n", best_notes = "notes of v0";
  log_version(srv, "model-cli", {{"model.ckpt", best_ckpt}, {"sub/dir/notes.txt", best_notes}}, {"best"});
  log_version(srv, "model-cli", {{"model.ckpt", "newer checkpoint v1"}, {"sub/dir/notes.txt", "notes of v1"}}, {});

  fs::path to = tmp.path() / "best";
  auto r = download(srv, "ember-test/proj/model-cli:best", to);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(read_file(to / "model.ckpt") == best_ckpt);
  BOOST_TEST(read_file(to / "sub/dir/notes.txt") == best_notes);
  BOOST_TEST(r.err.find("v0") != std::string::npos, r.describe());
  // The MD5s the server recorded at upload are those of the files written.
  json::object st = srv.state();
  std::size_t checked = 0;
  for (auto& a : st.at("artifacts").as_array())
    if (a.at("versionIndex") == json::value(0))
      for (auto& [path, f] : a.at("files").as_object()) {
        BOOST_TEST(std::string(f.at("md5").as_string()) == wb::md5_b64(read_file(to / std::string(path))));
        ++checked;
      }
  BOOST_TEST(checked == 2u);

  fs::path latest = tmp.path() / "latest";
  auto r2 = download(srv, "ember-test/proj/model-cli", latest);
  BOOST_REQUIRE_MESSAGE(r2.exit_code == 0, r2.describe());
  BOOST_TEST(read_file(latest / "model.ckpt") == "newer checkpoint v1");
}

BOOST_AUTO_TEST_CASE(storage_refuses_an_artifact_upload_without_its_signed_upload_headers) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  wb::LoggedArtifact a = log_version(srv, "model-hdr", {{"model.ckpt", "x"}}, {});
  ember::http::Url u = ember::http::Url::parse(srv.url());
  ember::http::Client c("http", "127.0.0.1", u.port, {});
  auto r = c.send({"PUT", "/storage/artifacts/" + a.id + "/files/model.ckpt", {}, "x"});
  BOOST_TEST(r.status == 403);
  BOOST_TEST(r.body.find("Content-MD5") != std::string::npos, r.body);
}

BOOST_AUTO_TEST_CASE(missing_artifact_fails_naming_it_and_writes_nothing) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-dl");
  auto r = download(srv, "ember-test/proj/no-such-model:best", tmp.path() / "out");
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("no-such-model") != std::string::npos, r.describe());
  BOOST_TEST(r.err.find("not found") != std::string::npos, r.describe());
  BOOST_TEST(count_files(tmp.path() / "out") == 0u);
}

BOOST_AUTO_TEST_CASE(file_whose_md5_differs_from_the_manifest_is_refused_and_not_written) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-dl");
  plant(srv, "model-badmd5", {{"model.ckpt", {"tampered bytes", wb::md5_b64("the original bytes")}}});
  auto r = download(srv, "ember-test/proj/model-badmd5:latest", tmp.path() / "out");
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("MD5") != std::string::npos, r.describe());
  BOOST_TEST(!fs::exists(tmp.path() / "out" / "model.ckpt"));
}

// Zip-slip: manifest paths that climb out of --to, absolute ones, and symlinks planted in --to.
BOOST_AUTO_TEST_CASE(manifest_paths_outside_to_are_refused_and_nothing_is_written_outside) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-dl");
  fs::path to = tmp.path() / "a" / "b" / "to";
  fs::create_directories(to);
  const std::string abs_target = (tmp.path() / "absolute.txt").string();
  plant(srv, "model-dotdot", {{"../../escaped.txt", {"owned", ""}}, {"ok.txt", {"fine", ""}}});
  plant(srv, "model-abs", {{abs_target, {"owned", ""}}});
  plant(srv, "model-mid", {{"x/../../../mid.txt", {"owned", ""}}});

  for (const char* name : {"model-dotdot", "model-abs", "model-mid"}) {
    auto r = download(srv, std::string("ember-test/proj/") + name, to);
    BOOST_TEST(r.exit_code == 1, name << ": " << r.describe());
    BOOST_TEST(r.err.find("manifest entry") != std::string::npos, name << ": " << r.describe());
  }
  BOOST_TEST(!fs::exists(tmp.path() / "a" / "escaped.txt"));
  BOOST_TEST(!fs::exists(abs_target));
  BOOST_TEST(!fs::exists(tmp.path() / "a" / "mid.txt"));
  BOOST_TEST(count_files(to) == 0u);  // refused before anything was written, ok.txt included
}

BOOST_AUTO_TEST_CASE(symlinks_planted_in_to_are_not_written_through) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-dl");
  fs::path to = tmp.path() / "to", outside = tmp.path() / "outside";
  fs::create_directories(to);
  fs::create_directories(outside);
  {
    std::ofstream(outside / "victim.txt") << "precious";
  }
  fs::create_directory_symlink(outside, to / "sub");             // an intermediate directory
  fs::create_symlink(outside / "victim.txt", to / "model.ckpt");  // the file itself
  plant(srv, "model-subdir", {{"sub/planted.txt", {"owned", ""}}});
  plant(srv, "model-leaf", {{"model.ckpt", {"owned", ""}}});

  auto r1 = download(srv, "ember-test/proj/model-subdir", to);
  BOOST_TEST(r1.exit_code == 1, r1.describe());
  BOOST_TEST(r1.err.find("symlink") != std::string::npos, r1.describe());
  BOOST_TEST(!fs::exists(outside / "planted.txt"));
  auto r2 = download(srv, "ember-test/proj/model-leaf", to);
  BOOST_TEST(r2.exit_code == 1, r2.describe());
  BOOST_TEST(r2.err.find("symlink") != std::string::npos, r2.describe());
  BOOST_TEST(read_file(outside / "victim.txt") == "precious");
}

BOOST_AUTO_TEST_SUITE_END()

// ---- sync of a directory someone hands you ------------------------------------------------------

namespace {

// An offline run directory written record by record: a run, files records naming `listed`, an exit.
fs::path offline_dir(const fs::path& root, const std::string& id, const std::vector<std::string>& listed) {
  fs::path dir = root / ("offline-run-20260101_000000-" + id);
  fs::create_directories(dir / "files");
  std::string buf = wb::txlog::file_header();
  std::uint64_t off = buf.size();
  wb::txlog::frame(buf, off, wb::empty_record(wb::kHeader));
  wb::RunInfo ri;
  ri.run_id = id, ri.project = "proj";
  wb::txlog::frame(buf, off, wb::run_record(ri));
  wb::txlog::frame(buf, off, wb::files_record(listed, 0));
  wb::txlog::frame(buf, off, wb::exit_record(0, 1));
  std::ofstream(dir / ("run-" + id + ".wandb"), std::ios::binary) << buf;
  return dir;
}

ember::test::ProcessResult sync(const fs::path& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{ember_exe(), "wandb", "sync", dir.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(wandb_sync_untrusted)

BOOST_AUTO_TEST_CASE(files_record_with_an_absolute_path_or_dotdot_is_refused_and_nothing_is_uploaded) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-sync");
  fs::path secret = tmp.path() / "secret.txt";
  std::ofstream(secret) << "TOP-SECRET-CONTENT";
  fs::path a = offline_dir(tmp.path(), "abs00001", {secret.string()});
  auto r = sync(a, {"--base-url", srv.url()});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("absolute path") != std::string::npos, r.describe());
  fs::path d = offline_dir(tmp.path(), "dot00001", {"../../secret.txt"});
  auto r2 = sync(d, {"--base-url", srv.url()});
  BOOST_TEST(r2.exit_code == 1, r2.describe());
  BOOST_TEST(r2.err.find("'..'") != std::string::npos, r2.describe());
  BOOST_TEST(json::serialize(srv.state()).find("TOP-SECRET") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(symlink_in_the_run_directory_is_refused_not_followed) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-sync");
  fs::path secret = tmp.path() / "secret.txt";
  std::ofstream(secret) << "TOP-SECRET-CONTENT";
  fs::path dir = offline_dir(tmp.path(), "lnk00001", {"media/x.txt"});
  fs::create_symlink(secret, dir / "files" / "wandb-metadata.json");
  auto r = sync(dir, {"--base-url", srv.url()});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("symlink") != std::string::npos, r.describe());
  // A symlinked directory on the way is refused too.
  fs::path dir2 = offline_dir(tmp.path(), "lnk00002", {"media/x.txt"});
  fs::create_directory_symlink(tmp.path(), dir2 / "files" / "media");
  std::ofstream(tmp.path() / "x.txt") << "TOP-SECRET-CONTENT";
  auto r2 = sync(dir2, {"--base-url", srv.url()});
  BOOST_TEST(r2.exit_code == 1, r2.describe());
  BOOST_TEST(json::serialize(srv.state()).find("TOP-SECRET") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(planted_synced_marker_symlink_does_not_truncate_its_target) {
  ember::test::wandb::CleanEnv env;
  Server srv;
  TempDir tmp("wandb-sync");
  fs::path victim = tmp.path() / "victim.txt";
  std::ofstream(victim) << "precious";
  fs::path dir = offline_dir(tmp.path(), "syn00001", {});
  fs::create_symlink(victim, dir / ".synced");
  auto r = sync(dir, {"--base-url", srv.url()});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("symlink") != std::string::npos, r.describe());
  BOOST_TEST(read_file(victim) == "precious");
}

// A spool directory's meta.json names a base URL; the key must not go there. The user's own
// settings (here W&B's settings file) decide.
BOOST_AUTO_TEST_CASE(spool_meta_json_does_not_choose_where_the_key_goes) {
  ember::test::wandb::CleanEnv env;
  Server mine, attacker;
  TempDir tmp("wandb-sync"), cfg("wandb-cfg");
  fs::path dir = tmp.path() / "run-spool001-1";
  fs::create_directories(dir);
  std::ofstream(dir / "meta.json") << json::serialize(json::object{
      {"project", "proj"}, {"run_id", "spool001"}, {"base_url", attacker.url()}, {"pid", 1}, {"hostname", "h"}});
  std::ofstream(dir / "hist-000000000000000.jsonl") << "{\"loss\": 1, \"_step\": 0, \"_runtime\": 0.5, \"_timestamp\": 1700000000}\n";
  std::ofstream(cfg.path() / "settings") << "[default]\nbase_url = " << mine.url() << "\n";
  ::setenv("WANDB_CONFIG_DIR", cfg.path().c_str(), 1);
  auto r = sync(dir);
  ::unsetenv("WANDB_CONFIG_DIR");
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  BOOST_TEST(attacker.state().at("requests").as_array().empty());
  BOOST_TEST(mine.run("spool001").at("history").as_array().size() == 1u);
  BOOST_TEST(r.err.find("spooled for") != std::string::npos, r.describe());
}

BOOST_AUTO_TEST_CASE(plain_http_to_a_non_loopback_host_is_refused_before_any_request) {
  ember::test::wandb::CleanEnv env;
  TempDir tmp("wandb-sync");
  fs::path dir = offline_dir(tmp.path(), "http0001", {});
  auto r = sync(dir, {"--base-url", "http://wandb.example.invalid"});
  BOOST_TEST(r.exit_code == 1, r.describe());
  BOOST_TEST(r.err.find("--allow-insecure-http") != std::string::npos, r.describe());
  BOOST_TEST(r.err.find(kKey) == std::string::npos);
  auto r2 = run_process({ember_exe(), "wandb", "download", "e/p/n", "--to", (tmp.path() / "o").string(), "--base-url",
                         "http://10.1.2.3:8080"});
  BOOST_TEST(r2.exit_code == 1, r2.describe());
  BOOST_TEST(r2.err.find("plain http") != std::string::npos, r2.describe());
}

BOOST_AUTO_TEST_SUITE_END()
