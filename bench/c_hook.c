/* The C hook for bench_dispatch: a plugin-style function in its own translation unit, so the
 * compiler cannot inline it into the dispatch loop. */
#include <ember/abi.h>

ember_status_t bench_c_hook(void *self, const ember_hook_args_t *args);

ember_status_t bench_c_hook(void *self, const ember_hook_args_t *args) {
    (void)args;
    volatile uint64_t *calls = (volatile uint64_t *)self;
    *calls = *calls + 1;
    return EMBER_OK;
}
