"""Builds minibox's two C programs (shipped as source in this package) once, and finds them afterwards.

    minibox-shim   shim.c: a container's supervisor, PID 1's parent on the host
    minibox-exec   execer.c: the last execve into a container, run from a sealed memfd
                   (static, no libc: it runs inside the container's root)

A binary is named after the size and modification time of its source (hashing it would
mean loading hashlib, ~3 ms on every start), under the state root's libexec/, so a
changed source is rebuilt automatically and a stale binary is never used. `scripts/setup`
builds both ahead of time; the first `run` builds them otherwise (~0.2 s with cc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from minibox import config, files
from minibox.errors import MiniboxError

SOURCE = Path(__file__).with_name("shim.c")
EXECER = Path(__file__).with_name("execer.c")
FLAGS = {SOURCE: ["-O2", "-Wall"],
         EXECER: ["-O2", "-Wall", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-s"]}


def built_path(source: Path) -> Path:
    st = source.stat()
    name = "minibox-shim" if source == SOURCE else "minibox-exec"
    return config.paths().libexec / f"{name}-{st.st_size}-{st.st_mtime_ns}"


def ensure(source: Path) -> Path:
    path = built_path(source)
    if path.exists():
        return path
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise MiniboxError(f"no C compiler to build {source.name} (cc); run scripts/setup or apt-get install "
                           "build-essential")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.temporary(path)
    res = subprocess.run([cc, *FLAGS[source], "-o", str(tmp), str(source)], capture_output=True, text=True)
    if res.returncode != 0:
        raise MiniboxError(f"building {source.name} failed: {res.stderr.strip().splitlines()[-1:]}")
    os.replace(tmp, path)
    return path


def ensure_shim() -> Path:
    return ensure(SOURCE)


def ensure_execer() -> Path:
    return ensure(EXECER)


if __name__ == "__main__":
    print(ensure_shim())
    print(ensure_execer())
