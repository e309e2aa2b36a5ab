"""State on disk: atomic JSON writes, flock-based locks, and container/network record lookup.

Layout under the state root (see config.Paths):
    containers/ID/config.json   ContainerRecord: written first, then once more with its address
    containers/ID/state.json    ContainerState, rewritten before every transition's side effects
    containers/ID/exit.json     written by the shim when PID 1 exits
    networks/NAME.json          NetworkRecord
    ipam/NETWORK/ADDRESS        one file per allocated address (see net/ipam_store)

Every write is whole or not at all (see minibox.files). A file that is not JSON is
Damaged, naming the file: it harms only the container it belongs to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from pathlib import Path
from typing import Any, Iterator

from minibox import config, files
from minibox.errors import Conflict, Damaged, InvalidSpec, MiniboxError, NotFound, WriteFailed
from minibox.model import ContainerRecord, ContainerState, NetworkRecord


def require_root() -> None:
    """Root runs minibox, and the state root and its containers/ are root's alone (0700): an upper
    directory holds what its container wrote, setuid-root binaries too, for any host user who
    reaches it to run (the CVE-2021-41091 pattern). Two stats when all is well; nothing made."""
    if os.geteuid() != 0:
        raise MiniboxError("minibox needs root for this (namespaces, mounts, netfilter): run it with sudo")
    root = config.paths().root
    for d in (root, root / "containers"):
        try:
            if os.stat(d).st_mode & 0o077:
                os.chmod(d, 0o700)
        except FileNotFoundError:
            return


def make_container_dir(cid: str) -> Path:
    """containers/ID, with the state root and containers/ made 0700 if they are new."""
    for d in (config.paths().root, config.paths().containers):
        files.make_dirs(d, 0o700)
    path = config.paths().container(cid)
    try:
        path.mkdir()
    except OSError as e:
        raise WriteFailed(path, e) from None
    return path


def read_json(path: Path | str) -> Any:
    """The JSON in `path`; Damaged (naming the file) if it is not JSON."""
    import json  # here: `ps` reads no record while its memo holds, and would import json for nothing

    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: ps reads thousands, each ~3 µs sooner
            raw = f.readall()
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Damaged(path, type(e).__name__ if not str(e) else str(e).split(":")[0]) from None
    except IsADirectoryError:
        raise Damaged(path, "a directory where a file belongs") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block. On a state
    root that cannot be written (read-only, out of inodes) an existing lock file is locked
    read-only, so what needs no write still happens; a missing one is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access
        except OSError:
            if e.errno == errno.EROFS:  # nobody can change the state a lock guards: go on without
                yield
                return
            raise MiniboxError(f"cannot lock {path}: {e.strerror}: minibox's state in {config.paths().root} "
                               "cannot be written (a file system out of space or inodes)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def global_lock() -> contextlib.AbstractContextManager:
    return locked(config.paths().lock)  # what must be unique across containers: names, creation, removal


def container_lock(cid: str) -> contextlib.AbstractContextManager:
    return locked(config.paths().container(cid) / ".lock")


# --- containers -------------------------------------------------------------------


def owner_exists(owner: str) -> bool:
    """Whether an address, port or rule's owner is still there: a container with a record,
    or an attachment minibox-cni made (an engine's container, not in `ps`)."""
    return (config.paths().container(owner) / "config.json").exists() or (config.paths().cni / f"{owner}.json").exists()


def container_ids() -> list[str]:
    """Containers with a record, or with a state but no record (damage: a record is
    written first, and a removal renames the directory away before it deletes anything)."""
    d = str(config.paths().containers)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return sorted(n for n in os.listdir(d) if os.path.exists(f"{d}/{n}/config.json") or
                      os.path.exists(f"{d}/{n}/state.json"))
    return []


def load_record(cid: str) -> ContainerRecord:
    path = config.container_file(cid, "config.json")
    try:
        data = read_json(path)
    except FileNotFoundError:
        if os.path.exists(config.container_file(cid, "state.json")):
            raise Damaged(path, "missing") from None
        raise
    try:
        return ContainerRecord.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Damaged(path, f"missing or bad field {e}") from None


def save_record(rec: ContainerRecord) -> None:
    files.write_json(config.paths().container(rec.id) / "config.json", rec.to_dict())


def load_state(cid: str) -> ContainerState:
    path = config.container_file(cid, "state.json")
    try:
        data = read_json(path)
    except FileNotFoundError:
        return ContainerState()
    try:
        return ContainerState.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Damaged(path, f"missing or bad field {e}") from None


def save_state(cid: str, state: ContainerState) -> None:
    files.write_json(config.paths().container(cid) / "state.json", state.to_dict())


def load_exit(cid: str) -> dict[str, Any] | None:
    """The shim's record of how PID 1 ended, or None while it runs."""
    try:
        return read_json(config.container_file(cid, "exit.json"))
    except (FileNotFoundError, Damaged):
        return None


def all_records() -> list[ContainerRecord]:
    """Every readable record; damaged ones are skipped here (see entries())."""
    return [r for r in entries().values() if isinstance(r, ContainerRecord)]


def entries() -> dict[str, ContainerRecord | Damaged]:
    """Every container directory with a record: its record, or the Damaged error reading it."""
    out: dict[str, ContainerRecord | Damaged] = {}
    for cid in container_ids():
        try:
            out[cid] = load_record(cid)
        except FileNotFoundError:
            continue  # removed right now
        except Damaged as e:
            out[cid] = e
    return out


def resolve(ref: str) -> ContainerRecord:
    """Find a container by name, full id, or unique id prefix (Docker's rules), reading only
    the one record it finds: a command's cost must not grow with the number of containers."""
    if not ref:
        raise InvalidSpec("container name or id must not be empty")
    for cid in (ref if len(ref) == 64 else None, owner_of_name(ref)):
        if cid:
            try:
                return load_record(cid)
            except FileNotFoundError:
                pass
    matches = [cid for cid in container_ids() if cid.startswith(ref.lower())]
    if len(matches) == 1:
        return load_record(matches[0])
    if not matches:
        holder = named_by_record(ref)  # the index said nothing: the records have the last word
        if holder:
            return load_record(holder)
    if len(matches) > 1:
        raise Conflict(f'container id prefix "{ref}" is ambiguous: it matches {", ".join(c[:12] for c in matches)}; '
                       "give more of the id")
    raise NotFound(f'no such container: "{ref}" (see `minibox ps -a`)')


def resolve_id(ref: str, ids: list[str] | None = None) -> str:
    """A container's id from its name, id or id prefix, its record unread (`rm -f` of a damaged
    one). `ids`: the containers directory listed once, for many (`rm -f $(minibox ps -aq)`)."""
    if not ref:
        raise InvalidSpec("container name or id must not be empty")
    owner = owner_of_name(ref)
    if owner and config.paths().container(owner).is_dir():
        return owner
    if ids is None:
        ids = sorted(p.name for p in d.iterdir()) if (d := config.paths().containers).is_dir() else []
    matches = [cid for cid in ids if cid.startswith(ref.lower()) and ID_RE.fullmatch(cid)]
    if len(matches) == 1:
        return matches[0]
    if not matches and named_by_record(ref):
        return named_by_record(ref)
    if len(matches) > 1:
        raise Conflict(f'container id prefix "{ref}" is ambiguous: it matches {", ".join(c[:12] for c in matches)}; '
                       "give more of the id")
    raise NotFound(f'no such container: "{ref}" (see `minibox ps -a`)')


# --- names: names/NAME holds the id of the container that has it -------------------------


def _name_path(name: str) -> Path:
    return config.paths().root / "names" / name


ID_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def owner_of_name(name: str) -> str | None:
    """The id holding `name`, if `name` is a container name and its file names an id."""
    if not _NAME_RE.fullmatch(name):
        return None  # not a name: never a path under names/
    try:
        owner = _name_path(name).read_text().strip()
    except (OSError, ValueError):
        return None
    return owner if ID_RE.fullmatch(owner) else None


def named_by_record(name: str, other_than: str = "") -> str | None:
    """The id of the container whose record has `name`, found by reading the records, and
    its names/ file written again: for when that file is missing, emptied or garbled
    (names/ is an index of the records, never trusted over them). Costs a read of every
    record, so it is asked only when the index had no answer."""
    for cid, rec in entries().items() if _NAME_RE.fullmatch(name) else ():
        if not isinstance(rec, Damaged) and rec.name == name and cid != other_than:
            with contextlib.suppress(MiniboxError, OSError):
                files.make_dirs(_name_path(name).parent)
                files.replace_file(_name_path(name), cid + "\n")
            return cid
    return None


def name_taken(name: str) -> bool:
    return bool(owner := owner_of_name(name)) and (config.paths().container(owner) / "config.json").exists()


def reserve_name(name: str, cid: str) -> None:
    """Take `name` for container `cid`, atomically (O_EXCL), or raise Conflict. A file that
    names no live container is a crash's leftover, unless a record has the name (the file
    was emptied or garbled, or names/ deleted: its marker file went with it): then the
    record wins and the file is written again."""
    path = _name_path(name)
    files.make_dirs(path.parent)
    in_use = Conflict(f'container name "{name}" is already in use; pick another with --name '
                      f'or remove it with `minibox rm {name}`')
    for _ in range(2):
        try:
            files.create_exclusive(path, cid + "\n")
        except FileExistsError:
            owner = owner_of_name(name)
            if (owner and (config.paths().container(owner)).exists()) or named_by_record(name):
                raise in_use from None
            path.unlink(missing_ok=True)  # its container is gone: a leftover of a crash
            continue
        if not (path.parent / ".index").exists():
            (path.parent / ".index").touch()
            if named_by_record(name, other_than=cid):  # ...which also puts the holder's file back
                raise in_use
        return
    raise Conflict(f'container name "{name}" is being taken by another run right now; pick another')


def release_name(name: str, cid: str) -> None:
    if owner_of_name(name) == cid:
        _name_path(name).unlink(missing_ok=True)


def release_names_of(*cids: str) -> None:
    """Free every name file naming one of `cids` (found without their records), in one look."""
    d = config.paths().root / "names"
    ids = {cid.encode() for cid in cids}
    for f in d.iterdir() if d.is_dir() else ():
        try:
            if f.read_bytes().strip() in ids:
                f.unlink()
        except OSError:
            continue


# --- networks ---------------------------------------------------------------------


def network_path(name: str) -> Path:
    return config.paths().networks / f"{name}.json"


def load_network(name: str) -> NetworkRecord | None:
    """The network's record; None if there is none; Damaged (one line, naming the file and
    `network rm`) if it cannot be read or its fields have the wrong types."""
    path = network_path(name)
    try:
        return _network_from(read_json(path), path)
    except FileNotFoundError:
        return None
    except Damaged as e:  # said again, with the verb that removes it
        raise Damaged(path, str(e).split("(", 1)[1].split(")")[0], f"`minibox network rm {name}` removes it") from None


def _network_from(data: Any, path: Path) -> NetworkRecord:
    """A NetworkRecord from JSON that must be an object with fields of the right types."""
    try:
        return NetworkRecord.checked(data)
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise Damaged(path, str(e)) from None


def save_network(net: NetworkRecord) -> None:
    files.make_dirs(config.paths().networks)
    files.write_json(network_path(net.name), net.to_dict())


def all_networks() -> list[NetworkRecord]:
    d = config.paths().networks
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else ():
        try:
            out.append(_network_from(read_json(p), p))
        except (FileNotFoundError, Damaged):
            continue  # a damaged one harms only itself: `network ls` shows it, `network rm` removes it
    return out


def damaged_networks() -> dict[str, str]:
    """name -> the one line about it, for each network record that cannot be read."""
    d = config.paths().networks
    out = {}
    for p in sorted(d.glob("*.json")) if d.is_dir() else ():
        try:
            load_network(p.stem)  # None if removed meanwhile
        except Damaged as e:
            out[p.stem] = str(e)
    return out


def network_lock() -> contextlib.AbstractContextManager:
    """Serialises network create/remove/reconcile."""
    return locked(config.paths().networks / ".lock")


def firewall_lock() -> contextlib.AbstractContextManager:
    """Serialises firewall transactions and the generation bookkeeping that follows each."""
    return locked(config.paths().networks / ".firewall.lock")
