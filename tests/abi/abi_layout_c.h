/* The ABI's layout as the C compiler computed it (abi_layout_c.c), for test_abi_layout.cpp to
 * compare with the C++ compiler's. */
#ifndef EMBER_TESTS_ABI_LAYOUT_C_H
#define EMBER_TESTS_ABI_LAYOUT_C_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_layout_item {
    const char *what;  /* "type" or "type.field" */
    size_t offset;     /* offsetof for a field; 0 for a type */
    size_t size;       /* sizeof */
} ember_layout_item_t;

extern const ember_layout_item_t ember_c_layout[];
extern const size_t ember_c_layout_count;

#ifdef __cplusplus
}
#endif

#endif /* EMBER_TESTS_ABI_LAYOUT_C_H */
