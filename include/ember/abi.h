/* Ember's stable C ABI: the whole contract between the host and a plugin (C99).
 * One header per concern lives under ember/abi/; this umbrella includes them all. */
#ifndef EMBER_ABI_H
#define EMBER_ABI_H

#include "abi/common.h"
#include "abi/tensor.h"
#include "abi/storage.h"
#include "abi/host.h"
#include "abi/callbacks.h"
#include "abi/logger.h"
#include "abi/media.h"
#include "abi/checkpoints.h"
#include "abi/entry.h"

#endif /* EMBER_ABI_H */
