// See sysinfo.hpp.
#include "sysinfo.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace ember::wandb_plugin {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id() {
  static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 8; ++i) s += chars[rd() % 36];
  return s;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

int process_rank() {
  for (const char* v : {"RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"}) {
    std::string s = env(v);
    if (!s.empty()) return std::atoi(s.c_str());
  }
  return 0;
}

ProcSample sample_proc() {
  ProcSample s;
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[4096];
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    // Fields after the ")" of comm: state(3) ... utime(14) stime(15) ... num_threads(20).
    if (const char* p = std::strrchr(buf, ')')) {
      std::vector<std::string> fields;
      std::string cur;
      for (const char* q = p + 2; *q; ++q) {
        if (*q == ' ') fields.push_back(cur), cur.clear();
        else cur += *q;
      }
      fields.push_back(cur);
      double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
      if (fields.size() > 17 && tick > 0) {
        s.cpu_s = (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) / tick;
        s.threads = std::atoi(fields[17].c_str());
      }
    }
  }
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmRSS:", 6) == 0) s.rss_mb = std::atof(line + 6) / 1024.0;
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "MemTotal:", 9) == 0) s.mem_total_mb = std::atof(line + 9) / 1024.0;
      if (std::strncmp(line, "MemAvailable:", 13) == 0) s.mem_avail_mb = std::atof(line + 13) / 1024.0;
    }
    std::fclose(f);
  }
  return s;
}

std::string program_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace ember::wandb_plugin
