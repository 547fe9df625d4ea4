// What the wandb plugin reads about its process and machine: environment variables, the rank a
// launcher gave it, host name, executable, and /proc samples for the system.* metrics. Any thread.
#pragma once

#include <string>

namespace ember::wandb_plugin {

std::string env(const char* name);  // "" when unset
double unix_now();                  // seconds since the epoch, wall clock
std::string random_id();            // 8 random [a-z0-9], W&B's run id alphabet
std::string hostname();
std::string program_path();         // /proc/self/exe
// Lightning's rank_zero_only: the process rank from the launcher's environment.
int process_rank();

// /proc readings for system.* metrics.
struct ProcSample {
  double cpu_s = 0;  // process user+system CPU seconds
  double rss_mb = 0;
  double mem_total_mb = 0, mem_avail_mb = 0;
  int threads = 0;
};
ProcSample sample_proc();

}  // namespace ember::wandb_plugin
