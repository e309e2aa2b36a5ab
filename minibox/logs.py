"""Reading a container's log: the CRI "k8s-file" records the shim writes, printed back per stream.

A record is `TIMESTAMP STREAM TAG CONTENT`; tag F ends a line, P means the line goes on in
the next record (the shim saw output without a newline yet).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterator


def parse(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) per record, newline restored for complete lines."""
    for line in lines:
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            continue
        stream, tag = parts[1].decode(), parts[2]
        content = parts[3] if len(parts) == 4 else b""
        yield stream, content + (b"\n" if tag == b"F" else b"")


def emit(stream: str, data: bytes) -> None:
    out = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
    out.write(data)
    out.flush()


def show(path: str, follow: bool, running: Callable[[], bool]) -> None:
    """Print the log; with follow, keep printing until the container has stopped."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n")
                if complete:
                    for stream, data in parse(iter(complete.split(b"\n"))):
                        emit(stream, data)
                continue
            if not follow or not running():
                # one last read: the shim drains output right after PID 1 exits
                rest = pending + f.read()
                for stream, data in parse(iter(rest.split(b"\n"))):
                    emit(stream, data)
                return
            time.sleep(0.1)
