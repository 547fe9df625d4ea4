"""csv_logger's wide metrics.csv read by Python the way a notebook does, against the long file
of the same run: usage csv_wide_check.py WIDE_CSV LONG_CSV.

The csv module: the header is "epoch", "step" and every metric name, sorted (Lightning's
order); each run of long rows at one (step, epoch) is one wide row (a name repeated at a step
starts a new one); every cell holds the long file's value text, cells of names not logged then
are empty. pandas (python3-pandas), when installed: pd.read_csv gives the same columns, and each
metric's non-empty values, with their steps, equal the long file's. Under CI a missing pandas
fails. Exit status 0 when everything matches; prints "csv module: ok" / "pandas: ok".
"""
import csv
import math
import os
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    wide_path, long_path = sys.argv[1], sys.argv[2]
    with open(wide_path, newline="") as f:
        records = list(csv.reader(f))
    header, rows = records[0], records[1:]
    with open(long_path, newline="") as f:
        long_rows = list(csv.DictReader(f))
    if not long_rows:
        fail("the long file has no rows")

    names = sorted({r["name"] for r in long_rows} | {"epoch", "step"})
    if header != names:
        fail("header %r, expected %r" % (header, names))

    expected = []  # [((step, epoch), {name: value text})]
    for r in long_rows:
        key = (r["step"], r["epoch"])
        if not expected or expected[-1][0] != key or r["name"] in expected[-1][1]:
            expected.append((key, {}))
        expected[-1][1][r["name"]] = r["value"]
    if len(rows) != len(expected):
        fail("%d wide rows, expected %d (one per logged step)" % (len(rows), len(expected)))
    for i, (got, (key, values)) in enumerate(zip(rows, expected)):
        cells = dict(zip(header, got))
        if (cells["step"], cells["epoch"]) != key:
            fail("row %d: step,epoch %s,%s, expected %s,%s" % (i, cells["step"], cells["epoch"], *key))
        for n in names:
            if n in ("step", "epoch"):
                continue
            if cells[n] != values.get(n, ""):
                fail("row %d column %s: %r, expected %r" % (i, n, cells[n], values.get(n, "")))
    print("csv module: ok, %d rows, columns %s" % (len(rows), ",".join(header)))

    try:
        import pandas as pd
    except ImportError:
        ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
        if ci:
            fail("pandas is not installed (Debian's python3-pandas) and CI is set")
        print("pandas: not installed, skipped")
        return
    # round_trip: pandas' default fast parser may be one ulp off the shortest decimal written.
    df = pd.read_csv(wide_path, float_precision="round_trip")
    if list(df.columns) != names:
        fail("pandas columns %r" % list(df.columns))
    for n in names:
        if n in ("step", "epoch"):
            continue
        col = df[["step", n]].dropna()
        want = [(int(r["step"]), float(r["value"])) for r in long_rows if r["name"] == n]
        got = [(int(s), float(v)) for s, v in zip(col["step"], col[n])]
        same = len(got) == len(want) and all(
            a[0] == b[0] and (a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1]))) for a, b in zip(got, want))
        if not same:
            fail("pandas: %s is %r, expected %r" % (n, got[:5], want[:5]))
    print("pandas: ok, %d rows" % len(df))


main()
