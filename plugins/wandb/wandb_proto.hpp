// W&B's data formats, without any networking: history-line JSON as W&B's clients write it (NaN and
// Infinity as bare tokens), MD5/base64 digests of artifact manifests, define_metric encoding and
// the client-side summary, config wrapping and config.yaml, and the offline transaction log
// (run-<id>.wandb: LevelDB-style 32 KiB blocks, CRC-32 IEEE, protobuf Records hand-encoded from
// the field numbers in wandb_internal.proto). Shared by the wandb plugin and `ember wandb`.
// Header-only; needs Boost.JSON, OpenSSL (libcrypto) and zlib.
#pragma once

// One header per format, each usable alone.
#include "wandb_json.hpp"     // JSON text, digests
#include "wandb_records.hpp"  // protobuf Records, the .wandb transaction log
#include "wandb_summary.hpp"  // config, summary, define_metric
