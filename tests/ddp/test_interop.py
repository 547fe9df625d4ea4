#!/usr/bin/python3
"""A Python rank (torch.distributed, Debian's python3-torch) and an Ember rank in one Gloo group:
all_reduce, broadcast and barrier agree. Run twice: Python as rank 0 (it hosts the TCPStore) and
Ember as rank 0. 127.0.0.1 only. Usage: test_interop.py INTEROP_RANK_EXE"""
import os
import socket
import subprocess
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_rank(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    t = torch.tensor([rank + 1.0, 10.0 * (rank + 1)], dtype=torch.float64)
    dist.all_reduce(t)
    x = torch.tensor([1234 + rank if rank == world - 1 else -1], dtype=torch.int64).view(torch.uint8).clone()
    dist.broadcast(x, src=world - 1)
    dist.barrier()
    dist.destroy_process_group()
    return t.tolist(), int(x.view(torch.int64)[0])


def run(exe, python_is_rank):
    world, port = 2, free_port()
    ember_rank = 1 - python_is_rank
    env = dict(os.environ, RANK=str(ember_rank), WORLD_SIZE=str(world), LOCAL_RANK=str(ember_rank),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    env.pop("SLURM_PROCID", None)
    child = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            reduced, bcast = python_rank(python_is_rank, world, port)
        except RuntimeError as e:  # e.g. Gloo's "Socket Timeout": report it with the Ember rank's side
            child.kill()
            out, err = child.communicate()
            return [f"python rank {python_is_rank} failed: {e}; ember rank stdout={out!r} stderr={err!r}"]
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    expect_bcast = 1234 + world - 1
    problems = []
    if child.returncode != 0:
        problems.append(f"ember rank exited {child.returncode}: {err}")
    if reduced != [3.0, 30.0]:
        problems.append(f"python all_reduce gave {reduced}")
    if bcast != expect_bcast:
        problems.append(f"python broadcast gave {bcast}")
    for line in (f"all_reduce 3 30", f"broadcast {expect_bcast}", "barrier ok"):
        if line not in out.splitlines():
            problems.append(f"ember rank did not print '{line}': stdout={out!r} stderr={err!r}")
    return problems


def main():
    exe = sys.argv[1]
    failed = 0
    for python_is_rank in (0, 1):
        problems = run(exe, python_is_rank)
        name = f"python_rank_{python_is_rank}_with_ember_rank_{1 - python_is_rank}"
        if problems:
            failed += 1
            print(f"FAIL {name}:\n  " + "\n  ".join(problems))
        else:
            print(f"ok {name}")
    print(f"{2 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
