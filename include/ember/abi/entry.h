/* Ember C ABI: the plugin entry — the one symbol a plugin exports.
 *
 *   EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = { ... };
 *
 * The host reads abi_major and abi_minor first (their offsets never change), refuses another
 * major or a newer minor, then checks struct_size before reading anything else.
 */
#ifndef EMBER_ABI_ENTRY_H
#define EMBER_ABI_ENTRY_H

#include "common.h"
#include "host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The exported symbol's name. */
#define EMBER_ENTRY_SYMBOL "ember_plugin_entry"

typedef struct ember_plugin_entry {
    uint16_t abi_major;          /* EMBER_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;          /* EMBER_ABI_MINOR the plugin was built with */
    uint32_t struct_size;        /* sizeof(ember_plugin_entry_t) the plugin was built with */

    ember_str_t id;              /* unique, [a-z0-9_]+, e.g. "csv_logger" */
    ember_str_t version;         /* the plugin's own version, e.g. "1.2.0" */
    ember_str_t description;     /* one line */
    ember_str_t config_schema;   /* JSON Schema of the config object; empty: accepts {} only */
    ember_str_t build_tag;       /* empty, or the libtorch build tag a model plugin needs */

    /* Make an instance from its config (a JSON object, already checked against config_schema).
     * host is borrowed until destroy. On failure return non-zero and leave the reason for
     * last_error(NULL). Required: yes. [train-thread]. Since: 1.0. */
    ember_status_t (*create)(const ember_host_t *host, ember_str_t config_json, void **out_self);
    /* Destroy an instance. Required: yes. [train-thread]. Since: 1.0. */
    void (*destroy)(void *self);
    /* Return the table of interface id (e.g. "ember.callbacks/1") or NULL if not offered. The
     * table is owned by the plugin and lives as long as self. self may be NULL: the host asks
     * so to list what a plugin offers without creating it; answer as for any instance.
     * Required: yes. [any-thread]. */
    const void *(*get_interface)(void *self, ember_str_t interface_id);
    /* The message of the last failed call into the plugin made on the calling thread: a call on
     * self, or create when self is NULL. Valid until the next call into the plugin on this
     * thread; the host reads it on the thread that saw the failure, right after the failing
     * call, and copies it at once. Because storage functions are [any-thread] (a logger's
     * worker, a spool and a checkpoint save may fail at the same moment on one instance), keep
     * the message per thread (thread-local), not per instance: two threads failing together
     * must each read their own message. plugin.hpp does this for C++ plugins.
     * Required: yes. [any-thread]. Returns memory the plugin owns. Since: 1.0. */
    ember_str_t (*last_error)(void *self);
} ember_plugin_entry_t;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_ABI_ENTRY_H */
