"""Fault injection shared by test_faults.py and scripts/stress: kill -9 a minibox command at a random moment.

Each round starts `minibox run` (or `rm -f`, or `gc`) and kills it with SIGKILL after a
random delay in [0, 300) ms: a crash at an arbitrary point. What must hold afterwards is
checked by the caller: `ps -a` works, `rm -f` and `gc` finish every container, and then
nothing of any kind is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

MB = [sys.executable, "-m", "minibox"]


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(MB + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def kill_after(proc: subprocess.Popen, delay: float) -> int | None:
    """SIGKILL `proc` after `delay` seconds unless it ended first; its exit code if it did."""
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def rounds(n: int, seed: int, env: dict | None = None, report=print) -> dict[str, int]:
    """n crashes of run (detached and attached, with and without a published port), of
    rm -f and of gc; counts of what was killed mid-way."""
    rng = random.Random(seed)
    killed = {"run": 0, "rm": 0, "gc": 0}
    for i in range(n):
        kind = rng.choice(["run-d", "run-d-p", "run-attached", "rm", "gc"])
        delay = rng.uniform(0, 0.3)
        name = f"crash{i}"
        httpd = ["busybox", "httpd", "-f", "-p", "80"]
        if kind.startswith("run"):
            args = {"run-d": ["run", "-d", "--name", name] + httpd,
                    "run-d-p": ["run", "-d", "-p", f"{20000 + i}:80", "--name", name] + httpd,
                    "run-attached": ["run", "--rm", "--name", name, "busybox", "sleep", "5"]}[kind]
            if kill_after(start(args, env), delay) is None:
                killed["run"] += 1
        elif kind == "rm":
            subprocess.run(MB + ["run", "-d", "--name", f"crash{i}", "busybox", "sleep", "1000"], capture_output=True,
                           env={**os.environ, **(env or {})})
            if kill_after(start(["rm", "-f", f"crash{i}"], env), delay) is None:
                killed["rm"] += 1
        else:
            if kill_after(start(["gc"], env), delay) is None:
                killed["gc"] += 1
        if report:
            report(f"round {i}: {kind} after {delay * 1000:.0f} ms")
    return killed
