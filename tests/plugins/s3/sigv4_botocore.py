#!/usr/bin/python3
"""Sign requests with botocore's S3 SigV4 signer, for the C++ cross-check (sigv4_test.cpp).

Usage: sigv4_botocore.py JOBS.json  -> prints a JSON list of {"authorization", "canonical_request", "path"}.

Each job gives the request's parts raw, never encoded by Ember: method, host, bucket (put in the
path when path_style), key (the object key as the user wrote it), query ([name, value] pairs,
unencoded), headers ([name, value] pairs), payload_hash, date (YYYYMMDDTHHMMSSZ), region,
access_key, secret_key, token. botocore builds everything itself: the path with its own REST
serializer from S3's service model (GetObject's "/{Bucket}/{Key+}", as its S3 client does), the
canonical query from the raw pairs (AWSRequest params), the canonical request and the signature.
Only the timestamp and the payload hash are fixed from the job instead of the clock and a body.
"""
import json
import sys

import botocore.session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.serialize import create_serializer

SESSION = botocore.session.get_session()
GET_OBJECT = SESSION.get_service_model("s3").operation_model("GetObject")
SERIALIZER = create_serializer("rest-xml", include_validation=False)


class FixedPayloadAuth(S3SigV4Auth):
    def __init__(self, credentials, region, payload_hash):
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def url_path(bucket, key, path_style):
    """The path botocore's S3 client sends for bucket/key: its serializer renders the model's
    URI template from the raw key; virtual-hosted style then drops the bucket from the path."""
    rendered = SERIALIZER.serialize_to_request({"Bucket": bucket, "Key": key}, GET_OBJECT)["url_path"]
    prefix = "/" + bucket
    assert rendered.startswith(prefix + "/"), rendered
    return rendered if path_style else rendered[len(prefix):]


def sign(job):
    creds = Credentials(job["access_key"], job["secret_key"], job["token"] or None)
    auth = FixedPayloadAuth(creds, job["region"], job["payload_hash"])
    path = url_path(job["bucket"], job["key"], job["path_style"])
    request = AWSRequest(method=job["method"], url="https://" + job["host"] + path,
                         headers=dict((h[0], h[1]) for h in job["headers"]),
                         params=[(q[0], q[1]) for q in job["query"]])
    # What add_auth does, with the job's timestamp instead of utcnow().
    request.context["timestamp"] = job["date"]
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return {"authorization": request.headers["Authorization"], "canonical_request": canonical, "path": path}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    json.dump([sign(j) for j in jobs], sys.stdout)


if __name__ == "__main__":
    main()
