/* A plugin without the required create function. The loader must refuse it naming 'create'. */
#include "stub_functions.h"

EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {
    .abi_major = EMBER_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = sizeof(ember_plugin_entry_t),
    .id = EMBER_STR("null_create"),
    .version = EMBER_STR("1.0.0"),
    .description = EMBER_STR("create is NULL"),
    .create = NULL,
    .destroy = stub_destroy,
    .get_interface = stub_get_interface,
    .last_error = stub_last_error,
};
