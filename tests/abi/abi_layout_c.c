/* The ABI's layout as a C99 compiler sees it; test_abi_layout.cpp checks C++ agrees. */
#include <ember/abi.h>

#include "abi_layout_c.h"

const ember_layout_item_t ember_c_layout[] = {
#define EMBER_LAYOUT_TYPE(type, mirror) {#type, 0, sizeof(type)},
#define EMBER_LAYOUT_FIELD(type, mirror, field) \
    {#type "." #field, offsetof(type, field), sizeof(((type *)0)->field)},
#include "layout_list.h"
};

const size_t ember_c_layout_count = sizeof ember_c_layout / sizeof ember_c_layout[0];
