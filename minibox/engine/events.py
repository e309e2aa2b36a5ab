"""The event journal: a JSON line per container event (create, start, die, destroy, pause, kill, ...), appended by whichever command or shim caused it, and read by `minibox events`.

No daemon sees everything, so each process that changes a container says so here: one
write(2) with O_APPEND per event, which the kernel never interleaves with another's. The
journal is bounded: past MAX_BYTES it is renamed to events.log.1 (the one before is
dropped), so `events --since` reaches back that far. Writing an event never fails the
command that made it (a full disk loses the event, not the container).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from minibox import config

MAX_BYTES = 1 << 20


def journal() -> Path:
    return config.paths().root / "events.log"


def record(cid: str, action: str, **attributes) -> None:
    """Container `cid`'s event `action` (Docker's words: create, start, die, destroy, pause,
    unpause, kill, stop, rename, connect, disconnect), with its name and image."""
    from minibox import store

    with contextlib.suppress(Exception):
        try:
            rec = store.load_record(cid)
            attributes = {"image": rec.spec.image, "name": rec.name, **attributes}
        except Exception:  # noqa: BLE001 - a container already gone still had its event
            pass
        now = time.time_ns()
        line = json.dumps({"Type": "container", "Action": action, "id": cid, "time": now // 10 ** 9,
                           "timeNano": now, "Actor": {"ID": cid, "Attributes": {k: str(v) for k, v in
                                                                             attributes.items()}}})
        path = journal()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            big = os.fstat(fd).st_size > MAX_BYTES
        finally:
            os.close(fd)
        if big:
            os.replace(path, path.with_name("events.log.1"))


def read(since_ns: int = 0, until_ns: int = 0) -> list[dict]:
    """Every event kept, from `since_ns` up to `until_ns` (0: no bound), oldest first."""
    out = []
    for path in (journal().with_name("events.log.1"), journal()):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line a crash cut short
            if isinstance(e, dict) and e.get("timeNano", 0) >= since_ns and (not until_ns or e["timeNano"] <= until_ns):
                out.append(e)
    return out


def follow(since_ns: int, until_ns: int, emit) -> None:
    """Events as they come (polling the journal), until `until_ns` (0: until interrupted)."""
    seen = since_ns
    while True:
        for e in read(seen + 1):
            if until_ns and e["timeNano"] > until_ns:
                return
            emit(e)
            seen = max(seen, e["timeNano"])
        if until_ns and time.time_ns() > until_ns:
            return
        time.sleep(0.1)
