#!/usr/bin/python3
"""Cold start of the Lambda package, as Lambda starts it, against a bare libtorch program.

    coldstart.py --build BUILD --source SRC --bare BARE_TORCH_MAIN --server RUNTIME_API_SERVER
                 [--event EVENT_JSON] [--handler NAME] [--config FILE] [--ckpt CKPT] [--rounds N]
                 [--zip ZIP]

Makes the package (scripts/package-lambda on BUILD with samples/lambda/fashion_mnist.json, and
the weights of a short fit with this build as model.ckpt; or takes --zip), unzips it into ROOT/var/task
and runs everything in a chroot of ROOT as tests/lambda_package does (unshare -m as root, ROOT
read-only, a fresh writable /tmp per start), plus /proc and /sys as Lambda has them (libtorch's
cpuinfo reads them). Each round, in rotated order (2 warm-up rounds not counted):

  ember      the packaged bootstrap -> `ember lambda` against the local Runtime API server
             (tests/lambda/runtime_api_server.py) serving one EVENT: time from the exec of the
             chroot command to the first GET /invocation/next, and to the POST of the event's
             response (a cold start that answers its first predict); peak RSS (wait4 ru_maxrss)
             of the runtime process after that reply.
  bare       BARE_TORCH_MAIN (bench/bare_torch_main.cpp: links libtorch, returns) copied into the
             package's bin/ and started the same way (same chroot, the packaged loader and
             libraries): exec to exit. The fair floor: what loading libtorch costs there.
  bare_host  BARE_TORCH_MAIN on this machine with the system's libraries (no chroot, the
             unpruned libtorch_cpu and its 287 libraries): for reference.

Clock: time.perf_counter_ns (CLOCK_MONOTONIC), the clock the server stamps its log with.
Prints the package sizes against Lambda's limits, each figure's median/min/max, and the ratios
of the medians. Figures only; nothing is asserted beyond each run having worked.
"""
import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1024 * 1024
LIMIT_UNZIPPED = 250 * MiB  # Lambda: function + layers, unzipped (262,144,000 bytes)
LIMIT_ZIP = 50 * MiB        # Lambda: a zip uploaded directly

# Mounts as in tests/lambda_package/lambda_chroot.hpp, plus /proc and /sys.
CHROOT_SCRIPT = r"""set -e
root=$1 tmp=$2; shift 2
mount --bind "$root" "$root"
mount --bind "$tmp" "$root/tmp"
for d in null zero random urandom; do mount --bind /dev/$d "$root/dev/$d"; done
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount -o remount,bind,ro "$root"
exec "$@"
"""


def say(*a):
    print("lambda_coldstart:", *a, flush=True)


def chroot_argv(root, tmp, env, argv):
    return (["/usr/bin/unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", CHROOT_SCRIPT, "sh",
             root, tmp, "/usr/bin/env", "-i", "LAMBDA_TASK_ROOT=/var/task"] + env + ["/usr/sbin/chroot", root] + argv)


def spawn(argv, out):
    """fork+exec with stdout/stderr to the file out; returns (pid, t0_ns)."""
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                                       (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                                       (os.POSIX_SPAWN_DUP2, 1, 2)])
    return pid, t0


def wait(pid):
    """(exit status, ru_maxrss in KiB, end time)."""
    _, status, ru = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss, time.perf_counter_ns()


def tail(path, n=30):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


class Bench:
    def __init__(self, a, work):
        self.a, self.work = a, work
        self.root = os.path.join(work, "root")
        self.task = os.path.join(self.root, "var", "task")
        # The server's own traceback when the killed runtime drops its pending /next: not a figure.
        self.server_err = open(os.path.join(work, "server.stderr"), "w")
        self.samples = {"ember_next": [], "ember_reply": [], "ember_rss": [], "bare": [], "bare_rss": [],
                        "bare_host": [], "bare_host_rss": []}

    def prepare(self):
        a = self.a
        zip_path = a.zip
        if not zip_path:
            ckpt = a.ckpt
            if not ckpt:  # the predict weights the sample names (model.ckpt): a short fit with this build
                train = os.path.join(self.work, "train")
                r = subprocess.run([os.path.join(a.build, "host", "ember"), "fit", "--config",
                                    os.path.join(a.source, "samples", "fashion_mnist", "fit.json"),
                                    "--plugin-dir", os.path.join(a.build, "plugins"),
                                    "--set", "trainer.default_root_dir=" + train, "--set", "trainer.max_epochs=1",
                                    "--set", "trainer.limit_train_batches=20", "--set", "trainer.limit_val_batches=2",
                                    "--set", "trainer.num_sanity_val_steps=0", "--set", "trainer.logger=false",
                                    "--set", 'trainer.callbacks=[{"plugin":"model_checkpoint"}]'],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit("lambda_coldstart: training the sample's weights failed:\n" + r.stdout + r.stderr)
                ckpt = os.path.join(train, "checkpoints", "last.ckpt")
            cmd = ["/usr/bin/bash", os.path.join(a.source, "scripts", "package-lambda"), "--build", a.build,
                   "--config", a.config or os.path.join(a.source, "samples", "lambda", "fashion_mnist.json"),
                   "--file", ckpt + ":model.ckpt", "--out", os.path.join(self.work, "out")]
            r = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(r.stderr)
            if r.returncode != 0:
                sys.exit("lambda_coldstart: package-lambda failed:\n" + r.stdout + r.stderr)
            zip_path = r.stdout.strip().splitlines()[-1]
        os.makedirs(self.task)
        subprocess.run(["unzip", "-q", zip_path, "-d", self.task], check=True)
        for d in ("tmp", "dev", "proc", "sys"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        for d in ("null", "zero", "random", "urandom"):
            open(os.path.join(self.root, "dev", d), "w").close()
        unzipped = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(self.task) for f in fs
                       if not os.path.islink(os.path.join(dp, f)))
        zipped = os.path.getsize(zip_path)
        say("package: %.1f MiB unzipped (%d bytes; Lambda's limit 250 MiB: %.1f%%), %.1f MiB zipped "
            "(direct-upload limit 50 MiB: %s)" % (unzipped / MiB, unzipped, 100.0 * unzipped / LIMIT_UNZIPPED,
                                                  zipped / MiB, "within" if zipped <= LIMIT_ZIP else "over, upload via S3"))
        self.loader = "/var/task/lib/" + next(f for f in os.listdir(os.path.join(self.task, "lib")) if f.startswith("ld-linux"))
        # The bare program next to ember, with the package's libraries.
        shutil.copy(a.bare, os.path.join(self.task, "bin", "bare_torch_main"))
        if not a.handler:
            a.handler = next(f for f in sorted(os.listdir(self.task)) if f.endswith(".json"))
        event = {"command": "predict", "inputs": [[0.0] * 784]}
        if a.event:
            with open(a.event) as f:
                event = json.load(f)
        with open(os.path.join(self.work, "events.json"), "w") as f:
            json.dump([{"event": event}], f)

    def fresh_tmp(self):
        t = tempfile.mkdtemp(dir=self.work, prefix="tmp-")
        os.chmod(t, 0o1777)
        return t

    def run_bare(self):
        tmp = self.fresh_tmp()
        out = os.path.join(self.work, "bare.out")
        pid, t0 = spawn(chroot_argv(self.root, tmp, [], [self.loader, "--library-path",
                                                           "/var/task/lib", "/var/task/bin/bare_torch_main"]), out)
        rc, rss, t1 = wait(pid)
        if rc != 0:
            sys.exit("lambda_coldstart: bare_torch_main in the chroot failed (%d):\n%s" % (rc, tail(out)))
        shutil.rmtree(tmp)
        return {"bare": t1 - t0, "bare_rss": rss}

    def run_bare_host(self):
        out = os.path.join(self.work, "bare_host.out")
        pid, t0 = spawn([self.a.bare], out)
        rc, rss, t1 = wait(pid)
        if rc != 0:
            sys.exit("lambda_coldstart: %s failed (%d):\n%s" % (self.a.bare, rc, tail(out)))
        return {"bare_host": t1 - t0, "bare_host_rss": rss}

    def run_ember(self):
        tmp = self.fresh_tmp()
        fifo = os.path.join(self.work, "server.fifo")
        log = os.path.join(self.work, "server.log")
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
        ffd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        server = subprocess.Popen(["/usr/bin/python3", self.a.server, "--events", os.path.join(self.work, "events.json"),
                                   "--log", log, "--fifo", fifo],
                                  stdout=subprocess.DEVNULL, stderr=self.server_err)
        buf = b""

        def lines(waitfor, pidfd=None):
            nonlocal buf
            while True:
                if b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.decode().startswith(waitfor):
                        return line.decode()
                    continue
                fds = [ffd] + ([pidfd] if pidfd is not None else [])
                ready, _, _ = select.select(fds, [], [], 300)
                if not ready:
                    raise RuntimeError("no '%s' from the Runtime API server within 300 s" % waitfor)
                if ffd in ready:
                    try:
                        buf += os.read(ffd, 4096)
                    except BlockingIOError:
                        pass
                elif pidfd in ready:
                    return None  # the runtime exited

        try:
            port = int(lines("port").split()[1])
            out = os.path.join(self.work, "ember.out")
            env = ["AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d" % port, "_HANDLER=" + self.a.handler,
                   "AWS_LAMBDA_FUNCTION_NAME=ember-coldstart", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
                   "AWS_REGION=us-east-1"]
            pid, t0 = spawn(chroot_argv(self.root, tmp, env, ["/var/task/bootstrap"]), out)
            pidfd = os.pidfd_open(pid)
            done = lines("done", pidfd)
            if done is None:
                rc, _, _ = wait(pid)
                sys.exit("lambda_coldstart: the runtime exited (%d) before replying:\n%s" % (rc, tail(out)))
            os.kill(pid, signal.SIGKILL)  # blocked in the next /next, where Lambda would freeze it
            _, rss, _ = wait(pid)
            os.close(pidfd)
        finally:
            server.terminate()
            server.wait()
            os.close(ffd)
        with open(log) as f:
            entries = [json.loads(l) for l in f]
        first_next = next(e["t_ns"] for e in entries if e["method"] == "GET" and e["path"].endswith("/invocation/next"))
        reply = next(e for e in entries if e["method"] == "POST" and e.get("kind") in ("response", "error"))
        if reply["kind"] != "response":
            sys.exit("lambda_coldstart: the event got an error reply: " + reply["body"])
        self.last_reply = reply["body"]
        shutil.rmtree(tmp)
        return {"ember_next": first_next - t0, "ember_reply": reply["t_ns"] - t0, "ember_rss": rss}

    def run(self):
        kinds = [("ember", self.run_ember), ("bare", self.run_bare), ("bare_host", self.run_bare_host)]
        rounds = self.a.rounds
        for r in range(-2, rounds):
            k = max(r, 0) % len(kinds)
            for _, fn in kinds[k:] + kinds[:k]:
                got = fn()
                if r >= 0:
                    for key, v in got.items():
                        self.samples[key].append(v)
        say("first reply (last round): " + self.last_reply[:200])

    def report(self):
        s = self.samples
        rounds = self.a.rounds

        def ms(key):
            v = [x / 1e6 for x in s[key]]
            return statistics.median(v), min(v), max(v)

        def show(key, label):
            m, lo, hi = ms(key)
            say("%-62s median %8.1f ms (min %.1f, max %.1f; %d rounds)" % (label, m, lo, hi, rounds))
            return m

        def rss(key, label):
            v = [x / 1024 for x in s[key]]
            say("%-62s peak RSS median %6.1f MiB (max %.1f)" % (label, statistics.median(v), max(v)))

        bare = show("bare", "bare libtorch main, packaged, chroot (exec -> exit):")
        host = show("bare_host", "bare libtorch main, system libraries (exec -> exit):")
        nxt = show("ember_next", "ember lambda, packaged, chroot (exec -> first /next):")
        rep = show("ember_reply", "ember lambda, packaged, chroot (exec -> first predict reply):")
        say("ratio first /next / bare packaged: %.3f (goal <= 1.2)" % (nxt / bare))
        say("ratio first reply / bare packaged: %.3f" % (rep / bare))
        say("ratio bare packaged / bare system libraries: %.3f" % (bare / host))
        rss("ember_rss", "ember lambda after its first reply (goal <= 256 MiB):")
        rss("bare_rss", "bare libtorch main, packaged:")
        rss("bare_host_rss", "bare libtorch main, system libraries:")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build")
    ap.add_argument("--source")
    ap.add_argument("--zip")
    ap.add_argument("--config")
    ap.add_argument("--bare", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--event", help="the predict event (default: one Fashion-MNIST input of zeros)")
    ap.add_argument("--ckpt", help="the predict weights packaged as model.ckpt (default: a short fit)")
    ap.add_argument("--handler")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("EMBER_LAMBDA_BENCH_ROUNDS", "10")))
    a = ap.parse_args()
    if not a.zip and not (a.build and a.source):
        ap.error("give --zip, or --build and --source")
    if os.geteuid() != 0:
        sys.exit("lambda_coldstart: needs root (unshare -m, mount, chroot)")
    work = tempfile.mkdtemp(prefix="ember-coldstart-")
    try:
        b = Bench(a, work)
        b.prepare()
        b.run()
        b.report()
    finally:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
