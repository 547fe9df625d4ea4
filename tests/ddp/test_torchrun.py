#!/usr/bin/python3
"""`torchrun --no_python --nproc_per_node 2 ember fit ...` (torch.distributed.run.main from Debian's
python3-torch, with the Python 3.11 fix of torchrun_patch.py): every rank joins the agent's store
(TORCHELASTIC_USE_AGENT_STORE, /worker/attempt_0), trains, and rank 0 reports identical
parameters; only rank 0 writes metrics.csv. 127.0.0.1 only.
Usage: test_torchrun.py EMBER_EXE PLUGIN_DIR"""
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import torch

HERE = pathlib.Path(__file__).resolve().parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    exe, plugins = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="ember-torchrun-") as tmp:
        tmp = pathlib.Path(tmp)
        torch.manual_seed(3)
        torch.save({"x": torch.randn(256, 784), "y": torch.randint(0, 10, (256,))}, tmp / "data.pt")
        cfg = {
            "trainer": {"max_epochs": 1, "limit_train_batches": 4, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                        "default_root_dir": str(tmp / "run"), "enable_progress_bar": False, "strategy": "ddp",
                        "devices": 2, "ddp_timeout_s": 60, "logger": [{"plugin": "csv_logger"}]},
            "model": {"plugin": "fashion_mlp", "config": {"hidden1": 32, "hidden2": 32}},
            "data": {"format": "tensors", "train": [str(tmp / "data.pt")], "batch_size": 16},
        }
        (tmp / "run.json").write_text(json.dumps(cfg))
        argv = ["--nnodes=1", "--nproc_per_node=2", "--no_python", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}", "--max_restarts=0",
                exe, "fit", "--config", str(tmp / "run.json"), "--plugin-dir", plugins]
        code = ("import sys; sys.path.insert(0, %r); import torchrun_patch; "
                "from torch.distributed.run import main; main(%r)" % (str(HERE), argv))
        env = dict(os.environ, GLOO_SOCKET_IFNAME="lo")
        for k in ("RANK", "WORLD_SIZE", "SLURM_PROCID"):
            env.pop(k, None)
        r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True, timeout=600)
        problems = []
        if r.returncode != 0:
            problems.append(f"torchrun exited {r.returncode}")
        if "ddp: 2 ranks hold identical parameters" not in r.stdout:
            problems.append("rank 0 did not report identical parameters")
        csvs = list((tmp / "run").rglob("metrics.csv"))
        if len(csvs) != 1:
            problems.append(f"expected one metrics.csv (rank 0's), found {len(csvs)}")
        if problems:
            print("FAIL torchrun_two_ranks:\n  " + "\n  ".join(problems))
            print("--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr[-4000:])
            print("0 passed, 1 failed")
            return 1
        print("ok torchrun_two_ranks")
        print("1 passed, 0 failed")
        return 0


if __name__ == "__main__":
    sys.exit(main())
