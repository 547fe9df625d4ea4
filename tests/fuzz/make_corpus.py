#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/: a few valid
inputs per target, each in the framing its target expects (see the comment at the top of each
fuzz_*.cpp for what the first byte selects). The files are committed; run this again only when
a target's input format changes:  python3 tests/fuzz/make_corpus.py
"""
import gzip
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- fuzz_config: the sample configs, and one with a --set line ---------------------------------
for name in ("fit.json", "s3.json", "wandb.json"):
    with open(os.path.join(ROOT, "samples", "fashion_mnist", name), "rb") as f:
        text = f.read()
    put("fuzz_config", name, text)
put("fuzz_config", "set-override", b"--set trainer.callbacks=[{\"plugin\":\"early_stopping\"}]\n" + text)
put("fuzz_config", "comments", '{\n  // a comment\n  "trainer": {"max_epochs": 1, "limit_train_batches": 0.5,},\n}\n')

# --- fuzz_data_readers: byte 0 = mode (even idx, odd csv; bit 1 = csv header), byte 1 = label col -
def idx(dims, body):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body


images = idx([3, 2, 2], bytes(range(12)))
labels = idx([3], bytes([0, 1, 2]))
put("fuzz_data_readers", "idx-images", b"\x00\x00" + images)
put("fuzz_data_readers", "idx-labels-gz", b"\x00\x00" + gzip.compress(labels, mtime=0))
put("fuzz_data_readers", "csv-header-last", b"\x03\xff" + b"a,b,label\n1,2,0\n3.5,-4e2,1\n")
put("fuzz_data_readers", "csv-first", b"\x01\x00" + b"0,1,2\r\n1,3,4\r\n\n")

# --- fuzz_ckpt_index: byte 0 even = checkpoints.json (bit 1: best, else last), odd = plugin state -
index = ('{"best":"memory://fuzz/checkpoints/epoch=1-step=20.ckpt","best_score":0.87,'
         '"last":"memory://fuzz/checkpoints/last.ckpt","monitor":"val_accuracy","mode":"max",'
         '"top_k":[{"url":"memory://fuzz/checkpoints/epoch=1-step=20.ckpt","score":0.87,"epoch":1,"step":20},'
         '{"url":"memory://fuzz/checkpoints/epoch=0-step=10.ckpt","score":0.8,"epoch":0,"step":10}]}')
put("fuzz_ckpt_index", "index-last", b"\x00" + index.encode())
put("fuzz_ckpt_index", "index-best", b"\x02" + index.encode())
state = ('{"monitor":"val_accuracy","best_model_path":"memory://fuzz/checkpoints/epoch=1-step=20.ckpt",'
         '"best_model_score":0.87,"last_model_path":"memory://fuzz/checkpoints/last.ckpt",'
         '"top_k":[{"url":"memory://fuzz/checkpoints/epoch=1-step=20.ckpt","score":0.87,"epoch":1,"step":20},'
         '{"url":"memory://fuzz/checkpoints/epoch=0-step=10.ckpt","score":null,"epoch":0,"step":10}],'
         '"last_step_saved":20}')
put("fuzz_ckpt_index", "state", b"\x01" + state.encode())

# --- fuzz_wandb_records: byte 0 even = the .wandb file, odd = [u16 length, record]... -----------
def varint(v):
    out = b""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_int(n, v):
    return varint(n << 3) + varint(v)


def field_bytes(n, b):
    b = b.encode() if isinstance(b, str) else b
    return varint(n << 3 | 2) + varint(len(b)) + b


def items(field, kv):
    return b"".join(field_bytes(field, field_bytes(1, k) + field_bytes(16, v)) for k, v in kv)


def record(rtype, body, num=0):
    return field_int(1, num) + field_bytes(rtype, body)


run = record(17, field_bytes(1, "abc123") + field_bytes(2, "ent") + field_bytes(3, "proj")
             + field_bytes(4, items(1, [("lr", "0.001")])) + field_bytes(8, "name") + field_bytes(10, "tag")
             + field_bytes(13, "host") + field_int(14, 0) + field_bytes(17, field_int(1, 1700000000)))
history = record(2, items(1, [("_step", "0"), ("loss", "0.5"), ("acc", "NaN")]) + field_bytes(2, field_int(1, 0)))
summary = record(3, items(1, [("loss", "0.5")]))
config = record(5, items(1, [("batch_size", "64")]))
stats = record(7, field_bytes(2, field_int(1, 1700000001)) + items(3, [("cpu", "12.5")]))
output = record(13, field_int(1, 1) + field_bytes(2, field_int(1, 1700000002) + field_int(2, 5)) + field_bytes(3, "hello\n"))
files = record(6, field_bytes(1, field_bytes(1, "media/images/x.png") + field_int(2, 1)))
exit_ = record(18, field_int(1, 0) + field_int(2, 12))
records = [run, config, history, summary, stats, output, files, exit_]
put("fuzz_wandb_records", "records", b"\x01" + b"".join(struct.pack("<H", len(r)) + r for r in records))


def frame(recs):
    """The .wandb framing: 7-byte header, 32 KiB blocks, chunks of crc32(type+data) LE, u16 length, type."""
    out = bytearray(b":W&B\xe1\xbe\x00")
    for rec in recs:
        first = True
        while True:
            left = 32768 - len(out) % 32768
            if left < 7:
                out += b"\0" * left
                left = 32768
            n = min(left - 7, len(rec))
            last = n == len(rec)
            t = 1 if first and last else 2 if first else 4 if last else 3
            piece = rec[:n]
            crc = zlib.crc32(piece, zlib.crc32(bytes([t])))
            out += struct.pack("<IHB", crc, n, t) + piece
            rec = rec[n:]
            first = False
            if not rec:
                break
    return bytes(out)


put("fuzz_wandb_records", "file", b"\x00" + frame(records))
put("fuzz_wandb_records", "file-multichunk", b"\x00" + frame([run, record(4, b"x" * 40000), exit_]))

# --- fuzz_http_response: byte 0 bit 0 = streaming read, bit 1 = HEAD -----------------------------
put("fuzz_http_response", "sized", b"\x00HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
put("fuzz_http_response", "chunked-stream",
    b"\x01HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
put("fuzz_http_response", "close-delimited", b"\x00HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy")
put("fuzz_http_response", "head", b"\x02HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nETag: \"abc\"\r\n\r\n")

# --- fuzz_s3_xml: byte 0 bits 0-1 = list/stat/put/multipart, bits 2-3 = 200/404/400/503 ----------
NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
listing = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult' + NS + '><Name>fuzz-bucket</Name>'
           '<Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter>'
           '<IsTruncated>false</IsTruncated><Contents><Key>p/a.ckpt</Key>'
           '<LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"0123"</ETag><Size>42</Size>'
           '<StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>p/sub/</Prefix>'
           '</CommonPrefixes></ListBucketResult>')
put("fuzz_s3_xml", "list", b"\x00" + listing.encode())
# No truncated page here: the target's server answers every request with the same page, and the
# plugin follows a repeated NextContinuationToken forever (reported; every run would time out).
error = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does '
         'not exist.</Message><Key>k</Key><RequestId>1</RequestId></Error>')
put("fuzz_s3_xml", "error-404", bytes([0x04]) + error.encode())
put("fuzz_s3_xml", "error-503-put", bytes([0x0e]) + error.replace("NoSuchKey", "SlowDown").encode())
initiate = ('<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult' + NS + '><Bucket>fuzz-bucket'
            '</Bucket><Key>k</Key><UploadId>upload-1</UploadId></InitiateMultipartUploadResult>')
put("fuzz_s3_xml", "initiate", b"\x03" + initiate.encode())
complete = ('<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult' + NS + '><Location>x</Location>'
            '<Bucket>fuzz-bucket</Bucket><Key>k</Key><ETag>"abc-2"</ETag></CompleteMultipartUploadResult>')
put("fuzz_s3_xml", "complete", b"\x03" + complete.encode())
