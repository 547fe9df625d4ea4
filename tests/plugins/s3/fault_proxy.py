#!/usr/bin/python3
"""An HTTP/1.1 proxy for the s3 fault tests: forwards to an S3 server, and injects faults.

Usage: fault_proxy.py UPSTREAM_PORT SCHEDULE.json [--checksums]

Prints "listening on 127.0.0.1:PORT" once ready, then one line per request:
"REQ <n> <METHOD> <target> -> <action>", and when its answer has been sent
"END <n> <start> <end>" (time.monotonic() seconds at the request line and after the answer), so
a test can see which requests overlapped.

Multipart uploads are tracked as S3 does, since s3rver lacks part of the API: every upload
created through the proxy is listed by ListMultipartUploads (GET /bucket?uploads, action
"list_uploads") until it is completed or aborted; ListParts (GET ...?uploadId=, action
"list_parts") lists the parts uploaded so far; AbortMultipartUpload (DELETE ...?uploadId=, action
"abort") answers 204 and forgets the upload, after which UploadPart, ListParts and
CompleteMultipartUpload for it answer 404 NoSuchUpload (action "no_such_upload"), as does an
abort of an unknown id.

--checksums: check request checksums as S3 does, since s3rver ignores them. A Content-MD5 or
x-amz-checksum-crc32c that does not match the body is answered 400 BadDigest; a verified one
prints "SUM <n> <header> ok". An upload created with x-amz-checksum-algorithm CRC32C must have
a crc32c on every part and list each part's checksum in CompleteMultipartUpload
(ChecksumCRC32C), equal to the one its UploadPart carried, else 400 InvalidRequest/InvalidPart;
a Complete that passes prints "SUM <n> ChecksumCRC32C ok". The CRC-32C here is a plain bitwise reference
implementation, independent of the plugin's.

The schedule is a JSON list of rules, tried in order; the first that matches a request and has
times left acts on it (no match: forward).
  {"method": "PUT", "query": "partNumber", "path": "part-of-path",   # all optional
   "action": "status" | "reset" | "slow" | "corrupt" | "barrier" | "ignore_range" | "answer",
   "times": 2,                 # how many requests it acts on; -1 = forever
   "skip": 0,                  # let this many matching requests through first
   "status": 503, "code": "SlowDown", "message": "Please reduce your request rate.",
   "delay": 2.0,               # "slow": wait this long before forwarding
   "parties": 3, "timeout": 30}  # "barrier": see below
"reset" closes the connection with an RST before answering; "corrupt" flips one bit of the
request body in transit, then forwards it (to the checks above, with --checksums);
"ignore_range" drops the Range header before forwarding (a server that ignores Range).
"answer" replies 200 with the rule's "body" (XML) instead of forwarding.
"barrier" holds each matching request until `parties` of them are inside the proxy at once,
then forwards them all and prints "BARRIER passed"; if they do not all arrive within `timeout`
seconds it prints "BARRIER broken" and forwards them anyway. A client that sends one request at
a time can never pass one.
"""
import base64
import hashlib
import http.client
import http.server
import json
import re
import socket
import struct
import sys
import threading
import time
import xml.sax.saxutils

UPSTREAM = int(sys.argv[1])
SAY_LOCK = threading.Lock()


def say(line):
    """One whole line to stdout. print() writes the text and its newline separately, so two
    handler threads could run their lines together ("-> statusEND 1 ...") and a test counting
    "-> status" lines would miss one."""
    with SAY_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


with open(sys.argv[2]) as f:
    RULES = json.load(f)
CHECKSUMS = "--checksums" in sys.argv[3:]
LOCK = threading.Lock()
COUNTER = [0]
# uploadId -> {part number: ChecksumCRC32C}, for uploads created with the CRC32C algorithm.
CRC_UPLOADS = {}
# uploadId -> {"bucket", "key", "initiated", "parts": {number: (etag, size)}}: open uploads.
UPLOADS = {}
ABORTED = set()
BARRIERS = {}  # id(rule) -> threading.Barrier


def _crc32c_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c_base64(data):
    crc = 0xFFFFFFFF
    table = CRC32C_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return base64.b64encode((crc ^ 0xFFFFFFFF).to_bytes(4, "big")).decode()


def query_param(target, name):
    m = re.search(r"[?&]" + name + r"=([^&]*)", target)
    return m.group(1) if m else None


def check_checksums(n, method, target, headers, body):
    """None when the request passes S3's checksum checks, else (code, message)."""
    sent_md5 = headers.get("Content-MD5")
    if sent_md5 is not None:
        if sent_md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
            return "BadDigest", "The Content-MD5 you specified did not match what we received."
        say("SUM %d Content-MD5 ok" % n)
    sent_crc = headers.get("x-amz-checksum-crc32c")
    if sent_crc is not None:
        if sent_crc != crc32c_base64(body):
            return "BadDigest", "The CRC32C you specified did not match the calculated checksum."
        say("SUM %d x-amz-checksum-crc32c ok" % n)
    upload = query_param(target, "uploadId")
    with LOCK:
        parts = CRC_UPLOADS.get(upload)
    if parts is None:
        return None
    if method == "PUT" and query_param(target, "partNumber"):
        if sent_crc is None:
            return "InvalidRequest", "The upload was created using a crc32c checksum; this part has none."
        with LOCK:
            parts[int(query_param(target, "partNumber"))] = sent_crc
    elif method == "POST":
        listed = re.findall(r"<Part>(.*?)</Part>", body.decode(errors="replace"), re.S)
        for part in listed:
            number = re.search(r"<PartNumber>(\d+)</PartNumber>", part)
            crc = re.search(r"<ChecksumCRC32C>([^<]*)</ChecksumCRC32C>", part)
            if not number or not crc or parts.get(int(number.group(1))) != crc.group(1):
                return "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag."
        if len(listed) != len(parts):
            return "InvalidPart", "The list of parts does not match the uploaded parts."
        say("SUM %d ChecksumCRC32C ok" % n)
    return None


def split_bucket_key(path):
    """/bucket/key -> (bucket, key), path-style as the plugin sends to a custom endpoint."""
    parts = path.lstrip("/").split("/", 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def upload_api(n, method, target):
    """Answer the multipart calls s3rver lacks, as S3 does: (action, status, xml) or None."""
    path, _, query = target.partition("?")
    upload = query_param(target, "uploadId")
    bucket, key = split_bucket_key(path)
    esc = xml.sax.saxutils.escape
    with LOCK:
        if upload is not None and upload in ABORTED:
            return ("no_such_upload", 404, "<Error><Code>NoSuchUpload</Code><Message>The specified upload does not "
                    "exist. The upload ID may be invalid, or the upload may have been aborted or completed."
                    "</Message><UploadId>%s</UploadId></Error>" % esc(upload))
        if method == "DELETE" and upload is not None:
            if upload not in UPLOADS:
                return ("no_such_upload", 404, "<Error><Code>NoSuchUpload</Code><Message>The specified upload "
                        "does not exist.</Message><UploadId>%s</UploadId></Error>" % esc(upload))
            del UPLOADS[upload]
            ABORTED.add(upload)
            return ("abort", 204, "")
        if method == "GET" and upload is not None and upload in UPLOADS:
            u = UPLOADS[upload]
            parts = "".join("<Part><PartNumber>%d</PartNumber><ETag>%s</ETag><Size>%d</Size></Part>"
                            % (num, esc(etag), size) for num, (etag, size) in sorted(u["parts"].items()))
            return ("list_parts", 200, "<ListPartsResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
                    "<IsTruncated>false</IsTruncated>%s</ListPartsResult>" % (esc(bucket), esc(key), esc(upload), parts))
        if method == "GET" and not key and re.search(r"(^|&)uploads(=|&|$)", query):
            listed = "".join("<Upload><Key>%s</Key><UploadId>%s</UploadId><Initiated>%s</Initiated></Upload>"
                             % (esc(u["key"]), esc(uid), u["initiated"])
                             for uid, u in sorted(UPLOADS.items()) if u["bucket"] == bucket)
            return ("list_uploads", 200, "<ListMultipartUploadsResult><Bucket>%s</Bucket>"
                    "<IsTruncated>false</IsTruncated>%s</ListMultipartUploadsResult>" % (esc(bucket), listed))
    return None


def track_upload(method, target, status, headers, data, request_body_size):
    """Record what a forwarded request did to the multipart uploads."""
    if status // 100 != 2:
        return
    path, _, query = target.partition("?")
    bucket, key = split_bucket_key(path)
    upload = query_param(target, "uploadId")
    with LOCK:
        if method == "POST" and re.search(r"(^|&)uploads(=|&|$)", query):
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", data)
            if m:
                UPLOADS[m.group(1).decode()] = {"bucket": bucket, "key": key, "parts": {},
                                                "initiated": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
        elif method == "PUT" and upload in UPLOADS and query_param(target, "partNumber"):
            etag = dict((k.lower(), v) for k, v in headers).get("etag", "")
            UPLOADS[upload]["parts"][int(query_param(target, "partNumber"))] = (etag, request_body_size)
        elif method == "POST" and upload in UPLOADS and b"<Error>" not in data:
            del UPLOADS[upload]


def barrier(rule):
    with LOCK:
        b = BARRIERS.setdefault(id(rule), threading.Barrier(int(rule.get("parties", 2)),
                                                             timeout=float(rule.get("timeout", 30))))
    try:
        b.wait()
        return "BARRIER passed"
    except threading.BrokenBarrierError:
        return "BARRIER broken"


def choose(method, target):
    with LOCK:
        COUNTER[0] += 1
        n = COUNTER[0]
        path, _, query = target.partition("?")
        for rule in RULES:
            if rule.get("method") and rule["method"] != method:
                continue
            if rule.get("query") is not None and rule["query"] not in query:
                continue
            if rule.get("path") and rule["path"] not in path:
                continue
            if rule.get("skip", 0) > 0:
                rule["skip"] -= 1
                continue
            times = rule.get("times", -1)
            if times == 0:
                continue
            if times > 0:
                rule["times"] = times - 1
            return n, rule
        return n, None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        start = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        n, rule = choose(self.command, self.path)
        action = rule["action"] if rule else "forward"
        served = upload_api(n, self.command, self.path) if action == "forward" else None
        if served:
            action = served[0]
        say("REQ %d %s %s -> %s" % (n, self.command, self.path, action))
        try:
            self.act(n, rule, action, body, served)
        finally:
            say("END %d %.6f %.6f" % (n, start, time.monotonic()))

    def act(self, n, rule, action, body, served):
        if served:
            data = served[2].encode()
            self.send_response(served[1])
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if action == "barrier":
            say("%s %d" % (barrier(rule), n))
        if action == "corrupt" and body:
            body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0x01]) + body[len(body) // 2 + 1:]
        if CHECKSUMS:
            refused = check_checksums(n, self.command, self.path, self.headers, body)
            if refused:
                say("BAD %d %s" % (n, refused[0]))
                rule, action = {"status": 400, "code": refused[0], "message": refused[1]}, "status"
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if action == "status":
            xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message>"
                   "<RequestId>FAULT%d</RequestId></Error>" % (rule.get("code", "InternalError"),
                                                              rule.get("message", "injected"), n)).encode()
            self.send_response(rule.get("status", 500))
            self.send_header("Content-Type", "application/xml")
            self.send_header("x-amz-request-id", "FAULT%d" % n)
            if "bucket_region" in rule:
                self.send_header("x-amz-bucket-region", rule["bucket_region"])
            if self.command == "HEAD":
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
            return
        if action == "answer":
            data = rule.get("body", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if action == "slow":
            time.sleep(float(rule.get("delay", 2.0)))
        self.forward(body, drop_range=action == "ignore_range")

    def forward(self, body, drop_range=False):
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        dropped = ("connection", "keep-alive") + (("range",) if drop_range else ())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                     headers=headers)
        res = conn.getresponse()
        data = res.read()
        if (CHECKSUMS and self.command == "POST" and query_param(self.path, "uploads") is not None
                and (self.headers.get("x-amz-checksum-algorithm") or "").upper() == "CRC32C"):
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", data)
            if m:
                with LOCK:
                    CRC_UPLOADS[m.group(1).decode()] = {}
        track_upload(self.command, self.path, res.status, res.getheaders(), data, len(body))
        try:
            self.send_response(res.status, res.reason)
            for k, v in res.getheaders():
                if k.lower() in ("connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"):
                    continue
                self.send_header(k, v)
            self.send_header("Content-Length", res.getheader("Content-Length") if self.command == "HEAD"
                             and res.getheader("Content-Length") else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
say("listening on 127.0.0.1:%d" % server.server_address[1])
server.serve_forever()
