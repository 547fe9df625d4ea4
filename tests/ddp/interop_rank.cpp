// One Ember rank of a mixed group (tests/ddp/test_interop.py): joins through torch.distributed's
// env:// variables exactly as `ember fit` does (DdpStrategy::connect), then runs the collectives
// the Python rank runs, in the same order, printing what it got.
#include <ember/ddp/strategy.hpp>

#include <cstdint>
#include <iostream>

int main() {
  try {
    auto env = ember::ddp::detect_env(ember::ddp::process_env, 1, 1);
    ember::ddp::DdpOptions opt;
    // Shorter than the Python rank's 60 s: should the Python rank hosting the store wait out its
    // timeout for a worker that never counted itself in, this rank gives up first and the test fails.
    opt.timeout_s = 30;
    ember::ddp::DdpStrategy s(env, opt);
    s.connect();
    // all_reduce(sum) of [rank + 1, 10 * (rank + 1)] in float64
    std::vector<double> v{static_cast<double>(env.rank + 1), 10.0 * (env.rank + 1)};
    s.all_reduce(v, ember::ReduceOp::sum);
    std::cout << "all_reduce " << v[0] << " " << v[1] << std::endl;
    // broadcast of 8 bytes (a uint8 tensor) from the last rank, whose value is 1234 + rank
    std::int64_t x = env.rank == env.world_size - 1 ? 1234 + env.rank : -1;
    s.broadcast(&x, sizeof x, env.world_size - 1);
    std::cout << "broadcast " << x << std::endl;
    s.barrier("interop");
    std::cout << "barrier ok" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "interop_rank: " << e.what() << "\n";
    return 1;
  }
}
