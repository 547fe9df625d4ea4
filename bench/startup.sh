#!/usr/bin/env bash
# Start-up cost: `ember plugins --plugin-dir DIR` (load libtorch, scan, open and check every
# plugin) against a bare main() linked with libtorch. The difference is what Ember adds before
# any work starts; it matters for cold starts (AWS Lambda) and CI.
#
#   bench/startup.sh EMBER_EXE BARE_TORCH_MAIN PLUGIN_DIR [RUNS]
#
# Uses hyperfine when installed (warm-up 3, RUNS runs, no shell), else a loop of RUNS timed runs
# with `date +%s%N` after 3 warm-ups. Prints both medians and their ratio.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 EMBER_EXE BARE_TORCH_MAIN PLUGIN_DIR [RUNS]" >&2
  exit 2
fi
ember="$1" bare="$2" plugin_dir="$3" runs="${4:-20}"
py=/usr/bin/python3
[[ -x $py ]] || py=python3

# The command must work before it is worth timing; count what it loads.
if ! listing="$("$ember" plugins --plugin-dir "$plugin_dir" --json 2>/dev/null)"; then
  echo "startup: '$ember plugins --plugin-dir $plugin_dir' failed" >&2
  exit 1
fi
counts="$("$py" -c 'import json,sys; d=json.load(sys.stdin); print(len(d["plugins"]), len(d["refused"]))' <<<"$listing")"
read -r n_plugins n_refused <<<"$counts"
echo "startup: ember plugins --plugin-dir $plugin_dir: $n_plugins plugins, $n_refused refused"

links_torch=no
if command -v readelf >/dev/null && readelf -d "$ember" | grep -q 'NEEDED.*libtorch_cpu'; then links_torch=yes; fi
echo "startup: ember links libtorch_cpu: $links_torch"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ember-startup.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# median_ms NAME CMD... -> prints the median wall time in milliseconds.
if command -v hyperfine >/dev/null; then
  tool=hyperfine
  median_ms() {
    local name="$1"; shift
    local cmd
    printf -v cmd '%q ' "$@"
    hyperfine --shell=none --warmup 3 --runs "$runs" --style none \
      --export-json "$tmp/$name.json" "$cmd" >/dev/null 2>&1 </dev/null
    "$py" -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1e3))' \
      "$tmp/$name.json"
  }
else
  tool="date +%s%N"
  median_ms() {
    local name="$1"; shift
    local i t0 t1
    for i in 1 2 3; do "$@" >/dev/null 2>&1 </dev/null; done
    : >"$tmp/$name.txt"
    for ((i = 0; i < runs; i++)); do
      t0=$(date +%s%N)
      "$@" >/dev/null 2>&1 </dev/null
      t1=$(date +%s%N)
      echo $((t1 - t0)) >>"$tmp/$name.txt"
    done
    "$py" -c 'import statistics,sys; print("%.1f" % (statistics.median(int(l) for l in open(sys.argv[1])) / 1e6))' \
      "$tmp/$name.txt"
  }
fi

bare_ms="$(median_ms bare "$bare")"
ember_ms="$(median_ms ember "$ember" plugins --plugin-dir "$plugin_dir")"
ratio="$("$py" -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$ember_ms" "$bare_ms")"

echo "startup: bare libtorch main: $bare_ms ms (median of $runs, $tool)"
echo "startup: ember plugins ($n_plugins plugins): $ember_ms ms (median of $runs, $tool)"
echo "startup: ratio ember/bare: $ratio"
