#!/usr/bin/python3
"""Tests of the W&B test server itself (wandb_server.py): that it refuses, with a 4xx naming why,
what the real service refuses (shared/wandb-protocol.md), and that its independent artifact check
follows W&B's digest rule (the verified vector from the protocol notes).

Run by meson (`meson test -C build wandb_server`) with /usr/bin/python3; standard library only.
Each test class starts its own server on a free loopback port.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wandb_server  # noqa: E402  (the module under test, for its digest functions)

KEY = "0123456789abcdef0123456789abcdef01234567"
AUTH = "Basic " + base64.b64encode(("api:" + KEY).encode()).decode()


class ServerProcess:
    def __init__(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "wandb_server.py"),
                                      "--api-key=" + KEY], stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.proc.stdout.close()

    def request(self, method, path, body=b"", headers=None, auth=True):
        """(status, parsed JSON body or raw bytes)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = dict(headers or {})
        if auth:
            h["Authorization"] = AUTH
        req = urllib.request.Request(self.url + path, data=body if method != "GET" else None,
                                     method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def gql(self, query, variables=None):
        return self.request("POST", "/graphql", {"query": query, "variables": variables or {}},
                            {"Content-Type": "application/json"})

    def state(self):
        return self.request("GET", "/_state", auth=False)[1]

    def upsert(self, name, project="proj", **extra):
        v = {"name": name, "project": project, "entity": None, "config": json.dumps({"lr": {"value": 0.1}})}
        v.update(extra)
        return self.gql("mutation UpsertBucket($name: String) { upsertBucket { bucket { id } } }", v)

    def stream(self, run, files=None, **extra):
        body = dict(extra)
        if files is not None:
            body["files"] = files
        return self.request("POST", "/files/ember-test/proj/%s/file_stream" % run, body)


def row(step, **kv):
    d = dict(kv)
    d.update({"_step": step, "_runtime": 0.5 + step, "_timestamp": 1.8e9 + step})
    return json.dumps(d)


def md5_b64(b):
    return base64.b64encode(hashlib.md5(b).digest()).decode()


class ServerCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def assertRefused(self, got, status, words):
        code, body = got
        self.assertEqual(code, status, body)
        msg = body["errors"][0]["message"]
        for w in words:
            self.assertIn(w, msg)
        return msg


class DigestRule(unittest.TestCase):
    def test_verified_vector_from_the_protocol_notes(self):
        # shared/wandb-protocol.md §5: verified against W&B's own client's request.
        self.assertEqual(wandb_server.manifest_digest({"ckpt.bin": "OYUz1IER6fZksfZMsQxLYw=="}),
                         "bda98702c921258b36866826b4dda1cf")

    def test_entries_are_taken_in_sorted_path_order_whatever_the_dict_order(self):
        a = wandb_server.manifest_digest({"b.bin": "OYUz1IER6fZksfZMsQxLYw==", "a.bin": "1B2M2Y8AsgTpgAmY7PhCfg=="})
        want = hashlib.md5(b"wandb-artifact-manifest-v1\na.bin:1B2M2Y8AsgTpgAmY7PhCfg==\n"
                           b"b.bin:OYUz1IER6fZksfZMsQxLYw==\n").hexdigest()
        self.assertEqual(a, want)

    def test_file_digest_is_base64_of_the_raw_md5(self):
        self.assertEqual(wandb_server.md5_b64(b""), "1B2M2Y8AsgTpgAmY7PhCfg==")
        self.assertTrue(wandb_server.is_b64_md5("OYUz1IER6fZksfZMsQxLYw=="))
        self.assertFalse(wandb_server.is_b64_md5("bogus"))
        self.assertFalse(wandb_server.is_b64_md5("bda98702c921258b36866826b4dda1cf"))


class GraphQL(ServerCase):
    def test_a_body_that_is_not_json_is_400(self):
        self.assertRefused(self.srv.request("POST", "/graphql", b"query Viewer { viewer { id } }"), 400, ["not JSON"])

    def test_a_json_body_that_is_not_an_object_or_has_no_query_is_400(self):
        self.assertRefused(self.srv.request("POST", "/graphql", [1, 2]), 400, ["JSON object"])
        self.assertRefused(self.srv.request("POST", "/graphql", {"variables": {}}), 400, ["query"])
        self.assertRefused(self.srv.request("POST", "/graphql", {"query": "query Viewer { x }", "variables": [1]}),
                           400, ["variables"])

    def test_a_bad_body_without_a_key_is_still_401(self):
        self.assertEqual(self.srv.request("POST", "/graphql", b"{", auth=False)[0], 401)

    def test_a_control_body_that_is_not_json_is_400(self):
        self.assertRefused(self.srv.request("POST", "/_control", b"{", auth=False), 400, ["not JSON"])

    def test_an_unknown_operation_is_400(self):
        self.assertRefused(self.srv.gql("query NoSuchThing { x }"), 400, ["NoSuchThing"])

    def test_upsert_bucket_needs_name_and_project(self):
        q = "mutation UpsertBucket { upsertBucket { bucket { id } } }"
        self.assertRefused(self.srv.gql(q, {"project": "proj"}), 400, ["name is required"])
        self.assertRefused(self.srv.gql(q, {"name": "r1"}), 400, ["project is required"])
        self.assertRefused(self.srv.gql(q, {"name": "", "project": "proj"}), 400, ["name"])
        self.assertRefused(self.srv.gql(q, {"name": 7, "project": "proj"}), 400, ["name"])

    def test_upsert_bucket_config_and_summary_are_json_strings_of_an_object(self):
        self.assertRefused(self.srv.upsert("cfg1", config={"lr": 1}), 400, ["config", "JSONString"])
        self.assertRefused(self.srv.upsert("cfg1", config="{not json"), 400, ["config"])
        self.assertRefused(self.srv.upsert("cfg1", config="[1]"), 400, ["config"])
        self.assertRefused(self.srv.upsert("cfg1", summaryMetrics={"a": 1}), 400, ["summaryMetrics"])
        self.assertRefused(self.srv.upsert("cfg1", tags="a,b"), 400, ["tags"])
        self.assertFalse([r for r in self.srv.state()["runs"] if r["name"] == "cfg1"])
        code, body = self.srv.upsert("cfg1", tags=["a"])
        self.assertEqual(code, 200, body)
        self.assertEqual(body["data"]["upsertBucket"]["bucket"]["project"]["entity"]["name"], "ember-test")

    def test_create_run_files_only_for_an_upserted_run(self):
        q = "mutation CreateRunFiles { createRunFiles { runID } }"
        self.assertRefused(self.srv.gql(q, {"entity": "ember-test", "project": "proj", "run": "never",
                                            "files": ["a.txt"]}), 404, ["UpsertBucket"])
        self.assertRefused(self.srv.gql(q, {"entity": "ember-test", "project": "proj", "run": "never",
                                            "files": "a.txt"}), 400, ["files"])

    def test_malformed_variables_of_every_operation_get_a_4xx_never_a_500(self):
        ops = ["UpsertBucket", "RunResumeStatus", "CreateRunFiles", "RunUploadUrls", "CreateArtifact",
               "CreateArtifactManifest", "CreateArtifactFiles", "CommitArtifact", "ArtifactByName",
               "ArtifactType", "ArtifactFileURLs", "UseArtifact", "ArtifactManifest"]
        bad = [{}, {"input": 5}, {"input": {}}, {"name": 5, "project": [], "artifactID": {}, "id": 3},
               {"artifactFiles": [5]}, {"artifactFiles": [{"name": "x", "md5": "bogus", "artifactID": "nope"}]},
               {"artifactID": "nope"}, {"files": None, "entity": 1}]
        for op in ops:
            for v in bad:
                code, body = self.srv.gql("mutation %s { x }" % op, v)
                self.assertTrue(400 <= code < 500, "%s %s -> %s %s" % (op, v, code, body))
                self.assertIn("errors", body)


class FileStream(ServerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv.upsert("fs1")

    def history(self, run="fs1"):
        return [r for r in self.srv.state()["runs"] if r["name"] == run][0]["history"]

    def test_only_for_an_upserted_run(self):
        self.assertRefused(self.srv.stream("ghost", {"wandb-history.jsonl": {"offset": 0, "content": [row(0)]}}),
                           404, ["UpsertBucket"])
        self.assertFalse([r for r in self.srv.state()["runs"] if r["name"] == "ghost"])

    def test_a_body_that_is_not_a_json_object_is_400(self):
        self.assertRefused(self.srv.request("POST", "/files/ember-test/proj/fs1/file_stream", b"{oops"), 400, ["not JSON"])
        self.assertRefused(self.srv.request("POST", "/files/ember-test/proj/fs1/file_stream", [1]), 400, ["object"])
        self.assertRefused(self.srv.stream("fs1", {"wandb-history.jsonl": {"content": [row(0)]}}), 400, ["offset"])
        self.assertRefused(self.srv.stream("fs1", {"wandb-history.jsonl": {"offset": "0", "content": [row(0)]}}),
                           400, ["offset"])
        self.assertRefused(self.srv.stream("fs1", {"wandb-history.jsonl": {"offset": 0, "content": [{"_step": 0}]}}),
                           400, ["strings"])
        self.assertRefused(self.srv.stream("fs1", uploaded="x"), 400, ["uploaded"])

    def test_history_is_append_only_without_gaps_with_system_keys_and_rising_steps(self):
        self.srv.upsert("fs2")
        h = lambda off, *lines: self.srv.stream("fs2", {"wandb-history.jsonl": {"offset": off, "content": list(lines)}})
        self.assertEqual(h(0, row(0, loss=1.0), row(1, loss=float("nan")))[0], 200)
        # A resend of what is stored (a lost answer) is fine; other content at a stored offset is not.
        self.assertEqual(h(1, row(1, loss=float("nan")), row(2, loss=0.5))[0], 200)
        self.assertRefused(h(2, row(2, loss=0.25)), 409, ["line 2", "append-only"])
        self.assertRefused(h(5, row(5)), 400, ["gap", "3 lines"])
        self.assertRefused(h(3, '{"loss": 1'), 400, ["line 3", "not a JSON object"])
        self.assertRefused(h(3, "[1, 2]"), 400, ["not a JSON object"])
        self.assertRefused(h(3, json.dumps({"loss": 1, "_runtime": 1, "_timestamp": 1.8e9})), 400, ["_step"])
        self.assertRefused(h(3, json.dumps({"_step": 3.5, "_runtime": 1, "_timestamp": 1.8e9})), 400, ["_step"])
        self.assertRefused(h(3, json.dumps({"_step": 3, "_timestamp": 1.8e9})), 400, ["_runtime"])
        self.assertRefused(h(3, json.dumps({"_step": 3, "_runtime": 1, "_timestamp": "now"})), 400, ["_timestamp"])
        self.assertRefused(h(3, row(2)), 400, ["_step 2", "previous"])
        # A refused post stores nothing, not even its good lines.
        self.assertRefused(h(3, row(3), "nope"), 400, ["line 4"])
        hist = self.history("fs2")
        self.assertEqual([r["_step"] for r in hist], [0, 1, 2])
        self.assertEqual(hist[1]["loss"], "NaN")  # NaN accepted as W&B emits it
        self.assertEqual(h(3, row(7))[0], 200)

    def test_events_lines_need_runtime_and_timestamp_and_summary_an_object(self):
        self.srv.upsert("fs3")
        ev = lambda *lines: self.srv.stream("fs3", {"wandb-events.jsonl": {"offset": 0, "content": list(lines)}})
        self.assertRefused(ev(json.dumps({"system.cpu": 3, "_runtime": "2", "_timestamp": 1.8e9})), 400, ["_runtime"])
        self.assertRefused(ev("{"), 400, ["not a JSON object"])
        self.assertEqual(ev(json.dumps({"system.cpu": 3, "_wandb": True, "_runtime": 2, "_timestamp": 1.8e9}))[0], 200)
        r = [r for r in self.srv.state()["runs"] if r["name"] == "fs3"][0]
        self.assertEqual(r["warnings"], [])
        self.srv.stream("fs3", {"wandb-events.jsonl": {"offset": 1, "content": [json.dumps({"system.cpu": 3})]}})
        r = [r for r in self.srv.state()["runs"] if r["name"] == "fs3"][0]
        self.assertEqual(r["warnings"], ["wandb-events.jsonl line without _runtime",
                                         "wandb-events.jsonl line without _timestamp"])
        self.assertRefused(self.srv.stream("fs3", {"wandb-summary.json": {"offset": 0, "content": ["7"]}}),
                           400, ["summary"])

    def test_output_log_lines_start_with_a_timestamp(self):
        self.srv.upsert("fs4")
        out = lambda off, line: self.srv.stream("fs4", {"output.log": {"offset": off, "content": [line]}})
        self.assertEqual(out(0, "2026-11-24T07:24:54.220128 hello\n")[0], 200)
        self.assertEqual(out(1, "ERROR 2026-11-24T07:24:54.220128 oops\n")[0], 200)
        self.assertEqual(out(1, "ERROR 2026-11-24T07:24:55.000000 rewritten\n")[0], 200)  # \r handling rewrites
        self.assertRefused(out(2, "hello\n"), 400, ["timestamp"])
        self.assertRefused(out(9, "2026-11-24T07:24:54.220128 x\n"), 400, ["gap"])

    def test_complete_records_the_exit_code(self):
        self.srv.upsert("fs5")
        self.assertRefused(self.srv.stream("fs5", complete=True, exitcode="0"), 400, ["exitcode"])
        self.assertEqual(self.srv.stream("fs5", complete=True, exitcode=0, uploaded=["a"])[0], 200)
        r = [r for r in self.srv.state()["runs"] if r["name"] == "fs5"][0]
        self.assertTrue(r["complete"])
        self.assertEqual(r["uploaded"], ["a"])


class Storage(ServerCase):
    def test_a_put_only_to_an_issued_key(self):
        self.assertRefused(self.srv.request("PUT", "/storage/runs/ember-test/proj/x/f.txt", b"hi", auth=False),
                           403, ["not an upload URL"])
        self.srv.upsert("st1")
        code, body = self.srv.gql("mutation CreateRunFiles { x }", {"entity": "ember-test", "project": "proj",
                                                                    "run": "st1", "files": ["f.txt"]})
        self.assertEqual(code, 200, body)
        url = body["data"]["createRunFiles"]["files"][0]["uploadUrl"]
        self.assertTrue(url.startswith(self.srv.url + "/storage/"))
        path = url[len(self.srv.url):]
        self.assertEqual(self.srv.request("PUT", path, b"hi", auth=False)[0], 200)
        self.assertEqual(self.srv.request("PUT", path[:-1] + "x", b"hi", auth=False)[0], 403)
        self.assertEqual(self.srv.request("GET", path, auth=False)[1], b"hi")


class Artifacts(ServerCase):
    CREATE = "mutation CreateArtifact { createArtifact { artifact { id state } } }"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv.upsert("art1")

    def create(self, coll, digest, aliases=("best",)):
        return self.srv.gql(self.CREATE, {
            "artifactTypeName": "model", "artifactCollectionNames": [coll], "entityName": "ember-test",
            "projectName": "proj", "runName": "art1", "digest": digest, "metadata": "{}",
            "aliases": [{"artifactCollectionName": coll, "alias": a} for a in aliases]})

    def manifest_call(self, aid, include, digest):
        return self.srv.gql("mutation CreateArtifactManifest { x }", {
            "name": "wandb_manifest.json", "digest": digest, "artifactID": aid, "baseArtifactID": None,
            "entityName": "ember-test", "projectName": "proj", "runName": "art1", "includeUpload": include})

    def log(self, coll, files, digest=None, put=None, manifest=None, manifest_md5=None):
        """W&B's sequence (protocol notes §5) with each step overridable; (artifact id, commit answer)."""
        digests = {p: md5_b64(b) for p, b in files.items()}
        code, body = self.create(coll, digest or wandb_server.manifest_digest(digests))
        self.assertEqual(code, 200, body)
        aid = body["data"]["createArtifact"]["artifact"]["id"]
        code, body = self.manifest_call(aid, False, "")
        self.assertEqual(code, 200, body)
        mid = body["data"]["createArtifactManifest"]["artifactManifest"]["id"]
        code, body = self.srv.gql("mutation CreateArtifactFiles { x }", {"storageLayout": "V2", "artifactFiles": [
            {"artifactID": aid, "artifactManifestID": mid, "name": p, "md5": d} for p, d in sorted(digests.items())]})
        self.assertEqual(code, 200, body)
        for e in body["data"]["createArtifactFiles"]["files"]["edges"]:
            n = e["node"]
            data = (put or files).get(n["displayName"])
            if data is not None:
                got = self.srv.request("PUT", n["uploadUrl"][len(self.srv.url):], data, upload_headers(n), auth=False)
                if data == files[n["displayName"]]:
                    self.assertEqual(got[0], 200, got)
                else:
                    self.assertRefused(got, 400, ["BadDigest"])
        if manifest is None:
            manifest = json.dumps({"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                                   "storagePolicyConfig": {"storageLayout": "V2"},
                                   "contents": {p: {"digest": d, "birthArtifactID": aid, "size": len(files[p])}
                                                for p, d in sorted(digests.items())}}, indent=4).encode()
        code, body = self.manifest_call(aid, True, manifest_md5 or md5_b64(manifest))
        self.assertEqual(code, 200, body)
        mfile = body["data"]["createArtifactManifest"]["artifactManifest"]["file"]
        got = self.srv.request("PUT", mfile["uploadUrl"][len(self.srv.url):], manifest, upload_headers(mfile), auth=False)
        self.assertEqual(got[0], 200 if manifest_md5 is None else 400, got)
        return aid, self.srv.gql("mutation CommitArtifact { x }", {"artifactID": aid})

    def resolve(self, coll, alias):
        code, body = self.srv.gql("query ArtifactByName { x }", {"entityName": "ember-test", "projectName": "proj",
                                                                  "name": "%s:%s" % (coll, alias)})
        self.assertEqual(code, 200, body)
        return body["data"]["project"]["artifact"]

    def test_a_correct_artifact_commits_as_v0_with_latest_and_best(self):
        files = {"ckpt.bin": os.urandom(1000), "sub/meta.json": b'{"epoch": 3}'}
        aid, (code, body) = self.log("good", files)
        self.assertEqual(code, 200, body)
        self.assertEqual(body["data"]["commitArtifact"]["artifact"]["digest"],
                         wandb_server.manifest_digest({p: md5_b64(b) for p, b in files.items()}))
        for alias in ("latest", "best", "v0"):
            self.assertEqual(self.resolve("good", alias)["id"], aid)
        art = [a for a in self.srv.state()["artifacts"] if a["id"] == aid][0]
        self.assertEqual(art["state"], "COMMITTED")
        self.assertEqual(art["verified"]["files"]["ckpt.bin"], md5_b64(files["ckpt.bin"]))

    def test_a_digest_that_is_not_an_md5_is_refused_at_create(self):
        self.assertRefused(self.create("bogus1", "bogus"), 400, ["MANIFEST_MD5"])
        self.assertIsNone(self.resolve("bogus1", "latest"))

    def test_a_digest_that_is_not_the_manifests_cannot_commit_or_get_aliases(self):
        aid, got = self.log("wrongdigest", {"ckpt.bin": b"x" * 1000}, digest="0" * 32)
        self.assertRefused(got, 400, ["manifest's digest", "0" * 32])
        for alias in ("latest", "best", "v0"):
            self.assertIsNone(self.resolve("wrongdigest", alias))
        art = [a for a in self.srv.state()["artifacts"] if a["id"] == aid][0]
        self.assertEqual((art["state"], art["aliases"], art["versionIndex"]), ("PENDING", [], None))

    def test_a_missing_file_cannot_commit(self):
        _, got = self.log("missing", {"a.bin": b"a" * 10, "b.bin": b"b" * 10}, put={"a.bin": b"a" * 10})
        self.assertRefused(got, 400, ["b.bin", "never uploaded"])
        self.assertIsNone(self.resolve("missing", "latest"))

    def test_file_bytes_that_are_not_the_declared_md5_are_refused_and_cannot_commit(self):
        _, got = self.log("corrupt", {"a.bin": b"a" * 10}, put={"a.bin": b"A" * 10})
        self.assertRefused(got, 400, ["a.bin", "never uploaded"])

    def test_a_manifest_whose_entries_or_md5_disagree_cannot_commit(self):
        files = {"a.bin": b"a" * 10}
        wrong_size = json.dumps({"version": 1, "storagePolicy": "wandb-storage-policy-v1", "contents": {
            "a.bin": {"digest": md5_b64(files["a.bin"]), "size": 11}}}).encode()
        _, got = self.log("size", files, manifest=wrong_size)
        self.assertRefused(got, 400, ["a.bin", "11 bytes"])
        extra = json.dumps({"version": 1, "storagePolicy": "wandb-storage-policy-v1", "contents": {
            "a.bin": {"digest": md5_b64(files["a.bin"]), "size": 10},
            "z.bin": {"digest": md5_b64(b"z"), "size": 1}}}).encode()
        _, got = self.log("extra", files, manifest=extra)
        self.assertRefused(got, 400, ["z.bin", "never registered"])
        # The manifest's PUT must have the MD5 CreateArtifactManifest declared.
        _, got = self.log("manifestmd5", files, manifest_md5=md5_b64(b"something else"))
        self.assertRefused(got, 400, ["no manifest was uploaded"])
        v0 = json.dumps({"version": 2, "contents": {}}).encode()
        _, got = self.log("v2", files, manifest=v0)
        self.assertRefused(got, 400, ["v1 manifest"])

    def test_files_cannot_be_added_to_a_committed_artifact(self):
        aid, (code, _) = self.log("closed", {"a.bin": b"1"})
        self.assertEqual(code, 200)
        got = self.srv.gql("mutation CreateArtifactFiles { x }", {"artifactFiles": [
            {"artifactID": aid, "name": "b.bin", "md5": md5_b64(b"2")}]})
        self.assertRefused(got, 409, ["COMMITTED"])


def upload_headers(node):
    """uploadHeaders ("Name:Value" strings) as the dict a PUT sends back, as W&B's clients do."""
    return dict(h.split(":", 1) for h in node.get("uploadHeaders") or [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
