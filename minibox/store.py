"""State on disk: atomic JSON writes, flock-based locks, and container/network record lookup.

Layout under the state root (see config.Paths):
    containers/ID/config.json   ContainerRecord, written once
    containers/ID/state.json    ContainerState, rewritten on every transition
    containers/ID/exit.json     written by the shim when PID 1 exits
    networks/NAME.json          NetworkRecord
    ipam/NETWORK/ADDRESS        one file per allocated address (see net/ipam_store)

Every write goes to a temporary file that is renamed into place, so a reader never sees
half a file and a crash never leaves one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

from minibox import config
from minibox.errors import Conflict, InvalidSpec, NotFound
from minibox.model import ContainerRecord, ContainerState, NetworkRecord


def secure_root() -> None:
    """The state root and its containers/ are root's alone (0700): each container's upper
    directory holds whatever the container wrote, setuid-root binaries included, and any
    host user able to reach one could run it (the CVE-2021-41091 pattern). Applied to an
    existing root too; two stat calls when nothing needs fixing, nothing made when missing."""
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
        os.makedirs(d, mode=0o700, exist_ok=True)
    path = config.paths().container(cid)
    path.mkdir()
    return path


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def global_lock() -> contextlib.AbstractContextManager:
    """Serialises what must be unique across containers: names, creation, removal."""
    return locked(config.paths().lock)


def container_lock(cid: str) -> contextlib.AbstractContextManager:
    return locked(config.paths().container(cid) / ".lock")


# --- containers -------------------------------------------------------------------


def container_ids() -> list[str]:
    d = config.paths().containers
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "config.json").exists())


def load_record(cid: str) -> ContainerRecord:
    return ContainerRecord.from_dict(read_json(config.paths().container(cid) / "config.json"))


def save_record(rec: ContainerRecord) -> None:
    write_json(config.paths().container(rec.id) / "config.json", rec.to_dict())


def load_state(cid: str) -> ContainerState:
    try:
        return ContainerState.from_dict(read_json(config.paths().container(cid) / "state.json"))
    except FileNotFoundError:
        return ContainerState()


def save_state(cid: str, state: ContainerState) -> None:
    write_json(config.paths().container(cid) / "state.json", state.to_dict())


def load_exit(cid: str) -> dict[str, Any] | None:
    """The shim's record of how PID 1 ended, or None while it runs."""
    try:
        return read_json(config.paths().container(cid) / "exit.json")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def all_records() -> list[ContainerRecord]:
    out = []
    for cid in container_ids():
        try:
            out.append(load_record(cid))
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue  # being created or removed right now
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
    if len(matches) > 1:
        names = ", ".join(load_record(c).name for c in matches)
        raise Conflict(f'container id prefix "{ref}" is ambiguous: it matches {names}; give more of the id')
    raise NotFound(f'no such container: "{ref}" (see `minibox ps -a`)')


# --- names: names/NAME holds the id of the container that has it -------------------------


def _name_path(name: str) -> Path:
    return config.paths().root / "names" / name


def owner_of_name(name: str) -> str | None:
    try:
        return _name_path(name).read_text().strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, OSError):
        return None


def name_taken(name: str) -> bool:
    owner = owner_of_name(name)
    return bool(owner) and (config.paths().container(owner) / "config.json").exists()


def reserve_name(name: str, cid: str) -> None:
    """Take `name` for container `cid`, atomically (O_EXCL), or raise Conflict."""
    path = _name_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            owner = owner_of_name(name)
            if owner and (config.paths().container(owner)).exists():
                raise Conflict(f'container name "{name}" is already in use; pick another with --name '
                               f'or remove it with `minibox rm {name}`') from None
            path.unlink(missing_ok=True)  # its container is gone: a leftover of a crash
            continue
        with os.fdopen(fd, "w") as f:
            f.write(cid + "\n")
        return
    raise Conflict(f'container name "{name}" is being taken by another run right now; pick another')


def release_name(name: str, cid: str) -> None:
    if owner_of_name(name) == cid:
        _name_path(name).unlink(missing_ok=True)


# --- networks ---------------------------------------------------------------------


def network_path(name: str) -> Path:
    return config.paths().networks / f"{name}.json"


def load_network(name: str) -> NetworkRecord | None:
    try:
        return NetworkRecord.from_dict(read_json(network_path(name)))
    except FileNotFoundError:
        return None


def save_network(net: NetworkRecord) -> None:
    config.paths().networks.mkdir(parents=True, exist_ok=True)
    write_json(network_path(net.name), net.to_dict())


def all_networks() -> list[NetworkRecord]:
    d = config.paths().networks
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            out.append(NetworkRecord.from_dict(read_json(p)))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return out


def network_lock() -> contextlib.AbstractContextManager:
    """Serialises network create/remove and firewall base changes."""
    return locked(config.paths().networks / ".lock")
