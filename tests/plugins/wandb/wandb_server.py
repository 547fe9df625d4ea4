#!/usr/bin/python3
"""A W&B-protocol test server: GraphQL, file_stream, run-file and artifact storage, failure injection.

Speaks what W&B's clients (the Python SDK 0.16.6, the Go core, @wandb/sdk from npm) send, as
written down in shared/wandb-protocol.md: operations are dispatched on `(query|mutation) Name`,
probes answer objects (never null), a null entity resolves to the viewer's default entity, upload
and download URLs are absolute and point back at this server, artifacts get versions v0, v1, ...
and the aliases latest/best move to the newest version that asks for them.

Standard library only. Listens on 127.0.0.1 (port 0 = any free port) and prints the port on the
first line of stdout so that a test can start it and read where it is.

Everything it receives is appended as JSON lines to --log (one object per request). Control:
  POST /_control {"fail": {"status": 503, "count": N, "path_regex": "...", "op_regex": "..."},
                  "stall_seconds": S, "hold": true|false, "reset": N, "api_key": "...", "clear": true}
      fail:   the next N matching requests get that status (rules accumulate; "fail": null clears)
      stall:  every later request waits S seconds before it is handled (0 turns it off)
      hold:   every later request waits until "hold": false (no timeout); /_wait?cond=held
              tells when a client is blocked in one, so a test knows where the client is
      reset:  the next N requests have their connection closed without a response
                  "sink": true}
      plant_artifact: {"project", "collection", ["entity", "type", "aliases"], "files": {PATH: {"b64": BYTES,
              ["md5": DIGEST]}}} commits a version directly, manifest and all, with paths and MD5s no
              honest client would upload (hostile "../x", a wrong digest): tests of `ember wandb download`
      sink:   file_stream history lines are counted (run "sunk_rows", "sunk_last_offset"), not
              parsed or logged: the throughput figure then measures the client, not this server
  GET /_state   what it stored (runs, history, summary, files, artifacts) and a request summary;
              run files also by SHA-256 (file_sha256) and size (file_sizes), as binary files
              (PNG) do not survive the text of "files"; GET /storage/<key> returns the bytes;
              a committed artifact's "verified" holds what this server computed itself (manifest
              digest, file MD5s), a run's "warnings" what it accepted but W&B's clients never send
  GET /_wait?cond=C[&run=NAME][&n=N][&timeout=S]   blocks until the condition holds (200
              {"ok": true}) or S seconds pass (default 20; 408 with the state's request count).
              C: history (run has >= N history rows), complete (run completed), injected (>= N
              injected failures), requests (>= N requests recorded), sunk (run sunk >= N rows),
              held (>= N requests are being held).
              Every recorded request wakes the waiters: a test waits with one request, no polling.

Strict where the real service is (shared/wandb-protocol.md); a refusal is a 4xx with
{"errors": [{"message": ...}]} naming what was expected, never a 500 (500 means a bug here):
  /graphql      the body is a JSON object with a string "query" and object "variables" (else
                400); an operation this server does not know is 400.
  UpsertBucket  name and project are non-empty strings; config and summaryMetrics, when given,
                are JSON strings of an object (the JSONString scalar); tags a list of strings.
  file_stream   only for a run that was upserted (404); the body is a JSON object whose files
                have an int offset and a list of string lines; history and events are
                append-only: an offset past the lines stored is a gap (400), lines resent at an
                offset already stored must be the same (409); every history/events line parses as
                a JSON object (NaN/Infinity tokens allowed) with a numeric _runtime and
                _timestamp, and history lines an int _step above the previous line's (400); an
                events line without _runtime/_timestamp is accepted but noted in the run's
                "warnings" (W&B's clients always send them; the notes do not say it is refused).
  storage PUT   only to a key this server handed out as an upload URL (403); an artifact file or
                manifest whose MD5 is not the one declared for it is 400 (BadDigest).
  artifacts     CreateArtifact needs a hex MD5 digest (400); CommitArtifact (which gives the
                version and moves the aliases) only when the uploaded manifest is a v1 manifest
                whose every file was registered and uploaded with the manifest's MD5 and size,
                and W&B's manifest digest of it (manifest_digest) is the digest the artifact was
                created with (400 otherwise; the artifact stays PENDING with no alias).
"""

import argparse
import base64
import gzip
import hashlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

OP_RE = re.compile(r"(query|mutation)\s+(\w+)")
TYPE_ALIAS_RE = re.compile(r"(\w+)\s*:\s*__type\s*\(\s*name\s*:\s*\"(\w+)\"\s*\)")

# What the introspection probes report: enough that clients take their modern paths
# (createRunFiles, serverInfo on Viewer, artifact inputs with clientID etc.).
TYPE_FIELDS = {
    "Query": ["viewer", "project", "model", "artifact", "serverInfo", "entity"],
    "Mutation": ["upsertBucket", "createRunFiles", "createArtifact", "createArtifactManifest",
                 "createArtifactFiles", "commitArtifact", "useArtifact", "updateArtifact"],
    "ServerInfo": ["cliVersionInfo", "latestLocalVersionInfo", "features"],
    "ServerSettings": [],
    "Artifact": ["id", "digest", "state", "aliases", "metadata", "versionIndex", "ttlIsInherited"],
    "Project": ["id", "name", "entity", "artifact"],
}
INPUT_FIELDS = {
    "CreateArtifactInput": ["artifactTypeName", "artifactCollectionNames", "entityName",
                            "projectName", "runName", "description", "digest", "digestAlgorithm",
                            "aliases", "metadata", "historyStep", "clientID", "sequenceClientID",
                            "enableDigestDeduplication"],
    "CreateArtifactFileSpecInput": ["artifactID", "name", "md5", "mimetype",
                                    "artifactManifestID"],
    "UseArtifactInput": ["entityName", "projectName", "runName", "artifactID", "usedAs"],
}
# Words for the display names the server gives unnamed runs.
ADJECTIVES = ["amber", "brisk", "calm", "dusty", "eager", "fiery", "gentle", "hazy", "icy", "jolly",
              "lucky", "misty", "noble", "quiet", "rosy", "silent", "sunny", "vivid", "wild", "young"]
NOUNS = ["bird", "brook", "cloud", "dawn", "dream", "field", "firefly", "forest", "glade", "haze",
         "lake", "meadow", "moon", "pine", "river", "sea", "snow", "star", "sun", "wave"]
FEATURES = ["LARGE_FILENAMES", "ARTIFACT_TAGS", "CLIENT_IDS",
            "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION"]


def finite(obj):
    """JSON-safe copy: non-finite floats become the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


class BadRequest(Exception):
    """A refused request: answered with this status and message (a 4xx), never a 500."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# W&B's cap on one file_stream line (PY util.MAX_LINE_BYTES, GO defaultMaxFileLineBytes).
MAX_LINE_BYTES = 10 * 1024 * 1024 - 100 * 1024
HEX_MD5_RE = re.compile(r"[0-9a-f]{32}")
# output.log lines: "<ISO-8601 UTC timestamp> text", "ERROR " first for stderr.
OUTPUT_LINE_RE = re.compile(r"(ERROR )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z? ", re.S)


def md5_b64(data):
    """W&B's file digest: base64 (standard alphabet) of the raw MD5 (hashutil.md5_file_b64)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def manifest_digest(contents):
    """W&B's artifact digest (ArtifactManifestV1.digest): hex MD5 of the header line and one
    "path:b64digest" line per entry, in sorted path order. contents: {path: b64 digest}."""
    h = hashlib.md5(b"wandb-artifact-manifest-v1\n")
    for path in sorted(contents):
        h.update(("%s:%s\n" % (path, contents[path])).encode())
    return h.hexdigest()


def is_b64_md5(s):
    if not isinstance(s, str) or len(s) != 24:
        return False
    try:
        return len(base64.b64decode(s, validate=True)) == 16
    except ValueError:
        return False


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def need(v, key, kind, where, optional=False):
    """v[key] checked to be of kind ("str": non-empty string, "id", "bool", "int", "list", "obj",
    "json": a JSON string of an object); BadRequest(400) naming where and what was expected."""
    if not isinstance(v, dict):
        raise BadRequest(400, "%s: expected an object, got %s" % (where, type(v).__name__))
    x = v.get(key)
    if x is None:
        if optional:
            return None
        raise BadRequest(400, "%s: %s is required" % (where, key))
    ok = {"str": lambda: isinstance(x, str) and x != "",
          "bool": lambda: isinstance(x, bool),
          "int": lambda: isinstance(x, int) and not isinstance(x, bool),
          "list": lambda: isinstance(x, list),
          "obj": lambda: isinstance(x, dict)}
    if kind == "json":
        try:
            good = isinstance(x, str) and isinstance(json.loads(x), dict)
        except ValueError:
            good = False
        if not good:
            raise BadRequest(400, "%s: %s must be a JSONString (a JSON object in a string), got %s"
                             % (where, key, json.dumps(x)[:80]))
        return x
    if not ok[kind]():
        raise BadRequest(400, "%s: %s must be %s, got %s" % (where, key, {
            "str": "a non-empty string", "bool": "a boolean", "int": "an integer", "list": "a list",
            "obj": "an object"}[kind], json.dumps(x)[:80]))
    return x


def op_input(v, where):
    """The mutation's input: variables.input when the client sends one object (GO), else the
    variables themselves (PY, this plugin)."""
    if not isinstance(v, dict):
        raise BadRequest(400, "%s: variables must be an object" % where)
    inp = v.get("input")
    return inp if isinstance(inp, dict) else v


def parse_line(line):
    """A file_stream content line; Python's json accepts NaN/Infinity/-Infinity as W&B emits."""
    try:
        return json.loads(line)
    except ValueError:
        return None


class State:
    def __init__(self, entity, api_key):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified whenever a request is recorded
        self.sink = False
        self.default_entity = entity
        self.api_key = api_key
        self.clear()
        self.fail_rules = []
        self.stall = 0.0
        self.hold = False
        self.held = 0           # requests waiting for "hold": false
        self.resets = 0

    def clear(self):
        self.runs = {}          # (entity, project, name) -> run dict
        self.blobs = {}         # storage key -> bytes
        self.collections = {}   # (entity, project, name) -> {"type", "versions": [ids], "aliases": {alias: id}}
        self.artifacts = {}     # id -> artifact dict
        self.requests = []      # short summaries
        self.issued = {}        # storage key (unquoted) -> what it was issued for (upload URLs)

    def run(self, entity, project, name, create=True):
        key = (entity or self.default_entity, project or "uncategorized", name)
        r = self.runs.get(key)
        if r is None and create:
            r = {"id": base64.b64encode(("Run:" + uuid.uuid4().hex[:12]).encode()).decode(),
                 "entity": key[0], "project": key[1], "name": name, "displayName": None,
                 "config": None, "tags": [], "group": None, "jobType": None, "notes": None,
                 "host": None, "program": None, "upserts": [],
                 "history": {}, "events": {}, "output": {}, "summary": None,
                 "complete": False, "exitcode": None, "uploaded": [], "files": {},
                 "file_stream_posts": 0, "used_artifacts": [], "sunk_rows": 0, "sunk_last_offset": -1,
                 "warnings": []}
            self.runs[key] = r
        return r

    def find_run(self, name):
        for r in self.runs.values():
            if r["name"] == name:
                return r
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wandb-test-server/1"

    def log_message(self, fmt, *args):  # keep stderr quiet; the JSON log is the record
        pass

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def st(self):
        return self.server.state

    def base(self):
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        return "http://" + host

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            body = out
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def reply(self, status, body=b"", ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(finite(body)).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.status = status

    def record(self, entry):
        entry["t"] = time.time()
        line = json.dumps(finite(entry))
        with self.server.log_lock:
            self.server.log_file.write(line + "\n")
            self.server.log_file.flush()
        with self.st.lock:
            self.st.requests.append({k: entry.get(k) for k in
                                     ("method", "path", "op", "status", "auth", "injected")})
            self.st.changed.notify_all()

    def auth(self):
        """'ok', 'none' or 'bad'. The key itself is never recorded."""
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return "none"
        try:
            user, _, key = base64.b64decode(h[6:]).decode().partition(":")
        except Exception:
            return "bad"
        if user != "api":
            return "bad"
        if self.st.api_key is not None and key != self.st.api_key:
            return "bad"
        return "ok"

    def inject(self, path, op):
        """Apply stalls, resets and failure rules. True when the request was answered here."""
        st = self.st
        with st.lock:
            stall = st.stall
        if stall > 0:
            time.sleep(stall)
        with st.lock:
            if st.hold:
                st.held += 1
                st.changed.notify_all()
                while st.hold:
                    st.changed.wait()
                st.held -= 1
            if st.resets > 0:
                st.resets -= 1
                reset = True
            else:
                reset = False
                rule = None
                for r in st.fail_rules:
                    if r["count"] <= 0:
                        continue
                    if r.get("path_regex") and not re.search(r["path_regex"], path):
                        continue
                    if r.get("op_regex") and not re.search(r["op_regex"], op or ""):
                        continue
                    r["count"] -= 1
                    rule = r
                    break
        if reset:
            self.record({"method": self.command, "path": path, "op": op, "status": None,
                         "injected": "reset"})
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True
            return True
        if rule is not None:
            self.reply(rule["status"], {"errors": [{"message": "injected failure"}]})
            self.record({"method": self.command, "path": path, "op": op,
                         "status": rule["status"], "injected": "fail"})
            return True
        return False

    # -- verbs -------------------------------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        self.status = None
        path = urlsplit(self.path).path
        try:
            body = self.read_body()
        except Exception as e:  # a truncated body: the client went away
            self.record({"method": self.command, "path": path, "error": str(e)})
            self.close_connection = True
            return
        if path == "/_control" and self.command == "POST":
            try:
                c = json.loads(body or b"{}")
            except ValueError as e:
                return self.reply(400, {"errors": [{"message": "/_control: the body is not JSON (%s)" % e}]})
            return self.control(c)
        if path == "/_state":
            with self.st.lock:
                return self.reply(200, self.dump())
        if path == "/_wait":
            return self.wait(parse_qs(urlsplit(self.path).query))
        op = None
        req = None
        bad_body = None
        if path == "/graphql" and self.command == "POST":
            try:
                req = json.loads(body)
            except ValueError as e:  # also a body that is not UTF-8
                req, bad_body = {}, "the body is not JSON (%s)" % e
            if bad_body is None and not isinstance(req, dict):
                req, bad_body = {}, "the body must be a JSON object, got %s" % type(req).__name__
            if bad_body is None and not isinstance(req.get("query"), str):
                bad_body = "the body has no string \"query\""
            if bad_body is None and not isinstance(req.get("variables") or {}, dict):
                bad_body = "\"variables\" must be an object"
            m = OP_RE.search(req.get("query") or "") if bad_body is None else None
            op = m.group(2) if m else (req.get("operationName") if isinstance(req.get("operationName"), str) else None)
        if self.inject(path, op):
            return
        entry = {"method": self.command, "path": path, "op": op}
        try:
            if path == "/graphql" and self.command == "POST":
                entry["auth"] = self.auth()
                entry["variables"] = req.get("variables")
                entry["query"] = req.get("query")
                if entry["auth"] != "ok":
                    self.reply(401, {"errors": [{"message": "user is not logged in"}]})
                elif bad_body is not None:
                    raise BadRequest(400, "POST /graphql: " + bad_body)
                else:
                    self.graphql(op, req.get("query") or "", req.get("variables") or {})
            elif path.startswith("/files/") and path.endswith("/file_stream") and self.command == "POST":
                entry["auth"] = self.auth()
                if entry["auth"] != "ok":
                    self.reply(401, {"errors": [{"message": "user is not logged in"}]})
                else:
                    entry["body"] = self.file_stream(path, body)
            elif path.startswith("/storage/"):
                entry["size"] = len(body)
                self.storage(path, body)
            else:
                self.reply(404, {"error": "no route for %s %s" % (self.command, path)})
        except BadRequest as e:  # refused as the real service would: a 4xx naming why
            entry["error"] = str(e)
            if self.status is None:
                self.reply(e.status, {"errors": [{"message": str(e)}]})
        except Exception as e:  # a bug here: say so, keep serving
            entry["error"] = repr(e)
            if self.status is None:
                self.reply(500, {"errors": [{"message": repr(e)}]})
        entry["status"] = self.status
        self.record(entry)

    def control(self, c):
        st = self.st
        with st.lock:
            if c.get("clear"):
                st.clear()
            if "fail" in c:
                if c["fail"] is None:
                    st.fail_rules = []
                else:
                    rules = c["fail"] if isinstance(c["fail"], list) else [c["fail"]]
                    for r in rules:
                        st.fail_rules.append({"status": int(r.get("status", 503)),
                                              "count": int(r.get("count", 1)),
                                              "path_regex": r.get("path_regex"),
                                              "op_regex": r.get("op_regex")})
            if "stall_seconds" in c:
                st.stall = float(c["stall_seconds"])
            if "hold" in c:
                st.hold = bool(c["hold"])
                st.changed.notify_all()
            if "reset" in c:
                st.resets = int(c["reset"])
            if "api_key" in c:
                st.api_key = c["api_key"]
            if "sink" in c:
                st.sink = bool(c["sink"])
            planted = self.plant_artifact(c["plant_artifact"]) if "plant_artifact" in c else None
        self.reply(200, {"ok": True, "planted": planted})

    def holds(self, cond, run, n):
        """Evaluate a /_wait condition; the state lock is held."""
        st = self.st
        r = st.find_run(run) if run else None
        if cond == "history":
            return r is not None and len(r["history"]) >= n
        if cond == "complete":
            return r is not None and r["complete"]
        if cond == "sunk":
            return r is not None and r["sunk_rows"] >= n
        if cond == "injected":
            return sum(1 for q in st.requests if q.get("injected")) >= n
        if cond == "requests":
            return len(st.requests) >= n
        if cond == "held":
            return st.held >= n
        raise ValueError("unknown condition %r" % cond)

    def wait(self, q):
        cond = (q.get("cond") or [""])[0]
        run = (q.get("run") or [None])[0]
        n = int((q.get("n") or ["1"])[0])
        timeout = float((q.get("timeout") or ["20"])[0])
        deadline = time.monotonic() + timeout
        st = self.st
        with st.lock:
            try:
                while not self.holds(cond, run, n):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return self.reply(408, {"ok": False, "cond": cond, "run": run, "n": n,
                                                "requests": len(st.requests)})
                    st.changed.wait(left)
            except ValueError as e:
                return self.reply(400, {"ok": False, "error": str(e)})
        return self.reply(200, {"ok": True})

    def dump(self):
        st = self.st
        runs = []
        for r in st.runs.values():
            d = {k: v for k, v in r.items() if k != "_raw"}
            d["history"] = [r["history"][k] for k in sorted(r["history"])]
            d["history_offsets"] = sorted(r["history"])
            d["events"] = [r["events"][k] for k in sorted(r["events"])]
            d["output"] = [r["output"][k] for k in sorted(r["output"])]
            d["files"] = {k: v.decode("utf-8", "replace") for k, v in r["files"].items()}
            d["file_sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in r["files"].items()}
            d["file_sizes"] = {k: len(v) for k, v in r["files"].items()}
            runs.append(d)
        arts = []
        for a in st.artifacts.values():
            d = {k: v for k, v in a.items() if k != "files"}
            d["files"] = {n: {"md5": f["md5"], "size": len(st.blobs.get(f["key"], b""))}
                          for n, f in a["files"].items()}
            arts.append(d)
        cols = [{"entity": k[0], "project": k[1], "name": k[2], "type": v["type"],
                 "versions": v["versions"], "aliases": v["aliases"]}
                for k, v in st.collections.items()]
        return {"runs": runs, "artifacts": arts, "collections": cols,
                "requests": st.requests, "default_entity": st.default_entity}

    # -- storage -----------------------------------------------------------------------------
    def storage(self, path, body):
        key = path[len("/storage/"):]
        st = self.st
        if self.command == "PUT":
            refused = self.refuse_upload(key, body)
            if refused:
                return self.reply(403, {"error": refused}, "application/json")
            with st.lock:
                # Like a pre-signed URL: only a key handed out by CreateRunFiles, RunUploadUrls,
                # CreateArtifactFiles or CreateArtifactManifest, and with the MD5 declared for it.
                what = st.issued.get(unquote(key))
                if what is None:
                    raise BadRequest(403, "PUT /storage/%s: not an upload URL this server issued" % key)
                if what.get("md5") is not None and md5_b64(body) != what["md5"]:
                    raise BadRequest(400, "PUT /storage/%s: BadDigest: the body's MD5 is %s, %s declared %s"
                                     % (key, md5_b64(body), what["by"], what["md5"]))
                st.blobs[key] = body
                parts = key.split("/")
                if parts[0] == "runs" and len(parts) >= 5:
                    r = st.run(unquote(parts[1]), unquote(parts[2]), unquote(parts[3]), create=False)
                    r["files"][unquote("/".join(parts[4:]))] = body
            return self.reply(200, b"", "text/plain")
        with st.lock:
            data = st.blobs.get(key)
        if data is None:
            return self.reply(404, {"error": "no object " + key})
        self.reply(200, data, "application/octet-stream")

    # -- file_stream -------------------------------------------------------------------------
    def file_stream(self, path, body):
        parts = path.split("/")  # '', files, entity, project, run, file_stream
        if len(parts) != 6 or not all(parts[2:5]):
            raise BadRequest(404, "POST %s: expected /files/ENTITY/PROJECT/RUN/file_stream" % path)
        entity, project, name = unquote(parts[2]), unquote(parts[3]), unquote(parts[4])
        where = "file_stream %s/%s/%s" % (entity, project, name)
        try:
            msg = json.loads(body)
        except ValueError as e:
            raise BadRequest(400, "%s: the body is not JSON (%s)" % (where, e))
        if not isinstance(msg, dict):
            raise BadRequest(400, "%s: the body must be a JSON object" % where)
        files = need(msg, "files", "obj", where, optional=True) or {}
        uploaded = need(msg, "uploaded", "list", where, optional=True) or []
        if not all(isinstance(u, str) for u in uploaded):
            raise BadRequest(400, "%s: uploaded must be a list of file names" % where)
        for k in ("complete", "failed", "preempting"):
            need(msg, k, "bool", where, optional=True)
        if msg.get("complete"):
            need(msg, "exitcode", "int", where, optional=True)
        for fname, chunk in files.items():
            need(chunk, "offset", "int", "%s: %s" % (where, fname))
            content = need(chunk, "content", "list", "%s: %s" % (where, fname))
            if chunk["offset"] < 0:
                raise BadRequest(400, "%s: %s offset %d is negative" % (where, fname, chunk["offset"]))
            for line in content:
                if not isinstance(line, str):
                    raise BadRequest(400, "%s: %s content must be strings, got %s" % (where, fname, json.dumps(line)[:80]))
                if len(line.encode()) > MAX_LINE_BYTES:
                    raise BadRequest(400, "%s: %s has a line of %d bytes, over W&B's %d" % (
                        where, fname, len(line.encode()), MAX_LINE_BYTES))
        st = self.st
        with st.lock:
            r = st.run(entity, project, name, create=False)
            if r is None or not r["upserts"]:
                raise BadRequest(404, "%s: no such run (file_stream is for a run created with UpsertBucket)" % where)
            if st.sink:
                hist = files.get("wandb-history.jsonl")
                if hist:
                    content = hist["content"]
                    if hist["offset"] > r["sunk_last_offset"] + 1:
                        raise BadRequest(400, "%s: wandb-history.jsonl offset %d leaves a gap after line %d" % (
                            where, hist["offset"], r["sunk_last_offset"]))
                    r["sunk_rows"] += len(content)
                    r["sunk_last_offset"] = hist["offset"] + len(content) - 1
                r["file_stream_posts"] += 1
                if msg.get("complete"):
                    r["complete"] = True
                    r["exitcode"] = msg.get("exitcode")
                self.reply(200, {"exitcode": None, "limits": {}})
                return {"sunk": True}
            # Check everything, then store: a refused post changes nothing.
            raw = r.setdefault("_raw", {})  # file -> {offset: line as sent}, for resends
            stores = []
            for fname, chunk in files.items():
                off, content = chunk["offset"], chunk["content"]
                if fname in ("wandb-history.jsonl", "wandb-events.jsonl"):
                    stores.append((fname, off, self.check_jsonl(where, r, raw.setdefault(fname, {}), fname, off, content)))
                elif fname == "wandb-summary.json":
                    parsed = [parse_line(x) for x in content]
                    if not all(isinstance(x, dict) for x in parsed):
                        raise BadRequest(400, "%s: wandb-summary.json line is not a JSON object" % where)
                    stores.append((fname, off, parsed))
                elif fname == "output.log":
                    if off > len(r["output"]):
                        raise BadRequest(400, "%s: output.log offset %d leaves a gap after line %d" % (
                            where, off, len(r["output"]) - 1))
                    for line in content:
                        if not OUTPUT_LINE_RE.match(line):
                            raise BadRequest(400, "%s: output.log line %r does not start with an ISO-8601 "
                                             "timestamp" % (where, line[:60]))
                    stores.append((fname, off, content))
                else:
                    stores.append((fname, off, content))  # other run files: not kept
            r["file_stream_posts"] += 1
            for fname, off, lines in stores:
                if fname == "wandb-history.jsonl" or fname == "wandb-events.jsonl":
                    target = r["history" if fname == "wandb-history.jsonl" else "events"]
                    for i, (line, obj) in enumerate(lines):
                        target[off + i] = obj
                        raw[fname][off + i] = line
                elif fname == "wandb-summary.json":
                    if lines:
                        r["summary"] = lines[-1]
                elif fname == "output.log":
                    for i, line in enumerate(lines):
                        r["output"][off + i] = line
            for u in uploaded:
                if u not in r["uploaded"]:
                    r["uploaded"].append(u)
            if msg.get("complete"):
                r["complete"] = True
                r["exitcode"] = msg.get("exitcode")
        self.reply(200, {"exitcode": None, "limits": {}})
        # What was received, for the log.
        return finite(msg)

    def check_jsonl(self, where, r, raw, fname, off, content):
        """An append-only file's chunk checked against what is stored: no gap, resends unchanged,
        every line a JSON object with W&B's system keys. [(line, parsed)]; the lock is held."""
        stored = len(raw)
        if off > stored:
            raise BadRequest(400, "%s: %s offset %d leaves a gap: %d lines are stored" % (where, fname, off, stored))
        history = fname == "wandb-history.jsonl"
        prev_step = None
        if history and off > 0:
            prev_step = r["history"].get(off - 1, {}).get("_step")
        out = []
        for i, line in enumerate(content):
            n = off + i
            if n in raw:
                if raw[n] != line:
                    raise BadRequest(409, "%s: %s line %d is already stored with other content (the file is "
                                     "append-only)" % (where, fname, n))
            obj = parse_line(line)
            if not isinstance(obj, dict):
                raise BadRequest(400, "%s: %s line %d is not a JSON object: %r" % (where, fname, n, line[:80]))
            for k in ("_runtime", "_timestamp"):
                if k not in obj and not history:
                    # W&B's senders add both to every events line (send_stats), but nothing says
                    # the service refuses one without: noted in the run's "warnings", not refused.
                    w = "%s line without %s" % (fname, k)
                    if w not in r["warnings"]:
                        r["warnings"].append(w)
                elif not is_number(obj.get(k)):
                    raise BadRequest(400, "%s: %s line %d needs a number %s, got %s" % (
                        where, fname, n, k, json.dumps(finite(obj.get(k)))))
            if history:
                step = obj.get("_step")
                if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                    raise BadRequest(400, "%s: %s line %d needs an integer _step >= 0, got %s" % (
                        where, fname, n, json.dumps(finite(step))))
                if prev_step is not None and step <= prev_step:
                    raise BadRequest(400, "%s: %s line %d has _step %d, not above the previous line's %d" % (
                        where, fname, n, step, prev_step))
                prev_step = step
            out.append((line, obj))
        return out

    # -- GraphQL -----------------------------------------------------------------------------
    def graphql(self, op, query, v):
        fn = getattr(self, "op_" + (op or ""), None)
        if op and op.startswith("Probe"):
            fn = self.op_probe
        if fn is None:
            raise BadRequest(400, "POST /graphql: unknown operation %r (expected `query|mutation Name` "
                             "naming one this server implements)" % op)
        with self.st.lock:
            data = fn(query, v)
        if isinstance(data, tuple):  # (status, body)
            return self.reply(*data)
        self.reply(200, {"data": data})

    def op_probe(self, query, v):
        out = {}
        for alias, tname in TYPE_ALIAS_RE.findall(query):
            t = {"name": tname}
            t["fields"] = [{"name": f} for f in TYPE_FIELDS.get(tname, [])]
            t["inputFields"] = [{"name": f} for f in INPUT_FIELDS.get(tname, [])]
            out[alias] = t
        return out

    def server_info(self):
        return {"cliVersionInfo": {}, "latestLocalVersionInfo": {
            "outOfDate": False, "latestVersionString": "0.0.0", "versionOnThisInstanceString": "0.0.0"},
            "features": [{"name": f, "isEnabled": True} for f in FEATURES]}

    def op_Viewer(self, query, v):
        e = self.st.default_entity
        return {"viewer": {"id": "VXNlcjox", "entity": e, "username": e, "email": e + "@example.com",
                           "flags": "{}", "admin": False, "teams": {"edges": []}},
                "serverInfo": self.server_info()}

    def op_ServerInfo(self, query, v):
        return {"serverInfo": self.server_info()}

    op_ServerFeaturesQuery = op_ServerInfo

    def bucket(self, r, full=False):
        b = {"id": r["id"], "name": r["name"], "displayName": r["displayName"],
             "description": r["notes"], "config": r["config"], "sweepName": None,
             "project": {"id": "UHJvamVjdDox", "name": r["project"],
                         "entity": {"id": "RW50aXR5OjE=", "name": r["entity"]}},
             "historyLineCount": len(r["history"])}
        if full:
            hist = [r["history"][k] for k in sorted(r["history"])][-10:]
            b.update({"summaryMetrics": json.dumps(finite(r["summary"] or {})),
                      "logLineCount": len(r["output"]), "eventsLineCount": len(r["events"]),
                      "historyTail": json.dumps([json.dumps(finite(h)) for h in hist]),
                      "eventsTail": json.dumps([]), "tags": r["tags"]})
        return b

    def op_UpsertBucket(self, query, v):
        where = "UpsertBucket"
        name = need(v, "name", "str", where)
        need(v, "project", "str", where)
        need(v, "entity", "str", where, optional=True)
        need(v, "config", "json", where, optional=True)
        need(v, "summaryMetrics", "json", where, optional=True)
        tags = need(v, "tags", "list", where, optional=True)
        if tags is not None and not all(isinstance(t, str) for t in tags):
            raise BadRequest(400, "UpsertBucket: tags must be a list of strings")
        for k in ("displayName", "groupName", "jobType", "notes", "host", "program", "description"):
            if v.get(k) is not None and not isinstance(v[k], str):
                raise BadRequest(400, "UpsertBucket: %s must be a string" % k)
        r = self.st.run(v.get("entity"), v.get("project"), name)
        inserted = not r["upserts"]
        r["upserts"].append(v)
        for k_var, k_run in (("displayName", "displayName"), ("groupName", "group"),
                             ("jobType", "jobType"), ("notes", "notes"), ("host", "host"),
                             ("program", "program"), ("tags", "tags")):
            if v.get(k_var) is not None:
                r[k_run] = v[k_var]
        if inserted and not r["displayName"]:
            # W&B names a run that came without a display name ("adjective-noun-N", N its number
            # in the project) and answers with it; clients show it (the JS SDK's run.name).
            n = sum(1 for k in self.st.runs if k[:2] == (r["entity"], r["project"]))
            r["displayName"] = "%s-%s-%d" % (random.choice(ADJECTIVES), random.choice(NOUNS), n)
        if v.get("config") is not None:
            r["config"] = v["config"]
        if v.get("summaryMetrics") is not None:
            r["summary"] = json.loads(v["summaryMetrics"])
        return {"upsertBucket": {"bucket": self.bucket(r), "inserted": inserted}}

    def op_RunResumeStatus(self, query, v):
        need(v, "name", "str", "RunResumeStatus")
        entity = v.get("entity") or self.st.default_entity
        r = self.st.run(entity, v.get("project"), v.get("name"), create=False)
        return {"model": {"id": "UHJvamVjdDox", "name": v.get("project"),
                          "entity": {"id": "RW50aXR5OjE=", "name": entity},
                          "bucket": self.bucket(r, full=True) if r else None}}

    def op_RunStoppedStatus(self, query, v):
        return {"project": {"run": {"stopped": False}}}

    def upserted_run(self, where, entity, project, name):
        r = self.st.run(entity, project, name, create=False)
        if r is None or not r["upserts"]:
            raise BadRequest(404, "%s: no run %s/%s/%s (create it with UpsertBucket first)" % (where, entity, project, name))
        return r

    def issue_run_files(self, r, files, by):
        for f in files:
            self.st.issued["runs/%s/%s/%s/%s" % (r["entity"], r["project"], r["name"], f)] = {"by": by}

    def op_CreateRunFiles(self, query, v):
        where = "CreateRunFiles"
        for k in ("entity", "project", "run"):
            need(v, k, "str", where)
        files = need(v, "files", "list", where)
        if not all(isinstance(f, str) and f for f in files):
            raise BadRequest(400, "CreateRunFiles: files must be a list of non-empty names")
        r = self.upserted_run(where, v["entity"], v["project"], v["run"])
        base = "%s/storage/runs/%s/%s/%s/" % (self.base(), *(quote(r[k], safe="") for k in ("entity", "project", "name")))
        self.issue_run_files(r, files, where)
        return {"createRunFiles": {"runID": r["id"], "uploadHeaders": [],
                                   "files": [{"name": f, "uploadUrl": base + f} for f in v.get("files") or []]}}

    def op_RunUploadUrls(self, query, v):
        where = "RunUploadUrls"
        need(v, "name", "str", where)
        need(v, "run", "str", where)
        files = need(v, "files", "list", where)
        if not all(isinstance(f, str) and f for f in files):
            raise BadRequest(400, "RunUploadUrls: files must be a list of non-empty names")
        r = self.upserted_run(where, v.get("entity") or self.st.default_entity, v["name"], v["run"])
        base = "%s/storage/runs/%s/%s/%s/" % (self.base(), *(quote(r[k], safe="") for k in ("entity", "project", "name")))
        self.issue_run_files(r, files, where)
        edges = [{"node": {"name": f, "url": base + f, "updatedAt": None}} for f in v.get("files") or []]
        return {"model": {"bucket": {"id": r["id"], "files": {"uploadHeaders": [], "edges": edges}}}}

    # -- artifacts ---------------------------------------------------------------------------
    def resolve(self, entity, project, name):
        """'coll:alias' (or 'coll:vN', or 'coll') -> artifact dict or None."""
        coll, _, alias = name.partition(":")
        c = self.st.collections.get((entity or self.st.default_entity, project, coll))
        if not c:
            return None
        alias = alias or "latest"
        m = re.fullmatch(r"v(\d+)", alias)
        if m:
            i = int(m.group(1))
            for aid in c["versions"]:
                if self.st.artifacts[aid]["versionIndex"] == i:
                    return self.st.artifacts[aid]
            return None
        aid = c["aliases"].get(alias)
        return self.st.artifacts.get(aid) if aid else None

    def art_fragment(self, a):
        col = {"project": {"entityName": a["entity"], "name": a["project"]}, "name": a["collection"]}
        aliases = [{"artifactCollection": col, "alias": al} for al in a["aliases"]]
        if a["versionIndex"] is not None:
            aliases.append({"artifactCollection": col, "alias": "v%d" % a["versionIndex"]})
        return {"id": a["id"], "digest": a["digest"], "artifactSequence": {
                    "id": "seq-" + a["collection"], "name": a["collection"],
                    "project": {"entityName": a["entity"], "name": a["project"]},
                    "latestArtifact": {"id": a["id"], "versionIndex": a["versionIndex"]}},
                "versionIndex": a["versionIndex"], "artifactType": {"name": a["type"]},
                "description": a["description"], "metadata": a["metadata"],
                "ttlDurationSeconds": -1, "ttlIsInherited": True, "aliases": aliases,
                "state": a["state"], "commitHash": a["digest"][:12] if a["digest"] else None,
                "fileCount": len(a["files"]), "createdAt": a["createdAt"], "updatedAt": a["createdAt"],
                "currentManifest": {"file": {"directUrl": self.manifest_url(a)}}}

    def manifest_url(self, a):
        return "%s/storage/artifacts/%s/wandb_manifest.json" % (self.base(), a["id"])

    def file_url(self, a, name):
        return "%s/storage/artifacts/%s/files/%s" % (self.base(), a["id"], name)

    def move_aliases(self, a, aliases):
        c = self.st.collections[(a["entity"], a["project"], a["collection"])]
        for al in aliases:
            if re.fullmatch(r"v\d+", al):
                continue
            old = c["aliases"].get(al)
            if old and old != a["id"] and al in self.st.artifacts[old]["aliases"]:
                self.st.artifacts[old]["aliases"].remove(al)
            c["aliases"][al] = a["id"]
            if al not in a["aliases"]:
                a["aliases"].append(al)

    def op_ArtifactType(self, query, v):
        name = need(v, "name", "str", "ArtifactType")
        need(v, "projectName", "str", "ArtifactType")
        a = self.resolve(v.get("entityName"), v.get("projectName"), name)
        return {"project": {"artifact": {"artifactType": {"name": a["type"]}} if a else None}}

    def op_CreateArtifact(self, query, v):
        where = "CreateArtifact"
        inp = op_input(v, where)
        names = need(inp, "artifactCollectionNames", "list", where, optional=True)
        if names is None:
            names = [need(inp, "artifactCollectionName", "str", where)]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise BadRequest(400, "CreateArtifact: artifactCollectionNames must be non-empty names")
        coll = names[0]
        need(inp, "artifactTypeName", "str", where)
        project = need(inp, "projectName", "str", where)
        digest = need(inp, "digest", "str", where)
        if not HEX_MD5_RE.fullmatch(digest):
            raise BadRequest(400, "CreateArtifact: digest %r is not a MANIFEST_MD5 digest (32 lowercase hex digits)"
                             % digest[:80])
        need(inp, "metadata", "json", where, optional=True)
        for x in need(inp, "aliases", "list", where, optional=True) or []:
            if not (isinstance(x, str) or (isinstance(x, dict) and isinstance(x.get("alias"), str) and x["alias"])):
                raise BadRequest(400, "CreateArtifact: aliases must be {artifactCollectionName, alias} objects")
        entity = inp.get("entityName") or self.st.default_entity
        key = (entity, project, coll)
        c = self.st.collections.setdefault(key, {"type": inp.get("artifactTypeName"), "versions": [], "aliases": {}})
        aliases = [x["alias"] if isinstance(x, dict) else x for x in inp.get("aliases") or []]
        metadata = inp.get("metadata")
        # Digest deduplication: the same manifest digest in the collection is that version.
        for aid in c["versions"]:
            a = self.st.artifacts[aid]
            if a["digest"] == inp.get("digest") and a["state"] == "COMMITTED":
                self.move_aliases(a, aliases)
                return {"createArtifact": {"artifact": self.create_reply(a, c)}}
        aid = base64.b64encode(("Artifact:" + uuid.uuid4().hex[:12]).encode()).decode()
        a = {"id": aid, "entity": entity, "project": project, "collection": coll,
             "type": inp.get("artifactTypeName"), "digest": inp.get("digest"), "state": "PENDING",
             "description": inp.get("description"), "metadata": metadata,
             "pending_aliases": aliases, "aliases": [], "versionIndex": None, "files": {},
             "runName": inp.get("runName"), "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
             "manifest": None}
        self.st.artifacts[aid] = a
        return {"createArtifact": {"artifact": self.create_reply(a, c)}}

    def create_reply(self, a, c):
        latest = self.st.artifacts.get(c["versions"][-1]) if c["versions"] else None
        return {"id": a["id"], "state": a["state"], "artifactSequence": {
            "id": "seq-" + a["collection"],
            "latestArtifact": {"id": latest["id"], "versionIndex": latest["versionIndex"]} if latest else None}}

    def pending_artifact(self, where, aid):
        if not isinstance(aid, str) or aid not in self.st.artifacts:
            raise BadRequest(404, "%s: no artifact %r" % (where, aid))
        a = self.st.artifacts[aid]
        if a["state"] != "PENDING":
            raise BadRequest(409, "%s: artifact %s is %s, not PENDING" % (where, aid, a["state"]))
        return a

    def op_CreateArtifactManifest(self, query, v):
        where = "CreateArtifactManifest"
        inp = op_input(v, where)
        need(inp, "name", "str", where)
        a = self.pending_artifact(where, need(inp, "artifactID", "str", where))
        url = self.manifest_url(a)
        include = v.get("includeUpload", True)
        if not isinstance(include, bool):
            raise BadRequest(400, "CreateArtifactManifest: includeUpload must be a boolean")
        digest = inp.get("digest")
        if include:
            # The manifest's own MD5 (base64), which its PUT must match.
            if not is_b64_md5(digest):
                raise BadRequest(400, "CreateArtifactManifest: digest %r is not a base64 MD5 of the manifest"
                                 % (digest if isinstance(digest, str) else json.dumps(digest))[:80])
            a["manifest_md5"] = digest
            self.st.issued["artifacts/%s/wandb_manifest.json" % a["id"]] = {
                "by": "CreateArtifactManifest", "md5": digest, "artifact": a["id"]}
        return {"createArtifactManifest": {"artifactManifest": {
            "id": "manifest-" + a["id"], "file": {
                "id": "file-manifest-" + a["id"], "name": "wandb_manifest.json",
                "displayName": "wandb_manifest.json",
                "uploadUrl": url if include else None,
                "uploadHeaders": self.upload_headers_for("artifacts/%s/wandb_manifest.json" % a["id"],
                                                         inp.get("digest")) if include else None}}}}

    op_UpdateArtifactManifest = op_CreateArtifactManifest

    def op_CreateArtifactFiles(self, query, v):
        where = "CreateArtifactFiles"
        inp = op_input(v, where)
        specs = need(inp, "artifactFiles", "list", where)
        for f in specs:  # all checked before any is registered
            need(f, "name", "str", where)
            if not is_b64_md5(f.get("md5")):
                raise BadRequest(400, "CreateArtifactFiles: %s: md5 must be a base64 MD5, got %s"
                                 % (f["name"], json.dumps(f.get("md5"))[:80]))
            a = self.pending_artifact(where, need(f, "artifactID", "str", where))
            mid = f.get("artifactManifestID")
            if mid is not None and mid != "manifest-" + a["id"]:
                raise BadRequest(400, "CreateArtifactFiles: %s: artifactManifestID %r is not this artifact's "
                                 "manifest" % (f["name"], mid))
        edges = []
        for f in specs:
            a = self.st.artifacts[f["artifactID"]]
            key = "artifacts/%s/files/%s" % (a["id"], f["name"])
            a["files"][f["name"]] = {"md5": f.get("md5"), "key": key}
            self.st.issued[key] = {"by": "CreateArtifactFiles", "md5": f["md5"], "artifact": a["id"]}
            edges.append({"node": {"id": "file-" + key, "name": f["name"], "displayName": f["name"],
                                   "uploadUrl": self.file_url(a, f["name"]),
                                   "uploadHeaders": self.upload_headers_for(key, f.get("md5")),
                                   "storagePath": key, "uploadMultipartUrls": None,
                                   "artifact": {"id": a["id"]}}})
        return {"createArtifactFiles": {"files": {"edges": edges}}}

    def verify_artifact(self, a):
        """W&B's rules for a committable artifact, checked independently of the client: the
        uploaded manifest is a v1 manifest; every entry without a ref was registered with the
        entry's MD5 and uploaded with that MD5 and the entry's size; the manifest digest
        (manifest_digest) is the one the artifact was created with. BadRequest(400) otherwise."""
        where = "CommitArtifact %s" % a["id"]
        blob = self.st.blobs.get("artifacts/%s/wandb_manifest.json" % a["id"])
        if blob is None:
            raise BadRequest(400, "%s: no manifest was uploaded" % where)
        try:
            m = json.loads(blob)
        except ValueError as e:
            raise BadRequest(400, "%s: the manifest is not JSON (%s)" % (where, e))
        if not isinstance(m, dict) or m.get("version") != 1 or m.get("storagePolicy") != "wandb-storage-policy-v1" \
                or not isinstance(m.get("contents"), dict):
            raise BadRequest(400, "%s: the manifest is not a v1 manifest (version 1, storagePolicy "
                             "wandb-storage-policy-v1, contents an object)" % where)
        digests = {}
        for path, e in m["contents"].items():
            if not isinstance(e, dict) or not is_b64_md5(e.get("digest")):
                raise BadRequest(400, "%s: manifest entry %s has no base64 MD5 digest" % (where, path))
            digests[path] = e["digest"]
            if e.get("ref") is not None:
                continue  # a reference: the bytes live elsewhere
            f = a["files"].get(path)
            if f is None:
                raise BadRequest(400, "%s: manifest entry %s was never registered with CreateArtifactFiles" % (where, path))
            if f["md5"] != e["digest"]:
                raise BadRequest(400, "%s: manifest entry %s has digest %s, CreateArtifactFiles declared %s" % (
                    where, path, e["digest"], f["md5"]))
            data = self.st.blobs.get(f["key"])
            if data is None:
                raise BadRequest(400, "%s: file %s was never uploaded" % (where, path))
            if md5_b64(data) != e["digest"] or e.get("size") != len(data):
                raise BadRequest(400, "%s: file %s is %d bytes with MD5 %s, the manifest says %s bytes, %s" % (
                    where, path, len(data), md5_b64(data), e.get("size"), e["digest"]))
        computed = manifest_digest(digests)
        if computed != a["digest"]:
            raise BadRequest(400, "%s: the manifest's digest is %s, the artifact was created with %s" % (
                where, computed, a["digest"]))
        a["verified"] = {"manifest_digest": computed, "files": digests, "manifest_md5": md5_b64(blob)}

    def op_CommitArtifact(self, query, v):
        where = "CommitArtifact"
        inp = op_input(v, where)
        aid = need(inp, "artifactID", "str", where)
        if aid not in self.st.artifacts:
            raise BadRequest(404, "CommitArtifact: no artifact %r" % aid)
        a = self.st.artifacts[aid]
        if a["state"] != "COMMITTED":
            self.verify_artifact(a)
            c = self.st.collections[(a["entity"], a["project"], a["collection"])]
            a["versionIndex"] = len(c["versions"])
            c["versions"].append(a["id"])
            a["state"] = "COMMITTED"
            a["manifest"] = self.st.blobs.get("artifacts/%s/wandb_manifest.json" % a["id"], b"").decode()
            self.move_aliases(a, ["latest"] + a.pop("pending_aliases", []))
        return {"commitArtifact": {"artifact": {"id": a["id"], "digest": a["digest"]}}}

    def project_artifact(self, v):
        entity = v.get("entityName") or v.get("entity")
        project = v.get("projectName") or v.get("project")
        name = v.get("name") or v.get("artifactName")
        for k, x in (("entityName", entity), ("projectName", project), ("name", name)):
            if x is not None and not isinstance(x, str):
                raise BadRequest(400, "artifact query: %s must be a string" % k)
        if not project or not name:
            raise BadRequest(400, "artifact query: projectName and name are required")
        return self.resolve(entity, project, name or "")

    def op_ArtifactByName(self, query, v):
        a = self.project_artifact(v)
        return {"project": {"artifact": self.art_fragment(a) if a else None}}

    op_Artifact = op_ArtifactByName
    op_ArtifactManifest = op_ArtifactByName

    def op_ArtifactFileURLs(self, query, v):
        a = self.st.artifacts.get(need(v, "id", "str", "ArtifactFileURLs"))
        if not a:
            return {"artifact": None}
        edges = [{"node": {"name": n, "directUrl": self.file_url(a, n)}} for n in sorted(a["files"])]
        return {"artifact": {"files": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": edges}}}

    def op_UseArtifact(self, query, v):
        where = "UseArtifact"
        inp = op_input(v, where)
        for k in ("projectName", "runName", "artifactID"):
            need(inp, k, "str", where)
        a = self.st.artifacts.get(inp.get("artifactID"))
        r = self.upserted_run(where, inp.get("entityName") or self.st.default_entity, inp["projectName"], inp["runName"])
        if a:
            r["used_artifacts"].append(a["id"])
        return {"useArtifact": {"artifact": {"id": a["id"], "digest": a["digest"], "description": a["description"],
                                             "state": a["state"], "createdAt": a["createdAt"],
                                             "metadata": a["metadata"]} if a else None}}

    # -- storage signatures (uploadHeaders) ------------------------------------------------------
    # W&B's storage signs an artifact upload URL over the headers CreateArtifactFiles /
    # CreateArtifactManifest return (Content-MD5 among them) and refuses a PUT without them.
    def upload_headers_for(self, key, md5_b64):
        """The uploadHeaders for storage key `key` ("Name:Value" strings), remembered for the PUT."""
        if not md5_b64:
            return []
        sig = hashlib.sha256(("%s\n%s" % (key, md5_b64)).encode()).hexdigest()[:32]
        want = {"Content-MD5": md5_b64, UPLOAD_SIG_HEADER: sig}
        self.st.__dict__.setdefault("expected_headers", {})[key] = want
        return ["%s:%s" % kv for kv in want.items()]

    def refuse_upload(self, key, body):
        """Why a storage PUT is refused (a signed header missing or different), or None. Keys that
        were never signed (run files) are not checked."""
        with self.st.lock:
            want = getattr(self.st, "expected_headers", {}).get(key)
        if not want:
            return None
        for name, value in want.items():
            got = self.headers.get(name)
            if got != value:
                return "upload of %s: header %s is %s; the signed upload URL requires %r" % (
                    key, name, "missing" if got is None else repr(got), value)
        return None  # the body against the declared MD5: storage()'s BadDigest check

    # -- planted artifacts (tests of downloads) ----------------------------------------------------
    def plant_artifact(self, spec):
        """A committed version made directly from `spec` (see /_control); the state lock is held."""
        st = self.st
        entity = spec.get("entity") or st.default_entity
        key = (entity, spec["project"], spec["collection"])
        c = st.collections.setdefault(key, {"type": spec.get("type", "model"), "versions": [], "aliases": {}})
        aid = base64.b64encode(("Artifact:" + uuid.uuid4().hex[:12]).encode()).decode()
        files, contents = {}, {}
        for path, f in (spec.get("files") or {}).items():
            data = base64.b64decode(f.get("b64", ""))
            skey = "artifacts/%s/files/%s" % (aid, path)
            st.blobs[skey] = data
            md5 = f.get("md5") or base64.b64encode(hashlib.md5(data).digest()).decode()
            files[path] = {"md5": md5, "key": skey}
            contents[path] = {"digest": md5, "birthArtifactID": aid, "size": len(data)}
        manifest = json.dumps({"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                               "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents})
        st.blobs["artifacts/%s/wandb_manifest.json" % aid] = manifest.encode()
        digest = hashlib.md5(("wandb-artifact-manifest-v1\n" + "".join(
            "%s:%s\n" % (p, contents[p]["digest"]) for p in sorted(contents))).encode()).hexdigest()
        a = {"id": aid, "entity": entity, "project": spec["project"], "collection": spec["collection"],
             "type": c["type"], "digest": digest, "state": "COMMITTED", "description": None,
             "metadata": json.dumps(spec.get("metadata") or {}), "aliases": [],
             "versionIndex": len(c["versions"]), "files": files, "runName": None,
             "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "manifest": manifest}
        st.artifacts[aid] = a
        c["versions"].append(aid)
        self.move_aliases(a, ["latest"] + list(spec.get("aliases") or []))
        return {"id": aid, "version": "v%d" % a["versionIndex"]}


UPLOAD_SIG_HEADER = "X-Ember-Test-Signature"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default="/dev/null", help="append every request here as a JSON line")
    ap.add_argument("--entity", default="ember-test", help="the viewer's default entity")
    ap.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.state = State(a.entity, a.api_key)
    srv.log_file = open(a.log, "a")
    srv.log_lock = threading.Lock()
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
