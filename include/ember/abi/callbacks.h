/* Ember C ABI: the callbacks interface, "ember.callbacks/1".
 *
 * Its table is generated from hooks.def, so the slot list cannot drift from the host's registry.
 */
#ifndef EMBER_ABI_CALLBACKS_H
#define EMBER_ABI_CALLBACKS_H

#include "common.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_CALLBACKS_V1 "ember.callbacks/1"

/* What every hook receives. Fields that do not apply to a hook are zero, -1 or NULL as noted.
 * Borrowed for the duration of the call. Since: 1.0. Grows at the end; read struct_size. */
typedef struct ember_hook_args {
    uint32_t struct_size;
    int32_t stage;            /* ember_stage_t */
    int64_t epoch;            /* current epoch, 0-based */
    int64_t global_step;      /* optimizer steps taken so far */
    int64_t batch_idx;        /* batch index within the epoch, -1 outside batch hooks */
    int64_t dataloader_idx;   /* 0 unless several dataloaders */
    int32_t optimizer_idx;    /* on_before_optimizer_step / on_before_zero_grad, else -1 */
    int32_t reserved0;
    const DLTensor *loss;     /* on_train_batch_end, on_before_backward: the loss; else NULL */
    const DLTensor *outputs;  /* on_predict_batch_end: the prediction; else NULL */
    ember_str_t message;      /* on_exception: what failed; else empty */
    ember_str_t url;          /* on_save_checkpoint / on_load_checkpoint: the checkpoint URL */
} ember_hook_args_t;

/* Hook ids, one per line of hooks.def, in its order. */
typedef enum ember_hook_id {
#define EMBER_HOOK(name, since, doc) EMBER_HOOK_ID_##name,
#include "hooks.def"
    EMBER_HOOK_COUNT
} ember_hook_id_t;

/* Signature shared by every hook.
 * Required: no. [train-thread]. self is the instance create() returned; args is borrowed. */
typedef ember_status_t (*ember_hook_fn)(void *self, const ember_hook_args_t *args);

/* The callbacks table: struct_size, then one optional pointer per hook in hooks.def order.
 * Since: 1.0. An old plugin's smaller table simply lacks the newer hooks. */
typedef struct ember_callbacks_v1 {
    uint32_t struct_size;
#define EMBER_HOOK(name, since, doc) ember_hook_fn name;
#include "hooks.def"
} ember_callbacks_v1_t;

/* Plugin state saved in checkpoints under the plugin id, "ember.state/1" (Lightning's
 * Callback.state_dict / load_state_dict). Since: 1.0. */
#define EMBER_STATE_V1 "ember.state/1"

typedef struct ember_state_v1 {
    uint32_t struct_size;
    /* Write the plugin's state as one JSON value into sink.
     * Required: yes. [train-thread]. The sink is borrowed for the call. */
    ember_status_t (*state_dict)(void *self, const ember_sink_t *sink);
    /* Restore from the JSON a previous state_dict wrote.
     * Required: yes. [train-thread]. json is borrowed for the call. */
    ember_status_t (*load_state_dict)(void *self, ember_str_t json);
} ember_state_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_CALLBACKS_H */
