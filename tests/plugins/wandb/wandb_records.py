#!/usr/bin/python3
"""An independent reader of W&B offline runs, for the tests: checks that an offline run directory
is one W&B's own `wandb sync DIR` would read, and prints its records as JSON.

    /usr/bin/python3 wandb_records.py RUN_DIR

Written from the format notes (shared/wandb-protocol.md §7), sharing nothing with the plugin:
  - the file: exactly one *.wandb in RUN_DIR; a 7-byte header ":W&B", magic 0xBEE1 (LE), version 0;
    LevelDB log framing in 32 KiB blocks counted from the file start (chunk: CRC-32 IEEE LE over
    type byte + data, unmasked; uint16 LE length; type 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST; a block
    tail under 7 bytes is zeros; FIRST MIDDLE* LAST never interleaved with FULL);
  - each record: a wandb_internal.Record parsed with Debian's python3-protobuf from
    wandb_records.proto (written from W&B's published field numbers), compiled here with Debian's
    protoc; a field the schema does not know (a wrong field number or wire type) is an error;
  - what `wandb sync` needs: header first, a run record, history records carrying _step (equal to
    step.num), _runtime and _timestamp items, an explicit summary record, an exit record before
    final, footer last; every value_json parses (NaN/Infinity tokens allowed); files records name
    paths under files/ that exist.
Prints {"records": [{"type": ..., <the record as JSON, proto field names>}...]} on success; on a
violation prints the reason to stderr and exits 1; exits 3 when protoc or python3-protobuf is
missing (the caller decides whether that is a skip).
"""

import glob
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class Invalid(Exception):
    pass


def load_schema():
    """Compile wandb_records.proto with protoc into a temporary directory and import it."""
    protoc = shutil.which("protoc")
    if protoc is None:
        print("wandb_records.py: protoc is not on PATH (Debian package protobuf-compiler; "
              "scripts/bootstrap installs it)", file=sys.stderr)
        sys.exit(3)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        print("wandb_records.py: %s has no google.protobuf (Debian package python3-protobuf; "
              "scripts/bootstrap installs it)" % sys.executable, file=sys.stderr)
        sys.exit(3)
    out = tempfile.mkdtemp(prefix="wandb-records-pb-")
    include = ["--proto_path=" + HERE]
    if os.path.exists("/usr/include/google/protobuf/timestamp.proto"):
        include.append("--proto_path=/usr/include")
    subprocess.run([protoc] + include + ["--python_out=" + out, os.path.join(HERE, "wandb_records.proto")],
                   check=True)
    sys.path.insert(0, out)
    try:
        return importlib.import_module("wandb_records_pb2")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def read_chunks(data):
    """The records of a .wandb file: header checked, chunks CRC-checked and reassembled."""
    if len(data) < 7:
        raise Invalid("%d bytes: shorter than the 7-byte header" % len(data))
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise Invalid("header is %r, magic 0x%04X, version %d; expected ':W&B', 0xBEE1, 0" % (ident, magic, version))
    records, pending, off = [], None, 7
    while off < len(data):
        left = BLOCK - off % BLOCK
        if left < 7:
            if data[off:off + left].strip(b"\0"):
                raise Invalid("block tail at %d is not zero padding" % off)
            off += left
            continue
        if len(data) - off < 7:
            raise Invalid("%d trailing bytes at %d: a truncated chunk header" % (len(data) - off, off))
        crc, length, ctype = struct.unpack("<IHB", data[off:off + 7])
        if ctype == 0 and length == 0 and crc == 0:
            raise Invalid("zero chunk header at %d" % off)
        if 7 + length > left:
            raise Invalid("chunk at %d of %d bytes crosses its block" % (off, length))
        body = data[off + 7:off + 7 + length]
        if len(body) != length:
            raise Invalid("chunk at %d is truncated" % off)
        want = zlib.crc32(body, zlib.crc32(bytes([ctype]))) & 0xFFFFFFFF
        if crc != want:
            raise Invalid("chunk at %d: CRC-32 0x%08x, computed 0x%08x over type + data" % (off, crc, want))
        if ctype == FULL:
            if pending is not None:
                raise Invalid("FULL chunk at %d inside a FIRST..LAST record" % off)
            records.append(body)
        elif ctype == FIRST:
            if pending is not None:
                raise Invalid("FIRST chunk at %d inside a FIRST..LAST record" % off)
            pending = body
        elif ctype in (MIDDLE, LAST):
            if pending is None:
                raise Invalid("%s chunk at %d without FIRST" % ("MIDDLE" if ctype == MIDDLE else "LAST", off))
            pending += body
            if ctype == LAST:
                records.append(pending)
                pending = None
        else:
            raise Invalid("chunk at %d has type %d" % (off, ctype))
        off += 7 + length
    if pending is not None:
        raise Invalid("the file ends inside a FIRST..LAST record")
    return records


def unknown_fields(msg, where):
    """Fields the schema does not know, anywhere in msg (TelemetryRecord excepted)."""
    out = []
    if msg.DESCRIPTOR.full_name == "wandb_internal.TelemetryRecord":
        return out
    for f in msg.UnknownFields():
        out.append("%s: field %d (wire type %d)" % (where, f.field_number, f.wire_type))
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        items = value if fd.label == fd.LABEL_REPEATED else [value]
        for i, v in enumerate(items):
            out += unknown_fields(v, "%s.%s%s" % (where, fd.name, "[%d]" % i if fd.label == fd.LABEL_REPEATED else ""))
    return out


def value(text, where):
    try:
        return json.loads(text)
    except ValueError as e:
        raise Invalid("%s: value_json %r is not JSON (%s)" % (where, text[:80], e))


def check_run(run_dir, pb):
    from google.protobuf import json_format

    files = glob.glob(os.path.join(run_dir, "*.wandb"))
    if len(files) != 1:
        raise Invalid("%s holds %d *.wandb files; wandb sync needs exactly one" % (run_dir, len(files)))
    with open(files[0], "rb") as f:
        raw = f.read()
    out, types = [], []
    for i, body in enumerate(read_chunks(raw)):
        rec = pb.Record()
        try:
            rec.ParseFromString(body)
        except Exception as e:
            raise Invalid("record %d does not parse as wandb_internal.Record: %s" % (i, e))
        kind = rec.WhichOneof("record_type")
        if kind is None:
            raise Invalid("record %d has no record type" % i)
        unknown = unknown_fields(rec, "record %d (%s)" % (i, kind))
        if unknown:
            raise Invalid("fields not in W&B's schema: " + "; ".join(unknown[:5]))
        types.append(kind)
        d = json_format.MessageToDict(rec, preserving_proto_field_name=True, including_default_value_fields=False)
        d["type"] = kind
        body_msg = getattr(rec, kind)
        where = "record %d (%s)" % (i, kind)
        if kind == "history":
            items = {}
            for it in body_msg.item:
                items[it.key] = value(it.value_json, where + " " + it.key)
            for k in ("_step", "_runtime", "_timestamp"):
                if k not in items:
                    raise Invalid("%s has no %s item; wandb sync sends history as written" % (where, k))
            if items["_step"] != body_msg.step.num:
                raise Invalid("%s: _step item %s, step.num %d" % (where, items["_step"], body_msg.step.num))
            d["values"] = items
        elif kind in ("summary", "config"):
            d["values"] = {it.key: value(it.value_json, where + " " + it.key) for it in body_msg.update}
        elif kind == "stats":
            d["values"] = {it.key: value(it.value_json, where + " " + it.key) for it in body_msg.item}
        elif kind == "run":
            if not body_msg.run_id:
                raise Invalid("%s has no run_id" % where)
            d["config_values"] = {it.key: value(it.value_json, where + " config " + it.key)
                                  for it in body_msg.config.update}
        elif kind == "files":
            for it in body_msg.files:
                p = it.path
                if os.path.isabs(p) or ".." in p.split("/") or not os.path.isfile(os.path.join(run_dir, "files", p)):
                    raise Invalid("%s names %r, not a file under %s/files" % (where, p, run_dir))
        elif kind == "artifact":
            for e in body_msg.manifest.contents:
                if e.local_path and not os.path.isfile(e.local_path):
                    raise Invalid("%s: %s has local_path %s, which does not exist" % (where, e.path, e.local_path))
        out.append(d)
    if not types or types[0] != "header":
        raise Invalid("the first record is %s, not header" % (types[0] if types else "missing"))
    if types[-1] != "footer":
        raise Invalid("the last record is %s, not footer" % types[-1])
    if types.count("run") != 1:
        raise Invalid("%d run records; wandb sync needs one" % types.count("run"))
    if types.index("run") > min((types.index(k) for k in ("history", "summary", "exit") if k in types), default=len(types)):
        raise Invalid("a history, summary or exit record comes before the run record")
    if "summary" not in types:
        raise Invalid("no summary record; wandb sync feeds the sender, which makes none")
    if types.count("exit") != 1 or "final" not in types or types.index("exit") > types.index("final"):
        raise Invalid("wandb sync needs one exit record before final (it marks the run finished)")
    return {"file": os.path.basename(files[0]), "records": out}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pb = load_schema()
    try:
        result = check_run(sys.argv[1], pb)
    except Invalid as e:
        print("wandb_records.py: %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
