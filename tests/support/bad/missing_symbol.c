/* A shared library that is not an Ember plugin: it exports a function but no
 * ember_plugin_entry. The loader must refuse it by name, without calling anything. */
#include <ember/abi.h>

EMBER_EXPORT int not_an_ember_plugin(void);
EMBER_EXPORT int not_an_ember_plugin(void) { return 42; }
