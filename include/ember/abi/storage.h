/* Ember C ABI: storage, "ember.storage/1" — the URL space.
 *
 * A storage plugin owns one or more URL schemes ("s3", "gs"...). The host owns "file" (and bare
 * paths) and "memory". Plugins and the host reach every scheme through the same host table
 * functions (host.h), so a logger writes to s3:// without knowing S3.
 *
 * Writes are atomic: bytes go to a temporary object that becomes visible under the final URL only
 * on commit (rename locally, CompleteMultipartUpload on S3). Closing an uncommitted writer aborts
 * it and leaves the previous object, if any, untouched.
 */
#ifndef EMBER_ABI_STORAGE_H
#define EMBER_ABI_STORAGE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_STORAGE_V1 "ember.storage/1"

/* An open reader or writer; opaque, owned by whoever opened it until close. */
typedef struct ember_file ember_file_t;

typedef struct ember_stat {
    uint32_t struct_size;
    int32_t is_dir;          /* a directory or a common prefix */
    uint64_t size;           /* bytes */
    int64_t mtime_ns;        /* modification time, ns since the epoch; 0 if unknown */
    ember_str_t url;         /* borrowed for the call: the object's full URL */
} ember_stat_t;

/* Called once per entry by list; return non-zero to stop early. */
typedef int32_t (*ember_list_fn)(void *user, const ember_stat_t *entry);

typedef struct ember_storage_v1 {
    uint32_t struct_size;
    /* Comma-separated schemes this plugin serves, e.g. "s3". Static for the instance's life. */
    ember_str_t schemes;
    /* Open url for reading bytes [offset, offset+length); length UINT64_MAX means to the end.
     * Required: yes. [any-thread]. *out is owned by the caller until close. */
    ember_status_t (*open_read)(void *self, ember_str_t url, uint64_t offset, uint64_t length,
                                ember_file_t **out);
    /* Read up to cap bytes; *got is 0 at the end. Required: yes. [any-thread]. */
    ember_status_t (*read)(void *self, ember_file_t *file, void *buf, size_t cap, size_t *got);
    /* Open url for an atomic streaming write. Required: yes. [any-thread]. */
    ember_status_t (*open_write)(void *self, ember_str_t url, ember_file_t **out);
    /* Append bytes. data is borrowed. Required: yes. [any-thread]. */
    ember_status_t (*write)(void *self, ember_file_t *file, const void *data, size_t size);
    /* Publish what was written under the final URL. The file stays open until close.
     * Required: yes. [any-thread]. */
    ember_status_t (*commit)(void *self, ember_file_t *file);
    /* Release the file; an uncommitted write is aborted. Required: yes. [any-thread]. */
    void (*close)(void *self, ember_file_t *file);
    /* Describe url; EMBER_E_NOT_FOUND if absent. Required: yes. [any-thread]. */
    ember_status_t (*stat)(void *self, ember_str_t url, ember_stat_t *out);
    /* List entries under prefix (one level, like `ls`). Required: yes. [any-thread]. */
    ember_status_t (*list)(void *self, ember_str_t prefix, ember_list_fn fn, void *user);
    /* Remove url; removing what is absent is EMBER_E_NOT_FOUND. Required: yes. [any-thread]. */
    ember_status_t (*remove)(void *self, ember_str_t url);
} ember_storage_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_STORAGE_H */
