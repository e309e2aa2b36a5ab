"""Reading a container's log: the CRI "k8s-file" records the shim writes, across its rotated files, per stream.

A record is `TIMESTAMP STREAM TAG CONTENT`; tag F ends a line, P means the line goes on in
the next record (the shim saw output without a newline yet). The shim rotates the log
(container.log -> container.log.1 -> ...), so the whole log is the rotated files, oldest
first, then container.log.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

LOG = "container.log"


def parse(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) per record, newline restored for complete lines."""
    for line in lines:
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            continue
        stream, tag = parts[1].decode(errors="replace"), parts[2]
        content = parts[3] if len(parts) == 4 else b""
        yield stream, content + (b"\n" if tag == b"F" else b"")


def emit(stream: str, data: bytes) -> None:
    out = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
    out.write(data)
    out.flush()


def files(cdir: Path) -> list[Path]:
    """The log files of a container, oldest first."""
    rotated = []
    for p in cdir.glob(LOG + ".*"):
        suffix = p.name[len(LOG) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [cdir / LOG]


def drop(cdir: Path) -> None:
    """Delete a container's logs (to make room on a full disk: they go with it anyway)."""
    for p in files(cdir):
        try:
            p.unlink()
        except OSError:
            pass


def _records(data: bytes) -> None:
    for stream, chunk in parse(iter(data.split(b"\n"))):
        emit(stream, chunk)


def show(cdir: Path, follow: bool, running: Callable[[], bool]) -> None:
    """Print the log; with follow, keep printing until the container has stopped."""
    for path in files(cdir)[:-1]:
        try:
            _records(path.read_bytes())
        except OSError:
            continue
    current = cdir / LOG
    try:
        f = open(current, "rb")
    except FileNotFoundError:
        return
    pending = b""
    while True:
        chunk = f.read()
        if chunk:
            pending += chunk
            complete, _, pending = pending.rpartition(b"\n")
            if complete:
                _records(complete)
            continue
        if follow and _rotated(f, current):
            f.close()  # what was left in it was read above; go on with the new file
            try:
                f = open(current, "rb")
            except FileNotFoundError:
                return
            continue
        if not follow or not running():
            # one last read: the shim drains output right after PID 1 exits
            _records(pending + f.read())
            f.close()
            return
        time.sleep(0.1)


def _rotated(f, path: Path) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False
