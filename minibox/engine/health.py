"""Health checks: a per-container monitor process (no daemon) runs the check through `minibox exec` every interval and keeps containers/ID/health.json as Docker's State.Health.

`run` (and `start`) spawns the monitor detached, in a session of its own, so killing the
command that started it changes nothing; it ends when the container's PID 1 does, or when
the container is removed (rm -f finds it by its command line, as it finds the shim's
exit command). Docker's rules: "starting" until the first success (failures during the
start period do not count), "unhealthy" after `retries` failures in a row, a check that
outlives its timeout fails, and the last 5 results are kept with their output (4 KB each).

    python -m minibox.engine.health ID    the monitor itself
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from minibox import config, store

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
    path = config.paths().container(cid) / FILE
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def check_once(cid: str, test: list[str], timeout: float) -> tuple[int, str, float, float]:
    """One check through `minibox exec` (the one exec path): exit code (-1 timed out), output."""
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    start = time.time()
    try:
        res = subprocess.run([sys.executable, "-m", "minibox", "exec", cid, *argv], capture_output=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        code, out = res.returncode, (res.stdout + res.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired:
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
