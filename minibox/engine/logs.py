"""Reading a container's log: the CRI "k8s-file" records the shim writes, across its rotated files, per stream.

A record is `TIMESTAMP STREAM TAG CONTENT`; tag F ends a line, P means the line goes on in
the next record (the shim saw output without a newline yet). The shim rotates the log
(container.log -> container.log.1 -> ...), so the whole log is the rotated files, oldest
first, then container.log. Each file is labelled with its number (an xattr): `logs -f`
that fell behind the rotation finds files dropped before it read them, and must not join
a line across the gap (see Lines.resync).
"""

from __future__ import annotations

import os
import time
from datetime import timezone
from pathlib import Path
from typing import Callable, Iterator

from minibox.value import Value

LOG = "container.log"


def parse(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) per record, newline restored for complete lines."""
    for _ts, stream, data in records(lines):
        yield stream, data


def records(lines: Iterator[bytes]) -> Iterator[tuple[str, str, bytes]]:
    """(timestamp, stream, bytes) per record, newline restored for complete lines."""
    for line in lines:
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            continue
        stream, tag = parts[1].decode(errors="replace"), parts[2]
        content = parts[3] if len(parts) == 4 else b""
        yield parts[0].decode(errors="replace"), stream, content + (b"\n" if tag == b"F" else b"")


def epoch(ts: str) -> float:
    """An RFC 3339 timestamp (the shim's, with nanoseconds) as seconds since the epoch."""
    from datetime import datetime

    head, _, frac = ts.rstrip("Z").partition(".")
    try:
        whole = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0
    return whole + (float("0." + frac) if frac.isdigit() else 0.0)


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_since(text: str, now: float) -> float:
    """--since: a Unix time (1700000000), an RFC 3339 date or time, or a duration before
    now (10m, 1h30m, 45s), as Docker takes it."""
    import re

    from minibox.errors import InvalidSpec

    t = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", t):
        return float(t)
    if re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+", t):
        return now - sum(float(n) * _UNITS[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|ms|s|m|h)", t))
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            from datetime import datetime

            return datetime.strptime(t.rstrip("Z").split(".")[0], fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise InvalidSpec(f'invalid --since "{text}": give a Unix time, a date like 2026-11-26T10:00:00, or a '
                      "duration like 10m")


class Lines:
    """Records joined into lines (a line may span several P records), per stream, each
    with the time its first part was written."""

    def __init__(self):
        self.partial: dict[str, tuple[str, bytes]] = {}
        self.unsure: set[str] = set()  # streams whose next record may go on a line that was lost

    def resync(self, unsure: set[str]) -> None:
        """Records were lost (a follower fell behind the rotation): no line begun before is
        joined to what comes next, and the `unsure` streams' next records, which finish a
        line begun in what was lost, are dropped up to that stream's next line end."""
        self.partial.clear()
        self.unsure = set(unsure)

    def feed(self, data: bytes) -> list[tuple[str, str, bytes]]:
        out = []
        for ts, stream, chunk in records(iter(data.split(b"\n"))):
            if stream in self.unsure:
                if chunk.endswith(b"\n"):
                    self.unsure.discard(stream)
                continue
            first, sofar = self.partial.pop(stream, (ts, b""))
            if chunk.endswith(b"\n"):
                out.append((first, stream, sofar + chunk))
            else:
                self.partial[stream] = (first, sofar + chunk)
        return out

    def rest(self) -> list[tuple[str, str, bytes]]:
        """What never got its newline (the container's last output, unterminated)."""
        out = [(ts, stream, data) for stream, (ts, data) in self.partial.items() if data]
        self.partial.clear()
        return out


Emit = Callable[[str, bytes], None]  # ("stdout" or "stderr", what it wrote): the CLI writes it out


class Options(Value):
    follow: bool = False
    tail: int = -1  # last N lines; -1 all
    since: float = 0.0  # epoch seconds; 0 from the start
    until: float = 0.0
    timestamps: bool = False


def files(cdir: Path, current=None) -> list[Path]:
    """The rotated log files older than `current` (the open LOG; None: LOG as it is now),
    oldest first. A rotation after `current` was opened renames it: only what is older is
    listed, and what is newer is read when the follower gets there."""
    kept = _kept(cdir)
    ours = _fd_inode(current) if current is not None else _inode(cdir / LOG)
    inodes = [inode for _, inode in kept]
    if ours in inodes:  # rotated already (or, for a moment, LOG.1 is a second name of LOG)
        kept = kept[inodes.index(ours) + 1:]
    bound = _label(current if current is not None else cdir / LOG)[0]  # dropped already: its number says
    return [p for p, _ in reversed(kept) if _within(_label(p)[0], None, bound)]


def _kept(cdir: Path) -> list[tuple[Path, tuple[int, int] | None]]:
    """The rotated files (LOG.1, LOG.2, ...), newest first, each with its inode."""
    numbered = sorted((int(p.name[len(LOG) + 1:]), p) for p in cdir.glob(LOG + ".*")
                      if p.name[len(LOG) + 1:].isdigit())
    return [(p, _inode(p)) for _, p in numbered]


def _fd_inode(f) -> tuple[int, int]:
    st = os.fstat(f.fileno())
    return st.st_dev, st.st_ino


def _inode(p: Path):
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def drop(cdir: Path) -> None:
    """Delete a container's logs (to make room on a full disk: they go with it anyway)."""
    for p in cdir.glob(LOG + "*"):
        try:
            p.unlink()
        except OSError:
            pass


def _emit_lines(lines: list[tuple[str, str, bytes]], opts: Options, emit: Emit) -> None:
    for ts, stream, data in lines:
        if opts.since and epoch(ts) < opts.since:
            continue
        if opts.until and epoch(ts) >= opts.until:
            continue
        emit(stream, (ts.encode() + b" " if opts.timestamps else b"") + data)


def show(cdir: Path, running: Callable[[], bool], emit: Emit, opts: Options = Options()) -> None:
    """Hand the log (the last `tail` lines, from `since`) to `emit(stream, bytes)`; with
    follow, keep doing so until the container has stopped."""
    joined = Lines()
    backlog: list[tuple[str, str, bytes]] = []
    current = cdir / LOG
    try:  # opened first: a rotation from here on renames what we read, and files() skips it
        f = open(current, "rb")
    except FileNotFoundError:
        f = None
    except IsADirectoryError:
        from minibox.errors import Damaged

        raise Damaged(current, "a directory where a file belongs") from None
    seen = {_fd_inode(f)} if f is not None else set()
    bound = _label(f)[0] if f is not None else None
    for path in files(cdir, f):
        try:
            with open(path, "rb") as r:
                if _fd_inode(r) in seen or not _within(_label(r)[0], None, bound):
                    continue  # renamed by a rotation after files() looked, or newer than f (f dropped meanwhile)
                seen.add(_fd_inode(r))
                backlog += joined.feed(r.read())
        except OSError:
            continue
    pending = b""
    if f is not None:
        complete, _, pending = f.read().rpartition(b"\n")
        backlog += joined.feed(complete)
    if not opts.follow or f is None or not running():
        if f is not None:
            backlog += joined.feed(pending + f.read())
            f.close()
        backlog += joined.rest()
        pending = b""
    if opts.since:
        backlog = [x for x in backlog if epoch(x[0]) >= opts.since]
    _emit_lines(backlog[len(backlog) - opts.tail:] if 0 <= opts.tail <= len(backlog) else backlog, opts, emit)
    if f is None or f.closed:
        return
    while True:
        chunk = f.read()
        if chunk:
            pending += chunk
            complete, _, pending = pending.rpartition(b"\n")
            if complete:
                _emit_lines(joined.feed(complete), opts, emit)
            continue
        if _rotated(f, current):
            # The shim closed this file before its successor took the name: what it wrote
            # after the read above is read now, then the files rotated after this one.
            _emit_lines(joined.feed(pending + f.read()), opts, emit)
            pending = b""
            try:
                following = open(current, "rb")
            except FileNotFoundError:
                f.close()
                return
            _catch_up(cdir, f, following, joined, opts, emit)
            f.close()
            f = following
            continue
        if not running():
            # one last read: the shim drains output right after PID 1 exits
            _emit_lines(joined.feed(pending + f.read()) + joined.rest(), opts, emit)
            f.close()
            return
        time.sleep(0.1)


def _catch_up(cdir: Path, older, newer, joined: Lines, opts: Options, emit: Emit) -> None:
    """The files rotated after `older` (read to its end) and before `newer` (open, unread),
    oldest first. A follower that fell behind finds some dropped by the rotation already:
    the shim labels each file with its number (an xattr), so a missing one is told to
    `joined`, with the streams the next file read begins mid-line."""
    last, bound = _label(older)[0], _label(newer)[0]
    for path, inode in _between(cdir, older, newer):
        try:
            with open(path, "rb") as r:
                label = _label(r)
                if _fd_inode(r) != inode or not _within(label[0], last, bound):
                    continue  # rotated on since it was listed, or `newer` was dropped meanwhile and this came after it
                last = _check(last, label, joined)
                _emit_lines(joined.feed(r.read()), opts, emit)
        except FileNotFoundError:
            continue
    _check(last, _label(newer), joined)


def _within(seq: int | None, after: int | None, before: int | None) -> bool:
    return seq is None or ((after is None or seq > after) and (before is None or seq < before))


def _check(last: int | None, label: tuple[int | None, set[str]], joined: Lines) -> int | None:
    seq, begun_before = label
    if last is not None and seq is not None and seq != last + 1:
        joined.resync(begun_before)
    return seq


def _label(f) -> tuple[int | None, set[str]]:
    """A log file's number and the streams it begins mid-line (shim.c's log_label): "7" or
    "7 stdout stderr". (None, both) where it has none (a file system without user xattrs).
    `f`: an open file or a path."""
    try:
        seq, *streams = os.getxattr(f if isinstance(f, Path) else f.fileno(), "user.minibox.seq").decode().split()
        return int(seq), set(streams) & {"stdout", "stderr"}
    except (OSError, ValueError, UnicodeDecodeError):
        return None, {"stdout", "stderr"}


def _between(cdir: Path, older, newer) -> list[tuple[Path, tuple[int, int] | None]]:
    """The rotated files listed after the open `older` and before the open `newer`, oldest
    first, each with its inode. If `older` was dropped already, every kept one is later."""
    kept = _kept(cdir)
    inodes = [inode for _, inode in kept]
    ours, theirs = _fd_inode(older), _fd_inode(newer)
    if ours in inodes:
        kept = kept[:inodes.index(ours)]
        inodes = inodes[:len(kept)]
    if theirs in inodes:  # `newer` was rotated too: it and what came after it are read as they come
        kept = kept[inodes.index(theirs) + 1:]
    return kept[::-1]


def _rotated(f, path: Path) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False
