#!/usr/bin/python3
"""Sign requests with botocore's S3 SigV4 signer, for the C++ cross-check (sigv4_test.cpp).

Usage: sigv4_botocore.py JOBS.json  -> prints a JSON list of {"authorization", "canonical_request"}.

Each job: method, host, path (already URI-encoded, as sent), query (canonical, as sent), headers
([name, value] pairs), payload_hash, date (YYYYMMDDTHHMMSSZ), region, access_key, secret_key,
token. The timestamp and the payload hash are fixed from the job instead of the clock and the body.
"""
import json
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class FixedPayloadAuth(S3SigV4Auth):
    def __init__(self, credentials, region, payload_hash):
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def sign(job):
    creds = Credentials(job["access_key"], job["secret_key"], job["token"] or None)
    auth = FixedPayloadAuth(creds, job["region"], job["payload_hash"])
    url = "https://" + job["host"] + job["path"] + ("?" + job["query"] if job["query"] else "")
    request = AWSRequest(method=job["method"], url=url, headers=dict((h[0], h[1]) for h in job["headers"]))
    # What add_auth does, with the job's timestamp instead of utcnow().
    request.context["timestamp"] = job["date"]
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return {"authorization": request.headers["Authorization"], "canonical_request": canonical}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    json.dump([sign(j) for j in jobs], sys.stdout)


if __name__ == "__main__":
    main()
