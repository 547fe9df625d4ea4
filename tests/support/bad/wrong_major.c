/* A plugin built for the next ABI major. The loader must refuse it naming both versions. */
#include "stub_functions.h"

EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {
    .abi_major = EMBER_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = sizeof(ember_plugin_entry_t),
    .id = EMBER_STR("wrong_major"),
    .version = EMBER_STR("1.0.0"),
    .description = EMBER_STR("built for another ABI major"),
    .create = stub_create,
    .destroy = stub_destroy,
    .get_interface = stub_get_interface,
    .last_error = stub_last_error,
};
