// The URL space: atomic file writes, ranged reads, listing without temporaries, the memory
// backend, scheme routing errors, and keys that are not plain ASCII.
#define BOOST_TEST_MODULE storage
#include <boost/test/unit_test.hpp>

#include <ember/storage.hpp>

#include "expect.hpp"
#include "temp_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using ember::RuntimeError;
using ember::storage::Backend;
using ember::storage::UrlSpace;

namespace {

using ember::test::contains;
using ember::test::error_of;

std::string read_range(const UrlSpace& urls, const std::string& url, std::uint64_t offset,
                       std::uint64_t length, std::size_t chunk = 3) {
  auto r = urls.open_read(url, offset, length);
  std::string out;
  std::vector<char> buf(chunk);
  while (std::size_t n = r->read(buf.data(), buf.size())) out.append(buf.data(), n);
  return out;
}

std::vector<std::string> urls_of(const std::vector<ember::storage::Stat>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.url);
  return out;
}

// Names in dir that look like the file backend's temporaries.
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& name : ember::test::list_dir(dir))
    if (contains(name, ".tmp-")) out.push_back(name);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(file_backend)

BOOST_AUTO_TEST_CASE(writer_publishes_only_on_commit) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const fs::path final_path = tmp / "ckpt.bin";
  auto w = urls.open_write(final_path.string());
  w->write("hello ", 6);
  w->write("world", 5);
  BOOST_TEST(!fs::exists(final_path));               // not under the final name yet
  BOOST_TEST(temporaries(tmp.path()).size() == 1u);  // but being written beside it
  w->commit();
  BOOST_TEST(fs::exists(final_path));
  BOOST_TEST(ember::test::read_file(final_path) == "hello world");
  w.reset();
  BOOST_TEST(temporaries(tmp.path()).empty());
  BOOST_TEST(ember::test::list_dir(tmp.path()) == std::vector<std::string>{"ckpt.bin"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(uncommitted_writer_leaves_previous_content_and_no_temporary) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string url = (tmp / "last.ckpt").string();
  urls.put_atomic(url, "previous");
  {
    auto w = urls.open_write(url);
    w->write("half-written new content", 24);
    BOOST_TEST(urls.read_all(url) == "previous");
  }  // destroyed without commit: aborted
  BOOST_TEST(urls.read_all(url) == "previous");
  BOOST_TEST(temporaries(tmp.path()).empty());
  BOOST_TEST(ember::test::list_dir(tmp.path()) == std::vector<std::string>{"last.ckpt"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(uncommitted_first_write_leaves_nothing) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  { urls.open_write((tmp / "never.bin").string())->write("x", 1); }
  BOOST_TEST(ember::test::list_dir(tmp.path()).empty());
}

BOOST_AUTO_TEST_CASE(commit_replaces_previous_content) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string url = "file://" + (tmp / "a.txt").string();
  urls.put_atomic(url, "one");
  urls.put_atomic(url, "two, longer");
  BOOST_TEST(urls.read_all(url) == "two, longer");
}

BOOST_AUTO_TEST_CASE(first_write_creates_parent_directories) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const fs::path p = tmp / "a" / "b" / "c" / "file.txt";
  BOOST_TEST(!fs::exists(tmp / "a"));
  urls.put_atomic(p.string(), "deep");
  BOOST_TEST(ember::test::read_file(p) == "deep");
}

BOOST_AUTO_TEST_CASE(opening_for_write_creates_nothing_outside_the_target_directory) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  urls.put_atomic((tmp / "x.txt").string(), "x");
  BOOST_TEST(ember::test::list_dir(tmp.path()) == std::vector<std::string>{"x.txt"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(ranged_reads_return_the_requested_bytes) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string url = (tmp / "digits").string();
  urls.put_atomic(url, "0123456789");
  BOOST_TEST(read_range(urls, url, 0, Backend::kToEnd) == "0123456789");
  BOOST_TEST(read_range(urls, url, 2, 3) == "234");
  BOOST_TEST(read_range(urls, url, 7, Backend::kToEnd) == "789");
  BOOST_TEST(read_range(urls, url, 8, 100) == "89");
  BOOST_TEST(read_range(urls, url, 10, 5) == "");
  BOOST_TEST(read_range(urls, url, 50, 5) == "");
  BOOST_TEST(read_range(urls, url, 0, 0) == "");
  BOOST_TEST(read_range(urls, url, 1, 8, 1) == "12345678");
}

BOOST_AUTO_TEST_CASE(file_url_and_bare_path_name_the_same_file) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const fs::path p = tmp / "same.txt";
  urls.put_atomic("file://" + p.string(), "via url");
  BOOST_TEST(urls.read_all(p.string()) == "via url");
}

BOOST_AUTO_TEST_CASE(list_hides_temporaries_and_marks_directories) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string dir = tmp.path().string();
  urls.put_atomic(dir + "/b.txt", "bb");
  urls.put_atomic(dir + "/a.txt", "a");
  urls.put_atomic(dir + "/sub/c.txt", "c");
  auto pending = urls.open_write(dir + "/pending.txt");  // a temporary exists meanwhile
  pending->write("p", 1);
  BOOST_TEST_REQUIRE(temporaries(tmp.path()).size() == 1u);

  auto entries = urls.list(dir);
  const std::vector<std::string> expected{dir + "/a.txt", dir + "/b.txt", dir + "/sub"};
  BOOST_TEST(urls_of(entries) == expected, boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(entries.size() == 3u);
  BOOST_TEST(!entries[0].is_dir);
  BOOST_TEST(entries[1].size == 2u);
  BOOST_TEST(entries[2].is_dir);
  BOOST_TEST(urls_of(urls.list(dir + "/")) == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(list_of_missing_directory_is_empty) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  BOOST_TEST(urls.list((tmp / "nothing-here").string()).empty());
}

BOOST_AUTO_TEST_CASE(stat_and_remove) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string url = (tmp / "s.bin").string();
  BOOST_TEST(!urls.stat(url).has_value());
  urls.put_atomic(url, "12345");
  auto st = urls.stat(url);
  BOOST_TEST_REQUIRE(st.has_value());
  BOOST_TEST(st->size == 5u);
  BOOST_TEST(!st->is_dir);
  BOOST_TEST(st->mtime_ns > 0);
  BOOST_TEST(urls.stat(tmp.path().string())->is_dir);
  BOOST_TEST(urls.remove(url));
  BOOST_TEST(!urls.remove(url));
  BOOST_TEST(!fs::exists(url));
}

BOOST_AUTO_TEST_CASE(reading_a_missing_file_names_the_url) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string url = (tmp / "absent.bin").string();
  const std::string what = error_of([&] { urls.read_all(url); });
  BOOST_TEST(contains(what, url), what);
  BOOST_CHECK_THROW(urls.read_all(url), RuntimeError);
}

BOOST_AUTO_TEST_CASE(keys_with_spaces_and_unicode_round_trip) {
  ember::test::TempDir tmp;
  UrlSpace urls;
  const std::string dir = (tmp / "my runs ✓").string();
  const std::string url = dir + "/ëpoch 3 — données.ckpt";
  urls.put_atomic(url, "unicode bytes: \xC3\xA9");
  BOOST_TEST(urls.read_all(url) == "unicode bytes: \xC3\xA9");
  BOOST_TEST(urls_of(urls.list(dir)) == std::vector<std::string>{url}, boost::test_tools::per_element());
  BOOST_TEST(urls.stat(url).has_value());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(memory_backend)

BOOST_AUTO_TEST_CASE(round_trips_bytes_including_nul) {
  UrlSpace urls;
  const std::string bytes("a\0b\0c", 5);
  urls.put_atomic("memory://bucket/blob", bytes);
  BOOST_TEST(urls.read_all("memory://bucket/blob") == bytes);
  BOOST_TEST(read_range(urls, "memory://bucket/blob", 1, 3) == std::string("\0b\0", 3));
  BOOST_TEST(read_range(urls, "memory://bucket/blob", 9, 3) == "");
}

BOOST_AUTO_TEST_CASE(uncommitted_write_publishes_nothing) {
  UrlSpace urls;
  urls.put_atomic("memory://b/k", "old");
  {
    auto w = urls.open_write("memory://b/k");
    w->write("new", 3);
  }
  BOOST_TEST(urls.read_all("memory://b/k") == "old");
  { urls.open_write("memory://b/other")->write("x", 1); }
  BOOST_TEST(!urls.stat("memory://b/other").has_value());
}

BOOST_AUTO_TEST_CASE(lists_one_level_with_common_prefixes_as_directories) {
  UrlSpace urls;
  urls.put_atomic("memory://bkt/run/a.txt", "a");
  urls.put_atomic("memory://bkt/run/ckpt/e1.ckpt", "1");
  urls.put_atomic("memory://bkt/run/ckpt/e2.ckpt", "22");
  urls.put_atomic("memory://bkt/run/z.txt", "zz");
  urls.put_atomic("memory://bkt/runner.txt", "not under run/");
  auto entries = urls.list("memory://bkt/run");
  const std::vector<std::string> expected{"memory://bkt/run/a.txt", "memory://bkt/run/ckpt",
                                          "memory://bkt/run/z.txt"};
  BOOST_TEST(urls_of(entries) == expected, boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(entries.size() == 3u);
  BOOST_TEST(entries[1].is_dir);
  BOOST_TEST(entries[2].size == 2u);
  const std::vector<std::string> ckpts{"memory://bkt/run/ckpt/e1.ckpt", "memory://bkt/run/ckpt/e2.ckpt"};
  BOOST_TEST(urls_of(urls.list("memory://bkt/run/ckpt/")) == ckpts, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stat_sees_objects_and_prefixes_and_remove_deletes) {
  UrlSpace urls;
  urls.put_atomic("memory://b/dir/x", "xyz");
  BOOST_TEST(urls.stat("memory://b/dir/x")->size == 3u);
  BOOST_TEST(urls.stat("memory://b/dir")->is_dir);
  BOOST_TEST(!urls.stat("memory://b/nope").has_value());
  BOOST_TEST(urls.remove("memory://b/dir/x"));
  BOOST_TEST(!urls.remove("memory://b/dir/x"));
  BOOST_TEST(!urls.stat("memory://b/dir").has_value());
  BOOST_CHECK_THROW(urls.read_all("memory://b/dir/x"), RuntimeError);
}

BOOST_AUTO_TEST_CASE(keys_with_spaces_and_unicode_round_trip) {
  UrlSpace urls;
  const std::string url = "memory://bücket/my dir/naïve ✓.json";
  urls.put_atomic(url, "{}");
  BOOST_TEST(urls.read_all(url) == "{}");
  BOOST_TEST(urls_of(urls.list("memory://bücket/my dir")) == std::vector<std::string>{url},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(each_url_space_has_its_own_memory) {
  UrlSpace a, b;
  a.put_atomic("memory://x/k", "v");
  BOOST_TEST(!b.stat("memory://x/k").has_value());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(routing)

BOOST_AUTO_TEST_CASE(unknown_scheme_error_lists_registered_schemes) {
  UrlSpace urls;
  const std::string what = error_of([&] { urls.read_all("s3://bucket/key"); });
  BOOST_TEST(contains(what, "unknown URL scheme 's3'"), what);
  BOOST_TEST(contains(what, "s3://bucket/key"), what);
  BOOST_TEST(contains(what, "file://"), what);
  BOOST_TEST(contains(what, "memory://"), what);
  BOOST_CHECK_THROW(urls.open_write("gs://b/k"), RuntimeError);
}

BOOST_AUTO_TEST_CASE(an_added_backend_serves_its_scheme) {
  UrlSpace urls;
  urls.add("s3", std::make_shared<ember::storage::MemoryBackend>());
  urls.put_atomic("s3://bucket/key", "via s3");
  BOOST_TEST(urls.read_all("s3://bucket/key") == "via s3");
  auto schemes = urls.schemes();
  BOOST_TEST((std::find(schemes.begin(), schemes.end(), "s3") != schemes.end()));
}

BOOST_AUTO_TEST_CASE(scheme_of_lowercases_and_treats_bare_paths_as_file) {
  using ember::storage::scheme_of;
  BOOST_TEST(scheme_of("s3://b/k") == "s3");
  BOOST_TEST(scheme_of("S3://b/k") == "s3");
  BOOST_TEST(scheme_of("file:///tmp/x") == "file");
  BOOST_TEST(scheme_of("/tmp/x") == "file");
  BOOST_TEST(scheme_of("relative/dir") == "file");
  BOOST_TEST(scheme_of("odd name://x") == "file");
  BOOST_TEST(scheme_of("://x") == "file");
  BOOST_TEST(scheme_of("memory://x") == "memory");
}

BOOST_AUTO_TEST_CASE(join_puts_exactly_one_slash) {
  using ember::storage::join;
  BOOST_TEST(join("s3://b/dir", "k") == "s3://b/dir/k");
  BOOST_TEST(join("s3://b/dir/", "k") == "s3://b/dir/k");
  BOOST_TEST(join("s3://b/dir/", "/k") == "s3://b/dir/k");
  BOOST_TEST(join("", "k") == "k");
}

BOOST_AUTO_TEST_SUITE_END()
