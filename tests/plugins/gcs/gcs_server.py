#!/usr/bin/python3
"""A Google Cloud Storage JSON API server for the gcs tests, written from Google's documentation
(JSON API reference, "Perform resumable uploads", "Hashes and ETags", OAuth 2.0 for server to
server applications, the metadata server's token endpoint). In memory; one process per suite.

Usage: gcs_server.py [--bucket NAME]... [--auth none|required]
                     [--sa-email EMAIL --sa-public-key PEM] [--user CLIENT_ID:SECRET:REFRESH]
                     [--static-token TOKEN]

Prints "listening on 127.0.0.1:PORT" once ready, then one line per request:
"REQ <n> <METHOD> <path> -> <status|action>" (the path without its query, so no upload id).

Storage (paths under /storage/v1 and /upload/storage/v1, also /download/storage/v1 for media):
  objects.get (metadata; alt=media with Range, ifGenerationMatch), objects.list (prefix,
  delimiter, maxResults, pageToken), objects.delete, objects.insert with uploadType=media,
  multipart (multipart/related: metadata JSON then bytes; a crc32c in the metadata or an
  X-Goog-Hash that does not match is 400) and resumable (POST answers a session URI in
  Location; PUT with Content-Range "bytes a-b/N|*" or "bytes */N|*": a non-final chunk must be a
  multiple of 256 KiB; 308 with Range "bytes=0-(held-1)" until the last byte, then 200 with the
  object; DELETE cancels with 499, after which the session is 404). The object appears only when
  the session completes. Media answers carry x-goog-hash (crc32c, md5) and
  x-goog-generation.
Auth (--auth required): every storage request needs "Authorization: Bearer T" with a T this
  server issued (not expired, not revoked) or --static-token; else 401 authError.
  POST /token: grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer with an assertion whose
  RS256 signature verifies with --sa-public-key (python3-cryptography), iss = --sa-email, aud =
  this endpoint's URL, a devstorage (or cloud-platform) scope, iat/exp around now; or
  grant_type=refresh_token with --user's client_id, client_secret, refresh_token. Failures are
  400 {"error": "invalid_grant", ...} as Google's token endpoint answers.
  GET /computeMetadata/v1/instance/service-accounts/default/token (with Metadata-Flavor: Google)
  issues a token as a GCE metadata server does.
Control (never authenticated):
  POST /_test/faults  a JSON list of rules, tried in order; the first that matches and has times
      left acts: {"method": "PUT", "path": "regex on METHOD path?query", "action": "status" |
      "reset" | "reset_after" | "partial" | "corrupt", "status": 503, "times": 1, "skip": 0,
      "with_body": true}  (with_body: only requests that carry bytes)
      "reset": the connection is closed with an RST before any answer (the request is not acted
      on); "reset_after": the request is acted on, then the connection is reset (the answer is
      lost); "partial": a resumable PUT keeps only the first half of its chunk (rounded down to
      256 KiB) and answers 308; "corrupt": a media answer has one byte flipped.
  POST /_test/config  {"expires_in": seconds for new tokens}
  POST /_test/revoke  every issued token stops working
  GET  /_test/stats   {"tokens": issued, "jwt_verified": n, "refreshed": n, "metadata": n,
                       "sessions_open": n, "requests": ["METHOD path -> status", ...]}
  PUT  /_test/object/BUCKET/NAME  store bytes directly (setup for interop and faults)
  GET  /_test/object/BUCKET/NAME  the stored bytes, or 404
"""
import argparse
import base64
import hashlib
import http.server
import json
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.parse

import crcmod.predefined

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

crc32c_fn = crcmod.predefined.mkCrcFun("crc-32c")
QUANTUM = 256 * 1024

LOCK = threading.Lock()
BUCKETS = {}       # bucket -> {name: {"data": bytes, "generation": int, "updated": str}}
SESSIONS = {}      # upload_id -> {"bucket", "name", "data": bytearray, "state": open|done|cancelled}
TOKENS = {}        # token -> expiry (time.time())
STATS = {"tokens": 0, "jwt_verified": 0, "refreshed": 0, "metadata": 0, "requests": []}
CONFIG = {"expires_in": 3600}
FAULTS = []
ARGS = None
GENERATION = [int(time.time() * 1000000)]


def crc_b64(data):
    return base64.b64encode(struct.pack(">I", crc32c_fn(data))).decode()


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def resource(bucket, name, obj):
    data = obj["data"]
    return {"kind": "storage#object", "id": "%s/%s/%d" % (bucket, name, obj["generation"]), "name": name,
            "bucket": bucket, "generation": str(obj["generation"]), "metageneration": "1",
            "contentType": "application/octet-stream", "size": str(len(data)), "updated": obj["updated"],
            "timeCreated": obj["updated"], "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "crc32c": crc_b64(data), "etag": "E%d" % obj["generation"]}


def store(bucket, name, data):
    with LOCK:
        GENERATION[0] += 1
        obj = {"data": bytes(data), "generation": GENERATION[0], "updated": now_rfc3339()}
        BUCKETS[bucket][name] = obj
        return resource(bucket, name, obj)


def error_body(code, reason, message):
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class Reset(Exception):
    pass


def choose_fault(what, has_body):
    with LOCK:
        for rule in FAULTS:
            if rule.get("with_body") and not has_body:
                continue
            if rule.get("method") and rule["method"] != what.split(" ", 1)[0]:
                continue
            if rule.get("path") and not re.search(rule["path"], what):
                continue
            if rule.get("skip", 0) > 0:
                rule["skip"] -= 1
                return None
            if rule.get("times", 1) == 0:
                continue
            if rule.get("times", 1) > 0:
                rule["times"] = rule.get("times", 1) - 1
            return rule
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", headers=None, ctype="application/json; charset=UTF-8"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.status_sent = status

    def reset(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        raise Reset()

    def handle_one(self):
        self.status_sent = None
        body = self.read_body()
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        q = {k: v[0] for k, v in query.items()}
        what = "%s %s" % (self.command, self.path)
        rule = None if path.startswith("/_test/") else choose_fault(what, bool(body))
        action = rule["action"] if rule else None
        with LOCK:
            n = len(STATS["requests"])
            STATS["requests"].append("%s %s -> ?" % (self.command, path))
        try:
            if action == "status":
                self.send(rule.get("status", 503), error_body(rule.get("status", 503), rule.get("reason", "backendError"),
                                                              rule.get("message", "injected fault")))
            elif action == "reset":
                self.reset()
            else:
                self.route(path, q, body, action)
                if action == "reset_after":
                    self.wfile.flush()
                    self.reset()
        finally:
            with LOCK:
                STATS["requests"][n] = "%s %s -> %s" % (self.command, path, action or self.status_sent)
            print("REQ %d %s %s -> %s" % (n, self.command, path, action or self.status_sent), flush=True)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = lambda self: self.safe()

    def safe(self):
        try:
            self.handle_one()
        except Reset:
            pass

    # --- auth -------------------------------------------------------------------------------
    def authorized(self):
        if ARGS.auth == "none":
            return True
        h = self.headers.get("Authorization", "")
        if not h.startswith("Bearer "):
            self.send(401, error_body(401, "required", "Anonymous caller does not have storage.objects access."))
            return False
        tok = h[7:]
        with LOCK:
            exp = TOKENS.get(tok)
        if tok == ARGS.static_token and ARGS.static_token:
            return True
        if exp is None or exp < time.time():
            self.send(401, error_body(401, "authError", "Invalid Credentials"))
            return False
        return True

    def issue(self):
        tok = "ya29.test-" + secrets.token_urlsafe(24)
        with LOCK:
            TOKENS[tok] = time.time() + CONFIG["expires_in"]
            STATS["tokens"] += 1
        return {"access_token": tok, "expires_in": CONFIG["expires_in"], "token_type": "Bearer"}

    def token_endpoint(self, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        grant = form.get("grant_type", "")
        bad = lambda why: self.send(400, {"error": "invalid_grant", "error_description": why})
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            parts = form.get("assertion", "").split(".")
            if len(parts) != 3 or not ARGS.sa_public_key:
                return bad("Invalid JWT: malformed.")
            try:
                header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
                sig = b64url_decode(parts[2])
            except ValueError:
                return bad("Invalid JWT: not base64url JSON.")
            if header.get("alg") != "RS256":
                return bad("Invalid JWT: alg must be RS256.")
            with open(ARGS.sa_public_key, "rb") as f:
                key = serialization.load_pem_public_key(f.read())
            try:
                key.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                return bad("Invalid JWT Signature.")
            host = self.headers.get("Host")
            t = time.time()
            if claims.get("iss") != ARGS.sa_email:
                return bad("Invalid JWT: iss is not the service account.")
            if claims.get("aud") != "http://%s/token" % host:
                return bad("Invalid JWT: aud must be the token URI.")
            if not (claims.get("iat", 0) <= t + 60 and claims.get("exp", 0) > t and claims["exp"] - claims["iat"] <= 3600):
                return bad("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
            if not re.search(r"auth/(devstorage\.|cloud-platform)", claims.get("scope", "")):
                return bad("Invalid JWT: no storage scope.")
            with LOCK:
                STATS["jwt_verified"] += 1
            return self.send(200, self.issue())
        if grant == "refresh_token":
            if not ARGS.user or [form.get("client_id"), form.get("client_secret"), form.get("refresh_token")] != ARGS.user.split(":"):
                return self.send(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            with LOCK:
                STATS["refreshed"] += 1
            return self.send(200, self.issue())
        return self.send(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + grant[:40]})

    # --- routing ----------------------------------------------------------------------------
    def route(self, path, q, body, action):
        if path == "/" and self.command == "GET":
            return self.send(200, b"", {"Metadata-Flavor": "Google"}, "text/plain")
        if path.startswith("/_test/"):
            return self.control(path, body)
        if path == "/token" and self.command == "POST":
            return self.token_endpoint(body)
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.send(403, b"Missing Metadata-Flavor:Google header.", ctype="text/plain")
            with LOCK:
                STATS["metadata"] += 1
            return self.send(200, self.issue(), {"Metadata-Flavor": "Google"})
        m = re.match(r"^/(upload/|download/)?storage/v1/b/([^/]+)/o(?:/(.*))?$", path)
        if not m:
            return self.send(404, error_body(404, "notFound", "Not Found"))
        kind, bucket, name = m.group(1), urllib.parse.unquote(m.group(2)), m.group(3)
        name = urllib.parse.unquote(name) if name is not None else None
        if kind == "upload/" and "upload_id" in q:
            return self.session(q["upload_id"], body, action)
        if not self.authorized():
            return
        if bucket not in BUCKETS:
            return self.send(404, error_body(404, "notFound", "The specified bucket does not exist."))
        if kind == "upload/" and self.command == "POST":
            return self.insert(bucket, q, body)
        if name is None and self.command == "GET":
            return self.list(bucket, q)
        if name is None:
            return self.send(405, error_body(405, "methodNotAllowed", "method not allowed"))
        with LOCK:
            obj = BUCKETS[bucket].get(name)
        if obj is None:
            return self.send(404, error_body(404, "notFound", "No such object: %s/%s" % (bucket, name)))
        if self.command == "DELETE":
            with LOCK:
                BUCKETS[bucket].pop(name, None)
            return self.send(204)
        if self.command != "GET":
            return self.send(405, error_body(405, "methodNotAllowed", "method not allowed"))
        if "ifGenerationMatch" in q and q["ifGenerationMatch"] != str(obj["generation"]):
            return self.send(412, error_body(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold."))
        if q.get("alt") != "media" and kind != "download/":
            return self.send(200, resource(bucket, name, obj))
        return self.media(bucket, name, obj, action)

    def media(self, bucket, name, obj, action):
        data = obj["data"]
        res = resource(bucket, name, obj)
        headers = {"x-goog-hash": "crc32c=%s,md5=%s" % (res["crc32c"], res["md5Hash"]),
                   "x-goog-generation": res["generation"], "x-goog-stored-content-length": res["size"],
                   "Accept-Ranges": "bytes"}
        status, part = 200, data
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng)
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else len(data) - 1
            last = min(last, len(data) - 1)
            if first >= len(data):
                return self.send(416, error_body(416, "requestedRangeNotSatisfiable", "Request range not satisfiable"))
            status, part = 206, data[first:last + 1]
            headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, len(data))
        if action == "corrupt" and part:
            part = bytearray(part)
            part[len(part) // 2] ^= 0x01
            part = bytes(part)
        self.send(status, part, headers, "application/octet-stream")

    def list(self, bucket, q):
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        limit = int(q.get("maxResults", "1000"))
        start = b64url_decode(q["pageToken"]).decode() if q.get("pageToken") else None
        with LOCK:
            names = sorted(n for n in BUCKETS[bucket] if n.startswith(prefix))
            snapshot = {n: BUCKETS[bucket][n] for n in names}
        # Entries (objects and prefixes) in name order; a page holds `limit` of them.
        entries, seen = [], set()
        for n in names:
            rest = n[len(prefix):]
            if delim and delim in rest:
                p = prefix + rest[:rest.index(delim) + len(delim)]
                if p not in seen:
                    seen.add(p)
                    entries.append(("prefix", p))
            else:
                entries.append(("item", n))
        if start is not None:
            entries = [e for e in entries if e[1] > start]
        page, more = entries[:limit], len(entries) > limit
        out = {"kind": "storage#objects"}
        items = [resource(bucket, n, snapshot[n]) for k, n in page if k == "item"]
        prefixes = [n for k, n in page if k == "prefix"]
        if items:
            out["items"] = items
        if prefixes:
            out["prefixes"] = prefixes
        if more:
            out["nextPageToken"] = base64.urlsafe_b64encode(page[-1][1].encode()).decode().rstrip("=")
        self.send(200, out)

    def insert(self, bucket, q, body):
        t = q.get("uploadType", "")
        goog_hash = self.headers.get("X-Goog-Hash", "")
        if t == "media":
            return self.store_upload(bucket, q.get("name", ""), body, None, goog_hash)
        if t == "multipart":
            m = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
            if not m:
                return self.send(400, error_body(400, "invalid", "multipart upload needs a boundary"))
            b = ("--" + m.group(1)).encode()
            parts = body.split(b)
            if len(parts) < 3:
                return self.send(400, error_body(400, "invalid", "multipart body needs two parts"))

            def payload(p):
                p = p[2:] if p.startswith(b"\r\n") else p
                head, _, data = p.partition(b"\r\n\r\n")
                return data[:-2] if data.endswith(b"\r\n") else data
            meta = json.loads(payload(parts[1]) or b"{}")
            data = payload(parts[2])
            return self.store_upload(bucket, meta.get("name") or q.get("name", ""), data, meta.get("crc32c"), goog_hash)
        if t == "resumable":
            meta = json.loads(body or b"{}")
            name = q.get("name") or meta.get("name", "")
            if not name:
                return self.send(400, error_body(400, "required", "Required: object name"))
            uid = secrets.token_urlsafe(16)
            with LOCK:
                SESSIONS[uid] = {"bucket": bucket, "name": name, "data": bytearray(), "state": "open", "crc": 0,
                                 "meta_crc": meta.get("crc32c")}
            loc = "http://%s/upload/storage/v1/b/%s/o?uploadType=resumable&upload_id=%s" % (
                self.headers.get("Host"), urllib.parse.quote(bucket, safe=""), uid)
            return self.send(200, b"", {"Location": loc}, "text/plain")
        return self.send(400, error_body(400, "invalid", "unknown uploadType " + t))

    def store_upload(self, bucket, name, data, meta_crc, goog_hash):
        if not name:
            return self.send(400, error_body(400, "required", "Required: object name"))
        got = crc_b64(data)
        sent = [meta_crc] if meta_crc else []
        m = re.search(r"crc32c=([^,]+)", goog_hash)
        if m:
            sent.append(m.group(1).strip())
        for s in sent:
            if s != got:
                return self.send(400, error_body(400, "invalid", "Provided CRC32C \"%s\" doesn't match calculated CRC32C \"%s\"." % (s, got)))
        self.send(200, store(bucket, name, data))

    def session(self, uid, body, action):
        with LOCK:
            s = SESSIONS.get(uid)
        if s is None or s["state"] == "cancelled":
            return self.send(404, error_body(404, "notFound", "No such upload session."))
        if self.command == "DELETE":
            s["state"] = "cancelled"
            return self.send(499, b"", ctype="text/plain")
        if self.command != "PUT":
            return self.send(405, error_body(405, "methodNotAllowed", "method not allowed"))
        held = len(s["data"])
        if s["state"] == "done":
            return self.send(200, s["result"])
        cr = self.headers.get("Content-Range", "")
        m = re.match(r"bytes (\*|(\d+)-(\d+))/(\*|\d+)$", cr)
        if not m:
            return self.send(400, error_body(400, "invalid", "Bad Content-Range: " + cr))
        total = None if m.group(4) == "*" else int(m.group(4))
        if m.group(1) != "*":
            first, last = int(m.group(2)), int(m.group(3))
            if last - first + 1 != len(body):
                return self.send(400, error_body(400, "invalid", "Content-Range does not match the body's length"))
            if first > held:
                return self.send(400, error_body(400, "invalid", "Invalid request. There were %d byte(s) (or more) in the upload, but the request starts at %d." % (held, first)))
            if total is None and len(body) % QUANTUM:
                return self.send(400, error_body(400, "invalid", "Invalid request. A chunk must be a multiple of 262144 bytes."))
            new = body[held - first:]
            if action == "partial" and total is None:
                new = new[:(len(new) // 2) // QUANTUM * QUANTUM]
            s["crc"] = crc32c_fn(new, s["crc"])
            s["data"] += new
            held = len(s["data"])
        if total is not None and held == total:
            got = base64.b64encode(struct.pack(">I", s["crc"])).decode()
            sent = [x for x in [s.get("meta_crc")] if x]
            hm = re.search(r"crc32c=([^,]+)", self.headers.get("X-Goog-Hash", ""))
            if hm:
                sent.append(hm.group(1).strip())
            for x in sent:
                if x != got:
                    s["state"] = "cancelled"
                    return self.send(400, error_body(400, "invalid", "Provided CRC32C \"%s\" doesn't match calculated CRC32C \"%s\"." % (x, got)))
            s["result"] = store(s["bucket"], s["name"], bytes(s["data"]))
            s["state"] = "done"
            s["data"] = bytearray()
            return self.send(200, s["result"])
        if total is not None and held > total:
            return self.send(400, error_body(400, "invalid", "more bytes than the declared total"))
        headers = {"Range": "bytes=0-%d" % (held - 1)} if held else {}
        self.send(308, b"", headers, "text/plain")

    # --- control ----------------------------------------------------------------------------
    def control(self, path, body):
        if path == "/_test/faults":
            with LOCK:
                FAULTS[:] = json.loads(body or b"[]")
            return self.send(200, {})
        if path == "/_test/config":
            with LOCK:
                CONFIG.update(json.loads(body or b"{}"))
            return self.send(200, {})
        if path == "/_test/revoke":
            with LOCK:
                TOKENS.clear()
            return self.send(200, {})
        if path == "/_test/stats":
            with LOCK:
                out = dict(STATS)
                out["requests"] = list(STATS["requests"])
                out["sessions_open"] = sum(1 for s in SESSIONS.values() if s["state"] == "open")
            return self.send(200, out)
        m = re.match(r"^/_test/object/([^/]+)/(.+)$", path)
        if m:
            bucket, name = urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))
            if self.command == "PUT":
                BUCKETS.setdefault(bucket, {})
                return self.send(200, store(bucket, name, body))
            with LOCK:
                obj = BUCKETS.get(bucket, {}).get(name)
            if obj is None:
                return self.send(404, b"")
            return self.send(200, obj["data"], {}, "application/octet-stream")
        return self.send(404, b"")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--auth", choices=["none", "required"], default="none")
    ap.add_argument("--sa-email", default="")
    ap.add_argument("--sa-public-key", default="")
    ap.add_argument("--user", default="")
    ap.add_argument("--static-token", default="")
    ARGS = ap.parse_args()
    for b in ARGS.bucket:
        BUCKETS[b] = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
