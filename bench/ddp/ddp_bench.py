#!/usr/bin/python3
"""Strategy "ddp" on this machine, one thread per rank, Fashion-MNIST's sample MLP
(784-128-256-10, Adam, batch 64 per rank):
  - Ember samples/s for 1 rank (no ddp) and 2 ranks (Ember's launcher), and their ratio;
  - per-step time of Ember's 2 ranks vs Python DDP (torchrun + python3-torch
    DistributedDataParallel on the same MLP and batch) in the same run.
Ember's per-step time is the difference of two runs (LONG and SHORT steps) divided by the step
difference, so start-up, data loading and the process group cancel; Python's is timed in its
loop after a warm-up. Rounds alternate the order. Usage:
  ddp_bench.py EMBER_EXE PLUGIN_DIR [ROUNDS] [SHORT] [LONG] [BATCH]
BATCH is per rank (default 64); a larger one shows where compute outweighs the all-reduce."""
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parent.parent / "tests" / "ddp"
DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 64

PY_DDP = r'''
import os, sys, time, torch, torch.nn as nn, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))
ddp = DDP(model)
opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
steps, warm, B = int(sys.argv[1]), 20, int(sys.argv[2])
x = torch.randn(60000 // world, 784); y = torch.randint(0, 10, (60000 // world,))
def step(i):
    s = (i * B) % (x.shape[0] - B)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(ddp(x[s:s+B]), y[s:s+B])
    loss.backward(); opt.step()
for i in range(warm): step(i)
dist.barrier(); t0 = time.perf_counter()
for i in range(steps): step(i)
dist.barrier(); t = time.perf_counter() - t0
if rank == 0: print("PY_STEP_MS %.6f" % (1000 * t / steps), flush=True)
dist.destroy_process_group()
'''

# The floor under both: one Gloo all_reduce of the MLP's 135,946 gradients between two
# processes, nothing else (torch.distributed alone).
PY_ALLREDUCE = r'''
import sys, time, torch, torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
t = torch.randn(135946)
for i in range(20): dist.all_reduce(t)
dist.barrier(); t0 = time.perf_counter()
n = int(sys.argv[1])
for i in range(n): dist.all_reduce(t)
dt = time.perf_counter() - t0
if dist.get_rank() == 0: print("PY_STEP_MS %.6f" % (1000 * dt / n), flush=True)
dist.destroy_process_group()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ember_time(exe, plugins, cfg_path, steps, devices):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(k, None)
    args = [exe, "fit", "--config", cfg_path, "--plugin-dir", plugins, "--set", f"trainer.max_steps={steps}",
            "--set", f"trainer.devices={devices}"]
    t0 = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"ember failed ({' '.join(args)}):\n{r.stderr[-3000:]}")
    return t


def python_ddp_step_ms(tmp, steps, source=None):
    script = tmp / "py_ddp.py"
    script.write_text(source or PY_DDP)
    argv = ["--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
            str(script), str(steps), str(BATCH)]
    code = ("import sys; sys.path.insert(0, %r); import torchrun_patch; "
            "from torch.distributed.run import main; main(%r)" % (str(TESTS), argv))
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    for k in ("RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(k, None)
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("PY_STEP_MS "):
            return float(line.split()[1])
    sys.exit(f"python DDP failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def main():
    exe, plugins = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    short = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    long_ = int(sys.argv[5]) if len(sys.argv) > 5 else 350
    global BATCH
    BATCH = int(sys.argv[6]) if len(sys.argv) > 6 else BATCH
    with tempfile.TemporaryDirectory(prefix="ember-ddp-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        cfg = {"trainer": {"max_epochs": 100, "num_sanity_val_steps": 0, "logger": False, "enable_progress_bar": False,
                           "enable_checkpointing": False, "log_every_n_steps": 50, "default_root_dir": str(tmp / "run"),
                           "limit_val_batches": 0},
               "model": {"plugin": "fashion_mlp", "config": {"lr": 0.001}},
               "data": {"format": "idx", "train": [f"{DATA}/train-images-idx3-ubyte.gz", f"{DATA}/train-labels-idx1-ubyte.gz"],
                        "batch_size": BATCH}}
        cfg_path = tmp / "bench.json"
        cfg_path.write_text(json.dumps(cfg))
        one, two, py, floor = [], [], [], []
        for r in range(rounds):
            order = ["one", "two", "py"] if r % 2 == 0 else ["py", "two", "one"]
            for what in order:
                if what == "py":
                    py.append(python_ddp_step_ms(tmp, long_ - short))
                    floor.append(python_ddp_step_ms(tmp, long_ - short, PY_ALLREDUCE))
                    continue
                devices = 1 if what == "one" else 2
                t_short = ember_time(exe, plugins, str(cfg_path), short, devices)
                t_long = ember_time(exe, plugins, str(cfg_path), long_, devices)
                (one if devices == 1 else two).append(1000 * (t_long - t_short) / (long_ - short))
            print(f"round {r}: ember 1 rank {one[-1]:.3f} ms/step, ember 2 ranks {two[-1]:.3f} ms/step, "
                  f"python DDP 2 ranks {py[-1]:.3f} ms/step", flush=True)
        m1, m2, mp = statistics.median(one), statistics.median(two), statistics.median(py)
        print(f"ember 1 rank:   {m1:.3f} ms/step, {1000 * BATCH / m1:.0f} samples/s")
        print(f"ember 2 ranks:  {m2:.3f} ms/step, {1000 * 2 * BATCH / m2:.0f} samples/s")
        print(f"2-rank / 1-rank throughput: {(2 * m1) / m2:.3f}x (goal >= 1.7)")
        print(f"python DDP 2 ranks: {mp:.3f} ms/step")
        print(f"gloo all_reduce of the 135,946 gradients alone (python, 2 ranks): {statistics.median(floor):.3f} ms")
        print(f"ember / python DDP per-step time: {m2 / mp:.3f} (goal <= 0.7)")
        print(f"spread: ember 2 ranks {min(two):.3f}-{max(two):.3f}, python {min(py):.3f}-{max(py):.3f} ms/step "
              f"over {rounds} rounds, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
