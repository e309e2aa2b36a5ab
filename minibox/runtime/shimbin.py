"""Builds the C shim (shim.c, shipped in this package) once, and finds it afterwards.

The binary is named after the size and modification time of its source (hashing it would
mean loading hashlib, ~3 ms on every start), under the state root's libexec/, so a
changed shim.c is rebuilt automatically and a stale binary is never used. `scripts/setup`
builds it ahead of time; the first `run` builds it otherwise (~0.2 s with cc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from minibox import config
from minibox.errors import MiniboxError

SOURCE = Path(__file__).with_name("shim.c")


def shim_path() -> Path:
    st = SOURCE.stat()
    return config.paths().libexec / f"minibox-shim-{st.st_size}-{st.st_mtime_ns}"


def ensure_shim() -> Path:
    path = shim_path()
    if path.exists():
        return path
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise MiniboxError("no C compiler to build the shim (cc); run scripts/setup or apt-get install build-essential")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    res = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if res.returncode != 0:
        raise MiniboxError(f"building the shim failed: {res.stderr.strip().splitlines()[-1:]}")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(ensure_shim())
