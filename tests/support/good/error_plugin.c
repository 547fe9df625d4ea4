/* A plugin in plain C whose on_fit_start fails with a status and a last_error message, the way
 * a C plugin reports failure. It takes no config (empty schema: accepts {} only). */
#include <ember/abi.h>

#include <stdlib.h>

typedef struct error_plugin {
    const char *last_error;
} error_plugin_t;

static ember_str_t error_text(const char *s) {
    ember_str_t out = {"", 0};
    if (s) {
        size_t n = 0;
        while (s[n]) ++n;
        out.data = s;
        out.size = n;
    }
    return out;
}

static ember_status_t error_on_fit_start(void *self, const ember_hook_args_t *args) {
    (void)args;
    ((error_plugin_t *)self)->last_error = "error_plugin says no";
    return EMBER_E_FAILED;
}

static const ember_callbacks_v1_t error_callbacks = {
    .struct_size = sizeof(ember_callbacks_v1_t),
    .on_fit_start = error_on_fit_start,
};

static ember_status_t error_create(const ember_host_t *host, ember_str_t config, void **out) {
    error_plugin_t *p;
    (void)host;
    (void)config;
    p = (error_plugin_t *)calloc(1, sizeof *p);
    if (!p) return EMBER_E_NOMEM;
    *out = p;
    return EMBER_OK;
}

static void error_destroy(void *self) { free(self); }

static int str_equals(ember_str_t a, const char *b) {
    size_t i;
    for (i = 0; i < a.size; ++i)
        if (b[i] == '\0' || a.data[i] != b[i]) return 0;
    return b[a.size] == '\0';
}

static const void *error_get_interface(void *self, ember_str_t id) {
    (void)self;
    return str_equals(id, EMBER_CALLBACKS_V1) ? &error_callbacks : NULL;
}

static ember_str_t error_last_error(void *self) {
    return error_text(self ? ((error_plugin_t *)self)->last_error : "error_plugin: create failed");
}

EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {
    .abi_major = EMBER_ABI_MAJOR,
    .abi_minor = EMBER_ABI_MINOR,
    .struct_size = sizeof(ember_plugin_entry_t),
    .id = EMBER_STR("error_plugin"),
    .version = EMBER_STR("0.0.1"),
    .description = EMBER_STR("A C plugin whose on_fit_start fails (test fixture)"),
    .create = error_create,
    .destroy = error_destroy,
    .get_interface = error_get_interface,
    .last_error = error_last_error,
};
