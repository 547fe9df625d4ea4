/* Well-behaved entry functions shared by the bad test libraries, so that each library is wrong
 * in exactly one way. Plain C99; include from one .c file only. */
#ifndef EMBER_TEST_STUB_FUNCTIONS_H
#define EMBER_TEST_STUB_FUNCTIONS_H

#include <ember/abi.h>

/* Not every library uses every stub (null_create leaves create out). */
#if defined(__GNUC__)
#define STUB_UNUSED __attribute__((unused))
#else
#define STUB_UNUSED
#endif

static int stub_instance STUB_UNUSED;

STUB_UNUSED static ember_status_t stub_create(const ember_host_t *host, ember_str_t config, void **out) {
    (void)host;
    (void)config;
    *out = &stub_instance;
    return EMBER_OK;
}

STUB_UNUSED static void stub_destroy(void *self) { (void)self; }

STUB_UNUSED static const void *stub_get_interface(void *self, ember_str_t id) {
    (void)self;
    (void)id;
    return NULL;
}

STUB_UNUSED static ember_str_t stub_last_error(void *self) {
    ember_str_t none = {"", 0};
    (void)self;
    return none;
}

#endif /* EMBER_TEST_STUB_FUNCTIONS_H */
