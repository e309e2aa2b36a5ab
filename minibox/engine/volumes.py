"""Named volumes: a directory each under volumes/NAME/_data, made on first use, kept until removed.

Like Docker's `local` driver: a volume outlives its containers; `volume rm` refuses one a
container (in any state) still names; `volume prune` removes the anonymous ones none names
(with -a, named ones too, as Docker 23+ does). A volume
is copied the image's content at its target the first time a container mounts it while
it is empty (the container's PID 1 does that, inside its root: runtime.applier).
"""

from __future__ import annotations

import json
import os
import shutil
import time

from minibox import config, files, store
from minibox.errors import Conflict, Damaged, InvalidSpec, NotFound
from minibox.plan.volumes import VOLUME_NAME
from minibox.value import Value


class Volume(Value):
    name: str
    created: float
    anonymous: bool = False

    @property
    def path(self) -> str:
        return str(config.paths().volumes / self.name / "_data")


def _dir(name: str):
    if not VOLUME_NAME.match(name):
        raise InvalidSpec(f'invalid volume name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
    return config.paths().volumes / name


def get(name: str) -> Volume:
    """The volume; NotFound if there is none; Damaged (one line, `volume rm` removes it) if
    its directory is there and its meta.json is missing or not what minibox wrote."""
    path = _dir(name) / "meta.json"
    remedy = f"`minibox volume rm {name}` removes it"
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        if _dir(name).is_dir():
            raise Damaged(path, "missing", remedy) from None
        raise NotFound(f'no such volume: "{name}" (see `minibox volume ls`)') from None
    except (ValueError, OSError) as e:
        raise Damaged(path, type(e).__name__, remedy) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("created", 0.0), (int, float)):
        raise Damaged(path, "not minibox's volume metadata", remedy)
    return Volume(name, meta.get("created", 0.0), bool(meta.get("anonymous", False)))


def ensure(name: str, anonymous: bool = False) -> tuple[Volume, bool]:
    """The volume, made now if it does not exist; (volume, whether it was made). A failed
    creation (a full disk) takes back the directory it made."""
    d = _dir(name)
    if (d / "meta.json").exists():
        return get(name), False
    made = not d.exists()
    try:
        files.make_dirs(d / "_data", 0o755)
        files.write_json(d / "meta.json", {"created": time.time(), "anonymous": anonymous})
    except BaseException:
        if made:
            shutil.rmtree(d, ignore_errors=True)
        raise
    return get(name), True


def create(name: str) -> Volume:
    if (_dir(name) / "meta.json").exists():
        raise Conflict(f'volume "{name}" already exists')
    return ensure(name)[0]


def all_volumes() -> list[Volume]:
    d = config.paths().volumes
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else ():
        try:
            out.append(get(p.name))
        except (NotFound, InvalidSpec, Damaged):
            continue  # `volume ls` lists the damaged ones apart (damaged())
    return out


def damaged() -> dict[str, str]:
    """name -> the one line about it, for each volume directory whose metadata cannot be read."""
    d = config.paths().volumes
    out = {}
    for p in sorted(d.iterdir()) if d.is_dir() else ():
        try:
            get(p.name)
        except Damaged as e:
            out[p.name] = str(e)
        except (NotFound, InvalidSpec):
            continue
    return out


def users(name: str) -> list[str]:
    """Names of containers (in any state) whose mounts name the volume."""
    return [r.name for r in store.all_records()
            if any(m.kind == "volume" and m.source == name for m in r.mounts)]


def remove(name: str) -> None:
    try:
        get(name)
    except Damaged:
        pass  # removable all the same: its directory goes, if no container names it
    # A run that names it after this check makes it again, empty: it is never half-removed under one.
    with store.global_lock():
        busy = users(name)
        if busy:
            raise Conflict(f'volume "{name}" is in use by container(s) {", ".join(busy)}: remove them first')
        shutil.rmtree(_dir(name))


def remove_anonymous(name: str) -> tuple[list, list[str]]:
    """An anonymous volume, with the container that made it (--rm, rm -v); (steps, errors)."""
    from minibox.plan.steps import RemovePath

    d = _dir(name)
    if not d.exists():
        return [], []
    shutil.rmtree(d)
    return [RemovePath(str(d), "tree", why="its anonymous volume: nothing else can name it")], []


def prune(all_: bool = False) -> list[str]:
    """Volumes no container names: anonymous ones, or (all_) named ones too, as Docker 23+."""
    gone = []
    with store.global_lock():
        for v in all_volumes():
            if (v.anonymous or all_) and not users(v.name):
                shutil.rmtree(_dir(v.name), ignore_errors=True)
                gone.append(v.name)
    return gone


def size(v: Volume) -> int:
    return bytes_under(v.path)


def bytes_under(path) -> int:
    """Bytes of the files under `path`, not following symlinks (a volume, a container's upper layer)."""
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for f in names:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total
