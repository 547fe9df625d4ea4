/* PROPOSED, NOT PART OF THE ABI: checkpoint I/O, "ember.checkpoint_io/1" (Lightning's
 * CheckpointIO). Moved out of include/ember/abi/ because no trainer code asked a plugin for it:
 * a pinned interface nothing calls promises behaviour that does not exist. The host writes and
 * reads every checkpoint through the storage layer (ember.storage/1 for remote schemes). This
 * draft is kept for the release that makes the trainer use it (to encrypt, compress, or write
 * another format such as safetensors); it then moves back under abi/ with tests that drive it.
 */
#ifndef EMBER_ABI_CHECKPOINT_IO_H
#define EMBER_ABI_CHECKPOINT_IO_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_CHECKPOINT_IO_V1 "ember.checkpoint_io/1"

typedef struct ember_checkpoint_io_v1 {
    uint32_t struct_size;
    /* Atomically store the serialised checkpoint at url. data is borrowed.
     * Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*save_checkpoint)(void *self, ember_str_t url, const void *data, size_t size);
    /* Stream the checkpoint at url into sink. Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*load_checkpoint)(void *self, ember_str_t url, const ember_sink_t *sink);
    /* Remove the checkpoint at url. Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*remove_checkpoint)(void *self, ember_str_t url);
} ember_checkpoint_io_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_CHECKPOINT_IO_H */
