/* Ember C ABI: rich media for loggers, "ember.media/1" (Lightning's WandbLogger.log_image,
 * log_table / log_text, and the histograms of watch).
 *
 * Optional: a logger that offers it receives images, tables and histograms; the host skips a
 * logger without it. Each call belongs to one step, named by an ember_log_context_t exactly as in
 * log_metrics. Like log_metrics, every function runs on the training thread and must not block on
 * I/O: copy or reduce what you need from the borrowed arguments, return, and do the encoding and
 * uploading on a worker.
 */
#ifndef EMBER_ABI_MEDIA_H
#define EMBER_ABI_MEDIA_H

#include "common.h"
#include "logger.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_MEDIA_V1 "ember.media/1"

/* The histogram bin counts log_histogram accepts (W&B's limit). */
#define EMBER_MEDIA_MAX_BINS 512

/* One image of a log_image call: a tensor or an encoded PNG, and an optional caption.
 *
 * tensor (when not NULL): on the CPU (kDLCPU), compact row-major (strides NULL or equal to the
 *   compact strides); shape HW (grayscale), CHW or HWC with C = 1 (gray), 3 (RGB) or 4 (RGBA) —
 *   CHW (torch's layout) when the first dimension is 1, 3 or 4, else HWC; dtype uint8 (0..255)
 *   or float32/float64 (0..1, clamped, scaled by 255 and rounded). H and W are 1..65500.
 * png (when tensor is NULL): png_size bytes of an encoded PNG file, sent as they are.
 * caption: may be empty.
 *
 * The layout is fixed for ember.media/1 (elements of an array); a changed image description is
 * a new interface id. Since: 1.0. */
typedef struct ember_image {
    const DLTensor *tensor;
    const void *png;
    size_t png_size;
    ember_str_t caption;
} ember_image_t;

typedef struct ember_media_v1 {
    uint32_t struct_size;
    /* Log count >= 1 images under key for ctx's step (Lightning's log_image(key, images,
     * caption=...); one image is W&B's "image-file", several are one "images/separated" value).
     * images, their tensors and bytes are borrowed for the call: copy the pixels before
     * returning. An image that does not fit the description above is EMBER_E_INVALID with a
     * message naming key, the image index and the expected shapes and dtypes.
     * Required: no (NULL: the logger takes no images). [train-thread]. Since: 1.0. */
    ember_status_t (*log_image)(void *self, const ember_log_context_t *ctx, ember_str_t key,
                                const ember_image_t *images, size_t count);
    /* Log a table under key for ctx's step (Lightning's log_table; log_text is the same call).
     * columns_json is a JSON array of column names (strings); rows_json a JSON array of rows, each
     * an array of as many JSON values as there are columns. Both are borrowed for the call.
     * Malformed JSON or a row of the wrong length is EMBER_E_INVALID naming key and the row.
     * Required: no (NULL: the logger takes no tables). [train-thread]. Since: 1.0. */
    ember_status_t (*log_table)(void *self, const ember_log_context_t *ctx, ember_str_t key,
                                ember_str_t columns_json, ember_str_t rows_json);
    /* Log the distribution of values under key for ctx's step, as num_bins (1..512) equal bins
     * between the smallest and the largest finite value (NaN and infinities are left out; a
     * tensor with no finite value logs nothing). values: on the CPU, compact, any shape, dtype
     * float32/float64 or a signed/unsigned integer of 8..64 bits; borrowed for the call.
     * Histograms logged with the same ctx (one watch step) may be merged into one record.
     * Required: no (NULL: the logger takes no histograms). [train-thread]. Since: 1.0. */
    ember_status_t (*log_histogram)(void *self, const ember_log_context_t *ctx, ember_str_t key,
                                    const DLTensor *values, int32_t num_bins);
} ember_media_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_MEDIA_H */
