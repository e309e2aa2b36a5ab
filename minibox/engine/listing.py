"""What `ps` lists: every container's record and state, read through a memo that the records validate.

At a thousand containers, reading and parsing two JSON records each costs more than all
the rest of `ps`. So `ps` keeps ps-memo.json at the state root: per container, what it
shows of the record (a PsView) and the last state it read, each beside the inode, mtime
and size of the file it came from. A file whose stat still matches is not read again; any
other is, and the memo is written anew. The records stay the truth: the memo is never
used for a file it does not match, a damaged memo is ignored, and removing it only costs
the next `ps` a full read. A state that may need settling (its PID 1 gone, its creator
killed, its resources not yet released) goes through lifecycle.refresh as before.

Past its first line (a header, see _header), the file is in marshal's format, whatever its name
says: the entries come back as the tuples the views and states are made of, and reading
and building them takes half JSON's time (measured in process at 1000 containers: ~4
against ~8 ms). marshal is not for files from outside, and this is none: ps wrote it in
the root-only state root, and its CRC is checked before a byte of it is read (see encode).
"""

from __future__ import annotations

import marshal
import os
import sys
import time
import zlib

from minibox import config, files, store
from minibox.errors import Damaged, MiniboxError, WriteFailed
from minibox.model import RUNNING, ContainerRecord, ContainerState
from minibox.runtime import procs
from minibox.value import Value

MEMO = "ps-memo.json"
MEMO_VERSION = 6  # raise it when an entry's layout changes: a memo of another layout is not read
STATE_FIELDS = list(ContainerState._fields)  # a state is kept as these fields' values, in this order
# marshal's format is stable for these types, but is only promised within one Python version.
FORMAT = f"marshal {marshal.version}, Python {sys.version_info[0]}.{sys.version_info[1]}"
# A file's stat is kept only if it was written this long before `ps` began: longer than a
# clock tick at any HZ. One written within the same tick can be written again with the same
# mtime and size, in place or on its predecessor's freed inode, and its stat would not tell
# (git calls such index entries "racy"); it is read again by the next `ps` instead.
SETTLED_NS = 20_000_000


class PsView(Value):
    """What `ps` shows and filters on of a container's record."""

    id: str
    name: str
    created: float
    image: str  # as the user named it
    image_id: str
    command: str  # what runs (argv, or the spec's command) as ps shows it: joined, shell-quoted
    ports: str  # as `docker ps` shows them, e.g. "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp"
    labels: tuple[str, ...]
    mounts: tuple[str, ...]  # each mount's source (a tmpfs: its target)
    network: str
    healthcheck: bool

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @classmethod
    def of(cls, rec: ContainerRecord) -> PsView:
        import shlex  # only for a record read: ~0.3 ms to import

        return cls(rec.id, rec.name, rec.created, rec.spec.image, rec.image_id, shlex.join(rec.argv or rec.spec.cmd),
                   ", ".join(p.ps_str() for p in rec.ports), rec.labels,
                   tuple(m.source if m.kind != "tmpfs" else m.target for m in rec.mounts),
                   rec.endpoint.network if rec.endpoint else (rec.spec.network or ""), bool(rec.healthcheck))


VIEW_FIELDS = list(PsView._fields)  # a memo written with other fields is not read


class Listed(Value):
    """One container as `ps` finds it: view None when its record cannot be read, state None
    when its state cannot be (`error` says why: ps shows it as Dead); `warning` when its
    state could not be brought up to date and is shown as found."""

    cid: str
    view: PsView | None
    state: ContainerState | None
    error: str = ""
    warning: str = ""


def containers() -> list[Listed]:
    """Every container directory with a record or a state, in no order; the memo is
    written again when anything in it changed."""
    try:  # records are stat'ed relative to the directory: ~0.7 us less a stat than by full path (measured)
        where = os.open(config.paths().containers, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return _all(where)
    finally:
        os.close(where)


def _all(where: int) -> list[Listed]:
    """containers(), in the containers directory open as `where`."""
    names = os.listdir(where)
    settled = time.time_ns() - SETTLED_NS
    memo = _read_memo()
    kept: dict[str, tuple] = {}
    out = []
    for cid in names:
        old = memo.get(cid)
        try:
            item, entry = _one(where, cid, old, settled)
        except (IndexError, TypeError, ValueError, AttributeError):
            item, entry = _one(where, cid, None, settled)  # an entry not as this minibox writes them
        if item is not None:
            out.append(item)
        if entry is not None:
            kept[cid] = entry
    if kept.keys() != memo.keys() or any(kept[c] is not memo[c] for c in kept):
        _write_memo(kept)
    return out


def _one(where: int, cid: str, old: tuple | None, settled: int) -> tuple[Listed | None, tuple | None]:
    """The container `cid` (None if it is not one, or was removed meanwhile) and its memo entry,
    which keeps the stat of a file read now only if it was written before `settled` (ns).
    `where`: the containers directory, open."""
    record_key = _key(f"{cid}/config.json", where)
    state_key = _key(f"{cid}/state.json", where)
    if record_key is None and state_key is None:
        return None, None
    view = _memo_view(old, record_key)
    view_hit = view is not None
    if view is None:
        try:
            view = PsView.of(store.load_record(cid))
        except FileNotFoundError:
            return None, None  # removed right now
        except Damaged as e:
            return Listed(cid, None, None, str(e)), None
    state = _memo_state(old, state_key)
    state_hit = state is not None
    warning = letter = ""
    try:
        if state is None:
            state = store.load_state(cid)  # read after its stat: a write in between makes the key stale
        if state.status == RUNNING and (letter := procs.state_of(state.pid, state.pid_start)):
            now = state  # running, its PID 1 alive: what refresh would find, one read sooner
        else:
            # Imported only here and below: a running container whose PID 1 lives needs
            # neither module, and `ps` would pay ~5 ms to import them (measured).
            from minibox.engine import lifecycle

            now = lifecycle.refresh(cid, state=state)
    except FileNotFoundError:
        return None, None
    except MiniboxError as e:
        if state is None:
            return Listed(cid, view, None, str(e)), None
        now, warning = state, str(e)
    freezer = old[4] if state_hit and old[4] else _freezer_of(cid) if now.status == RUNNING else None
    listed = Listed._make((cid, view, _live(cid, view, now, freezer, letter), "", warning))
    if record_key is None:
        return listed, None
    if view_hit and state_hit and now is state and freezer is old[4]:
        return listed, old  # unchanged: containers() leaves the memo as it is
    # A state is remembered only as read: one that refresh changed was written meanwhile.
    kept = now is state and state_key is not None and (state_hit or state_key[1] < settled)
    return listed, (record_key if view_hit or record_key[1] < settled else None,
                    old[1] if view_hit else view._values(), state_key if kept else None,
                    (old[3] if state_hit else state._values()) if kept else None,
                    freezer if kept else None)


def _live(cid: str, view: PsView, state: ContainerState, freezer: tuple | None, letter: str) -> ContainerState:
    """What is never stored: paused (the kernel's freezer says so) and health (health.json)."""
    if state.status != RUNNING:
        return state
    if freezer and freezer[0] and _frozen(*freezer, letter):  # no file: a host without a freezer
        state = state.replace(paused=True)
    if view.healthcheck:
        from minibox.engine import health

        state = state.replace(health=(health.read(cid) or {}).get("Status", "starting"))
    return state


def _freezer_of(cid: str) -> tuple[str, str]:
    from minibox.runtime import cgroups

    return cgroups.freezer_of(config.cgroup_parent(), cid)


def _frozen(path: str, line: str, letter: str) -> bool:
    """The group's freezer file says so. On v1 it is not read for a PID 1 in any state but
    D: v1's freezer holds each task of a frozen group in the refrigerator, which /proc shows
    as D (measured here, kernel 6.18; so it has always been). v2's freezer shows them as S,
    so there the file is read."""
    if path.endswith("/freezer.state") and letter and letter != "D":
        return False
    try:
        return line in procs.read_small(path).splitlines()
    except OSError:
        return False  # the group is gone: so is the container


def _key(path: str, where: int) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path, dir_fd=where)
    except OSError:  # missing, or its directory is not one
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _memo_view(old: tuple | None, key: tuple | None) -> PsView | None:
    return PsView._make(old[1]) if old is not None and key is not None and old[0] == key else None


def _memo_state(old: tuple | None, key: tuple | None) -> ContainerState | None:
    """The state the memo holds as its fields' values, in order (see encode)."""
    return ContainerState._make(old[3]) if old is not None and key is not None and old[2] == key else None


def encode(entries: dict[str, tuple]) -> bytes:
    """The memo file: a header line, then the entries. The CRC catches a memo damaged or
    edited by hand, so that what is read back is what a `ps` wrote from records it read;
    zlib's CRC, not a hash, because it guards against accidents, not against root, who can
    write the records as well."""
    body = marshal.dumps(entries)
    return _header(body) + b"\n" + body


def _header(body: bytes) -> bytes:
    """The memo's first line, as text: its version, marshal's format, the view's and the
    state's fields in the order an entry holds them, and the CRC-32 of the rest. A memo is
    read only if its line is exactly what this minibox would write for that rest (text,
    not JSON: `ps` would import json for it alone, ~5 M instructions, ~2 ms, measured)."""
    return (f"minibox ps memo {MEMO_VERSION}; {FORMAT}; view: {' '.join(VIEW_FIELDS)}; "
            f"state: {' '.join(STATE_FIELDS)}; crc32: {zlib.crc32(body)}").encode()


def decode(raw: bytes) -> dict[str, tuple]:
    """encode's entries, or {} for anything else (damaged, edited, or another version's)."""
    head, _, body = raw.partition(b"\n")
    if head != _header(body):
        return {}
    try:
        entries = marshal.loads(body)
    except (ValueError, EOFError, TypeError, RecursionError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _read_memo() -> dict[str, tuple]:
    try:
        with open(config.paths().root / MEMO, "rb", buffering=0) as f:
            return decode(f.readall())
    except OSError:
        return {}


def _write_memo(entries: dict[str, tuple]) -> None:
    """Best effort: a read-only or full state root only costs the next `ps` a full read."""
    try:
        files.replace_file(config.paths().root / MEMO, encode(entries))
    except (OSError, WriteFailed, ValueError):  # ValueError: a value marshal cannot keep
        pass

