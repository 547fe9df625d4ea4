/* c_counter: an Ember callbacks plugin in plain C99.
 *
 * It implements every hook of "ember.callbacks/1" (generated from hooks.def, so a hook appended
 * there is counted here after a rebuild), counts the calls per instance, and at teardown prints
 * the nonzero counts to stdout as `c_counter: <hook> <count>`.
 *
 * Config (checked by the host against the schema below before create runs):
 *   verbose  boolean  print `c_counter: call <hook>` at every hook call (default false)
 *   fail_on  string   a hook name: return EMBER_E_FAILED from that hook, to exercise the host's
 *                     error path ("" or absent: never)
 *
 * It shows the whole contract a C plugin honours: one exported const entry and hidden
 * visibility for everything else, (pointer, length) strings, status codes plus a last_error
 * string the plugin owns, and nothing allocated on one side and freed on the other.
 */
#include <ember/abi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hook names, indexed by ember_hook_id_t. */
static const char *const hook_names[EMBER_HOOK_COUNT] = {
#define EMBER_HOOK(name, since, doc) #name,
#include <ember/abi/hooks.def>
};

/* The config's JSON Schema. fail_on's enum is "" (never) followed by every hook name, so the
 * host rejects a misspelt hook, with a "did you mean", before create runs. */
static const char config_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
    "\"verbose\":{\"type\":\"boolean\",\"default\":false,"
    "\"description\":\"print 'c_counter: call <hook>' at every hook call\"},"
    "\"fail_on\":{\"type\":\"string\","
    "\"description\":\"return EMBER_E_FAILED from this hook (empty: never)\","
    "\"enum\":[\"\""
#define EMBER_HOOK(name, since, doc) ",\"" #name "\""
#include <ember/abi/hooks.def>
    "]}}}";

typedef struct c_counter {
    int verbose;
    int fail_on; /* an ember_hook_id_t, or -1: never */
    unsigned long long counts[EMBER_HOOK_COUNT];
    char error[160]; /* last_error(self); valid until the next call */
    size_t error_size;
} c_counter_t;

/* last_error(NULL): why the last create failed. create is [train-thread], so one buffer does. */
static char create_error[256];
static size_t create_error_size;

static size_t set_message(char *buf, size_t cap, const char *fmt, const char *arg, size_t arg_size) {
    int n = snprintf(buf, cap, fmt, (int)arg_size, arg);
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

static ember_status_t create_failed(ember_status_t status, const char *fmt, const char *arg,
                                    size_t arg_size) {
    create_error_size = set_message(create_error, sizeof create_error, fmt, arg, arg_size);
    return status;
}

/* ---- config: a minified JSON object with at most the keys "verbose" and "fail_on". The host
 * validated it against config_schema; this parser still refuses anything else rather than
 * guessing. */

typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

static void skip_space(cursor_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        ++c->p;
}

static int take_char(cursor_t *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        ++c->p;
        return 1;
    }
    return 0;
}

static int take_word(cursor_t *c, const char *word) {
    size_t n = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* A string's raw bytes between the quotes. Escapes are kept as written; no key or valid value
 * of this schema contains one. */
static int take_string(cursor_t *c, const char **data, size_t *size) {
    if (!take_char(c, '"')) return 0;
    *data = c->p;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\\' && c->p + 1 < c->end) ++c->p;
        ++c->p;
    }
    if (c->p >= c->end) return 0;
    *size = (size_t)(c->p - *data);
    ++c->p;
    return 1;
}

static int equals(const char *data, size_t size, const char *lit) {
    return strlen(lit) == size && memcmp(data, lit, size) == 0;
}

static ember_status_t parse_config(c_counter_t *self, ember_str_t json) {
    cursor_t c;
    c.p = json.data ? json.data : "";
    c.end = c.p + (json.data ? json.size : 0);
    skip_space(&c);
    if (c.p == c.end) return EMBER_OK; /* no config at all */
    if (!take_char(&c, '{'))
        return create_failed(EMBER_E_INVALID, "c_counter: config: expected a JSON object, got '%.*s'",
                             json.data, json.size);
    if (take_char(&c, '}')) return EMBER_OK;
    do {
        const char *key, *value;
        size_t key_size, value_size;
        if (!take_string(&c, &key, &key_size) || !take_char(&c, ':'))
            return create_failed(EMBER_E_INVALID, "c_counter: config: malformed JSON '%.*s'",
                                 json.data, json.size);
        if (equals(key, key_size, "verbose")) {
            if (take_word(&c, "true"))
                self->verbose = 1;
            else if (take_word(&c, "false"))
                self->verbose = 0;
            else
                return create_failed(EMBER_E_INVALID, "c_counter: config: %.*s: expected a boolean",
                                     key, key_size);
        } else if (equals(key, key_size, "fail_on")) {
            int id;
            if (!take_string(&c, &value, &value_size))
                return create_failed(EMBER_E_INVALID, "c_counter: config: %.*s: expected a string",
                                     key, key_size);
            self->fail_on = -1;
            if (value_size == 0) continue;
            for (id = 0; id < EMBER_HOOK_COUNT; ++id)
                if (equals(value, value_size, hook_names[id])) self->fail_on = id;
            if (self->fail_on < 0)
                return create_failed(EMBER_E_INVALID,
                                     "c_counter: config: fail_on: '%.*s' is not a hook name",
                                     value, value_size);
        } else {
            return create_failed(EMBER_E_INVALID,
                                 "c_counter: config: unknown key '%.*s' (known: verbose, fail_on)",
                                 key, key_size);
        }
    } while (take_char(&c, ','));
    if (!take_char(&c, '}'))
        return create_failed(EMBER_E_INVALID, "c_counter: config: malformed JSON '%.*s'", json.data,
                             json.size);
    return EMBER_OK;
}

/* ---- the hooks */

static void print_counts(const c_counter_t *self) {
    int id;
    for (id = 0; id < EMBER_HOOK_COUNT; ++id)
        if (self->counts[id]) printf("c_counter: %s %llu\n", hook_names[id], self->counts[id]);
    fflush(stdout);
}

static ember_status_t count(c_counter_t *self, ember_hook_id_t id) {
    ++self->counts[id];
    if (self->verbose) {
        printf("c_counter: call %s\n", hook_names[id]);
        fflush(stdout);
    }
    if (id == EMBER_HOOK_ID_teardown) print_counts(self);
    if ((int)id == self->fail_on) {
        self->error_size = set_message(self->error, sizeof self->error,
                                       "c_counter: failing on purpose in %.*s", hook_names[id],
                                       strlen(hook_names[id]));
        return EMBER_E_FAILED;
    }
    return EMBER_OK;
}

#define EMBER_HOOK(name, since, doc)                                                  \
    static ember_status_t hook_##name(void *self, const ember_hook_args_t *args) {    \
        (void)args;                                                                   \
        return count((c_counter_t *)self, EMBER_HOOK_ID_##name);                      \
    }
#include <ember/abi/hooks.def>

static const ember_callbacks_v1_t callbacks = {
    .struct_size = sizeof(ember_callbacks_v1_t),
#define EMBER_HOOK(name, since, doc) .name = hook_##name,
#include <ember/abi/hooks.def>
};

/* ---- the entry */

static ember_status_t c_counter_create(const ember_host_t *host, ember_str_t config_json,
                                       void **out_self) {
    c_counter_t *self;
    ember_status_t rc;
    (void)host; /* this plugin reports on stdout and needs no host service */
    *out_self = NULL;
    self = (c_counter_t *)calloc(1, sizeof *self);
    if (!self) return create_failed(EMBER_E_NOMEM, "c_counter: out of memory%.*s", "", 0);
    self->fail_on = -1;
    rc = parse_config(self, config_json);
    if (rc != EMBER_OK) {
        free(self);
        return rc;
    }
    *out_self = self;
    return EMBER_OK;
}

static void c_counter_destroy(void *self) { free(self); }

static const void *c_counter_get_interface(void *self, ember_str_t interface_id) {
    (void)self;
    if (interface_id.data && equals(interface_id.data, interface_id.size, EMBER_CALLBACKS_V1))
        return &callbacks;
    return NULL;
}

static ember_str_t c_counter_last_error(void *self) {
    ember_str_t s;
    if (self) {
        const c_counter_t *c = (const c_counter_t *)self;
        s.data = c->error;
        s.size = c->error_size;
    } else {
        s.data = create_error;
        s.size = create_error_size;
    }
    return s;
}

EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {
    .abi_major = EMBER_ABI_MAJOR,
    .abi_minor = EMBER_ABI_MINOR,
    .struct_size = sizeof(ember_plugin_entry_t),
    .id = EMBER_STR("c_counter"),
    .version = EMBER_STR("1.0.0"),
    .description = EMBER_STR("Counts every hook call, prints the counts at teardown (plain C99)"),
    .config_schema = { config_schema, sizeof config_schema - 1 },
    .build_tag = EMBER_STR(""),
    .create = c_counter_create,
    .destroy = c_counter_destroy,
    .get_interface = c_counter_get_interface,
    .last_error = c_counter_last_error,
};
