// The pieces the storage plugins share (include/ember/net/): the retry policy's bounds and the
// statuses it retries, the upload pool's bound on parts in flight, its buffer reuse and its
// failure order, and the prefetcher's ranges and order. Standard library only (plus Boost's
// property tree for xml.hpp): no server, no plugin.
#define BOOST_TEST_MODULE net_storage
#include <boost/test/unit_test.hpp>

#include <ember/net/http_date.hpp>
#include <ember/net/prefetch.hpp>
#include <ember/net/retry.hpp>
#include <ember/net/upload_pool.hpp>
#include <ember/net/xml.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace net = ember::net;

BOOST_AUTO_TEST_CASE(backoff_is_full_jitter_under_the_exponential_cap) {
  net::RetryPolicy p{5, 100, 1000};
  BOOST_TEST(p.cap_ms(1) == 200.0);
  BOOST_TEST(p.cap_ms(3) == 800.0);
  BOOST_TEST(p.cap_ms(4) == 1000.0);   // max_ms
  BOOST_TEST(p.cap_ms(40) == 1000.0);  // no overflow past 2^20
  for (int i = 0; i < 200; ++i) {
    auto d = p.delay(2);
    BOOST_TEST(d.count() >= 0);
    BOOST_TEST(d.count() <= 400 * 1000);
  }
  BOOST_TEST(!p.exhausted(4));
  BOOST_TEST(p.exhausted(5));
  BOOST_TEST(net::RetryPolicy::gave_up("x", 1) == "x");
  BOOST_TEST(net::RetryPolicy::gave_up("x", 3) == "x (gave up after 3 attempts)");
}

BOOST_AUTO_TEST_CASE(retryable_statuses_are_429_and_transient_5xx_plus_the_stores_own) {
  for (int s : {429, 500, 502, 503, 504}) BOOST_TEST(net::retryable_status(s), s);
  for (int s : {200, 400, 401, 403, 404, 408, 412, 501}) BOOST_TEST(!net::retryable_status(s), s);
  BOOST_TEST(net::retryable_status(408, {408}));
}

BOOST_AUTO_TEST_CASE(upload_pool_bounds_parts_in_flight_and_reuses_buffers) {
  std::mutex mu;
  int running = 0, most = 0;
  std::vector<std::string> seen;
  std::set<const void*> buffers;
  const std::string a(32, 'a'), b(32, 'b'), c(32, 'c'), d(32, 'd');  // past the small-string buffer
  const std::string data = a + b + c + d + "e";
  {
    net::UploadPool pool(32, 2);
    std::size_t at = 0;
    while (at < data.size()) {
      at += pool.fill(data.data() + at, data.size() - at);
      if (pool.full())
        pool.ship([&](const std::string& part) {
          {
            std::lock_guard<std::mutex> lock(mu);
            most = std::max(most, ++running);
            seen.push_back(part);
            buffers.insert(part.data());
          }
          std::lock_guard<std::mutex> lock(mu);
          --running;
        });
      BOOST_TEST(pool.in_flight() <= 2u);
    }
    BOOST_TEST(pool.filling() == "e");
    pool.wait_all();
  }
  BOOST_TEST(most <= 2);
  std::multiset<std::string> parts(seen.begin(), seen.end());
  BOOST_TEST((parts == std::multiset<std::string>{a, b, c, d}));
  // Four parts through at most three buffers (two in flight, one filling).
  BOOST_TEST(buffers.size() <= 3u);
}

BOOST_AUTO_TEST_CASE(upload_pool_rethrows_a_part_failure_after_waiting_for_the_others) {
  std::atomic<int> finished{0};
  net::UploadPool pool(1, 2);
  pool.fill("a", 1);
  pool.ship([](const std::string&) { throw std::runtime_error("part 1 failed"); });
  pool.fill("b", 1);
  pool.ship([&](const std::string&) { ++finished; });
  pool.fill("c", 1);
  BOOST_CHECK_EXCEPTION(pool.wait_for_room(), std::runtime_error,
                        [](const std::runtime_error& e) { return std::string(e.what()) == "part 1 failed"; });
  BOOST_TEST(finished.load() == 1);  // drained before the failure was reported
  BOOST_TEST(pool.in_flight() == 0u);
}

BOOST_AUTO_TEST_CASE(prefetcher_reads_the_range_in_order_in_chunks) {
  const std::string object = "0123456789abcdefghij";
  std::mutex mu;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> asked;
  net::RangePrefetcher p(6, 3, [&](std::uint64_t first, std::uint64_t last) {
    std::lock_guard<std::mutex> lock(mu);
    asked.emplace_back(first, last);
    return object.substr(first, last - first + 1);
  });
  p.start(2, 17);
  std::string got, chunks;
  char buf[4];
  for (std::size_t n; (n = p.read(buf, sizeof buf, [&](const std::string& c) { chunks += "[" + c + "]"; })) > 0;)
    got.append(buf, n);
  BOOST_TEST(got == object.substr(2, 15));
  BOOST_TEST(chunks == "[234567][89abcd][efg]");
  BOOST_TEST(p.done());
  BOOST_TEST(asked.size() == 3u);
}

BOOST_AUTO_TEST_CASE(prefetcher_rethrows_a_chunk_failure_when_the_reader_reaches_it) {
  net::RangePrefetcher p(2, 2, [](std::uint64_t first, std::uint64_t last) -> std::string {
    if (first == 2) throw std::runtime_error("chunk 2 failed");
    return std::string(last - first + 1, 'x');
  });
  p.start(0, 4);
  char buf[2];
  BOOST_TEST(p.read(buf, 2) == 2u);
  BOOST_CHECK_THROW(p.read(buf, 2), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(http_dates_round_trip_and_bad_ones_read_as_zero) {
  BOOST_TEST(net::format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  BOOST_TEST(net::parse_http_date_ns("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777LL * 1000000000);
  BOOST_TEST(net::parse_http_date_ns("yesterday") == 0);
  BOOST_TEST(net::parse_http_date_ns("") == 0);
}

BOOST_AUTO_TEST_CASE(xml_that_does_not_parse_is_an_empty_tree) {
  BOOST_TEST(net::parse_xml("<Error><Code>SlowDown</Code></Error>").get<std::string>("Error.Code", "") == "SlowDown");
  BOOST_TEST(net::parse_xml("<html>not xml").empty());
  BOOST_TEST(net::xml_escape("a<b>&\"c\"") == "a&lt;b&gt;&amp;&quot;c&quot;");
}
