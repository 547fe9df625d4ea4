#!/usr/bin/python3
"""An independent reader of TensorBoard event files, for the tensorboard logger's tests.

    read_events.py PROTO_OUT_DIR RUN_DIR

Reads every events.out.tfevents.* file of RUN_DIR in name order (as TensorBoard does), checks
each TFRecord's framing and both masked CRC-32Cs (computed here, not by the plugin's code),
decodes the Event protos with python3-protobuf from the tests' own .proto files (compiled by
protoc into PROTO_OUT_DIR by the caller), decodes PNG images by hand (zlib + PNG filters) and
prints what it found as JSON. Any framing, CRC or decoding error exits 1 naming the file and
the byte offset.
"""
import json
import os
import struct
import sys
import zlib

sys.path.insert(0, sys.argv[1])
import tb_event_pb2  # noqa: E402
import tb_hparams_pb2  # noqa: E402


def _crc32c_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            fail(f"{path}: offset {pos}: truncated record header")
        head = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", head)
        (head_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if head_crc != masked(head):
            fail(f"{path}: offset {pos}: length CRC mismatch")
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            fail(f"{path}: offset {pos}: truncated record of {length} bytes")
        body = data[start:end]
        (body_crc,) = struct.unpack("<I", data[end:end + 4])
        if body_crc != masked(body):
            fail(f"{path}: offset {pos}: data CRC mismatch")
        yield pos, body
        pos = end + 4


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(png):
    """8-bit, non-interlaced PNG -> (width, height, channels, flat pixel list)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, idat, width = 8, b"", None
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        body = png[pos + 8:pos + 8 + n]
        if struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])[0] != zlib.crc32(kind + body):
            raise ValueError(f"chunk {kind!r}: CRC mismatch")
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0:
                raise ValueError(f"bit depth {depth}, interlace {interlace}: not read here")
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * channels
    out, prev, p = [], [0] * stride, 0
    for _ in range(height):
        filt, line = raw[p], list(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][filt]
            line[i] = (line[i] + pred) & 0xFF
        out.extend(line)
        prev = line
    return width, height, channels, out


def main():
    run_dir = sys.argv[2]
    names = sorted(n for n in os.listdir(run_dir) if "tfevents" in n)
    result = {"files": [], "scalars": {}, "scalar_steps": [], "images": [], "histograms": [], "texts": [],
              "hparams": []}
    for name in names:
        path = os.path.join(run_dir, name)
        count, first = 0, None
        for offset, body in records(path):
            ev = tb_event_pb2.Event()
            try:
                ev.ParseFromString(body)
            except Exception as e:  # noqa: BLE001
                fail(f"{path}: offset {offset}: not an Event: {e}")
            if count == 0:
                first = ev.file_version if ev.WhichOneof("what") == "file_version" else None
            count += 1
            if ev.WhichOneof("what") != "summary":
                continue
            for v in ev.summary.value:
                kind = v.WhichOneof("value")
                plugin = v.metadata.plugin_data.plugin_name
                if kind == "simple_value":
                    result["scalars"].setdefault(v.tag, []).append([ev.step, v.simple_value])
                    result["scalar_steps"].append(ev.step)
                elif kind == "image":
                    w, h, c, px = decode_png(v.image.encoded_image_string)
                    result["images"].append({"tag": v.tag, "step": ev.step, "width": v.image.width,
                                             "height": v.image.height, "colorspace": v.image.colorspace,
                                             "png_width": w, "png_height": h, "channels": c, "pixels": px,
                                             "caption": v.metadata.summary_description})
                elif kind == "histo":
                    hp = v.histo
                    result["histograms"].append({"tag": v.tag, "step": ev.step, "min": hp.min, "max": hp.max,
                                                 "num": hp.num, "sum": hp.sum, "sum_squares": hp.sum_squares,
                                                 "bucket_limit": list(hp.bucket_limit),
                                                 "bucket": list(hp.bucket)})
                elif kind == "tensor" and plugin == "text":
                    t = v.tensor
                    result["texts"].append({"tag": v.tag, "step": ev.step, "dtype": t.dtype,
                                            "shape": [d.size for d in t.tensor_shape.dim],
                                            "text": [s.decode("utf-8") for s in t.string_val]})
                elif plugin == "hparams":
                    data = tb_hparams_pb2.HParamsPluginData()
                    data.ParseFromString(v.metadata.plugin_data.content)
                    which = data.WhichOneof("data")
                    entry = {"tag": v.tag, "kind": which, "version": data.version}
                    if which == "experiment":
                        entry["hparams"] = {i.name: tb_hparams_pb2.DataType.Name(i.type)
                                            for i in data.experiment.hparam_infos}
                        entry["metrics"] = [m.name.tag for m in data.experiment.metric_infos]
                    elif which == "session_start_info":
                        hp = {}
                        for k, val in data.session_start_info.hparams.items():
                            hp[k] = getattr(val, val.WhichOneof("kind"))
                        entry["hparams"] = hp
                    elif which == "session_end_info":
                        entry["status"] = tb_hparams_pb2.Status.Name(data.session_end_info.status)
                    result["hparams"].append(entry)
                else:
                    fail(f"{path}: offset {offset}: tag {v.tag}: unexpected value kind {kind} (plugin '{plugin}')")
        result["files"].append({"name": name, "records": count, "file_version": first})
    json.dump(result, sys.stdout)


main()
