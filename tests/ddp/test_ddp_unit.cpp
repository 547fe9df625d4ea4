// Strategy "ddp" without a process group: the launcher environments (torchrun, SLURM, none),
// DistributedSampler semantics of the loader, and sync_dist's reductions in the metric store.
#define BOOST_TEST_MODULE ddp_unit
#include <boost/test/unit_test.hpp>

#include <ember/data.hpp>
#include <ember/ddp/env.hpp>
#include <ember/metrics.hpp>

#include <map>
#include <set>

using ember::ddp::ClusterEnv;
using ember::ddp::detect_env;
using ember::ddp::slurm_first_host;

namespace {

ember::ddp::EnvFn env_of(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::int64_t> rows_of(ember::data::Loader& l) {
  std::vector<std::int64_t> out;
  for (std::int64_t b = 0; b < l.num_batches(); ++b) {
    auto x = l.batch(b).x;
    for (std::int64_t i = 0; i < x.size(0); ++i) out.push_back(static_cast<std::int64_t>(x[i][0].item<float>()));
  }
  return out;
}

ember::data::Dataset numbered(std::int64_t n) {
  ember::data::Dataset d;
  d.x = torch::arange(n, torch::kFloat32).reshape({n, 1});
  d.y = torch::arange(n, torch::kInt64);
  return d;
}

}  // namespace

BOOST_AUTO_TEST_CASE(slurm_first_host_expands_bracket_ranges) {
  BOOST_CHECK_EQUAL(slurm_first_host("node[01-04]"), "node01");
  BOOST_CHECK_EQUAL(slurm_first_host("node[7,9-12],gpu[1-2]"), "node7");
  BOOST_CHECK_EQUAL(slurm_first_host("alpha,beta"), "alpha");
  BOOST_CHECK_EQUAL(slurm_first_host("single"), "single");
  BOOST_CHECK_EQUAL(slurm_first_host("rack[3,5-6]-ib,other"), "rack3-ib");
  BOOST_CHECK_THROW(slurm_first_host("node[01-04"), ember::ConfigError);
}

BOOST_AUTO_TEST_CASE(torchrun_environment_is_read_as_torch_distributed_reads_it) {
  ClusterEnv c = detect_env(env_of({{"RANK", "3"},
                                    {"WORLD_SIZE", "4"},
                                    {"LOCAL_RANK", "1"},
                                    {"LOCAL_WORLD_SIZE", "2"},
                                    {"GROUP_RANK", "1"},
                                    {"MASTER_ADDR", "10.1.2.3"},
                                    {"MASTER_PORT", "29400"},
                                    {"TORCHELASTIC_RUN_ID", "x"},
                                    {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                    {"TORCHELASTIC_RESTART_COUNT", "2"}}),
                            2, 2);
  BOOST_CHECK_EQUAL(c.launcher, "torchrun");
  BOOST_CHECK_EQUAL(c.rank, 3);
  BOOST_CHECK_EQUAL(c.world_size, 4);
  BOOST_CHECK_EQUAL(c.local_rank, 1);
  BOOST_CHECK_EQUAL(c.local_world_size, 2);
  BOOST_CHECK_EQUAL(c.node_rank, 1);
  BOOST_CHECK_EQUAL(c.master_addr, "10.1.2.3");
  BOOST_CHECK_EQUAL(c.master_port, 29400);
  BOOST_CHECK(c.use_agent_store);
  BOOST_CHECK_EQUAL(c.restart_count, 2);
}

BOOST_AUTO_TEST_CASE(slurm_environment_uses_the_first_node_as_master) {
  ClusterEnv c = detect_env(env_of({{"SLURM_PROCID", "5"},
                                    {"SLURM_NTASKS", "8"},
                                    {"SLURM_LOCALID", "1"},
                                    {"SLURM_NODEID", "2"},
                                    {"SLURM_JOB_ID", "123456"},
                                    {"SLURM_JOB_NODELIST", "cn[017-020]"}}),
                            2, 4);
  BOOST_CHECK_EQUAL(c.launcher, "slurm");
  BOOST_CHECK_EQUAL(c.rank, 5);
  BOOST_CHECK_EQUAL(c.world_size, 8);
  BOOST_CHECK_EQUAL(c.local_rank, 1);
  BOOST_CHECK_EQUAL(c.node_rank, 2);
  BOOST_CHECK_EQUAL(c.master_addr, "cn017");
  BOOST_CHECK_EQUAL(c.master_port, 15000 + 3456);  // Lightning's rule
  BOOST_CHECK(!c.use_agent_store);
}

BOOST_AUTO_TEST_CASE(slurm_task_count_must_match_devices_times_nodes) {
  try {
    detect_env(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_JOB_NODELIST", "a"}}), 2, 1);
    BOOST_FAIL("expected a ConfigError");
  } catch (const ember::ConfigError& e) {
    BOOST_CHECK_MESSAGE(std::string(e.what()).find("SLURM_NTASKS=3") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(no_launcher_means_ember_starts_the_local_ranks) {
  ClusterEnv c = detect_env(env_of({}), 3, 1);
  BOOST_CHECK_EQUAL(c.launcher, "none");
  BOOST_CHECK_EQUAL(c.world_size, 3);
  BOOST_CHECK_THROW(detect_env(env_of({}), 2, 2), ember::ConfigError);  // other machines need a launcher
  BOOST_CHECK_THROW(detect_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}), 1, 1), ember::ConfigError);  // no MASTER_ADDR
  BOOST_CHECK_THROW(detect_env(env_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}), 1, 1),
                    ember::ConfigError);  // rank outside the world
  BOOST_CHECK_THROW(detect_env(env_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}), 1, 1),
                    ember::ConfigError);
}

BOOST_AUTO_TEST_CASE(shards_are_padded_strided_and_cover_the_data_once) {
  // 10 rows over 3 ranks: ceil(10/3) = 4 each, padded with rows 0 and 1 (torch's DistributedSampler).
  std::vector<std::vector<std::int64_t>> got;
  for (int r = 0; r < 3; ++r) {
    ember::data::Loader l(numbered(10), 3, /*shuffle=*/false, 7);
    l.set_shard(r, 3, /*drop_last=*/false);
    l.start_epoch(0);
    BOOST_CHECK_EQUAL(l.rows(), 4);
    BOOST_CHECK_EQUAL(l.num_batches(), 2);
    got.push_back(rows_of(l));
  }
  BOOST_CHECK((got[0] == std::vector<std::int64_t>{0, 3, 6, 9}));
  BOOST_CHECK((got[1] == std::vector<std::int64_t>{1, 4, 7, 0}));
  BOOST_CHECK((got[2] == std::vector<std::int64_t>{2, 5, 8, 1}));
}

BOOST_AUTO_TEST_CASE(drop_last_cuts_every_shard_to_the_same_floor) {
  std::set<std::int64_t> seen;
  for (int r = 0; r < 3; ++r) {
    ember::data::Loader l(numbered(10), 2, false, 0);
    l.set_shard(r, 3, /*drop_last=*/true);
    l.start_epoch(0);
    BOOST_CHECK_EQUAL(l.rows(), 3);
    for (auto v : rows_of(l)) BOOST_CHECK(seen.insert(v).second);  // no row twice
  }
  BOOST_CHECK_EQUAL(seen.size(), 9u);
  BOOST_CHECK(!seen.count(9));
}

BOOST_AUTO_TEST_CASE(shuffled_shards_follow_seed_plus_epoch_and_reshuffle_each_epoch) {
  auto epoch_rows = [](int rank, std::int64_t epoch) {
    ember::data::Loader l(numbered(12), 4, /*shuffle=*/true, 5);
    l.set_shard(rank, 2, false);
    l.start_epoch(epoch);
    return rows_of(l);
  };
  for (std::int64_t epoch : {0, 1}) {
    // torch.randperm(12, generator seeded 5 + epoch), rank r takes positions r, r + 2, ...
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5 + epoch);
    auto perm = torch::randperm(12, gen, torch::TensorOptions().dtype(torch::kInt64));
    std::vector<std::int64_t> r0, r1;
    for (int i = 0; i < 12; ++i) (i % 2 ? r1 : r0).push_back(perm[i].item<std::int64_t>());
    BOOST_CHECK(epoch_rows(0, epoch) == r0);
    BOOST_CHECK(epoch_rows(1, epoch) == r1);
    std::set<std::int64_t> all(r0.begin(), r0.end());
    all.insert(r1.begin(), r1.end());
    BOOST_CHECK_EQUAL(all.size(), 12u);
  }
  BOOST_CHECK(epoch_rows(0, 0) != epoch_rows(0, 1));
}

namespace {
// Two "ranks" whose sync function sees both ranks' values: what an all_reduce would return.
struct TwoRanks {
  std::vector<double> other;  // rank 1's values, set by the test before each sync
  static void sync(void* self, std::vector<double>& v, ember::Reduce op) {
    auto& o = static_cast<TwoRanks*>(self)->other;
    BOOST_REQUIRE_EQUAL(v.size(), o.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      switch (op) {
        case ember::Reduce::mean: v[i] = (v[i] + o[i]) / 2; break;
        case ember::Reduce::sum: v[i] += o[i]; break;
        case ember::Reduce::max: v[i] = std::max(v[i], o[i]); break;
        case ember::Reduce::min: v[i] = std::min(v[i], o[i]); break;
      }
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(sync_dist_step_value_is_the_mean_across_ranks) {
  ember::MetricStore m;
  TwoRanks peer;
  m.set_sync(&TwoRanks::sync, &peer);
  m.set_context(EMBER_STAGE_FIT, /*in_training_step=*/true, 4);
  ember::LogOptions o;
  o.sync_dist = true;
  peer.other = {3.0};
  m.log("loss", 1.0, o);
  BOOST_CHECK_CLOSE(*m.get("loss"), 2.0, 1e-12);  // (1 + 3) / 2
}

BOOST_AUTO_TEST_CASE(sync_dist_epoch_mean_weighs_every_ranks_batches) {
  ember::MetricStore m;
  TwoRanks peer;
  m.set_sync(&TwoRanks::sync, &peer);
  m.set_context(EMBER_STAGE_VALIDATE, false, 1);
  ember::LogOptions o;
  o.sync_dist = true;
  m.log("val_loss", 1.0, o, 2);  // this rank: 1.0 x 2 samples, 3.0 x 6 samples
  m.log("val_loss", 3.0, o, 6);
  ember::LogOptions mx = o;
  mx.reduce = ember::Reduce::max;
  m.log("val_max", 5.0, mx);
  // The other rank's accumulators: mean's (weighted sum, weight) = (10.0 x 4) -> (40, 4); max 7.
  peer.other = {40.0, 4.0};
  std::vector<ember::MetricValue> out;
  // One sum all_reduce (mean pairs), then one max all_reduce: the fake answers in that order.
  struct Seq {
    TwoRanks* p;
    int calls = 0;
    static void sync(void* self, std::vector<double>& v, ember::Reduce op) {
      auto* s = static_cast<Seq*>(self);
      s->p->other = s->calls++ == 0 ? std::vector<double>{40.0, 4.0} : std::vector<double>{7.0};
      TwoRanks::sync(s->p, v, op);
    }
  } seq{&peer};
  m.set_sync(&Seq::sync, &seq);
  m.reduce_epoch(EMBER_STAGE_VALIDATE, &out);
  // By hand: (1*2 + 3*6 + 10*4) / (2 + 6 + 4) = 60 / 12 = 5.
  BOOST_CHECK_CLOSE(*m.get("val_loss"), 5.0, 1e-12);
  BOOST_CHECK_CLOSE(*m.get("val_max"), 7.0, 1e-12);
  BOOST_CHECK_EQUAL(seq.calls, 2);
}
