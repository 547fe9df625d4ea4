// What the trainer needs from a data-parallel strategy, without naming c10d: ranks, the
// collectives behind sync_dist / barrier / decisions, and the two points of a training step where
// DDP's Reducer is told a forward and a backward are coming. The c10d implementation is
// include/ember/ddp/strategy.hpp; the trainer runs single-process when it has none.
// No libtorch header here: loader.hpp (plugins' host services) includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace at {
class Tensor;
}
namespace torch::optim {
class Optimizer;
}

namespace ember {

enum class ReduceOp { sum, mean, max, min };

// Where this process is: global_rank of world_size, local_rank on its machine.
struct RankInfo {
  int global_rank = 0, local_rank = 0, world_size = 1;
};

class Distributed {
 public:
  virtual ~Distributed() = default;

  virtual int global_rank() const = 0;
  virtual int local_rank() const = 0;
  virtual int world_size() const = 0;
  bool is_global_zero() const { return global_rank() == 0; }

  // Every rank must make the same calls in the same order (they are collectives).
  virtual void barrier(const std::string& where) = 0;
  // bytes holds size bytes on every rank; afterwards every rank holds root's.
  virtual void broadcast(void* bytes, std::size_t size, int root) = 0;
  // Element-wise reduction of values (float64) across ranks, in place.
  virtual void all_reduce(std::vector<double>& values, ReduceOp op) = 0;

  // Training-step protocol (DistributedDataParallel.forward / no_sync): prepare_forward before
  // training_step, prepare_backward with the loss before loss.backward(). sync false: a
  // gradient-accumulation batch that does not step; gradients stay local (no_sync).
  virtual void prepare_forward(bool sync) = 0;
  virtual void prepare_backward(const at::Tensor& loss, bool sync) = 0;
  // optimizer.zero_grad() for gradients that may be views of communication buckets.
  virtual void zero_grad(torch::optim::Optimizer& optimizer) = 0;
  // After fit restored a checkpoint (on every rank): rank 0's parameters win again.
  virtual void sync_parameters() = 0;
};

}  // namespace ember
