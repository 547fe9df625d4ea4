// What a hook call costs: HookRegistry::call over its flat slot array.
//
//   bench_dispatch [--iterations N] [--runs N]
//
// Each case calls one hook N times (default 50M) and takes the median of R runs (default 7).
// Cases: a hook nobody implements (empty slot array); an in-process C++ callback registered with
// HookRegistry::add<T> (1 and 4 slots), twice: with the body visible here (internal linkage, so
// GCC devirtualises the thunk's call and inlines the body: the best case) and with the body in
// another translation unit (extern_callback.cpp: the thunk makes a real call, as for a user's
// callback class in its own file); the same out-of-line callback registered with add_all (the
// type unknown to the registry: a virtual call through the Callback base); a C table registered
// with add_table (1 and 4 slots, the function in another translation unit, as a plugin's is);
// and, for reference, a plain virtual call. A compiler barrier after every call makes the loop re-read the registry as a trainer loop
// (which runs other code between hooks) would, instead of hoisting the slot array out of it.
#include "extern_callback.hpp"

#include <ember/registry.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" ember_status_t bench_c_hook(void* self, const ember_hook_args_t* args);  // c_hook.c

namespace {

inline void clobber_memory() { asm volatile("" ::: "memory"); }

// An in-process callback with an empty-but-observable body. The registry's thunk is generated
// for the concrete T; T here has internal linkage, so GCC knows it has no subclasses and the
// thunk runs the body directly. (A non-final T with external linkage may cost the thunk a
// virtual call, like the reference case below.)
struct CountingCallback : ember::Callback {
  volatile std::uint64_t calls = 0;
  void on_train_batch_end(const ember::HookArgs&) override { calls = calls + 1; }
};

struct Options {
  std::uint64_t iterations = 50'000'000;
  int runs = 7;
};

// Median over opt.runs of the nanoseconds one body() takes.
template <class F>
double median_ns(const Options& opt, F&& body) {
  std::vector<double> per_call;
  for (int r = 0; r < opt.runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < opt.iterations; ++i) {
      body();
      clobber_memory();
    }
    auto t1 = std::chrono::steady_clock::now();
    per_call.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                       static_cast<double>(opt.iterations));
  }
  std::sort(per_call.begin(), per_call.end());
  return per_call[per_call.size() / 2];
}

const char* plural(int n) { return n == 1 ? "slot" : "slots"; }

// Times on_train_batch_end over 1 and then 4 callbacks of type T, each registered by
// add(registry, callback); prints ns per slot under label. False if a callback missed a call.
template <class T, class Add>
bool time_callbacks(const Options& opt, const ember::HookArgs& args, const char* label, Add add) {
  bool ok = true;
  for (int slots : {1, 4}) {
    ember::HookRegistry reg;
    std::vector<T> cbs(static_cast<std::size_t>(slots));
    for (auto& cb : cbs) add(reg, cb);
    double ns = median_ns(opt, [&] { reg.call(EMBER_HOOK_ID_on_train_batch_end, args); });
    std::printf("dispatch: %s: %.2f ns/slot (%d %s)\n", label, ns / slots, slots, plural(slots));
    for (auto& cb : cbs) ok &= cb.calls == opt.iterations * static_cast<std::uint64_t>(opt.runs);
  }
  return ok;
}

bool parse(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--iterations" || a == "--runs") && i + 1 < argc) {
      char* end = nullptr;
      unsigned long long v = std::strtoull(argv[++i], &end, 10);
      if (*end || v == 0) return false;
      if (a == "--iterations")
        opt.iterations = v;
      else
        opt.runs = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) {
    std::fprintf(stderr, "usage: %s [--iterations N] [--runs N]\n", argv[0]);
    return 2;
  }
  std::printf("dispatch: %llu calls per run, median of %d runs\n",
              static_cast<unsigned long long>(opt.iterations), opt.runs);

  ember::HookArgs args{};
  args.struct_size = sizeof args;
  args.batch_idx = 0;
  constexpr ember_hook_id_t hook = EMBER_HOOK_ID_on_train_batch_end;
  bool ok = true;

  {
    ember::HookRegistry reg;
    CountingCallback cb;
    reg.add(cb, "counting");  // fills on_train_batch_end only
    constexpr ember_hook_id_t unused = EMBER_HOOK_ID_on_before_zero_grad;
    double ns = median_ns(opt, [&] { reg.call(unused, args); });
    std::printf("dispatch: empty hook (no slots): %.2f ns/call\n", ns);
  }

  ok &= time_callbacks<CountingCallback>(opt, args, "registered hook call, body in this TU (devirtualised, inlined)",
                                         [](ember::HookRegistry& reg, CountingCallback& cb) { reg.add(cb, "counting"); });
  ok &= time_callbacks<bench::ExternCallback>(opt, args, "registered hook call, body in another TU",
                                              [](ember::HookRegistry& reg, bench::ExternCallback& cb) { reg.add(cb, "extern"); });
  ok &= time_callbacks<bench::ExternCallback>(opt, args, "add_all (type unknown, virtual), body in another TU",
                                              [](ember::HookRegistry& reg, bench::ExternCallback& cb) { reg.add_all(cb, "extern"); });

  for (int slots : {1, 4}) {
    ember::HookRegistry reg;
    std::vector<std::uint64_t> counters(static_cast<std::size_t>(slots), 0);
    ember_callbacks_v1_t table;
    std::memset(&table, 0, sizeof table);
    table.struct_size = sizeof table;
    table.on_train_batch_end = &bench_c_hook;
    for (auto& c : counters) reg.add_table(reg.add_owner("c_table"), table, &c);
    double ns = median_ns(opt, [&] { reg.call(hook, args); });
    std::printf("dispatch: C table hook call: %.2f ns/slot (%d %s)\n", ns / slots, slots,
                plural(slots));
    for (auto c : counters) ok &= c == opt.iterations * static_cast<std::uint64_t>(opt.runs);
  }

  {
    CountingCallback cb;
    ember::Callback* base = &cb;
    asm volatile("" : "+r"(base));  // the compiler no longer knows the dynamic type
    double ns = median_ns(opt, [&] { base->on_train_batch_end(args); });
    std::printf("dispatch: reference: plain virtual call: %.2f ns/call\n", ns);
  }

  if (!ok) {
    std::fprintf(stderr, "dispatch: a callback was not called the expected number of times\n");
    return 1;
  }
  return 0;
}
