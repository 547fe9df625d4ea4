/* A plugin whose entry claims to end before the functions ABI 1.0 requires. The loader must
 * refuse it from struct_size alone, before reading the function pointers. */
#include "stub_functions.h"

EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {
    .abi_major = EMBER_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = offsetof(ember_plugin_entry_t, destroy),
    .id = EMBER_STR("small_struct"),
    .version = EMBER_STR("1.0.0"),
    .description = EMBER_STR("entry struct too small"),
    .create = stub_create,
    .destroy = stub_destroy,
    .get_interface = stub_get_interface,
    .last_error = stub_last_error,
};
