"""Files written whole or not at all: a temporary file renamed into place, an exclusive create, and the temporaries a killed writer left.

A reader never sees half a file and a crash never leaves one in place: every replacement
is written to `.NAME.PID.tmp` beside NAME, then renamed over it. A failed write (a full
disk) removes its temporary file and names the path. A writer killed before its rename
leaves the temporary file; it is named after the writer's PID, so `gc` can tell a
leftover (its writer is gone) from a write still under way (see leftovers).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from minibox.errors import WriteFailed


def temporary(path: Path) -> Path:
    """Where this process writes `path`'s next version before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_file(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Atomically (a temporary file renamed into place, made with `mode`); on failure the
    temporary file is removed and WriteFailed names the path."""
    tmp = temporary(path)
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode),
                  "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if e.errno == errno.ENOENT and not path.parent.exists():
            raise  # the container was removed meanwhile: the caller knows what that means
        raise WriteFailed(path, e) from None


def write_json(path: Path, data: Any) -> None:
    """Atomically (see replace_file)."""
    import json  # here: `ps` writes nothing with it, and would import json for nothing

    replace_file(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def leftovers(directory: Path) -> list[Path]:
    """The temporary files in `directory` whose writer is gone: writes killed before their
    rename. Another process's write in progress stays."""
    try:
        entries = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        stem, _, pid = entry.removesuffix(".tmp").rpartition(".")
        if entry.startswith(".") and entry.endswith(".tmp") and stem[1:] and pid.isdigit() \
                and not os.path.exists(f"/proc/{pid}"):
            found.append(directory / entry)
    return found


def create_exclusive(path: Path, text: str) -> None:
    """Create `path` holding `text`, or FileExistsError (O_EXCL: of parallel creators one wins).
    A failed write (a full disk) leaves no file, not even an empty one; WriteFailed names it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise
    except OSError as e:
        raise WriteFailed(path, e) from None
    try:
        os.write(fd, text.encode())
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise WriteFailed(path, e) from None
    os.close(fd)


def make_dirs(path: Path, mode: int = 0o755) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as e:
        raise WriteFailed(path, e) from None
