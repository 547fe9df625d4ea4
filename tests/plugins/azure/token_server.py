#!/usr/bin/python3
"""A Microsoft identity platform token endpoint and a one-blob Blob endpoint, for the azure
plugin's client-credentials test (Azurite accepts bearer tokens only over https).

Usage: token_server.py TENANT CLIENT_ID CLIENT_SECRET

Prints "listening on 127.0.0.1:PORT" once ready, then "TOKEN <n>" for each token it issues and
"BLOB <method> <path> <ok|denied>" for each blob request.

POST /TENANT/oauth2/v2.0/token with grant_type=client_credentials, the client id and secret and
scope https://storage.azure.com/.default answers {"access_token", "expires_in": 3600,
"token_type": "Bearer"}; a wrong secret answers 401 {"error": "invalid_client",
"error_description": "AADSTS7000215: Invalid client secret provided..."} as Entra ID does.
Any other request is a blob request: with "Authorization: Bearer <an issued token>" a HEAD answers
200 with Content-Length 42, else 403 with x-ms-error-code AuthenticationFailed.
"""
import http.server
import json
import sys
import urllib.parse

TENANT, CLIENT_ID, SECRET = sys.argv[1:4]
ISSUED = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)) if self.command != "HEAD" else "42")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = dict(urllib.parse.parse_qsl(body))
        if self.path != "/%s/oauth2/v2.0/token" % TENANT:
            return self.reply(404, b'{"error": "invalid_request"}')
        if (form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT_ID
                or form.get("scope") != "https://storage.azure.com/.default"):
            return self.reply(400, b'{"error": "invalid_request", "error_description": "AADSTS900144: bad form"}')
        if form.get("client_secret") != SECRET:
            return self.reply(401, json.dumps({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                                     "in the request is the client secret value, not the client secret ID.\r\n"
                                     "Trace ID: 0000\r\nCorrelation ID: 0000"}).encode(),
                [("Content-Type", "application/json")])
        token = "token-%d-for-%s" % (len(ISSUED) + 1, CLIENT_ID)
        ISSUED.append(token)
        print("TOKEN %d" % len(ISSUED), flush=True)
        self.reply(200, json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode(),
                   [("Content-Type", "application/json")])

    def do_HEAD(self):
        auth = self.headers.get("Authorization") or ""
        ok = auth.startswith("Bearer ") and auth[7:] in ISSUED
        print("BLOB %s %s %s" % (self.command, self.path, "ok" if ok else "denied"), flush=True)
        if ok:
            self.reply(200, b"", [("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"), ("ETag", '"0x1"')])
        else:
            self.reply(403, b"", [("x-ms-error-code", "AuthenticationFailed")])

    do_GET = do_HEAD


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
