// ember/net/http.hpp against loopback servers that misbehave on purpose: a drip of one byte at a
// time meets the whole-request deadline; answers over the body limit (or a 200 where a Range was
// asked) fail before the body is read, and are not retryable; a POST is never sent twice on its
// own; messages never show a query string or userinfo; credentials over plain http go to
// loopback only.
#define BOOST_TEST_MODULE s3_http
#include <boost/test/unit_test.hpp>

#include <ember/net/http.hpp>

#include "expect.hpp"
#include "loopback_server.hpp"

#include <atomic>
#include <future>

using ember::test::LoopbackServer;
namespace http = ember::http;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The http::Error a call throws (the test fails when it throws nothing).
template <class F>
http::Error error_of(F&& f) {
  try {
    f();
  } catch (const http::Error& e) {
    return e;
  }
  BOOST_FAIL("expected an http::Error");
  throw std::logic_error("unreachable");
}

http::Client client(const LoopbackServer& s, http::Options o = {}) { return {"http", "127.0.0.1", s.port(), o}; }

}  // namespace

BOOST_AUTO_TEST_CASE(a_server_dripping_one_byte_at_a_time_hits_the_request_deadline) {
  std::atomic<int> bytes{0};
  LoopbackServer server([&](int fd, int) {
    std::string carry;
    if (!LoopbackServer::read_request(fd, carry)) return;
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    // Each byte well inside the per-step timeout, so only a whole-request bound can stop it.
    for (char c : head + std::string(100000, 'x')) {
      if (!LoopbackServer::write_all(fd, std::string_view(&c, 1))) return;
      ++bytes;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  http::Options o;
  o.timeout = std::chrono::milliseconds(5000);
  o.deadline = std::chrono::milliseconds(400);
  auto c = client(server, o);
  auto e = error_of([&] { c.send({"GET", "/slow?sig=SECRET", {}, ""}); });
  std::string m = e.what();
  BOOST_TEST(e.timed_out(), m);
  BOOST_TEST(contains(m, "deadline of 400 ms"), m);
  BOOST_TEST(contains(m, "GET /slow"), m);
  BOOST_TEST(!contains(m, "SECRET"), m);
  BOOST_TEST(bytes.load() < 100000);
  // A per-request deadline replaces the client's.
  http::Request r{"GET", "/slow", {}, ""};
  r.deadline = std::chrono::milliseconds(250);
  auto e2 = error_of([&] { c.send(r); });
  BOOST_TEST(contains(e2.what(), "deadline of 250 ms"), e2.what());
}

BOOST_AUTO_TEST_CASE(an_answer_over_the_body_limit_fails_before_its_body_is_read_and_is_not_retryable) {
  std::atomic<int> requests{0};
  LoopbackServer server([&](int fd, int) {
    std::string carry;
    while (auto r = LoopbackServer::read_request(fd, carry)) {
      ++requests;
      // Declares 1 GiB and sends only the header: a client that honours the limit never waits.
      if (r->target == "/huge") LoopbackServer::write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
      if (r->target == "/chunked") {
        LoopbackServer::write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 64; ++i)
          if (!LoopbackServer::write_all(fd, "4000\r\n" + std::string(0x4000, 'y') + "\r\n")) return;
        LoopbackServer::write_all(fd, "0\r\n\r\n");
      }
      if (r->target == "/small") LoopbackServer::answer(fd, 200, "fine");
    }
  });
  http::Options o;
  o.max_body = 64 * 1024;
  auto c = client(server, o);
  auto e = error_of([&] { c.send({"GET", "/huge", {}, ""}); });
  BOOST_TEST(!e.retryable(), e.what());
  BOOST_TEST(contains(e.what(), "larger than its limit of 65536 bytes"), e.what());
  BOOST_TEST(contains(e.what(), "GET /huge"), e.what());
  // Without a Content-Length the limit still holds, while the body streams in.
  auto e2 = error_of([&] { c.send({"GET", "/chunked", {}, ""}); });
  BOOST_TEST(!e2.retryable(), e2.what());
  BOOST_TEST(contains(e2.what(), "larger than its limit"), e2.what());
  // A per-call limit replaces the client's, and a 200 where a Range was asked is named.
  http::Request ranged{"GET", "/huge", {{"Range", "bytes=0-99"}}, ""};
  ranged.body_limit = 100;
  auto e3 = error_of([&] { c.send(ranged); });
  BOOST_TEST(contains(e3.what(), "limit of 100 bytes"), e3.what());
  BOOST_TEST(contains(e3.what(), "ignored the Range header"), e3.what());
  // The connection was dropped, not left mid-body: the next request works.
  BOOST_TEST(c.send({"GET", "/small", {}, ""}).body == "fine");
  // A streamed answer has no limit unless the request sets one.
  http::Request streamed{"GET", "/chunked", {}, ""};
  std::size_t got = 0;
  BOOST_TEST(c.send_streaming(streamed, [&](const char*, std::size_t n) { got += n; }).status == 200);
  BOOST_TEST(got == 64u * 0x4000);
  streamed.body_limit = 1000;
  BOOST_TEST(!error_of([&] { c.send_streaming(streamed, [](const char*, std::size_t) {}); }).retryable());
}

// The server answers the first request on a connection and drops the connection at the second
// one without answering (as a server closing an idle keep-alive connection does, or one that
// crashed after acting on it).
struct DropsSecondRequest {
  std::atomic<int> gets{0}, posts{0};
  LoopbackServer server{[this](int fd, int) {
    std::string carry;
    for (int n = 0;; ++n) {
      auto r = LoopbackServer::read_request(fd, carry);
      if (!r) return;
      ++(r->method == "POST" ? posts : gets);
      if (n == 1) return;  // the handler's return shuts the connection
      LoopbackServer::answer(fd, 200, "ok");
    }
  }};
};

BOOST_AUTO_TEST_CASE(a_get_on_a_dropped_keep_alive_connection_is_sent_once_more) {
  DropsSecondRequest s;
  auto c = client(s.server);
  BOOST_TEST(c.send({"GET", "/a", {}, ""}).status == 200);
  BOOST_TEST(c.send({"GET", "/b", {}, ""}).status == 200);
  BOOST_TEST(s.gets.load() == 3);
  BOOST_TEST(s.server.connections() == 2);
}

BOOST_AUTO_TEST_CASE(a_post_on_a_dropped_keep_alive_connection_is_never_resent) {
  DropsSecondRequest s;
  auto c = client(s.server);
  BOOST_TEST(c.send({"GET", "/a", {}, ""}).status == 200);
  auto e = error_of([&] { c.send({"POST", "/create?uploads=", {}, "payload"}); });
  BOOST_TEST(s.posts.load() == 1, e.what());
  BOOST_TEST(s.server.connections() == 1);
  BOOST_TEST(contains(e.what(), "POST /create"), e.what());
  BOOST_TEST(!contains(e.what(), "uploads="), e.what());
}

// A server that closes a keep-alive connection after its answer (an idle timeout): the client
// sees the connection readable before the next request and opens a fresh one, so even a POST
// goes through without being resent.
BOOST_AUTO_TEST_CASE(a_post_after_the_server_closed_an_idle_connection_goes_on_a_fresh_one) {
  std::atomic<int> posts{0};
  std::promise<void> closed;
  LoopbackServer server([&](int fd, int n) {
    std::string carry;
    auto r = LoopbackServer::read_request(fd, carry);
    if (!r) return;
    if (r->method == "POST") ++posts;
    LoopbackServer::answer(fd, 200, "ok");
    if (n == 0) {
      ::shutdown(fd, SHUT_RDWR);
      closed.set_value();
    }
  });
  auto c = client(server);
  BOOST_TEST(c.send({"GET", "/a", {}, ""}).status == 200);
  closed.get_future().wait();
  BOOST_TEST(c.send({"POST", "/b", {}, "payload"}).status == 200);
  BOOST_TEST(posts.load() == 1);
  BOOST_TEST(server.connections() == 2);
}

// A caller may declare a POST safe to repeat.
BOOST_AUTO_TEST_CASE(a_post_declared_idempotent_is_resent_on_a_dropped_connection) {
  DropsSecondRequest s;
  auto c = client(s.server);
  BOOST_TEST(c.send({"GET", "/a", {}, ""}).status == 200);
  http::Request r{"POST", "/stream", {}, "offsets"};
  r.idempotent = true;
  BOOST_TEST(c.send(r).status == 200);
  BOOST_TEST(s.posts.load() == 2);
}

BOOST_AUTO_TEST_CASE(network_errors_name_the_path_but_never_the_query) {
  LoopbackServer server([](int fd, int) {
    std::string carry;
    LoopbackServer::read_request(fd, carry);  // and close without answering
  });
  auto c = client(server);
  auto e = error_of([&] {
    c.send({"PUT", "/bucket/obj?X-Goog-Signature=abcdef0123456789&X-Amz-Credential=AKIA", {}, "x"});
  });
  std::string m = e.what();
  BOOST_TEST(contains(m, "PUT /bucket/obj"), m);
  BOOST_TEST(!contains(m, "abcdef0123456789"), m);
  BOOST_TEST(!contains(m, "AKIA"), m);
  BOOST_TEST(!contains(m, "?"), m);
}

BOOST_AUTO_TEST_CASE(display_url_shows_scheme_host_and_path_only) {
  BOOST_TEST(http::display_url("https://storage.googleapis.com/b/o.bin?X-Goog-Signature=abc&X-Goog-Date=1") ==
             "https://storage.googleapis.com/b/o.bin?...");
  BOOST_TEST(http::display_url("https://user:hunter2@example.com:8443/p#frag") == "https://example.com:8443/p?...");
  BOOST_TEST(http::display_url("http://[::1]:9000/x") == "http://[::1]:9000/x");
  BOOST_TEST(http::display_url("https://h/a%20b") == "https://h/a%20b");
  // Not a URL at all: cut by hand, the same way.
  std::string bad = http::display_url("ht tp://user:pw@host/p a?sig=SECRET");
  BOOST_TEST(!contains(bad, "SECRET"), bad);
  BOOST_TEST(!contains(bad, "pw"), bad);
  BOOST_TEST(contains(bad, "host/p a"), bad);
  // Url::parse's errors use it too.
  for (const char* text : {"ftp://u:pw@h/x?sig=SECRET", "https:///nohost?sig=SECRET", "https://u:pw@h/\x01?sig=SECRET"}) {
    auto e = error_of([&] { http::Url::parse(text); });
    BOOST_TEST(!contains(e.what(), "SECRET"), e.what());
    BOOST_TEST(!contains(e.what(), "pw@"), e.what());
    BOOST_TEST(!e.retryable());
  }
  auto u = http::Url::parse("https://h.example/a/b?X-Amz-Signature=s");
  BOOST_TEST(u.display() == "https://h.example/a/b");
  BOOST_TEST(u.target == "/a/b?X-Amz-Signature=s");
}

BOOST_AUTO_TEST_CASE(credentials_over_plain_http_go_to_loopback_only) {
  for (const char* host : {"localhost", "LOCALHOST.", "127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"})
    BOOST_TEST(http::is_loopback_host(host), host);
  for (const char* host : {"example.com", "10.0.0.1", "169.254.170.2", "::", "0.0.0.0", "localhost.example.com", "127.0.0.1.nip.io",
                           "a.localhost"})
    BOOST_TEST(!http::is_loopback_host(host), host);
  http::require_secure_transport(http::Url::parse("http://127.0.0.1:9000/"), false, "k");
  http::require_secure_transport(http::Url::parse("https://s3.example.com/"), false, "k");
  http::require_secure_transport(http::Url::parse("http://s3.example.com/"), true, "k");
  auto e = error_of([] { http::require_secure_transport(http::Url::parse("http://s3.example.com:9000/x?q=1"), false,
                                                         "the s3 config key allow_insecure_http"); });
  BOOST_TEST(contains(e.what(), "http://s3.example.com:9000/x"), e.what());
  BOOST_TEST(contains(e.what(), "allow_insecure_http"), e.what());
  BOOST_TEST(!contains(e.what(), "q=1"), e.what());
  BOOST_TEST(!e.retryable());
}
