#!/usr/bin/python3
"""A local AWS Lambda Runtime API (2018-06-01) for the tests and the benchmark of `ember lambda`.

Faithful to the public API where the runtime can tell:
  GET  /2018-06-01/runtime/invocation/next           one event at a time: the next event is handed
       out only after the previous one was answered; headers Lambda-Runtime-Aws-Request-Id,
       Lambda-Runtime-Deadline-Ms (Unix ms), Lambda-Runtime-Invoked-Function-Arn,
       Lambda-Runtime-Trace-Id; body the event
  POST /2018-06-01/runtime/invocation/{id}/response  202 {"status":"OK"}; 400 InvalidRequestID
       for an id that is not the open invocation; 413 above 6 MB
  POST /2018-06-01/runtime/invocation/{id}/error     the same, and the body must be JSON with
       errorMessage and errorType (else 400); header Lambda-Runtime-Function-Error-Type
  POST /2018-06-01/runtime/init/error                202, before any /next only (else 403)
Every request is recorded (one JSON line each in --log, flushed before the answer).

Events come from --events: a JSON array of {"event": <JSON value>} or {"raw": "<bytes as text>"},
each with an optional "timeout_ms" (the deadline is now + timeout_ms when the event is handed out;
default 900000, Lambda's 15 minutes), repeated --repeat times. On --fifo the server writes
"port N" once listening, "done" on the last event's reply, "init_error" on /init/error (each before answering it).
After the last event /next blocks, as Lambda's does, until the server is stopped (SIGTERM).
"""
import argparse
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
MAX_PAYLOAD = 6 * 1024 * 1024


class State:
    def __init__(self, events, log, fifo):
        self.events = events
        self.index = 0
        self.open_id = None  # the invocation handed out and not yet answered
        self.served_any = False
        self.cond = threading.Condition()
        self.log = log
        self.fifo = fifo
        self.handed_at = None

    def say(self, line):
        if self.fifo:
            with open(self.fifo, "w") as f:
                f.write(line + "\n")

    def record(self, entry):
        with self.cond:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def reply(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def entry(self, body):
        return {"method": self.command, "path": self.path, "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"), "t_ns": time.perf_counter_ns()}

    def do_GET(self):
        st = self.server.state
        if self.path != PREFIX + "/invocation/next":
            st.record(self.entry(b""))
            return self.reply(404, {"errorMessage": "no such path", "errorType": "NotFound"})
        with st.cond:
            while st.open_id is not None or st.index >= len(st.events):
                st.cond.wait()
            ev = st.events[st.index]
            st.index += 1
            rid = str(uuid.uuid4())
            st.open_id = rid
            st.served_any = True
        e = self.entry(b"")
        e["request_id"] = rid
        st.record(e)
        body = ev["raw"].encode() if "raw" in ev else json.dumps(ev["event"]).encode()
        deadline = int(time.time() * 1000) + int(ev.get("timeout_ms", 900000))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:ember-test")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        st.handed_at = time.perf_counter_ns()

    def do_POST(self):
        st = self.server.state
        body = self.read_body()
        e = self.entry(body)
        path = self.path
        if path == PREFIX + "/init/error":
            st.record(e)
            if st.served_any:
                return self.reply(403, {"errorMessage": "init/error after the first /next", "errorType": "InvalidStateTransition"})
            st.say("init_error")  # before the answer: the runtime exits once it has it
            return self.reply(202, {"status": "OK"})
        parts = path[len(PREFIX):].split("/") if path.startswith(PREFIX) else []
        # ['', 'invocation', id, 'response'|'error']
        if len(parts) != 4 or parts[1] != "invocation" or parts[3] not in ("response", "error"):
            st.record(e)
            return self.reply(404, {"errorMessage": "no such path", "errorType": "NotFound"})
        rid, kind = parts[2], parts[3]
        e["kind"] = kind
        e["request_id"] = rid
        if st.handed_at is not None:
            e["latency_ns"] = e["t_ns"] - st.handed_at
        st.record(e)
        with st.cond:
            if rid != st.open_id:
                return self.reply(400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
            if len(body) > MAX_PAYLOAD:
                return self.reply(413, {"errorMessage": "payload too large", "errorType": "RequestEntityTooLarge"})
            if kind == "error":
                try:
                    doc = json.loads(body)
                    ok = isinstance(doc, dict) and isinstance(doc.get("errorMessage"), str) and isinstance(doc.get("errorType"), str)
                except ValueError:
                    ok = False
                if not ok:
                    return self.reply(400, {"errorMessage": "expected {errorMessage, errorType, stackTrace}", "errorType": "InvalidErrorShape"})
            st.open_id = None
            last = st.index >= len(st.events)
            st.cond.notify_all()
        if last:
            st.say("done")
        self.reply(202, {"status": "OK"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fifo")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    with open(a.events) as f:
        events = json.load(f) * a.repeat
    log = open(a.log, "w")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(events, log, a.fifo)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.state.say("port %d" % server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
