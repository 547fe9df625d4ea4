// W&B's client protocol over ember::http (Boost.Beast + OpenSSL): GraphQL with W&B's retry
// policy, run creation (UpsertBucket), run files (CreateRunFiles + PUT), file_stream, model
// artifacts (CreateArtifact / Manifest / Files / PUT / Commit) and their download (ArtifactByName +
// manifest + file URLs), and uploading a whole run from a spool directory or an offline .wandb
// directory. Shared by the wandb plugin (on its worker thread) and `ember wandb` (ember-wandb).
// An umbrella: include the one part you need where that is enough.
#pragma once

#include "wandb_api_artifacts.hpp"  // log_artifact, resolve_artifact, download_artifact
#include "wandb_api_client.hpp"     // Api, ApiError, ApiOptions, netrc_key
#include "wandb_api_runs.hpp"       // upsert_bucket, resume_status, upload_run_file, upload_run
#include "wandb_run_readers.hpp"    // read_spool_dir, read_offline_dir
#include "wandb_spool.hpp"          // Store, LocalStore, spool file names
#include "wandb_types.hpp"          // RunMeta, RunRef, RunData
