/* Ember C ABI: the logger interface, "ember.logger/1" (Lightning's Logger).
 *
 * The host calls a logger on the training thread; a logger that talks to the network keeps its
 * own worker and returns at once, and drains it in finalize.
 */
#ifndef EMBER_ABI_LOGGER_H
#define EMBER_ABI_LOGGER_H

#include "common.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_LOGGER_V1 "ember.logger/1"

/* Where a batch of metrics belongs. Every record carries step, epoch and stage explicitly. */
typedef struct ember_log_context {
    uint32_t struct_size;
    int32_t stage;        /* ember_stage_t */
    int64_t step;         /* global_step when logged */
    int64_t epoch;
} ember_log_context_t;

typedef struct ember_logger_v1 {
    uint32_t struct_size;
    /* Record the run's hyper-parameters, a JSON object.
     * Required: no. [train-thread]. params_json is borrowed. Since: 1.0. */
    ember_status_t (*log_hyperparams)(void *self, ember_str_t params_json);
    /* Record metrics for one step. Must not block on I/O; buffer and return.
     * Required: yes. [train-thread]. ctx and metrics are borrowed. Since: 1.0. */
    ember_status_t (*log_metrics)(void *self, const ember_log_context_t *ctx,
                                  const ember_metric_t *metrics, size_t count);
    /* A checkpoint was committed at url (Lightning's after_save_checkpoint, for log_model).
     * Required: no. [train-thread]. Since: 1.0. */
    ember_status_t (*after_save_checkpoint)(void *self, ember_str_t url);
    /* Flush what is buffered so far (may hand it to the worker). Required: no. [train-thread]. */
    ember_status_t (*save)(void *self);
    /* The run ended with status "success", "failed" or "interrupted": drain workers, close files.
     * Required: no. [train-thread]. Since: 1.0. */
    ember_status_t (*finalize)(void *self, ember_str_t status);
} ember_logger_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_LOGGER_H */
