/* Ember C ABI: tensors cross the boundary as DLPack views.
 *
 * A `const DLTensor *` handed to a plugin is a borrowed view, valid for the duration of the call.
 * Its data lives on the device it names (CPU here); a plugin that needs values later copies them.
 */
#ifndef EMBER_ABI_TENSOR_H
#define EMBER_ABI_TENSOR_H

#include <dlpack/dlpack.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A named scalar metric, as sent to loggers. */
typedef struct ember_metric {
    ember_str_t name;
    double value;
} ember_metric_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_TENSOR_H */
