"""Run ``purchase_intent.train`` as N ``MultiWorkerMirroredStrategy`` workers on this machine.

    python -m purchase_intent.launch --workers 2 -- --preset tiny --epochs 2 --no-export

Everything after ``--`` is passed to every worker's ``python -m purchase_intent.train``
(with ``--strategy multi_worker`` appended). The launcher picks free loopback ports,
gives each worker its ``TF_CONFIG`` (cluster of N ``worker`` tasks, this task's
index), streams every worker's output prefixed with ``[worker i]``, waits, and
exits non-zero if any worker fails (the others are then stopped: they would wait
for it in the next collective). Worker 0 is the chief: it alone writes the run
directory (``--output-dir``, default ``runs/<timestamp>``, chosen here so every
worker gets the same one); the other workers write to temporary directories.

On several machines, run the same training command on each one with its own
``TF_CONFIG`` instead (same cluster list, ``task.index`` 0..N-1), see ``docs/scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from purchase_intent import cli


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free a moment ago (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_configs(n: int, host: str = "127.0.0.1", ports: list[int] | None = None) -> list[dict]:
    """One ``TF_CONFIG`` dict per worker: the same cluster, task index 0..n-1."""
    ports = ports or free_ports(n, host)
    cluster = {"worker": [f"{host}:{p}" for p in ports]}
    return [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(n)]


def _has_option(args: list[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


def worker_command(train_args: list[str]) -> list[str]:
    """The command each worker runs (``--strategy multi_worker`` last, so it wins)."""
    return [sys.executable, "-m", "purchase_intent.train", *train_args, "--strategy", "multi_worker"]


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line}")
        out.flush()
    stream.close()


def launch(workers: int, train_args: list[str], *, host: str = "127.0.0.1",
           timeout: float | None = None, out=None) -> int:
    """Starts ``workers`` training processes, streams their logs, waits for all.

    Args:
        workers: int. Number of worker processes (>= 1).
        train_args: list of str. Arguments for ``python -m purchase_intent.train``.
        host: str. Address the workers listen on (loopback by default).
        timeout: float. Seconds before all workers are stopped (None: no limit).
        out: text stream for the prefixed logs (default ``sys.stdout``).

    Returns:
        0 if every worker exited 0, else the first non-zero exit code (124 on timeout).
    """
    out = out or sys.stdout
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    train_args = list(train_args)
    if not _has_option(train_args, "--output-dir"):
        train_args += ["--output-dir", str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))]
    cmd = worker_command(train_args)
    configs = tf_configs(workers, host)
    out.write(f"[launch] {workers} worker(s) on {', '.join(configs[0]['cluster']['worker'])}\n"
              f"[launch] command: {' '.join(cmd)}\n")
    out.flush()
    procs, pumps = [], []
    for i, tf_config in enumerate(configs):
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "TF_CONFIG": json.dumps(tf_config),
               "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        procs.append(proc)
        t = threading.Thread(target=_pump, args=(proc.stdout, f"[worker {i}] ", out), daemon=True)
        t.start()
        pumps.append(t)

    deadline = None if timeout is None else time.monotonic() + timeout
    code = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [(i, p.returncode) for i, p in enumerate(procs)
                      if p.returncode not in (None, 0)]
            if failed:
                i, code = failed[0]
                out.write(f"[launch] worker {i} failed with exit code {code}; stopping the others\n")
                break
            if deadline is not None and time.monotonic() > deadline:
                code = 124
                out.write(f"[launch] timeout after {timeout:.0f} s; stopping the workers\n")
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        code = 130
    finally:
        for p in procs:
            if p.poll() is None:
                _stop(p)
        for t in pumps:
            t.join(timeout=10)
    if code == 0:
        codes = [p.returncode for p in procs]
        code = next((c for c in codes if c != 0), 0)
        out.write(f"[launch] worker exit codes: {codes}\n")
    out.flush()
    return code


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the worker's own session: it and its children
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        cut = argv.index("--")
        own, train_args = argv[:cut], argv[cut + 1:]
    else:
        own, train_args = argv, []
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.launch",
        description="Train with MultiWorkerMirroredStrategy as N worker processes on this machine "
                    "(loopback, one TF_CONFIG each). Arguments after -- go to purchase_intent.train.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="number of worker processes")
    p.add_argument("--host", default="127.0.0.1", help="address the workers listen on")
    p.add_argument("--timeout", type=float, default=None, help="stop all workers after this many seconds")
    args = p.parse_args(own)
    return launch(args.workers, train_args, host=args.host, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(cli.run(main))
