#!/usr/bin/env bash
# Start-up cost, two figures, each against a hand-written libtorch program doing the same work:
#
# 1. `ember plugins --plugin-dir DIR` (load libtorch, scan, open and check every plugin) against
#    a bare main() linked with libtorch (BARE_TORCH_MAIN). It builds no trainer: it is the floor
#    of every `ember` command.
# 2. Time to the first training step: `ember fit --config FIT_CONFIG --set trainer.max_steps=1`
#    against BARE_TRAIN_STEP (bench/bare_train_step.cpp: reads the same idx files, one Adam step
#    of the same MLP on a batch of 64). Measured to the END OF THE PROCESS, which after a single
#    step is the first step plus exit. Two Ember variants:
#      "bare config": --set trainer.logger=false --set 'trainer.callbacks=[]' and no sanity
#        validation: the same work as the bare program (config, plugin scan, data, model plugin,
#        one step), so the difference is what Ember adds before the first step;
#      "with plugins": FIT_CONFIG's logger (csv_logger) and its callbacks model_checkpoint and
#        progress_bar, still without sanity validation: adds their start-up and what they do at
#        the end of a one-step epoch (a checkpoint save, the CSV file). model_checkpoint runs
#        without fit.json's monitor: a one-step run never validates, and a monitor that was
#        never logged fails the run (plugins/model_checkpoint/README.md).
#    FIT_CONFIG is expected to be samples/fashion_mnist/fit.json (its model plugin must be in
#    PLUGIN_DIR; default_root_dir is redirected to a temporary directory).
#
#   bench/startup.sh EMBER_EXE BARE_TORCH_MAIN PLUGIN_DIR [RUNS] [BARE_TRAIN_STEP FIT_CONFIG]
#
# Without BARE_TRAIN_STEP and FIT_CONFIG only figure 1 is measured (and that is printed).
# Timing: each figure's commands run in turn, RUNS rounds (default 20) after 2 untimed warm-up
# rounds, the order rotated every round so that no command always runs first; wall time from
# bash's $EPOCHREALTIME (no fork around the command). Not hyperfine: hyperfine 1.15 runs all
# runs of one command before the next command's, so a load change during the run lands on one
# side only. Prints each command's median, min and max, and the ratios of the medians.
set -euo pipefail

if [[ $# -lt 3 || $# -eq 5 || $# -gt 6 ]]; then
  echo "usage: $0 EMBER_EXE BARE_TORCH_MAIN PLUGIN_DIR [RUNS] [BARE_TRAIN_STEP FIT_CONFIG]" >&2
  exit 2
fi
ember="$1" bare="$2" plugin_dir="$3" runs="${4:-20}" bare_step="${5:-}" fit_config="${6:-}"
py=/usr/bin/python3
[[ -x $py ]] || py=python3

# The commands must work before they are worth timing; count what `ember plugins` loads.
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

# The commands, one function each; output goes to $tmp/NAME.out (kept for the check below).
cmd_bare_main() { "$bare"; }
cmd_ember_plugins() { "$ember" plugins --plugin-dir "$plugin_dir"; }
fit_args=()
if [[ -n $fit_config ]]; then
  fit_args=(fit --config "$fit_config" --plugin-dir "$plugin_dir" --set trainer.max_steps=1
            --set trainer.num_sanity_val_steps=0 --set "trainer.default_root_dir=$tmp/run")
  images="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["train"][0])' "$fit_config")"
  labels="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["train"][1])' "$fit_config")"
fi
cmd_bare_step() { "$bare_step" "$images" "$labels"; }
# Both keep ember's exit status (the run directory is removed either way).
cmd_ember_fit_bare() {
  local rc=0
  "$ember" "${fit_args[@]}" --set trainer.logger=false --set 'trainer.callbacks=[]' || rc=$?
  rm -rf "$tmp/run"
  return "$rc"
}
cmd_ember_fit_plugins() {
  local rc=0
  "$ember" "${fit_args[@]}" --set 'trainer.callbacks=[{"plugin":"model_checkpoint"},{"plugin":"progress_bar"}]' || rc=$?
  rm -rf "$tmp/run"
  return "$rc"
}

# time_rounds NAME... : RUNS rounds of every named command (cmd_NAME), order rotated by one each
# round, after 2 warm-up rounds; appends each run's milliseconds to $tmp/NAME.ms. A failing
# command stops the benchmark with its output.
time_rounds() {
  local names=("$@") k=$# r i name t0 t1
  for ((r = -2; r < runs; ++r)); do
    for ((i = 0; i < k; ++i)); do
      name="${names[((i + (r < 0 ? 0 : r)) % k)]}"
      t0=$EPOCHREALTIME
      if ! "cmd_$name" >"$tmp/$name.out" 2>&1 </dev/null; then
        echo "startup: $name failed:" >&2
        tail -20 "$tmp/$name.out" >&2
        exit 1
      fi
      t1=$EPOCHREALTIME
      if ((r >= 0)); then echo "$t0 $t1" >>"$tmp/$name.ms"; fi
    done
  done
}

# stats NAME -> "median min max" in milliseconds
stats() {
  "$py" -c '
import statistics, sys
v = [(float(b) - float(a)) * 1e3 for a, b in (l.split() for l in open(sys.argv[1]))]
print("%.1f %.1f %.1f" % (statistics.median(v), min(v), max(v)))' "$tmp/$1.ms"
}
ratio() { "$py" -c 'import sys; print("%.3f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }

report() {  # report NAME LABEL
  local m lo hi
  read -r m lo hi <<<"$(stats "$1")"
  printf 'startup: %-58s median %8.1f ms (min %.1f, max %.1f; %d runs)\n' "$2" "$m" "$lo" "$hi" "$runs"
  eval "median_$1=$m"
}

time_rounds bare_main ember_plugins
report bare_main "bare libtorch main():"
report ember_plugins "ember plugins ($n_plugins plugins):"
echo "startup: ratio ember plugins / bare main: $(ratio "$median_ember_plugins" "$median_bare_main")"

if [[ -z $fit_config ]]; then
  echo "startup: time to first step: not measured (give BARE_TRAIN_STEP and FIT_CONFIG)"
  exit 0
fi
time_rounds bare_step ember_fit_bare ember_fit_plugins
# Each must really have trained one step (the last run's output is kept): a run that trained
# nothing would look fast.
grep -q 'one step, loss' "$tmp/bare_step.out" || { echo "startup: bare_train_step printed no loss" >&2; exit 1; }
for name in ember_fit_bare ember_fit_plugins; do
  grep -q 'fit done: epoch 0, global_step 1$' "$tmp/$name.out" ||
    { echo "startup: $name did not report 'fit done: epoch 0, global_step 1':" >&2; tail -5 "$tmp/$name.out" >&2; exit 1; }
done
report bare_step "to first step, bare libtorch (1 step, end of process):"
report ember_fit_bare "to first step, ember fit, bare config (end of process):"
report ember_fit_plugins "to first step, ember fit, with plugins (end of process):"
echo "startup: ratio ember fit bare config / bare: $(ratio "$median_ember_fit_bare" "$median_bare_step")"
echo "startup: ratio ember fit with plugins / bare: $(ratio "$median_ember_fit_plugins" "$median_bare_step")"
