// Strategy "ddp" in one process: two ranks on two threads, each with its own Trainer, module and
// shard of the data, joined by a real c10d group (TCPStore on 127.0.0.1, ProcessGroupGloo, the
// Reducer). After N steps both hold the same parameters, equal to a one-process run on the same
// global batches; sync_dist (mean/sum/max/min, also over three ranks) and the host-table
// collectives reduce across the ranks; ranks that never arrive are named by every present one.
#define BOOST_TEST_MODULE ddp_group
#include <boost/test/unit_test.hpp>

#include <ember/ddp/strategy.hpp>
#include <ember/trainer.hpp>

#include "ddp_cli_support.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <map>
#include <numeric>
#include <thread>

namespace {

using ember::test::ddp_cli::free_port;

struct Mlp : torch::nn::Module {
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  Mlp() {
    l1 = register_module("l1", torch::nn::Linear(8, 16));
    l2 = register_module("l2", torch::nn::Linear(16, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) { return l2(torch::relu(l1(x))); }
};

class Model : public ember::NetModule<std::shared_ptr<Mlp>> {
 public:
  explicit Model(std::uint64_t seed) : NetModule(make(seed)) {}
  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t) override {
    auto loss = torch::nn::functional::cross_entropy(forward(b.x), b.y);
    ember::LogOptions o;
    o.sync_dist = sync_dist;
    o.on_epoch = true;
    log("train_loss", loss.detach().item<double>(), o);
    local_losses.push_back(loss.detach().item<double>());
    return loss;
  }
  ember::OptimizerConfig configure_optimizers() override {
    return ember::make_optimizer("sgd", parameters(), 0.1, 0.9);
  }
  bool sync_dist = false;
  std::vector<double> local_losses;

 private:
  static std::shared_ptr<Mlp> make(std::uint64_t seed) {
    torch::manual_seed(seed);
    return std::make_shared<Mlp>();
  }
};

ember::data::Dataset dataset(std::int64_t n) {
  torch::manual_seed(123);
  ember::data::Dataset d;
  d.x = torch::randn({n, 8});
  d.y = torch::randint(0, 3, {n}, torch::kInt64);
  return d;
}

ember::TrainerOptions options(std::int64_t steps) {
  ember::TrainerOptions o;
  o.max_steps = steps;
  o.max_epochs = 100;
  o.num_sanity_val_steps = 0;
  o.log_every_n_steps = 1;
  return o;
}

std::vector<torch::Tensor> params_of(Model& m) {
  std::vector<torch::Tensor> out;
  for (auto& [n, p] : m.named_parameters()) out.push_back(p.detach().clone());
  return out;
}

// Run body(rank, strategy) on world threads, each a rank of one group; rethrow the first failure.
void run_ranks(int world, const ember::ddp::DdpOptions& opt,
               const std::function<void(int, ember::ddp::DdpStrategy&)>& body) {
  const int port = free_port();
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        ember::ddp::ClusterEnv env;
        env.launcher = "torchrun";
        env.rank = env.local_rank = r;
        env.world_size = env.local_world_size = world;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        ember::ddp::DdpStrategy s(env, opt);
        s.connect();
        body(r, s);
        s.barrier("test end");
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

ember::ddp::DdpOptions quick() {
  ember::ddp::DdpOptions o;
  o.timeout_s = 60;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_ranks_match_each_other_and_a_single_process_on_the_global_batch) {
  for (bool bucket_view : {false, true}) {
    BOOST_TEST_CONTEXT("gradient_as_bucket_view=" << bucket_view) {
      const std::int64_t steps = 6, per_rank_batch = 8;
      std::vector<std::vector<torch::Tensor>> got(2);
      auto opt = quick();
      opt.gradient_as_bucket_view = bucket_view;
      opt.bucket_cap_mb = 0.0005;  // several buckets for this small model
      // Built before the threads: the global generator is not for two threads at once.
      auto data = dataset(96);
      std::vector<std::unique_ptr<Model>> models;
      for (int r = 0; r < 2; ++r) models.push_back(std::make_unique<Model>(100 + r));  // rank 0's are broadcast
      run_ranks(2, opt, [&](int r, ember::ddp::DdpStrategy& s) {
        Model& m = *models[r];
        ember::data::Loader train(data, per_rank_batch, /*shuffle=*/false, 0);
        train.set_shard(r, 2, false);
        ember::Trainer t(options(steps), m);
        t.set_distributed(&s);
        s.attach(m);
        t.set_data(&train, nullptr, nullptr, nullptr);
        t.fit();
        BOOST_CHECK_EQUAL(t.global_step(), steps);
        got[r] = params_of(m);
      });
      // One process, rank 0's initial weights, batches of 2 x 8 rows: rows i and i+1 of the
      // strided shards are the same 16 rows as one global batch.
      Model single(100);
      ember::data::Loader train(data, 2 * per_rank_batch, false, 0);
      ember::Trainer t(options(steps), single);
      t.set_data(&train, nullptr, nullptr, nullptr);
      t.fit();
      auto want = params_of(single);
      BOOST_REQUIRE_EQUAL(got[0].size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        BOOST_CHECK_MESSAGE(torch::equal(got[0][i], got[1][i]), "parameter " << i << " differs between ranks");
        BOOST_CHECK_MESSAGE(torch::allclose(got[0][i], want[i], 1e-4, 1e-5),
                            "parameter " << i << " differs from the 1-process run by "
                                         << (got[0][i] - want[i]).abs().max().item<double>());
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(gradient_accumulation_syncs_only_on_stepping_batches) {
  std::vector<std::vector<torch::Tensor>> got(2);
  auto data = dataset(64);
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < 2; ++r) models.push_back(std::make_unique<Model>(7 + r));
  run_ranks(2, quick(), [&](int r, ember::ddp::DdpStrategy& s) {
    Model& m = *models[r];
    ember::data::Loader train(data, 4, false, 0);
    train.set_shard(r, 2, false);
    auto o = options(4);
    o.accumulate_grad_batches = 2;
    ember::Trainer t(o, m);
    t.set_distributed(&s);
    s.attach(m);
    t.set_data(&train, nullptr, nullptr, nullptr);
    t.fit();
    got[r] = params_of(m);
  });
  for (std::size_t i = 0; i < got[0].size(); ++i) BOOST_CHECK(torch::equal(got[0][i], got[1][i]));
}

BOOST_AUTO_TEST_CASE(sync_dist_mean_matches_a_hand_computation) {
  std::vector<double> step_value(2), epoch_value(2);
  std::vector<std::vector<double>> losses(2);
  auto data = dataset(40);
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < 2; ++r) models.push_back(std::make_unique<Model>(3));
  run_ranks(2, quick(), [&](int r, ember::ddp::DdpStrategy& s) {
    Model& m = *models[r];
    m.sync_dist = true;
    ember::data::Loader train(data, 5, false, 0);
    train.set_shard(r, 2, false);  // 20 rows a rank: 4 batches of 5
    auto o = options(-1);
    o.max_epochs = 1;
    ember::Trainer t(o, m);
    t.set_distributed(&s);
    s.attach(m);
    t.set_data(&train, nullptr, nullptr, nullptr);
    t.fit();
    step_value[r] = *t.metrics().get("train_loss_step");
    epoch_value[r] = *t.metrics().get("train_loss_epoch");
    losses[r] = m.local_losses;
  });
  BOOST_REQUIRE_EQUAL(losses[0].size(), 4u);
  // By hand: the last step's value is the mean of both ranks' last losses; the epoch value the
  // mean of all 8 losses (equal batch sizes).
  const double last = (losses[0].back() + losses[1].back()) / 2;
  double all = 0;
  for (auto& l : losses)
    for (double v : l) all += v;
  all /= 8;
  for (int r = 0; r < 2; ++r) {
    BOOST_CHECK_CLOSE(step_value[r], last, 1e-9);
    BOOST_CHECK_CLOSE(epoch_value[r], all, 1e-9);
  }
}

BOOST_AUTO_TEST_CASE(host_table_collectives_reach_every_rank) {
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < 2; ++r) models.push_back(std::make_unique<Model>(1));
  run_ranks(2, quick(), [&](int r, ember::ddp::DdpStrategy& s) {
    Model& m = *models[r];
    ember::Trainer t(options(1), m);
    t.set_distributed(&s);
    ember::Services& services = t;
    auto info = services.rank_info();
    BOOST_CHECK_EQUAL(info.global_rank, r);
    BOOST_CHECK_EQUAL(info.world_size, 2);
    double v[2] = {static_cast<double>(r + 1), static_cast<double>(10 * r)};
    services.all_reduce(v, 2, ember::ReduceOp::sum);
    BOOST_CHECK_EQUAL(v[0], 3.0);
    BOOST_CHECK_EQUAL(v[1], 10.0);
    std::int64_t decision = r == 0 ? 42 : -1;
    services.broadcast(&decision, sizeof decision, 0);
    BOOST_CHECK_EQUAL(decision, 42);
    services.barrier();
  });
}

BOOST_AUTO_TEST_CASE(a_rank_that_never_arrives_is_named_within_the_timeout) {
  ember::ddp::ClusterEnv env;
  env.launcher = "torchrun";
  env.rank = 0;
  env.world_size = 2;
  env.master_port = free_port();
  auto opt = quick();
  opt.timeout_s = 2;
  ember::ddp::DdpStrategy s(env, opt);
  try {
    s.connect();
    BOOST_FAIL("connect should fail: rank 1 never starts");
  } catch (const ember::RuntimeError& e) {
    const std::string what = e.what();
    BOOST_CHECK_MESSAGE(what.find("rank 1 never arrived") != std::string::npos, what);
    BOOST_CHECK_MESSAGE(what.find("2 s") != std::string::npos, what);
  }
}

namespace {
// Logs its loss four times, once per reduction, each with sync_dist (step and epoch values).
class ReduceModel : public Model {
 public:
  using Model::Model;
  std::optional<torch::Tensor> training_step(const ember::Batch& b, std::int64_t) override {
    auto loss = torch::nn::functional::cross_entropy(forward(b.x), b.y);
    const double v = loss.detach().item<double>();
    for (auto [name, op] : {std::pair{"l_mean", ember::Reduce::mean}, std::pair{"l_sum", ember::Reduce::sum},
                            std::pair{"l_max", ember::Reduce::max}, std::pair{"l_min", ember::Reduce::min}}) {
      ember::LogOptions o;
      o.sync_dist = true;
      o.on_epoch = true;
      o.reduce = op;
      log(name, v, o);
    }
    local_losses.push_back(v);
    return loss;
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(sync_dist_mean_sum_max_min_over_three_ranks_match_a_hand_computation) {
  const int world = 3;
  const char* names[] = {"l_mean", "l_sum", "l_max", "l_min"};
  std::vector<std::map<std::string, double>> step(world), epoch(world);
  std::vector<std::vector<double>> losses(world);
  auto data = dataset(60);
  std::vector<std::unique_ptr<ReduceModel>> models;
  for (int r = 0; r < world; ++r) models.push_back(std::make_unique<ReduceModel>(3));
  run_ranks(world, quick(), [&](int r, ember::ddp::DdpStrategy& s) {
    ReduceModel& m = *models[r];
    ember::data::Loader train(data, 5, false, 0);
    train.set_shard(r, world, false);  // 20 rows a rank: 4 batches of 5
    auto o = options(-1);
    o.max_epochs = 1;
    ember::Trainer t(o, m);
    t.set_distributed(&s);
    s.attach(m);
    t.set_data(&train, nullptr, nullptr, nullptr);
    t.fit();
    for (const char* n : names) {
      step[r][n] = t.metrics().get(std::string(n) + "_step").value_or(std::nan(""));
      epoch[r][n] = t.metrics().get(std::string(n) + "_epoch").value_or(std::nan(""));
    }
    losses[r] = m.local_losses;
  });
  // By hand, from every rank's own losses: the last step's values reduce the three ranks' last
  // losses; the epoch values reduce all 12 (the mean unweighted: every batch has 5 rows; the sum
  // adds each rank's epoch sum).
  std::vector<double> last, all;
  for (auto& l : losses) {
    BOOST_REQUIRE_EQUAL(l.size(), 4u);
    last.push_back(l.back());
    all.insert(all.end(), l.begin(), l.end());
  }
  auto sum = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  const std::map<std::string, double> want_step{{"l_mean", sum(last) / 3},
                                                {"l_sum", sum(last)},
                                                {"l_max", *std::max_element(last.begin(), last.end())},
                                                {"l_min", *std::min_element(last.begin(), last.end())}};
  const std::map<std::string, double> want_epoch{{"l_mean", sum(all) / 12},
                                                 {"l_sum", sum(all)},
                                                 {"l_max", *std::max_element(all.begin(), all.end())},
                                                 {"l_min", *std::min_element(all.begin(), all.end())}};
  // The ranks' losses differ (different shards), so each reduction is told apart from a rank's own.
  BOOST_CHECK(want_step.at("l_max") > want_step.at("l_min"));
  for (int r = 0; r < world; ++r)
    for (const char* n : names) {
      BOOST_TEST_CONTEXT("rank " << r << " " << n) {
        BOOST_CHECK_CLOSE(step[r][n], want_step.at(n), 1e-9);
        BOOST_CHECK_CLOSE(epoch[r][n], want_epoch.at(n), 1e-9);
      }
    }
}

BOOST_AUTO_TEST_CASE(every_present_rank_names_all_the_ranks_that_never_arrive) {
  // A world of four with ranks 0 and 1 present: both fail within the timeout naming 2 and 3.
  const int port = free_port();
  std::vector<std::string> what(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      ember::ddp::ClusterEnv env;
      env.launcher = "torchrun";
      env.rank = env.local_rank = r;
      env.world_size = env.local_world_size = 4;
      env.master_port = port;
      auto opt = quick();
      opt.timeout_s = 2;
      try {
        ember::ddp::DdpStrategy s(env, opt);
        s.connect();
        what[r] = "connect returned";
      } catch (const ember::RuntimeError& e) {
        what[r] = e.what();
      } catch (const std::exception& e) {
        what[r] = std::string("not a RuntimeError: ") + e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    BOOST_CHECK_MESSAGE(what[r].find("ddp rank " + std::to_string(r) + ":") != std::string::npos, what[r]);
    BOOST_CHECK_MESSAGE(what[r].find("did not form within 2 s") != std::string::npos, what[r]);
    BOOST_CHECK_MESSAGE(what[r].find("rank 2, 3 never arrived") != std::string::npos, what[r]);
  }
}
