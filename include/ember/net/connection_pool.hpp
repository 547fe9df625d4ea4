// Keep-alive connections for a plugin that talks to a few HTTP endpoints from several threads
// (the storage plugins: part uploads and read prefetches in parallel). One pool per service;
// connections are kept per scheme://host:port. Header-only; what ember/net/http.hpp needs.
//
//   net::ConnectionPool pool(options, /*max_idle=*/6);
//   {
//     net::ConnectionPool::Lease c(pool, url);   // an idle connection, or a new one
//     http::Response r = c->send(req);
//   }                                             // back in the pool (when fewer than max_idle idle)
#pragma once

#include <ember/net/http.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ember::net {

// Thread-safe. A connection is used by one thread at a time: a Lease holds it alone.
class ConnectionPool {
 public:
  // options: every connection's (TLS, timeouts, answer limits). max_idle: how many idle
  // connections are kept per endpoint; a lease returned beyond that closes its connection.
  ConnectionPool(http::Options options, std::size_t max_idle)
      : options_(std::move(options)), max_idle_(max_idle) {}
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  const http::Options& options() const { return options_; }

  // A pooled connection to scheme://host:port, back in the pool at scope exit — also when the
  // request failed: http::Client drops a broken connection itself and reconnects on next use.
  class Lease {
   public:
    Lease(ConnectionPool& pool, const std::string& scheme, const std::string& host, const std::string& port)
        : pool_(pool), key_(scheme + "://" + host + ":" + port) {
      {
        std::lock_guard<std::mutex> lock(pool_.mu_);
        auto& idle = pool_.idle_[key_];
        if (!idle.empty()) {
          client_ = std::move(idle.back());
          idle.pop_back();
        }
      }
      // Outside the lock: a TLS context loads its CA store here.
      if (!client_) client_ = std::make_unique<http::Client>(scheme, host, port, pool_.options_);
    }
    Lease(ConnectionPool& pool, const http::Url& u) : Lease(pool, u.scheme, u.host, u.port) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      std::lock_guard<std::mutex> lock(pool_.mu_);
      auto& idle = pool_.idle_[key_];
      if (idle.size() < pool_.max_idle_) idle.push_back(std::move(client_));
    }

    http::Client* operator->() { return client_.get(); }
    http::Client& operator*() { return *client_; }

   private:
    ConnectionPool& pool_;
    std::string key_;
    std::unique_ptr<http::Client> client_;
  };

 private:
  http::Options options_;
  std::size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<http::Client>>> idle_;
};

}  // namespace ember::net
