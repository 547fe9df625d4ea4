// Running the unzipped Lambda package as Lambda would, with nothing from this machine: in a mount
// namespace (unshare -m, as root), ROOT is bind-mounted on itself and remounted read-only, TMP
// (writable) is bind-mounted on ROOT/tmp, and ROOT/var/task/bootstrap is executed chrooted into
// ROOT with only LAMBDA_TASK_ROOT=/var/task and the given variables in its environment. ROOT holds
// the package in var/task, an empty tmp/, and dev/ with the four character devices Lambda has and
// libtorch opens (/dev/urandom seeds its generator): null, zero, random, urandom, bind-mounted from
// the host (make_chroot_root makes the mount points). There is no /usr, /proc or /etc. The network
// namespace is the test's, so 127.0.0.1 reaches the test's servers.
#pragma once

#include "run_process.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ember::test {

// Make ROOT's tmp/ and dev/ mount points (ROOT/var/task is the unzipped package).
inline void make_chroot_root(const std::filesystem::path& root) {
  std::filesystem::create_directories(root / "tmp");
  std::filesystem::create_directories(root / "dev");
  for (const char* d : {"null", "zero", "random", "urandom"}) std::ofstream(root / "dev" / d).close();
}

// The command line; args go to the bootstrap (none: `ember lambda`), env are "NAME=VALUE".
inline std::vector<std::string> chroot_command(const std::filesystem::path& root, const std::filesystem::path& tmp,
                                               const std::vector<std::string>& args,
                                               const std::vector<std::string>& env = {}) {
  static const char* const script =
      "set -e\n"
      "root=$1 tmp=$2; shift 2\n"
      "mount --bind \"$root\" \"$root\"\n"
      "mount --bind \"$tmp\" \"$root/tmp\"\n"
      "for d in null zero random urandom; do mount --bind /dev/$d \"$root/dev/$d\"; done\n"
      "mount -o remount,bind,ro \"$root\"\n"
      "exec \"$@\"\n";
  std::vector<std::string> argv = {"/usr/bin/unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script,
                                   "sh", root.string(), tmp.string(), "/usr/bin/env", "-i",
                                   "LAMBDA_TASK_ROOT=/var/task"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back("/usr/sbin/chroot");
  argv.push_back(root.string());
  argv.push_back("/var/task/bootstrap");
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

inline ProcessResult run_in_chroot(const std::filesystem::path& root, const std::filesystem::path& tmp,
                                   const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  return run_process(chroot_command(root, tmp, args, env));
}

}  // namespace ember::test
