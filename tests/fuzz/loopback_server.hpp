// A server for the fuzz targets that speak HTTP: on 127.0.0.1 (an ephemeral port), it answers
// every request with the current payload, taken verbatim as the whole HTTP answer, and closes
// the connection — so every exchange ends and no input can hold a client. One thread, one
// connection at a time. Get it with loopback_server(): it is never destroyed, because its thread
// runs until the process ends (destroying it at exit would pull the io_context from under it).
#pragma once

#include <boost/asio.hpp>

#include <mutex>
#include <string>
#include <thread>

namespace fuzz {

class LoopbackServer {
 public:
  LoopbackServer() : acceptor_(ioc_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = std::to_string(acceptor_.local_endpoint().port());
    std::thread([this] { serve(); }).detach();
  }
  const std::string& port() const { return port_; }
  void set_payload(std::string p) {
    std::lock_guard<std::mutex> lock(mutex_);
    payload_ = std::move(p);
  }

 private:
  using tcp = boost::asio::ip::tcp;
  void serve() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s(ioc_);
      acceptor_.accept(s, ec);
      if (ec) continue;
      // The request: its header, then as many body bytes as Content-Length says (uploads).
      std::string req;
      char buf[65536];
      std::size_t end = std::string::npos;
      while ((end = req.find("\r\n\r\n")) == std::string::npos) {
        std::size_t n = s.read_some(boost::asio::buffer(buf), ec);
        if (ec) break;
        req.append(buf, n);
      }
      if (ec) continue;
      std::size_t want = end + 4 + content_length(req.substr(0, end));
      while (req.size() < want) {
        std::size_t n = s.read_some(boost::asio::buffer(buf), ec);
        if (ec) break;
        req.append(buf, n);
      }
      std::string p;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        p = payload_;
      }
      boost::asio::write(s, boost::asio::buffer(p), ec);
      s.shutdown(tcp::socket::shutdown_both, ec);
      s.close(ec);
    }
  }
  static std::size_t content_length(const std::string& header) {
    std::string lower;
    for (char c : header) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto at = lower.find("\r\ncontent-length:");
    return at == std::string::npos ? 0 : std::strtoull(lower.c_str() + at + 17, nullptr, 10);
  }
  boost::asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::string port_;
  std::mutex mutex_;
  std::string payload_;
};

inline LoopbackServer& loopback_server() {
  static LoopbackServer* server = new LoopbackServer;
  return *server;
}

}  // namespace fuzz
