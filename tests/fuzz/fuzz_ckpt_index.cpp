// libFuzzer target: the checkpoint index as it is read back. The first byte picks the reader:
//   even: `--ckpt-path best|last` — Session::resolve_ckpt reading checkpoints.json (the input)
//         from the checkpoint directory (memory://, so nothing touches the disk);
//   odd:  model_checkpoint's own record of its top-k, restored from a checkpoint's callbacks
//         state on resume (ModelCheckpoint::load_state_dict; the plugin's source is compiled in,
//         so the fuzzer sees its branches).
// A refusal (an exception) is expected; a crash or sanitizer report is a finding.
#include "../../plugins/model_checkpoint/model_checkpoint.cpp"
#include "../../samples/fashion_mnist/fashion_mlp.hpp"

#include <ember/run_config.hpp>
#include <ember/session.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace {

struct IndexReader {
  IndexReader() {
    boost::json::value c = boost::json::object{
        {"trainer", boost::json::object{{"default_root_dir", "memory://fuzz"}, {"logger", false},
                                        {"callbacks", boost::json::array{}}}}};
    static const boost::json::value schema = ember::config::parse(ember::run_config_schema(), "schema");
    ember::config::check(c, schema, "fuzz", "", true);
    session = std::make_unique<ember::Session>(c, catalog, "fuzz");
    session->build(&model);
  }
  ember::Catalog catalog;
  fashion::FashionMLP model{1e-3, 2, 2, 0};
  std::unique_ptr<ember::Session> session;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    static IndexReader reader;
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
