"""Health checks: a per-container monitor process (no daemon) runs the check through the one exec path every interval and keeps containers/ID/health.json as Docker's State.Health.

`run` (and `start`) spawns the monitor detached, in a session of its own, so killing the
command that started it changes nothing; it ends when the container's PID 1 does, or when
the container is removed (rm -f finds it by its command line, as it finds the shim's
exit command). Docker's rules: "starting" until the first success (failures during the
start period do not count), "unhealthy" after `retries` failures in a row, a check that
outlives its timeout fails, and the last 5 results are kept with their output (4 KB each).
A check is engine.execute's exec_in called here: no minibox command (a Python and typer
start, ~80 ms of CPU) is started for it, and since the monitor's children start in the
container's PID namespace (runtime.enter.children_in), its one fork is the check itself.

    python -m minibox.engine.health ID    the monitor itself
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from minibox import config, files, store
from minibox.errors import WriteFailed

FILE = "health.json"
KEEP = 5
OUTPUT = 4096


def spawn(cid: str) -> None:
    """Start the container's monitor, detached (a double fork: nobody waits for it)."""
    subprocess.Popen([sys.executable, "-m", "minibox.engine.health", cid], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                     env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def read(cid: str) -> dict | None:
    try:
        with open(config.paths().container(cid) / FILE) as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _write(cid: str, doc: dict) -> None:
    with contextlib.suppress(OSError, WriteFailed):
        files.replace_file(config.paths().container(cid) / FILE, json.dumps(doc))


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def check_once(cid: str, test: list[str], timeout: float) -> tuple[int, str, float, float]:
    """One check through the one exec path, as `minibox exec` runs a command: exit code (-1
    timed out: the process is killed), output. Its stdout and stderr go to a memfd that
    this monitor's own 1 and 2 point at meanwhile (exec's pipes copy the first 4 KiB there)."""
    from minibox.engine import execute
    from minibox.errors import MiniboxError
    from minibox.runtime import enter

    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    start = time.time()
    ran: list[int] = []
    timed_out = []

    def kill() -> None:
        for pid in ran:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def expire(_sig, _frame) -> None:
        timed_out.append(True)
        kill()

    def running(pid: int) -> None:
        ran.append(pid)
        if timed_out:  # the timeout came while it was still starting
            kill()

    out_fd = os.memfd_create("health-output", os.MFD_CLOEXEC)
    saved = [os.dup(1), os.dup(2)]
    old = signal.signal(signal.SIGALRM, expire)
    try:
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            state = store.load_state(cid)
            with enter.children_in(state.pid):
                code = execute.exec_in(store.load_record(cid), state, tuple(argv), (), "", False, False,
                                       on_pid=running, output_limit=OUTPUT)
            text = ""
        except enter.Stopped:
            code, text = 1, "the container stopped"
        except MiniboxError as e:  # it could not start (126/127), or the container stopped
            code, text = getattr(e, "code", 1), str(e)
        except Exception as e:  # noqa: BLE001 - a check that cannot run fails; it never ends the monitor
            code, text = 1, f"the check could not run: {e}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    os.lseek(out_fd, 0, os.SEEK_SET)
    out = os.read(out_fd, OUTPUT).decode(errors="replace") + text
    os.close(out_fd)
    if timed_out:
        code, out = -1, f"Health check exceeded timeout ({timeout:g}s)"
    return code, out[:OUTPUT], start, time.time()


def monitor(cid: str) -> None:
    from minibox.engine import events, lifecycle
    from minibox.model import RUNNING

    rec = store.load_record(cid)
    hc = rec.healthcheck
    if not hc:
        return
    began = time.time()
    doc = {"Status": "starting", "FailingStreak": 0, "Log": []}
    _write(cid, doc)
    while True:
        time.sleep(hc["Interval"])
        try:
            if lifecycle.refresh(cid).status != RUNNING:
                return
        except Exception:  # noqa: BLE001 - removed: nothing left to watch
            return
        code, out, start, end = check_once(cid, hc["Test"], hc["Timeout"])
        doc["Log"] = (doc["Log"] + [{"Start": _stamp(start), "End": _stamp(end), "ExitCode": code,
                                     "Output": out}])[-KEEP:]
        before = doc["Status"]
        if code == 0:
            doc["Status"], doc["FailingStreak"] = "healthy", 0
        elif time.time() - began > hc["StartPeriod"] or before != "starting":
            doc["FailingStreak"] += 1
            if doc["FailingStreak"] >= hc["Retries"]:
                doc["Status"] = "unhealthy"
        _write(cid, doc)
        if doc["Status"] != before:
            events.record(cid, f"health_status: {doc['Status']}")


if __name__ == "__main__":
    with contextlib.suppress(Exception, KeyboardInterrupt):
        monitor(sys.argv[1])
    os._exit(0)
