"""`-v`, `--mount` and `--tmpfs` as Docker reads them, into mount specs; and where a mount may not go.

    -v /host/dir:/ctr/dir[:ro]     a bind (the host directory is made if missing, as Docker)
    -v NAME:/ctr/dir[:ro]          a named volume, made on first use
    -v /ctr/dir                    an anonymous volume (removed with the container by --rm)
    --mount type=bind|volume|tmpfs,source=...,target=...[,readonly]   (a missing bind source
                                   is an error here, as in Docker)
    --tmpfs /run[:size=64m,mode=1777]

No mount may cover '/', nor /proc, /sys or /dev or anything under them: those are the
kernel's views minibox sets up and masks. Pure.
"""

from __future__ import annotations

import json
import posixpath
import re

from minibox.errors import InvalidSpec
from minibox.model import MountSpec
from minibox.plan.mounts import Volume
from minibox.plan.steps import MakeDir, Step, WriteFile

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
KERNEL = ("/proc", "/sys", "/dev")
MODES = {"ro", "rw", "z", "Z", "nocopy"}


def check_target(target: str, what: str) -> str:
    if not target.startswith("/"):
        raise InvalidSpec(f'invalid mount target "{target}" in {what}: give an absolute path inside the container')
    t = posixpath.normpath(target)
    if t == "/":
        raise InvalidSpec(f'invalid mount target "{target}" in {what}: a mount cannot cover the container\'s root')
    if any(t == k or t.startswith(k + "/") for k in KERNEL):
        raise InvalidSpec(f'invalid mount target "{target}" in {what}: /{t.split("/")[1]} is the kernel\'s, set up '
                          "by minibox; mount somewhere else")
    return t


def parse_volume(text: str) -> MountSpec:
    """One -v."""
    parts = text.split(":")
    mode = ""
    if len(parts) == 3:
        source, target, mode = parts
    elif len(parts) == 2 and not set(parts[1].split(",")) <= MODES:
        source, target = parts
    elif len(parts) == 2:  # /ctr/path:ro, an anonymous volume
        source, target, mode = "", parts[0], parts[1]
    elif len(parts) == 1:
        source, target = "", parts[0]
    else:
        raise InvalidSpec(f'invalid -v "{text}": use /HOST/PATH:/CTR/PATH[:ro], NAME:/CTR/PATH[:ro] or /CTR/PATH')
    flags = set(mode.split(",")) - {""}
    if flags - MODES:
        raise InvalidSpec(f'invalid -v "{text}": unknown option "{sorted(flags - MODES)[0]}" (use ro or rw)')
    target = check_target(target, f'-v "{text}"')
    readonly = "ro" in flags
    if not source:
        return MountSpec("volume", "", target, readonly, nocopy="nocopy" in flags)
    if source.startswith("/"):
        return MountSpec("bind", posixpath.normpath(source), target, readonly, create_source=True)
    if not VOLUME_NAME.match(source):
        raise InvalidSpec(f'invalid -v "{text}": "{source}" includes invalid characters for a local volume name, only '
                          '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed; for a host directory, give its absolute path')
    return MountSpec("volume", source, target, readonly, nocopy="nocopy" in flags)


def parse_mount(text: str) -> MountSpec:
    """One --mount type=...,source=...,target=...[,readonly]."""
    fields: dict[str, str] = {}
    for item in text.split(","):
        k, eq, v = item.partition("=")
        k = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}.get(k.strip(), k.strip())
        if k in fields:
            raise InvalidSpec(f'invalid --mount "{text}": "{k}" is given twice')
        fields[k] = v.strip() if eq else "true"
    kind = fields.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidSpec(f'invalid --mount "{text}": type "{kind}" is not bind, volume or tmpfs')
    if "target" not in fields:
        raise InvalidSpec(f'invalid --mount "{text}": target= is missing')
    target = check_target(fields.pop("target"), f'--mount "{text}"')
    ro = fields.pop("readonly", "false").lower()
    if ro not in ("true", "false", "1", "0"):
        raise InvalidSpec(f'invalid --mount "{text}": readonly takes true or false')
    readonly = ro in ("true", "1")
    source = fields.pop("source", "")
    options = []
    for k in ("tmpfs-size", "tmpfs-mode"):
        if k in fields:
            options.append(f"{k[6:]}={fields.pop(k)}")
    nocopy = fields.pop("volume-nocopy", "false").lower() in ("true", "1")
    fields.pop("bind-propagation", None)
    fields.pop("consistency", None)
    if fields:
        raise InvalidSpec(f'invalid --mount "{text}": unknown option "{sorted(fields)[0]}"')
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidSpec(f'invalid --mount "{text}": a bind source must be an absolute host path')
        return MountSpec("bind", posixpath.normpath(source), target, readonly)
    if kind == "tmpfs":
        if source:
            raise InvalidSpec(f'invalid --mount "{text}": a tmpfs has no source')
        return MountSpec("tmpfs", "", target, readonly, tmpfs_options(",".join(options), text))
    if source and not VOLUME_NAME.match(source):
        raise InvalidSpec(f'invalid --mount "{text}": "{source}" is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-])')
    return MountSpec("volume", source, target, readonly, nocopy=nocopy)


def tmpfs_options(options: str, where: str) -> str:
    out = []
    for opt in (o for o in options.split(",") if o):
        k, _, v = opt.partition("=")
        if k == "size" and re.fullmatch(r"[0-9]+[kmgKMG%]?", v):
            out.append(f"size={v}")
        elif k == "mode" and re.fullmatch(r"[0-7]{3,4}", v):
            out.append(f"mode={v}")
        elif k in ("rw", "ro", "noexec", "exec", "nosuid", "suid", "nodev", "dev"):
            out.append(k)
        else:
            raise InvalidSpec(f'invalid tmpfs option "{opt}" in {where}: use size=64m, mode=1777, noexec, nosuid')
    return ",".join(out)


def parse_tmpfs(text: str) -> MountSpec:
    target, _, options = text.partition(":")
    target = check_target(target, f'--tmpfs "{text}"')
    opts = tmpfs_options(options, f'--tmpfs "{text}"')
    return MountSpec("tmpfs", "", target, "ro" in opts.split(","), opts)


def parse_all(volumes: list[str], mounts: list[str], tmpfs: list[str]) -> tuple[MountSpec, ...]:
    specs = [parse_volume(v) for v in volumes] + [parse_mount(m) for m in mounts] + [parse_tmpfs(t) for t in tmpfs]
    seen: set[str] = set()
    for s in specs:
        if s.target in seen:
            raise InvalidSpec(f'duplicate mount point "{s.target}": mount one thing there')
        seen.add(s.target)
    return tuple(specs)


def volume_dir(volume_root: str, name: str) -> str:
    return f"{volume_root}/{name}"


def to_volumes(mounts: tuple[MountSpec, ...], volume_root: str) -> tuple[Volume, ...]:
    """Each mount with where its content is on the host (a volume: volumes/NAME/_data)."""
    out = []
    for m in mounts:
        if m.kind == "volume":
            out.append(Volume("volume", f"{volume_dir(volume_root, m.source)}/_data", m.target, m.readonly,
                              copy_up=not m.nocopy))
        elif m.kind == "bind":
            out.append(Volume("bind", m.source, m.target, m.readonly))
        else:
            out.append(Volume("tmpfs", "", m.target, m.readonly, m.options))
    return tuple(out)


def plan_create(mounts: tuple[MountSpec, ...], volume_root: str, created: float,
                present: tuple[str, ...] = ()) -> list[Step]:
    """On the host, before the container: each volume's directory (made on first use, as
    Docker does) and each missing -v host directory."""
    steps: list[Step] = []
    for m in mounts:
        if m.kind == "volume":
            d = volume_dir(volume_root, m.source)
            steps.append(MakeDir(f"{d}/_data", why=f"volume {m.source[:12] if m.anonymous else m.source}: "
                                                   "a directory of minibox's, kept until `volume rm`"))
            steps.append(WriteFile(f"{d}/meta.json", json.dumps({"created": created, "anonymous": m.anonymous}),
                                   if_missing=True))
        elif m.kind == "bind" and m.create_source and m.source not in present:
            steps.append(MakeDir(m.source, why="-v makes a missing host directory, as Docker does"))
    return steps
