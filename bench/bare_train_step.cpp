// The time-to-first-step baseline for bench/startup.sh: what a hand-written libtorch program does
// to train one step of samples/fashion_mnist's model on its data, and nothing more. It reads the
// same gzipped idx files (all 60,000 training images, as `ember fit` does), scales and
// standardises them, draws a random batch of 64, and takes one Adam step of the
// 784-128-256-10 MLP; it prints the loss so the work cannot be optimised away.
//
//   bare_train_step IMAGES.gz LABELS.gz
//
// Written without Ember's headers: this is the program a user would write instead of Ember.
#include <torch/torch.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// A whole gzipped idx file (ubyte) as a uint8 tensor of its declared shape; exits with a message
// naming the file on anything unexpected.
torch::Tensor read_idx_gz(const char* path) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    std::fprintf(stderr, "bare_train_step: cannot open %s\n", path);
    std::exit(1);
  }
  std::vector<unsigned char> b;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) b.insert(b.end(), buf, buf + n);
  gzclose(f);
  if (n < 0 || b.size() < 4 || b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] == 0 || b.size() < 4u + 4u * b[3]) {
    std::fprintf(stderr, "bare_train_step: %s: not a ubyte idx file\n", path);
    std::exit(1);
  }
  std::vector<std::int64_t> shape;
  std::int64_t count = 1;
  for (unsigned d = 0; d < b[3]; ++d) {
    const unsigned char* p = &b[4 + 4 * d];
    shape.push_back((std::int64_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
    count *= shape.back();
  }
  const std::size_t off = 4 + 4 * b[3];
  if (b.size() - off != static_cast<std::size_t>(count)) {
    std::fprintf(stderr, "bare_train_step: %s: body size does not match the header\n", path);
    std::exit(1);
  }
  return torch::from_blob(b.data() + off, shape, torch::kUInt8).clone();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bare_train_step IMAGES.gz LABELS.gz\n");
    return 2;
  }
  torch::manual_seed(42);
  auto images = read_idx_gz(argv[1]);
  auto x = images.reshape({images.size(0), -1}).to(torch::kFloat32).div_(255.0).sub_(0.2860).div_(0.3530);
  auto y = read_idx_gz(argv[2]).to(torch::kInt64).reshape({-1});
  auto idx = torch::randperm(x.size(0), torch::kInt64).narrow(0, 0, 64);
  auto bx = x.index_select(0, idx), by = y.index_select(0, idx);

  torch::nn::Sequential mlp(torch::nn::Linear(784, 128), torch::nn::ReLU(), torch::nn::Linear(128, 256),
                            torch::nn::ReLU(), torch::nn::Linear(256, 10));
  torch::optim::Adam opt(mlp->parameters(), torch::optim::AdamOptions(1e-3));
  mlp->train();
  auto loss = torch::nn::functional::cross_entropy(mlp->forward(bx), by);
  opt.zero_grad();
  loss.backward();
  opt.step();
  std::printf("bare_train_step: one step, loss %.4f\n", loss.item<double>());
  return 0;
}
