// The npm `webhdfs` client (a foreign WebHDFS implementation) driven from the command line for
// tests/plugins/webhdfs/interop_test.cpp:
//   node interop_client.js PORT write HDFS_PATH LOCAL_FILE   (streamed: chunked upload)
//   node interop_client.js PORT read HDFS_PATH LOCAL_FILE
//   node interop_client.js PORT list HDFS_PATH               (JSON: [[name, length, type]...])
//   node interop_client.js PORT stat HDFS_PATH               (JSON: the FileStatus)
// Exit status 0 on success; an error is printed on stderr with status 1.
'use strict';
const fs = require('fs');
const WebHDFS = require('webhdfs');

const [port, cmd, path, local] = process.argv.slice(2);
const client = WebHDFS.createClient({ user: 'bob', host: '127.0.0.1', port: port, path: '/webhdfs/v1' });

function fail(err) {
  process.stderr.write('interop_client ' + cmd + ' ' + path + ': ' + (err && err.message ? err.message : err) + '\n');
  process.exit(1);
}

if (cmd === 'write') {
  const remote = client.createWriteStream(path);
  let error = null;
  remote.on('error', (e) => { error = e; });
  remote.on('finish', () => (error ? fail(error) : process.exit(0)));
  fs.createReadStream(local).pipe(remote);
} else if (cmd === 'read') {
  client.readFile(path, (err, data) => {
    if (err) return fail(err);
    fs.writeFileSync(local, data);
    process.exit(0);
  });
} else if (cmd === 'list') {
  client.readdir(path, (err, files) => {
    if (err) return fail(err);
    process.stdout.write(JSON.stringify(files.map((f) => [f.pathSuffix, f.length, f.type])) + '\n');
    process.exit(0);
  });
} else if (cmd === 'stat') {
  client.stat(path, (err, st) => {
    if (err) return fail(err);
    process.stdout.write(JSON.stringify(st) + '\n');
    process.exit(0);
  });
} else {
  fail('unknown command');
}
