// Microsoft's @azure/storage-blob as the other side of the azure tests and benchmark.
// The connection string comes from EMBER_AZURE_CONNECTION (never argv: it holds the key).
//
//   node blob_client.js mkcontainer NAME
//   node blob_client.js sas PERMISSIONS          account SAS (services b, all resource types), 1 hour
//   node blob_client.js put CONTAINER BLOB SIZE SEED [BLOCK_SIZE]
//                                                pattern bytes (tests' xorshift) with uploadData
//   node blob_client.js get CONTAINER BLOB       prints "size sha256" of what downloadToBuffer read
//   node blob_client.js bench CONTAINER BLOB MIB up|down
//                                                uploadData / downloadToBuffer with the client's
//                                                defaults; prints "seconds maxrss_kib"
"use strict";
const crypto = require("crypto");
const {
  BlobServiceClient,
  StorageSharedKeyCredential,
  generateAccountSASQueryParameters,
  AccountSASPermissions,
  AccountSASServices,
  AccountSASResourceTypes,
} = require("@azure/storage-blob");

function pattern(n, seed) {
  // xorshift64 as tests/plugins/s3/s3_fixture.hpp's pattern_bytes: same seed, same bytes.
  const out = Buffer.alloc(n);
  let x = BigInt.asUintN(64, BigInt(seed) | 1n);
  for (let i = 0; i < n; i++) {
    x ^= BigInt.asUintN(64, x << 13n);
    x ^= x >> 7n;
    x ^= BigInt.asUintN(64, x << 17n);
    out[i] = Number(x & 0xffn);
  }
  return out;
}

function fields(conn) {
  const out = {};
  for (const part of conn.split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

async function main() {
  const conn = process.env.EMBER_AZURE_CONNECTION;
  if (!conn) throw new Error("EMBER_AZURE_CONNECTION is not set");
  const svc = BlobServiceClient.fromConnectionString(conn);
  const [cmd, ...args] = process.argv.slice(2);
  if (cmd === "mkcontainer") {
    await svc.getContainerClient(args[0]).createIfNotExists();
  } else if (cmd === "sas") {
    const f = fields(conn);
    const cred = new StorageSharedKeyCredential(f.AccountName, f.AccountKey);
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3600 * 1000),
        permissions: AccountSASPermissions.parse(args[0]),
        services: AccountSASServices.parse("b").toString(),
        resourceTypes: AccountSASResourceTypes.parse("sco").toString(),
      },
      cred
    ).toString();
    process.stdout.write(sas + "\n");
  } else if (cmd === "put") {
    const [container, blob, size, seed, blockSize] = args;
    const data = pattern(Number(size), seed);
    const opts = blockSize ? { blockSize: Number(blockSize), maxSingleShotSize: Number(blockSize) } : {};
    await svc.getContainerClient(container).getBlockBlobClient(blob).uploadData(data, opts);
  } else if (cmd === "get") {
    const [container, blob] = args;
    const buf = await svc.getContainerClient(container).getBlobClient(blob).downloadToBuffer();
    process.stdout.write(buf.length + " " + crypto.createHash("sha256").update(buf).digest("hex") + "\n");
  } else if (cmd === "bench") {
    const [container, blob, mib, way] = args;
    const client = svc.getContainerClient(container).getBlockBlobClient(blob);
    let t0;
    if (way === "up") {
      const data = Buffer.alloc(Number(mib) * 1024 * 1024, 0x5a);
      t0 = process.hrtime.bigint();
      await client.uploadData(data);
    } else {
      t0 = process.hrtime.bigint();
      const buf = await client.downloadToBuffer();
      if (buf.length !== Number(mib) * 1024 * 1024) throw new Error("downloaded " + buf.length + " bytes");
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(s.toFixed(3) + " " + process.resourceUsage().maxRSS + "\n");
  } else {
    throw new Error("unknown command " + cmd);
  }
}

main().catch((e) => {
  // The error's code and message only: never the request (it carries the key's signature).
  process.stderr.write("blob_client.js: " + (e.code || e.name) + ": " + String(e.message).split("\n")[0] + "\n");
  process.exit(1);
});
