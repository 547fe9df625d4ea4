/* Ember C ABI: the checkpoint index, "ember.checkpoints/1".
 *
 * A plugin that keeps checkpoints (model_checkpoint) says where they are, so that nobody else
 * reads its private files: the host resolves ckpt_path "last" / "best" (Lightning's values) by
 * asking every instance that offers this interface, in plugin order, and the first that knows
 * the name answers. The plugin reads its own index (its dirpath, its file format), so resolve
 * works before fit starts, on any scheme.
 */
#ifndef EMBER_ABI_CHECKPOINTS_H
#define EMBER_ABI_CHECKPOINTS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_CHECKPOINTS_V1 "ember.checkpoints/1"

typedef struct ember_checkpoints_v1 {
    uint32_t struct_size;
    /* Write the URL of the checkpoint named `which` ("last" or "best"; other names are the
     * plugin's own) to sink, in one or more writes. EMBER_E_NOT_FOUND when the plugin keeps no
     * such checkpoint (no index yet, or no best); last_error says why. Required: yes.
     * [train-thread]. Since: 1.0 (added without a minor bump: a host that does not know the id
     * never asks for it). */
    ember_status_t (*resolve)(void *self, ember_str_t which, const ember_sink_t *sink);
} ember_checkpoints_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_CHECKPOINTS_H */
