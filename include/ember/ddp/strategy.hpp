// Strategy "ddp" on libtorch's own distributed engine: a c10d TCPStore (or torchrun's agent
// store), ProcessGroupGloo, and the DistributedDataParallel Reducer — the same objects, keys and
// call order torch.distributed uses, so an Ember rank is a torch.distributed rank:
//   store  = TCPStore(MASTER_ADDR, MASTER_PORT)            rank 0 hosts it (torchrun: the agent,
//            [PrefixStore("/worker/attempt_<n>", ...)]      every rank a client)
//   store' = PrefixStore("default_pg", store)
//   pg     = ProcessGroupGloo(PrefixStore("0", store'), rank, world_size, timeout)
//   store'.add("store_based_barrier_key:1") until world_size; pg.setSequenceNumberForGroup()
// Needs -DUSE_C10D_GLOO, libgloo and include/ember/ddp/compat on the include path (the meson
// dependency ember_ddp_dep carries all three).
#pragma once

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif

#include <ember/ddp/env.hpp>
#include <ember/distributed.hpp>
#include <ember/error.hpp>
#include <ember/module.hpp>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ember::ddp {

// The ddp keys of the trainer section (Lightning's DDPStrategy arguments).
struct DdpOptions {
  bool find_unused_parameters = false;
  bool gradient_as_bucket_view = false;
  bool broadcast_buffers = true;
  double bucket_cap_mb = 25;
  std::string comm_hook = "none";  // "fp16_compress": torch's built-in FP16_COMPRESS hook
  double timeout_s = 1800;         // init_process_group's timeout (default 30 min)

  static DdpOptions from_json(const boost::json::object& t) {
    DdpOptions o;
    auto flag = [&](const char* k, bool& out) {
      if (auto* v = t.if_contains(k); v && v->is_bool()) out = v->as_bool();
    };
    auto num = [&](const char* k, double& out) {
      if (auto* v = t.if_contains(k); v && v->is_number()) out = v->to_number<double>();
    };
    flag("find_unused_parameters", o.find_unused_parameters);
    flag("gradient_as_bucket_view", o.gradient_as_bucket_view);
    flag("broadcast_buffers", o.broadcast_buffers);
    num("bucket_cap_mb", o.bucket_cap_mb);
    num("ddp_timeout_s", o.timeout_s);
    if (auto* v = t.if_contains("ddp_comm_hook"); v && v->is_string()) o.comm_hook = std::string(v->as_string());
    return o;
  }
};

// The first line of a libtorch message (the rest is a C++ backtrace).
inline std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  return l.size() > 400 ? l.substr(0, 400) + "..." : l;
}

class DdpStrategy : public Distributed {
 public:
  DdpStrategy(ClusterEnv env, DdpOptions opt) : env_(std::move(env)), opt_(std::move(opt)) {}
  ~DdpStrategy() override { stop_heartbeat(); }
  DdpStrategy(const DdpStrategy&) = delete;
  DdpStrategy& operator=(const DdpStrategy&) = delete;

  int global_rank() const override { return env_.rank; }
  int local_rank() const override { return env_.local_rank; }
  int world_size() const override { return env_.world_size; }
  const ClusterEnv& env() const { return env_; }
  const DdpOptions& options() const { return opt_; }
  c10::intrusive_ptr<c10d::ProcessGroup> process_group() const { return pg_; }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<std::int64_t>(opt_.timeout_s * 1000));
  }

  // init_process_group("gloo", init_method="env://"): the store, the group, the store-based
  // barrier. A peer that does not arrive within the timeout is named.
  void connect() {
    const auto to = timeout();
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env_.master_port);
    so.isServer = env_.rank == 0 && !env_.use_agent_store;
    so.numWorkers = env_.world_size;
    // The host does not wait for its workers here: Gloo's rendezvous below waits, and names who
    // is missing. A worker still counts itself in (adds 1 to the store's init key, as
    // torch.distributed's workers do): a Python rank 0 hosting the store waits in its TCPStore
    // constructor until world_size have, for its whole timeout otherwise.
    so.waitWorkers = !so.isServer;
    so.timeout = to;
    so.multiTenant = !env_.use_agent_store;
    try {
      tcp_ = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
    } catch (const std::exception& e) {
      throw RuntimeError(where() + "cannot reach the rendezvous store at " + endpoint() + " within " + timeout_text() +
                         " (" + store_host() + " hosts it): " + first_line(e.what()));
    }
    base_ = tcp_;
    if (env_.use_agent_store)
      base_ = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env_.restart_count), base_);
    default_pg_store_ = c10::make_intrusive<c10d::PrefixStore>("default_pg", base_);
    auto group_store = c10::make_intrusive<c10d::PrefixStore>("0", default_pg_store_);
    auto gopt = c10d::ProcessGroupGloo::Options::create(to);
    gopt->devices.push_back(gloo_device());
    gopt->threads = 2;
    try {
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(group_store, env_.rank, env_.world_size, gopt);
    } catch (const std::exception& e) {
      // Gloo's rendezvous: every rank sets its address under "<context>/<rank>"; who is
      // missing never did.
      std::string missing;
      for (int r = 0; r < env_.world_size; ++r) {
        bool there = false;
        try {
          there = group_store->check({"0/" + std::to_string(r)});  // Gloo context 0's key for rank r
        } catch (...) {
        }
        if (!there) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
      throw RuntimeError(where() + "the process group did not form within " + timeout_text() + ": " +
                         (missing.empty() ? std::string("every rank arrived") : "rank " + missing + " never arrived") +
                         " (" + first_line(e.what()) + ")");
    }
    store_based_barrier();
    pg_->setSequenceNumberForGroup();
    start_heartbeat();
  }

  // DistributedDataParallel(module): check every rank has the same parameters, broadcast rank
  // 0's parameters and buffers, bucket the gradients (reversed definition order, a 1 MB first
  // bucket, then bucket_cap_mb) and hand them to the Reducer.
  void attach(Module& m) {
    module_ = &m;
    params_.clear();
    std::unordered_map<size_t, std::string> names;
    for (auto& [name, p] : m.named_parameters()) {
      if (!p.requires_grad()) continue;
      names[params_.size()] = name;
      params_.push_back(p);
    }
    buffers_.clear();
    for (auto& [name, b] : m.named_buffers()) buffers_.push_back(b);
    guard("checking parameters across ranks", [&] { c10d::verify_params_across_processes(pg_, params_, c10::nullopt); });
    sync_parameters();
    if (params_.empty()) return;
    const auto cap = static_cast<std::int64_t>(opt_.bucket_cap_mb * 1024 * 1024);
    const std::size_t first_cap = 1024 * 1024;
    std::vector<bool> sparse(params_.size(), false);
    // As DDP 1.13: one bucket for the first iteration unless find_unused_parameters (the real
    // order is not known yet); the Reducer rebuilds them from the observed order after it.
    std::vector<std::size_t> limits = opt_.find_unused_parameters
                                          ? std::vector<std::size_t>{first_cap, static_cast<std::size_t>(cap)}
                                          : std::vector<std::size_t>{SIZE_MAX};
    auto [indices, per_bucket] = c10d::compute_bucket_assignment_by_size(params_, limits, sparse);
    std::reverse(indices.begin(), indices.end());
    std::reverse(per_bucket.begin(), per_bucket.end());
    reducer_ = std::make_shared<c10d::Reducer>(params_, indices, per_bucket, pg_, sparse, cap,
                                               opt_.find_unused_parameters, opt_.gradient_as_bucket_view, names,
                                               static_cast<std::int64_t>(first_cap));
    if (opt_.comm_hook == "fp16_compress") reducer_->register_builtin_comm_hook(c10d::BuiltinCommHookType::FP16_COMPRESS);
    else if (opt_.comm_hook != "none")
      throw ConfigError("trainer.ddp_comm_hook='" + opt_.comm_hook + "': expected \"none\" or \"fp16_compress\"");
  }

  void sync_parameters() override {
    if (!pg_) return;
    std::vector<at::Tensor> all;
    for (auto& p : params_) all.push_back(p.detach());
    for (auto& b : buffers_) all.push_back(b.detach());
    if (all.empty()) return;
    torch::NoGradGuard ng;
    guard("broadcasting rank 0's parameters", [&] { c10d::broadcast_coalesced(pg_, all, 250 * 1024 * 1024, 0); });
  }

  void prepare_forward(bool sync) override {
    if (!reducer_) return;
    if (sync) {
      reducer_->prepare_for_forward();
      guard("rebuilding gradient buckets", [&] { reducer_->rebuild_buckets(); });
    }
    if (opt_.broadcast_buffers && !buffers_.empty()) {
      std::vector<at::Tensor> b;
      for (auto& t : buffers_) b.push_back(t.detach());
      torch::NoGradGuard ng;
      guard("broadcasting buffers", [&] { c10d::broadcast_coalesced(pg_, b, 250 * 1024 * 1024, 0); });
    }
  }

  void prepare_backward(const torch::Tensor& loss, bool sync) override {
    if (!reducer_ || !sync) return;
    if (opt_.find_unused_parameters) reducer_->prepare_for_backward({loss});
    else reducer_->prepare_for_backward({});
  }

  // optimizer.zero_grad() as torch.optim does it: a gradient that is a view of a DDP bucket
  // (gradient_as_bucket_view) is zeroed in place, not detached (libtorch's zero_grad would
  // detach_ it, which a view refuses).
  void zero_grad(torch::optim::Optimizer& optimizer) override {
    torch::NoGradGuard ng;
    for (auto& group : optimizer.param_groups())
      for (auto& p : group.params()) {
        auto& g = p.mutable_grad();
        if (!g.defined()) continue;
        if (g.grad_fn()) g.detach_();
        else g.requires_grad_(false);
        g.zero_();
      }
  }

  void barrier(const std::string& what) override {
    if (!pg_) return;
    guard("barrier (" + what + ")", [&] { pg_->barrier()->wait(); });
  }

  void broadcast(void* bytes, std::size_t size, int root) override {
    if (!pg_ || size == 0) return;
    auto t = torch::empty({static_cast<std::int64_t>(size)}, torch::kUInt8);
    std::memcpy(t.data_ptr(), bytes, size);
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    guard("broadcast from rank " + std::to_string(root), [&] { pg_->broadcast(v, bo)->wait(); });
    std::memcpy(bytes, t.data_ptr(), size);
  }

  void all_reduce(std::vector<double>& values, ReduceOp op) override {
    if (!pg_ || values.empty()) return;
    auto t = torch::from_blob(values.data(), {static_cast<std::int64_t>(values.size())}, torch::kFloat64).clone();
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions ao;
    ao.reduceOp = op == ReduceOp::max ? c10d::ReduceOp::MAX : op == ReduceOp::min ? c10d::ReduceOp::MIN : c10d::ReduceOp::SUM;
    guard("all_reduce", [&] { pg_->allreduce(v, ao)->wait(); });
    if (op == ReduceOp::mean) t.div_(env_.world_size);
    std::memcpy(values.data(), t.data_ptr(), values.size() * sizeof(double));
  }

  // After a run: every rank must hold the same parameters (DDP's invariant). Compares a
  // checksum of them across ranks (max and min of [sum, sum of squares]); throws naming the
  // difference, else returns the checksum.
  double check_replicas() {
    double sum = 0, sq = 0;
    {
      torch::NoGradGuard ng;
      for (auto& p : params_) {
        auto d = p.detach().to(torch::kFloat64);
        sum += d.sum().item<double>();
        sq += d.pow(2).sum().item<double>();
      }
    }
    std::vector<double> hi{sum, sq}, lo{sum, sq};
    all_reduce(hi, ReduceOp::max);
    all_reduce(lo, ReduceOp::min);
    if (hi != lo)
      throw RuntimeError(where() + "parameters differ across ranks after the run (checksum from " + std::to_string(lo[0]) +
                         " to " + std::to_string(hi[0]) + ")");
    return sum;
  }

  // A failure of this rank's run, explained: which peers stopped answering (their heartbeat in
  // the store stood still), or that the store itself is gone. For the message the host prints.
  std::string explain_failure(const std::string& what) {
    if (what.find("ddp rank ") != std::string::npos && what.find("stopped") != std::string::npos) return what;
    return where() + first_line(what) + diagnose();
  }

  // Which ranks look dead: their heartbeat counters did not move across ~3 heartbeats.
  std::string diagnose() {
    if (!hb_store_) return "";
    try {
      std::vector<std::int64_t> before(env_.world_size), after(env_.world_size);
      for (int r = 0; r < env_.world_size; ++r) before[r] = hb_store_->add(hb_key(r), 0);
      std::unique_lock<std::mutex> lk(hb_mu_);
      hb_cv_.wait_for(lk, std::chrono::milliseconds(3 * kHeartbeatMs + 200));
      lk.unlock();
      for (int r = 0; r < env_.world_size; ++r) after[r] = hb_store_->add(hb_key(r), 0);
      std::string dead;
      for (int r = 0; r < env_.world_size; ++r)
        if (r != env_.rank && before[r] == after[r]) dead += (dead.empty() ? "" : ", ") + std::to_string(r);
      if (dead.empty()) return "; every peer is still alive (timeout trainer.ddp_timeout_s=" + timeout_text() + ")";
      return "; rank " + dead + " stopped (no heartbeat in the store for " + std::to_string(3 * kHeartbeatMs / 1000) +
             " s; timeout trainer.ddp_timeout_s=" + timeout_text() + ")";
    } catch (const std::exception&) {
      return "; the rendezvous store at " + endpoint() + " is gone: " + store_host() + " stopped";
    }
  }

 private:
  static constexpr int kHeartbeatMs = 1000;

  std::string where() const { return "ddp rank " + std::to_string(env_.rank) + ": "; }
  std::string endpoint() const { return env_.master_addr + ":" + std::to_string(env_.master_port); }
  std::string store_host() const { return env_.use_agent_store ? "the torchrun agent" : "rank 0"; }
  std::string timeout_text() const {
    std::string s = std::to_string(opt_.timeout_s);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s + " s";
  }
  std::string hb_key(int r) const { return "ember_heartbeat/" + std::to_string(r); }

  template <class F>
  void guard(const std::string& what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      throw RuntimeError(where() + what + " failed: " + first_line(e.what()) + diagnose());
    }
  }

  std::shared_ptr<::gloo::transport::Device> gloo_device() {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    // Loopback jobs stay on loopback; otherwise torch's default (this host's name).
    if (env_.master_addr == "127.0.0.1" || env_.master_addr == "localhost")
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  // torch.distributed's _store_based_barrier: add 1 to store_based_barrier_key:1, wait until the
  // count is world_size.
  void store_based_barrier() {
    const std::string key = "store_based_barrier_key:1";
    default_pg_store_->add(key, 1);
    const auto start = std::chrono::steady_clock::now();
    std::int64_t n = default_pg_store_->add(key, 0);
    while (n < env_.world_size) {
      if (std::chrono::steady_clock::now() - start > timeout())
        throw RuntimeError(where() + "timed out after " + timeout_text() + " in the store-based barrier (" +
                           std::to_string(n) + " of " + std::to_string(env_.world_size) + " ranks arrived)");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // as torch polls it
      n = default_pg_store_->add(key, 0);
    }
  }

  // Every second each rank adds 1 to ember_heartbeat/<rank> through its own store connection, so
  // that a rank whose collective failed can tell a dead peer from a slow one.
  void start_heartbeat() {
    hb_store_ = ember_client();
    hb_store_->add(hb_key(env_.rank), 1);
    c10::intrusive_ptr<c10d::Store> beat = ember_client();
    hb_thread_ = std::thread([this, beat] {
      std::unique_lock<std::mutex> lk(hb_mu_);
      while (!hb_stop_) {
        hb_cv_.wait_for(lk, std::chrono::milliseconds(kHeartbeatMs));
        if (hb_stop_) break;
        lk.unlock();
        try {
          beat->add(hb_key(env_.rank), 1);
        } catch (...) {
          lk.lock();
          break;  // the store is gone: diagnose() says so
        }
        lk.lock();
      }
    });
  }
  // A store connection of its own (short timeout), keys under [/worker/attempt_<n>/]ember.
  c10::intrusive_ptr<c10d::Store> ember_client() {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env_.master_port);
    so.isServer = false;
    so.waitWorkers = false;  // not a worker of its own: it must not count toward the host's wait
    so.timeout = std::chrono::milliseconds(5000);
    c10::intrusive_ptr<c10d::Store> s = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
    if (env_.use_agent_store)
      s = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env_.restart_count), s);
    return c10::make_intrusive<c10d::PrefixStore>("ember", s);
  }
  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lk(hb_mu_);
      hb_stop_ = true;
    }
    hb_cv_.notify_all();
    if (hb_thread_.joinable()) hb_thread_.join();
  }

  ClusterEnv env_;
  DdpOptions opt_;
  c10::intrusive_ptr<c10d::Store> tcp_, base_, default_pg_store_, hb_store_;
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::shared_ptr<c10d::Reducer> reducer_;
  Module* module_ = nullptr;
  std::vector<at::Tensor> params_, buffers_;
  std::thread hb_thread_;
  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool hb_stop_ = false;
};

}  // namespace ember::ddp
