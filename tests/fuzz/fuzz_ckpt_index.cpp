// libFuzzer target: the checkpoint index as it is read back. The first byte picks the reader:
//   even: `--ckpt-path best|last` — Session::resolve_ckpt reading checkpoints.json (the input)
//         from the checkpoint directory (memory://, so nothing touches the disk);
//   odd:  model_checkpoint's own record of its top-k, restored from a checkpoint's callbacks
//         state on resume (ModelCheckpoint::load_state_dict; the plugin's source is compiled in,
//         so the fuzzer sees its branches).
// A refusal (an exception) is expected; a crash or sanitizer report is a finding.
#include "../../plugins/model_checkpoint/model_checkpoint.cpp"
#include "fuzz_session.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    static fuzz::FuzzSession reader;
    try {
      reader.session->trainer().urls().put_atomic("memory://fuzz/checkpoints/checkpoints.json", text);
      (void)reader.session->resolve_ckpt((data[0] & 2) ? "best" : "last");
    } catch (const std::exception&) {
    }
  } else {
    static ember_host_t host{};  // the constructor and load_state_dict call no host service
    try {
      ModelCheckpoint mc(&host, "{}");
      mc.load_state_dict(text);
      (void)mc.state_dict();
    } catch (const std::exception&) {
    }
  }
  return 0;
}
