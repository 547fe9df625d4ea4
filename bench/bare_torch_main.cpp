// The start-up baseline for bench/startup.sh: a program that does nothing but is linked against
// libtorch, so the dynamic loader maps it and runs its static initialisers, as for `ember`.
#include <ATen/Parallel.h>

int main() {
  // Take the address of a libtorch function (never call it) so that --as-needed keeps the
  // library in DT_NEEDED.
  int (*volatile keep)() = &at::get_num_threads;
  return keep ? 0 : 1;
}
