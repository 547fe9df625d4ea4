/* Ember C ABI: the services the host offers a plugin, ember_host_t.
 *
 * Each plugin instance receives its own table (ctx identifies the instance), valid from create
 * until destroy returns. Read struct_size before using a field added after 1.0.
 */
#ifndef EMBER_ABI_HOST_H
#define EMBER_ABI_HOST_H

#include "common.h"
#include "storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A snapshot of the trainer, filled by get_state. The caller sets struct_size. */
typedef struct ember_trainer_state {
    uint32_t struct_size;
    int32_t stage;                 /* ember_stage_t */
    int64_t epoch;
    int64_t global_step;
    int64_t max_epochs;            /* -1: unbounded */
    int64_t max_steps;             /* -1: unbounded */
    int64_t num_training_batches;  /* per epoch, after limit_train_batches; -1 unknown */
    int64_t num_val_batches;       /* -1 unknown */
    int32_t sanity_checking;       /* 1 during the sanity check */
    int32_t should_stop;           /* a stop was requested */
    ember_str_t default_root_dir;  /* URL; borrowed until the next call into the host */
    int32_t fn;                    /* the entry point running: ember_stage_t FIT, VALIDATE, TEST or
                                      PREDICT (stage says VALIDATE inside fit; fn stays FIT) */
    int32_t reserved0;
    int64_t num_test_batches;      /* -1 unknown */
    int64_t num_predict_batches;   /* -1 unknown */
} ember_trainer_state_t;

/* Reductions of all_reduce (Since: 1.1). */
typedef enum ember_reduce_op {
    EMBER_REDUCE_SUM = 0,
    EMBER_REDUCE_MEAN = 1,
    EMBER_REDUCE_MAX = 2,
    EMBER_REDUCE_MIN = 3
} ember_reduce_op_t;

/* Receives one metric per call from list_metrics; return non-zero to stop. */
typedef int32_t (*ember_metric_fn)(void *user, ember_str_t name, double value);

typedef struct ember_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *ctx;                     /* pass back as the first argument of every function */
    ember_str_t host_version;      /* e.g. "0.1.0" */

    /* Write a line to the host's log, prefixed with the plugin id. Required: yes. [any-thread]. */
    void (*log)(void *ctx, int32_t level, ember_str_t message);
    /* Fill *out (out->struct_size set by the caller). Required: yes. [train-thread]. */
    ember_status_t (*get_state)(void *ctx, ember_trainer_state_t *out);
    /* Look up a callback metric (Lightning's trainer.callback_metrics) by name.
     * EMBER_E_NOT_FOUND if it was never logged. Required: yes. [train-thread]. */
    ember_status_t (*get_metric)(void *ctx, ember_str_t name, double *out);
    /* Visit every callback metric. Required: yes. [train-thread]. */
    ember_status_t (*list_metrics)(void *ctx, ember_metric_fn fn, void *user);
    /* Ask the trainer to stop at the next safe point (Lightning's trainer.should_stop = True).
     * reason is copied. Required: yes. [train-thread]. */
    void (*request_stop)(void *ctx, ember_str_t reason);

    /* Storage by URL: the host routes by scheme to file://, memory:// or a storage plugin.
     * Same contracts as ember_storage_v1_t. Required: yes. [any-thread]. */
    ember_status_t (*open_read)(void *ctx, ember_str_t url, uint64_t offset, uint64_t length,
                                ember_file_t **out);
    ember_status_t (*read)(void *ctx, ember_file_t *file, void *buf, size_t cap, size_t *got);
    ember_status_t (*open_write)(void *ctx, ember_str_t url, ember_file_t **out);
    ember_status_t (*write)(void *ctx, ember_file_t *file, const void *data, size_t size);
    ember_status_t (*commit)(void *ctx, ember_file_t *file);
    void (*close)(void *ctx, ember_file_t *file);
    ember_status_t (*stat)(void *ctx, ember_str_t url, ember_stat_t *out);
    ember_status_t (*list)(void *ctx, ember_str_t prefix, ember_list_fn fn, void *user);
    ember_status_t (*remove)(void *ctx, ember_str_t url);
    /* The message of the last failed host call made with this ctx on this thread; valid until
     * the next host call. Required: yes. [any-thread]. */
    ember_str_t (*last_error)(void *ctx);
    /* Write a checkpoint of the whole run to url now (Lightning's trainer.save_checkpoint),
     * atomically; weights_only non-zero omits optimizer and loop state.
     * Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*save_checkpoint)(void *ctx, ember_str_t url, int32_t weights_only);
    /* Visit the metrics logged with prog_bar (Lightning's progress_bar_metrics).
     * Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*list_progress_metrics)(void *ctx, ember_metric_fn fn, void *user);

    /* --- Since 1.1: data-parallel training (strategy "ddp"). Check EMBER_HOST_HAS first. ---
     * Every rank runs the same plugins and the same hooks. Loggers are created on every rank
     * but their logger tables are used on rank 0 only; a callback that writes files does so
     * when global_rank is 0. barrier, broadcast and all_reduce are collectives: every rank must
     * call them in the same order, or the ranks that did wait until trainer.ddp_timeout_s and
     * fail. In a single process they return at once (world_size 1). */
    int32_t global_rank;           /* 0 .. world_size-1; 0 in a single process */
    int32_t local_rank;            /* the rank on this machine */
    int32_t world_size;            /* number of processes; 1 in a single process */
    int32_t reserved1;
    /* Wait until every rank has called barrier. Required: yes. [train-thread]. Since: 1.1. */
    ember_status_t (*barrier)(void *ctx);
    /* Copy size bytes at data on rank root to data on every other rank (the same size on
     * every rank): how a callback makes a decision identical everywhere (rank 0's).
     * EMBER_E_INVALID for a root outside the world. Required: yes. [train-thread]. Since: 1.1. */
    ember_status_t (*broadcast)(void *ctx, void *data, size_t size, int32_t root);
    /* Reduce count doubles element-wise across ranks (op: ember_reduce_op_t), in place.
     * Required: yes. [train-thread]. Since: 1.1. */
    ember_status_t (*all_reduce)(void *ctx, double *values, size_t count, int32_t op);
} ember_host_t;

/* Whether a host table is new enough to have field (a host of an older minor has a shorter
 * table): EMBER_HOST_HAS(host, barrier). */
#define EMBER_HOST_HAS(host, field) \
    ((host)->struct_size >= offsetof(ember_host_t, field) + sizeof((host)->field))

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_HOST_H */
