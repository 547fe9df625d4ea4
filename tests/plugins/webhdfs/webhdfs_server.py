#!/usr/bin/python3
"""A WebHDFS test server, written from Hadoop's WebHDFS REST API documentation.

Two listeners on 127.0.0.1, as a real cluster has: a NameNode (metadata operations; CREATE,
APPEND and OPEN answer "307 Temporary Redirect" with a Location on the DataNode) and a DataNode
(the bytes). The namespace lives in memory. Errors are RemoteException JSON bodies with Hadoop's
exception names and HTTP statuses.

What it checks and offers for tests:
  * auth: with --token T, every request must carry delegation=T (else 403 SecurityException that
    quotes the offending token, so a client that prints server text verbatim leaks it); without,
    user.name is recorded as the caller (default "dr.who");
  * permissions: POST /control {"deny_write": ["/ro"]} makes every write under /ro fail with
    AccessControlException, as HDFS's permission checker does;
  * faults: POST /control {"faults": [{"where": "datanode", "op": "APPEND", "kind": "reset",
    "count": 1}]}; kinds: "503", "500" (RemoteException IOException), "standby" (403
    StandbyException), "reset" (the connection is closed before any answer), "reset_after" (the
    operation is applied, then the connection is closed: a lost answer), "denied" (403
    AccessControlException, not retryable);
  * GET /stats: request counts by "where:OP", the largest request body by op, the users seen,
    whether any request target held the token outside its delegation parameter;
  * LISTSTATUS_BATCH pages of --batch entries; --no-batch refuses that op as an old server does;
  * RENAME with renameoptions=OVERWRITE (Hadoop's rename2) and without (rename: false on failure).

It prints "namenode listening on 127.0.0.1:P" and "datanode listening on 127.0.0.1:Q".
"""
import argparse
import json
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FILES = {}  # path -> {"data": bytearray, "mtime": ms, "owner": user}
DIRS = {"/": {"mtime": 0, "owner": "hdfs"}}
DENY = []
FAULTS = []
STATS = {"count": {}, "max_body": {}, "users": [], "token_leak": False}
ARGS = None
PORTS = {}


def now_ms():
    return int(time.time() * 1000)


class Remote(Exception):
    def __init__(self, status, exception, message, java=None):
        super().__init__(message)
        self.status, self.exception, self.message = status, exception, message
        self.java = java or {
            "FileNotFoundException": "java.io.FileNotFoundException",
            "AccessControlException": "org.apache.hadoop.security.AccessControlException",
            "IllegalArgumentException": "java.lang.IllegalArgumentException",
            "SecurityException": "java.lang.SecurityException",
        }.get(exception, "java.io.IOException")


def not_found(path):
    return Remote(404, "FileNotFoundException", "File does not exist: " + path)


def norm(path):
    path = "/" + path.strip("/")
    for part in path.split("/")[1:]:
        if part in (".", "..") or (part == "" and path != "/"):
            raise Remote(400, "InvalidPathException", "Invalid path name Invalid file name: " + path)
    return path


def parent(path):
    return path.rsplit("/", 1)[0] or "/"


def check_write(path, user):
    for d in DENY:
        if path == d or path.startswith(d.rstrip("/") + "/"):
            raise Remote(403, "AccessControlException",
                         'Permission denied: user=%s, access=WRITE, inode="%s":hdfs:supergroup:drwxr-xr-x' % (user, d))


def mkdirs(path, user):
    parts = path.strip("/").split("/") if path != "/" else []
    cur = ""
    for p in parts:
        cur += "/" + p
        if cur in FILES:
            raise Remote(403, "ParentNotDirectoryException", "Parent path is not a directory: " + cur)
        if cur not in DIRS:
            DIRS[cur] = {"mtime": now_ms(), "owner": user}


def status(path):
    if path in FILES:
        f = FILES[path]
        return {"accessTime": f["mtime"], "blockSize": 134217728, "childrenNum": 0, "fileId": abs(hash(path)) % 100000,
                "group": "supergroup", "length": len(f["data"]), "modificationTime": f["mtime"], "owner": f["owner"],
                "pathSuffix": "", "permission": "644", "replication": 3, "storagePolicy": 0, "type": "FILE"}
    if path in DIRS:
        d = DIRS[path]
        return {"accessTime": 0, "blockSize": 0, "childrenNum": len(children(path)), "fileId": abs(hash(path)) % 100000,
                "group": "supergroup", "length": 0, "modificationTime": d["mtime"], "owner": d["owner"],
                "pathSuffix": "", "permission": "755", "replication": 0, "storagePolicy": 0, "type": "DIRECTORY"}
    raise not_found(path)


def children(path):
    pre = path.rstrip("/") + "/"
    names = set()
    for p in list(FILES) + list(DIRS):
        if p != path and p.startswith(pre) and "/" not in p[len(pre):]:
            names.add(p[len(pre):])
    return sorted(names)


def take_fault(where, op):
    with LOCK:
        for f in FAULTS:
            if f.get("where", where) == where and f.get("op", op).upper() == op and f.get("count", 1) > 0:
                f["count"] = f.get("count", 1) - 1
                return f["kind"]
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    where = "namenode"

    def log_message(self, fmt, *args):  # quiet; the target may hold a token
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def remote(self, e):
        self.answer(e.status, {"RemoteException": {"exception": e.exception, "javaClassName": e.java,
                                                   "message": e.message}})

    def drop(self):
        self.close_connection = True
        try:
            import socket
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/control" and self.where == "namenode":
            return self.control(method)
        if url.path == "/stats":
            with LOCK:
                return self.answer(200, STATS)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        op = q.get("op", "").upper()
        body = self.read_body() if method in ("PUT", "POST") else b""
        with LOCK:
            key = self.where + ":" + op
            STATS["count"][key] = STATS["count"].get(key, 0) + 1
            STATS["max_body"][op] = max(STATS["max_body"].get(op, 0), len(body))
            if ARGS.token and ARGS.token in url.query.replace("delegation=" + ARGS.token, ""):
                STATS["token_leak"] = True
        fault = take_fault(self.where, op)
        if fault == "reset":
            return self.drop()
        if fault in ("503", "500", "standby", "denied"):
            if fault == "503":
                return self.answer(503, b"<html>Service Unavailable</html>", "text/html")
            if fault == "500":
                return self.remote(Remote(500, "IOException", "injected failure"))
            if fault == "standby":
                return self.remote(Remote(403, "StandbyException", "Operation category READ is not supported in state standby",
                                          "org.apache.hadoop.ipc.StandbyException"))
            return self.remote(Remote(403, "AccessControlException", "injected: Permission denied"))
        try:
            if not url.path.startswith("/webhdfs/v1"):
                raise Remote(404, "FileNotFoundException", "not a WebHDFS path: " + url.path)
            user = q.get("user.name", "dr.who")
            if ARGS.token:
                given = q.get("delegation")
                if given != ARGS.token:
                    raise Remote(403, "SecurityException",
                                 "Failed to obtain user group information: org.apache.hadoop.security.token."
                                 "SecretManager$InvalidToken: token (%s) can't be found in cache" % given)
                user = "tokenuser"
            with LOCK:
                if user not in STATS["users"]:
                    STATS["users"].append(user)
            path = norm(urllib.parse.unquote(url.path[len("/webhdfs/v1"):]))
            if self.where == "namenode":
                result = self.namenode(method, op, path, q, user)
            else:
                result = self.datanode(method, op, path, q, user, body)
        except Remote as e:
            return self.remote(e)
        if fault == "reset_after":
            return self.drop()
        self.answer(*result)

    def control(self, method):
        body = json.loads(self.read_body() or b"{}") if method in ("PUT", "POST") else {}
        with LOCK:
            if "deny_write" in body:
                DENY[:] = body["deny_write"]
            if "faults" in body:
                FAULTS[:] = body["faults"]
            left = sum(f.get("count", 1) for f in FAULTS)
        self.answer(200, {"faults_left": left})

    def redirect(self, op, path, q):
        params = dict(q)
        params["namenoderpcaddress"] = "127.0.0.1:8020"
        loc = "http://127.0.0.1:%d/webhdfs/v1%s?%s" % (PORTS["datanode"], urllib.parse.quote(path),
                                                       urllib.parse.urlencode(params))
        return (307, b"", "application/octet-stream", [("Location", loc)])

    def namenode(self, method, op, path, q, user):
        with LOCK:
            if op == "GETFILESTATUS" and method == "GET":
                return (200, {"FileStatus": status(path)})
            if op in ("LISTSTATUS", "LISTSTATUS_BATCH") and method == "GET":
                if op == "LISTSTATUS_BATCH" and ARGS.no_batch:
                    raise Remote(400, "IllegalArgumentException",
                                 'Invalid value for webhdfs parameter "op": No enum constant '
                                 'org.apache.hadoop.hdfs.web.resources.GetOpParam.Op.LISTSTATUS_BATCH')
                if path in FILES:
                    entries = [status(path)]
                    names = [""]
                else:
                    status(path)
                    names = children(path)
                    entries = []
                    for n in names:
                        s = status(path.rstrip("/") + "/" + n)
                        s["pathSuffix"] = n
                        entries.append(s)
                if op == "LISTSTATUS":
                    return (200, {"FileStatuses": {"FileStatus": entries}})
                after = q.get("startAfter", "")
                page = [e for e in entries if e["pathSuffix"] > after] if after else entries
                rest = len(page) - ARGS.batch
                return (200, {"DirectoryListing": {"partialListing": {"FileStatuses": {"FileStatus": page[:ARGS.batch]}},
                                                   "remainingEntries": max(rest, 0)}})
            if op == "GETHOMEDIRECTORY" and method == "GET":
                return (200, {"Path": "/user/" + user})
            if op == "OPEN" and method == "GET":
                if path in DIRS:
                    raise Remote(404, "FileNotFoundException", "Path is not a file: " + path)
                status(path)
                return self.redirect(op, path, q)
            if op == "CREATE" and method == "PUT":
                check_write(path, user)
                if path in DIRS:
                    raise Remote(403, "FileAlreadyExistsException", path + " already exists as a directory")
                if path in FILES and q.get("overwrite", "false").lower() != "true":
                    raise Remote(403, "FileAlreadyExistsException", "failed to create file %s: file exists" % path)
                return self.redirect(op, path, q)
            if op == "APPEND" and method == "POST":
                check_write(path, user)
                if path not in FILES:
                    raise not_found(path)
                return self.redirect(op, path, q)
            if op == "MKDIRS" and method == "PUT":
                check_write(path, user)
                mkdirs(path, user)
                return (200, {"boolean": True})
            if op == "RENAME" and method == "PUT":
                dest = norm(q.get("destination", ""))
                check_write(path, user)
                check_write(dest, user)
                options = q.get("renameoptions", "")
                if options:
                    if "OVERWRITE" not in options.upper().split(","):
                        raise Remote(400, "IllegalArgumentException", "unsupported renameoptions " + options)
                    if path not in FILES and path not in DIRS:
                        raise Remote(404, "FileNotFoundException", "rename source %s is not found." % path)
                    if parent(dest) not in DIRS:
                        raise Remote(404, "FileNotFoundException", "rename destination parent %s not found." % parent(dest))
                    if dest in DIRS:
                        raise Remote(403, "IOException", "rename destination %s is a directory" % dest)
                    if path in FILES:
                        FILES[dest] = FILES.pop(path)
                        return (200, b"", "application/octet-stream")
                    raise Remote(400, "IOException", "the test server renames files only")
                if path not in FILES or dest in FILES or dest in DIRS or parent(dest) not in DIRS:
                    return (200, {"boolean": False})
                FILES[dest] = FILES.pop(path)
                return (200, {"boolean": True})
            if op == "DELETE" and method == "DELETE":
                check_write(path, user)
                if path in FILES:
                    del FILES[path]
                    return (200, {"boolean": True})
                if path in DIRS and path != "/":
                    if children(path) and q.get("recursive", "false").lower() != "true":
                        raise Remote(403, "PathIsNotEmptyDirectoryException", "`%s is non empty': Directory is not empty" % path)
                    pre = path + "/"
                    for p in [p for p in FILES if p.startswith(pre)]:
                        del FILES[p]
                    for p in [p for p in DIRS if p.startswith(pre) or p == path]:
                        del DIRS[p]
                    return (200, {"boolean": True})
                return (200, {"boolean": False})
        raise Remote(400, "IllegalArgumentException",
                     'Invalid value for webhdfs parameter "op": %s is not a valid %s operation' % (op, method))

    def datanode(self, method, op, path, q, user, body):
        with LOCK:
            if op == "CREATE" and method == "PUT":
                check_write(path, user)
                mkdirs(parent(path), user)
                FILES[path] = {"data": bytearray(body), "mtime": now_ms(), "owner": user}
                return (201, b"", "application/octet-stream", [("Location", "hdfs://127.0.0.1:8020" + path)])
            if op == "APPEND" and method == "POST":
                if path not in FILES:
                    raise not_found(path)
                FILES[path]["data"] += body
                FILES[path]["mtime"] = now_ms()
                return (200, b"", "application/octet-stream")
            if op == "OPEN" and method == "GET":
                if path not in FILES:
                    raise not_found(path)
                data = FILES[path]["data"]
                off = int(q.get("offset", "0") or 0)
                if off > len(data):
                    raise Remote(403, "IOException", "Offset=%d out of the range [0, %d]" % (off, len(data)))
                length = q.get("length")
                end = len(data) if length in (None, "") else min(len(data), off + int(length))
                return (200, bytes(data[off:end]), "application/octet-stream")
        raise Remote(400, "IllegalArgumentException", "%s %s is not a DataNode operation" % (method, op))


class NameNode(Handler):
    where = "namenode"


class DataNode(Handler):
    where = "datanode"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", default="")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--no-batch", action="store_true")
    ARGS = ap.parse_args()
    nn = Server(("127.0.0.1", 0), NameNode)
    dn = Server(("127.0.0.1", 0), DataNode)
    PORTS["namenode"], PORTS["datanode"] = nn.server_address[1], dn.server_address[1]
    threading.Thread(target=dn.serve_forever, daemon=True).start()
    print("datanode listening on 127.0.0.1:%d" % PORTS["datanode"], flush=True)
    print("namenode listening on 127.0.0.1:%d" % PORTS["namenode"], flush=True)
    try:
        nn.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
