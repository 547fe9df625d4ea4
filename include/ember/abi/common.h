/* Ember C ABI: common types, status codes and the thread-tag vocabulary.
 *
 * Pure C99. Every header under ember/abi/ compiles alone as C99 and C++17.
 *
 * Thread tags used in every contract block:
 *   [train-thread]  called only on the thread that runs the training loop; must not block on
 *                   the network or on a lock that a worker holds while doing I/O.
 *   [worker]        called on a thread the plugin or the host started for background work.
 *   [any-thread]    may be called on any thread; the implementation synchronises itself.
 *
 * Ownership: memory handed across the boundary is borrowed for the duration of the call only.
 * What the callee must keep, it copies. Nothing is freed across the boundary.
 *
 * Interface tables begin with struct_size. When an instance is created the host asks for each
 * interface it knows and copies every slot lying wholly inside the table's struct_size into a
 * full-size table of its own; slots beyond it are NULL (absent). A slot marked "Required: yes"
 * that is NULL or lies beyond struct_size refuses the plugin, naming the plugin, the interface
 * and the slot. The host reads the table only then: a table may not change after it is handed
 * over.
 */
#ifndef EMBER_ABI_COMMON_H
#define EMBER_ABI_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version. A plugin built for major M loads in a host of major M whose minor is at
 * least the plugin's minor. Minor revisions only append. */
#define EMBER_ABI_MAJOR 1
#define EMBER_ABI_MINOR 1

#if defined(_WIN32)
#define EMBER_EXPORT __declspec(dllexport)
#else
#define EMBER_EXPORT __attribute__((visibility("default")))
#endif

/* Status codes: 0 is success, failures are negative. */
typedef int32_t ember_status_t;
#define EMBER_OK 0
#define EMBER_E_FAILED (-1)         /* generic failure; read last_error */
#define EMBER_E_INVALID (-2)        /* an argument or config value is invalid */
#define EMBER_E_NOT_FOUND (-3)      /* a named thing (metric, URL, interface) does not exist */
#define EMBER_E_UNSUPPORTED (-4)    /* the operation or scheme is not supported */
#define EMBER_E_IO (-5)             /* an I/O or network operation failed */
#define EMBER_E_NOMEM (-6)          /* out of memory */
#define EMBER_E_VERSION (-7)        /* ABI or struct version mismatch */
#define EMBER_E_STOPPED (-8)        /* the operation was cancelled */

/* A borrowed string: pointer and length; not NUL-terminated unless stated. */
typedef struct ember_str {
    const char *data;
    size_t size;
} ember_str_t;

/* Build an ember_str_t from a string literal (usable in static initialisers). */
#define EMBER_STR(lit) { (lit), sizeof(lit) - 1 }

/* Severity for host->log. */
typedef enum ember_log_level {
    EMBER_LOG_DEBUG = 0,
    EMBER_LOG_INFO = 1,
    EMBER_LOG_WARN = 2,
    EMBER_LOG_ERROR = 3
} ember_log_level_t;

/* The stage the trainer is in (Lightning's TrainerFn plus the sanity check). */
typedef enum ember_stage {
    EMBER_STAGE_NONE = 0,
    EMBER_STAGE_FIT = 1,
    EMBER_STAGE_VALIDATE = 2,
    EMBER_STAGE_TEST = 3,
    EMBER_STAGE_PREDICT = 4,
    EMBER_STAGE_SANITY_CHECK = 5
} ember_stage_t;

/* A byte sink the host hands to a plugin that produces bytes (state, checkpoint loads).
 * write: [same thread as the call that received the sink]; returns EMBER_OK or a failure that
 * the producer must pass back up. */
typedef struct ember_sink {
    void *ctx;
    ember_status_t (*write)(void *ctx, const void *data, size_t size);
} ember_sink_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_COMMON_H */
