// Google's Node.js client (@google-cloud/storage 7.x, from .deps/npm) against the GCS test
// server, for the interop test: usage
//   node node_client.js ENDPOINT upload|upload-resumable|download BUCKET NAME FILE
//   node node_client.js ENDPOINT list BUCKET PREFIX
// A custom apiEndpoint makes the client send no credentials (as with an emulator). Downloads
// and uploads are validated with crc32c by the client itself.
'use strict';
const path = require('path');
const {Storage} = require(path.join(process.env.EMBER_SOURCE_ROOT, '.deps/npm/node_modules/@google-cloud/storage'));

async function main() {
  const [endpoint, cmd, bucketName, name, file] = process.argv.slice(2);
  const storage = new Storage({apiEndpoint: endpoint, projectId: 'ember-test'});
  const bucket = storage.bucket(bucketName);
  if (cmd === 'upload') {
    await bucket.upload(file, {destination: name, resumable: false, validation: 'crc32c'});
  } else if (cmd === 'upload-resumable') {
    await bucket.upload(file, {destination: name, resumable: true, chunkSize: 4 * 262144, validation: 'crc32c'});
  } else if (cmd === 'download') {
    await bucket.file(name).download({destination: file, validation: 'crc32c'});
  } else if (cmd === 'list') {
    const [files] = await bucket.getFiles({prefix: name});
    for (const f of files) console.log(f.name + ' ' + f.metadata.size);
  } else {
    throw new Error('unknown command ' + cmd);
  }
}

main().catch((e) => {
  console.error('node_client: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
