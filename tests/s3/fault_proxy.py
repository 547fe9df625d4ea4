#!/usr/bin/python3
"""An HTTP/1.1 proxy for the s3 fault tests: forwards to an S3 server, and injects faults.

Usage: fault_proxy.py UPSTREAM_PORT SCHEDULE.json

Prints "listening on 127.0.0.1:PORT" once ready, then one line per request:
"REQ <n> <METHOD> <target> -> <action>".

The schedule is a JSON list of rules, tried in order; the first that matches a request and has
times left acts on it (no match: forward).
  {"method": "PUT", "query": "partNumber", "path": "part-of-path",   # all optional
   "action": "status" | "reset" | "slow",
   "times": 2,                 # how many requests it acts on; -1 = forever
   "skip": 0,                  # let this many matching requests through first
   "status": 503, "code": "SlowDown", "message": "Please reduce your request rate.",
   "delay": 2.0}               # "slow": wait this long before forwarding
"reset" closes the connection with an RST before answering.
"""
import http.client
import http.server
import json
import socket
import struct
import sys
import threading
import time

UPSTREAM = int(sys.argv[1])
with open(sys.argv[2]) as f:
    RULES = json.load(f)
LOCK = threading.Lock()
COUNTER = [0]


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
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        n, rule = choose(self.command, self.path)
        action = rule["action"] if rule else "forward"
        print("REQ %d %s %s -> %s" % (n, self.command, self.path, action), flush=True)
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
        if action == "slow":
            time.sleep(float(rule.get("delay", 2.0)))
        self.forward(body)

    def forward(self, body):
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                     headers=headers)
        res = conn.getresponse()
        data = res.read()
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
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
