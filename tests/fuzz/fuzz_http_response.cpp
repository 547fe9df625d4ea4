// libFuzzer target: what ember::http::Client does with a server's answer — status line,
// headers, chunked or sized or close-delimited bodies, keep-alive — for the buffered (send) and
// the streaming (send_streaming) reads. A server thread on 127.0.0.1 answers every request with
// the input's bytes and closes the connection, so every exchange ends: no answer can hold the
// client (that a trickling server can is issue 10 item 12, not what this target looks for).
// The first byte picks the read path and the method (HEAD has no body). A refusal
// (http::Error or another exception) is expected; a crash or sanitizer report is a finding.
#include "loopback_server.hpp"

#include <ember/net/http.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::LoopbackServer& server = fuzz::loopback_server();
  server.set_payload(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  ember::http::Options opt;
  opt.timeout = std::chrono::milliseconds(5000);
  ember::http::Client client("http", "127.0.0.1", server.port(), opt);
  ember::http::Request req;
  req.method = (data[0] & 2) ? "HEAD" : "GET";
  req.target = "/fuzz?x=1";
  try {
    if (data[0] % 2 == 0) {
      ember::http::Response r = client.send(req);
      (void)r.header("content-type");
    } else {
      std::size_t total = 0;
      (void)client.send_streaming(req, [&](const char*, std::size_t n) { total += n; });
    }
  } catch (const std::exception&) {
  }
  return 0;
}
