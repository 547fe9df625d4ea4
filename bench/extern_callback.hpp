// A callback whose hook body lives in another translation unit (extern_callback.cpp), as a
// user's callback class defined in its own .cpp does: the registry's thunk, generated in
// dispatch.cpp, cannot see the body, so it cannot devirtualise into it and inline it. The case
// that CountingCallback in dispatch.cpp (internal linkage, body visible) does not show.
#pragma once

#include <ember/callback.hpp>

#include <cstdint>

namespace bench {

struct ExternCallback : ember::Callback {
  volatile std::uint64_t calls = 0;
  void on_train_batch_end(const ember::HookArgs& args) override;  // defined in extern_callback.cpp
};

}  // namespace bench
