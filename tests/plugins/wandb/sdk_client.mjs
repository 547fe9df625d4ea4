// W&B's own JS SDK (@wandb/sdk from npm, installed by scripts/bootstrap into .deps/npm) as a client
// of the test server, to check that the server answers what a real client expects. Driven by
// wandb_sdk_test.cpp, which sets WANDB_BASE_URL and WANDB_API_KEY and then reads what the server
// recorded.
//
//   node sdk_client.mjs SDK_DIR RUN_ID
//
// SDK_DIR is the package's folder (.deps/npm/node_modules/@wandb/sdk): imported by path, because
// ES modules ignore NODE_PATH; the SDK's own imports then resolve from its node_modules.
import { pathToFileURL } from 'node:url';

const [sdkDir, runId] = process.argv.slice(2);
const { default: wandb } = await import(pathToFileURL(`${sdkDir}/index.js`).href);

// init: Viewer (default entity), then UpsertBucket with the config; resolves once the server
// answered the upsert, with the display name it gave the run.
const run = await wandb.init({
  project: 'sdk-proj',
  id: runId,
  config: { lr: 0.01, layers: [64, 32], optimizer: 'adam' },
});
console.log(`run ${run.entity}/${run.project}/${run.id} name=${run.name}`);

// History rows through file_stream; the summary is the merge of everything logged (this SDK has
// no separate summary API), sent as wandb-summary.json with each history post.
wandb.log({ loss: 1.0, acc: 0.5 });           // _step 0
wandb.log({ loss: 0.5, acc: 0.75 });          // _step 1
wandb.log({ loss: 0.25 }, 5);                 // an explicit step
wandb.log({ acc: 0.875 }, 6, false);          // not committed: merged into the next row
wandb.log({ loss: 0.125, note: 'last' }, 6);

// finish: the last rows, then {"complete": true, "exitcode": 0}.
await wandb.finish(0);
console.log('finished');
