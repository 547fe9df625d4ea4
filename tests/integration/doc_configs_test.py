#!/usr/bin/python3
"""Every run config the docs show passes `ember config`, so the docs stay true.

Checked (run by meson as the `doc_configs` test):
  - every samples/**/*.json, as is (samples/lambda/events/ holds Lambda events: each needs "command");
  - every ```json block in a README.md of the repository (the main one, plugins/*/, samples/*/,
    bench/). Such a block is recognised as:
      * a whole run config: a JSON object whose keys are all run-config keys (trainer, model,
        data, plugins, seed_everything, ckpt_path);
      * a run-config fragment: text that is JSON only once wrapped in {} (`"trainer": {...}`,
        `"model": {...}`), or an object of trainer keys (`"callbacks": [...]`): wrapped into a
        run config, under "trainer" when its keys are not run-config keys;
      * a plugin's own config (an object of other keys in plugins/<name>/README.md): put under
        that plugin where its interfaces say (model, trainer.logger, trainer.callbacks,
        plugins.storage).
    A ```json block that is none of these fails: JSON that is not a run config goes in a fence of
    another language (```text, ```jsonc).

usage: doc_configs_test.py EMBER_EXE SOURCE_ROOT PLUGIN_DIR...
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

RUN_KEYS = {"trainer", "model", "data", "plugins", "seed_everything", "ckpt_path", "storage_options"}
SKIP_DIRS = {".git", "build", ".deps", "node_modules", "subprojects"}
FENCE = re.compile(r"^```json[ \t]*\n(.*?)^```", re.S | re.M)


def plugin_slots(exe, plugin_dirs):
    """plugin name -> where its config goes, from `ember plugins` (its interfaces)."""
    args = [exe, "plugins"]
    for d in plugin_dirs:
        args += ["--plugin-dir", d]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    slots = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        interfaces = parts[4].split(",")
        for iface, slot in (("ember.model/1", "model"), ("ember.logger/1", "logger"),
                            ("ember.callbacks/1", "callbacks"), ("ember.storage/1", "storage")):
            if iface in interfaces:
                slots[parts[0]] = slot
                break
    return slots


def as_run_config(text, readme, slots):
    """The run config a README block shows, or raise ValueError saying why it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = json.loads("{" + text + "}")
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON, nor a fragment that is JSON wrapped in {{}}: {e}")
    if not isinstance(value, dict) or not value:
        raise ValueError("not a JSON object")
    keys = set(value)
    if keys <= RUN_KEYS:
        return value
    if keys & RUN_KEYS:
        raise ValueError(f"mixes run-config keys with others: {sorted(keys - RUN_KEYS)}")
    if len(readme.parts) == 3 and readme.parts[0] == "plugins":
        name = readme.parent.name
        slot = slots.get(name)
        looks_trainer = keys & {"callbacks", "logger", "max_epochs", "watch", "default_root_dir"}
        if slot and not looks_trainer:
            entry = {"plugin": name, "config": value}
            if slot == "model":
                return {"model": entry}
            if slot == "storage":
                return {"plugins": {"storage": [entry]}}
            return {"trainer": {slot: [entry]}}
    return {"trainer": value}


def ember_config(exe, plugin_dirs, path):
    args = [exe, "config", "--config", str(path)]
    for d in plugin_dirs:
        args += ["--plugin-dir", d]
    return subprocess.run(args, capture_output=True, text=True)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    exe, root, plugin_dirs = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
    slots = plugin_slots(exe, plugin_dirs)
    failures, checked = [], 0

    # samples/lambda/events/ holds Lambda events (each a JSON object with "command"), not configs.
    events = sorted((root / "samples" / "lambda" / "events").glob("*.json"))
    for p in events:
        if "command" not in json.loads(p.read_text(encoding="utf-8")):
            failures.append(f"{p.relative_to(root)}: a Lambda event without \"command\"")
    samples = sorted(p for p in (root / "samples").rglob("*.json") if p not in events)
    readmes = sorted(p for p in root.rglob("README.md")
                     if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))
    with tempfile.TemporaryDirectory(prefix="ember-doc-configs.") as tmp:
        cases = [(str(p.relative_to(root)), p, False) for p in samples]
        for readme in readmes:
            text = readme.read_text(encoding="utf-8")
            for m in FENCE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                where = f"{readme.relative_to(root)}:{line}"
                try:
                    cfg = as_run_config(m.group(1), readme.relative_to(root), slots)
                except ValueError as e:
                    failures.append(f"{where}: ```json block is not a run config: {e}")
                    continue
                path = pathlib.Path(tmp) / f"block{len(cases)}.json"
                path.write_text(json.dumps(cfg), encoding="utf-8")
                cases.append((where, path, True))
        for where, path, wrapped in cases:
            r = ember_config(exe, plugin_dirs, path)
            checked += 1
            if r.returncode != 0:
                shown = path.read_text(encoding="utf-8") if wrapped else ""
                failures.append(f"{where}: `ember config` exit {r.returncode}:\n{r.stderr.strip()}"
                                + (f"\n  checked as: {shown}" if shown else ""))
            else:
                print(f"ok   {where}")

    n_samples = len(samples)
    print(f"{checked} config(s) checked: {n_samples} in samples/, {checked - n_samples} from README blocks")
    if n_samples < 5 or checked - n_samples < 8:
        failures.append(f"too few configs found ({n_samples} samples, {checked - n_samples} README blocks): "
                        "is SOURCE_ROOT right?")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
