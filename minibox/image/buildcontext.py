"""The build context: which of its files a COPY or ADD takes (.dockerignore's rules, globs, no path out of it, not even through a symlink), their digest for the cache, and the layer made of them.

Docker's rules, as its reference states them: a directory source copies what is in it;
several sources, or a destination ending in /, make the destination a directory; a
relative destination is below WORKDIR; ADD unpacks a local tar (plain or compressed) into
its destination, and takes no URL here. .dockerignore: one pattern a line (Go's
filepath.Match per path element, `**` for any depth), `!` to let a path back in, the last
pattern that matches deciding.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shlex
import stat
import tarfile
import tempfile
import time

from minibox import config
from minibox.errors import BuildFailed
from minibox.plan import dockerfile as df

OVERLAY_OPAQUE = "trusted.overlay.opaque"  # how an unpacked layer marks a directory that hides the ones below

def sources(ins: df.Instruction, context: str, ignore: list) -> list[tuple[str, str]]:
    """(host path, path in the image) for every file and directory the step copies, each
    source checked to be inside the context (a symlink that leads out is refused)."""
    form = ins.exec_form()
    words = list(form) if form is not None else shlex.split(ins.args)
    if len(words) < 2:
        raise BuildFailed(f"Dockerfile line {ins.line}: {ins.kind} needs a source and a destination")
    *srcs, dest = words
    if any(s.startswith(("http://", "https://")) for s in srcs):
        raise BuildFailed(f"Dockerfile line {ins.line}: {ins.kind} of a URL is not supported by minibox build")
    out: list[tuple[str, str]] = []
    as_dir = dest.endswith("/") or len(srcs) > 1
    for src in srcs:
        pattern = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        matches = sorted(p for p in context_files(context, ignore) if fnmatch.fnmatchcase(p, pattern)) \
            if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise BuildFailed(f"Dockerfile line {ins.line}: {ins.kind} failed: no source files were specified "
                              f'(nothing in the context matches "{src}")')
        for rel in matches:
            host = os.path.join(context, rel)
            real = os.path.realpath(host)
            if real != context and not real.startswith(context + os.sep):
                raise BuildFailed(f'Dockerfile line {ins.line}: {ins.kind} failed: "{src}" is outside the build '
                                  "context (through a symlink, or ..)")
            if not os.path.lexists(host) or ignored(rel, ignore):
                raise BuildFailed(f'Dockerfile line {ins.line}: {ins.kind} failed: file not found in build context '
                                  f'or excluded by .dockerignore: "{src}"')
            if os.path.isdir(real):  # its contents go into the destination, which it becomes
                out.append((real, dest.rstrip("/") or "/"))
                prefix = "" if rel == "." else rel + "/"
                out += [(os.path.join(context, sub), posixpath.join(dest, sub[len(prefix):]))
                        for sub in context_files(context, ignore) if sub.startswith(prefix)]
            elif ins.kind == "ADD" and tarfile.is_tarfile(real):
                out.append((real, dest))  # a local archive is unpacked into the destination
            else:
                out.append((real, posixpath.join(dest, posixpath.basename(rel)) if as_dir else dest))
    return out


def context_files(context: str, ignore: list) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames.sort()
        rel = os.path.relpath(dirpath, context)
        for name in sorted(dirnames + filenames):
            p = posixpath.normpath(posixpath.join(rel, name)) if rel != "." else name
            if not ignored(p, ignore):
                found.append(p)
    return found


def digest(files: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for host, target in files:
        st = os.lstat(host)
        h.update(f"{target}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISREG(st.st_mode):
            with open(host, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(host).encode())
    return h.hexdigest()


def layer(ins: df.Instruction, files: list[tuple[str, str]], workdir: str, owner: tuple[int, int]) -> str:
    """COPY or ADD's layer: `files` (from sources()) as a tar, relative paths below `workdir`,
    owned by `owner` (uid, gid: --chown's) and moded as --chmod says, stored; its diff id."""
    from minibox.image import store as images

    chmod = ins.flag("chmod")
    if chmod and not (chmod.isdigit() and set(chmod) <= set("01234567") and int(chmod, 8) <= 0o7777):
        raise BuildFailed(f'Dockerfile line {ins.line}: --chmod="{chmod}": give an octal mode, like 755')
    mode = int(chmod, 8) if chmod else None
    with tempfile.TemporaryFile(dir=tmpdir()) as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            made: set[str] = set()
            for host, target in files:
                target = posixpath.normpath(posixpath.join(workdir or "/", target)).lstrip("/")
                if ins.kind == "ADD" and os.path.isfile(host) and tarfile.is_tarfile(host):
                    _add_archive(tar, host, target, made)
                    continue
                _parents(tar, target, made)
                if not target or target in made:
                    continue
                made.add(target)
                info = tar.gettarinfo(host, arcname=target)
                info.uid, info.gid, info.uname, info.gname = owner[0], owner[1], "", ""
                if mode is not None:
                    info.mode = mode
                with open(host, "rb") if info.isreg() else open(os.devnull, "rb") as f:
                    tar.addfile(info, f if info.isreg() else None)
        out.seek(0)
        return images.add_layer(out)


def tmpdir() -> str:
    """images/tmp: where layer tars are written before they are stored."""
    d = config.paths().images / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def _parents(tar: tarfile.TarFile, target: str, made: set[str]) -> None:
    """The directories above `target` (0755, root's), each once: a layer names what it holds."""
    parts = target.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if parent not in made:
            made.add(parent)
            info = tarfile.TarInfo(parent)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)


def _add_archive(tar: tarfile.TarFile, host: str, target: str, made: set[str]) -> None:
    """ADD of a local tar (plain, gzip, bzip2, xz): its entries unpacked below `target`
    (add_layer checks each name, and each link, as it checks any layer's)."""
    with tarfile.open(host) as src:
        for member in src.getmembers():
            name = posixpath.normpath(posixpath.join(target, member.name.lstrip("/")))
            if name.startswith("../") or name == "..":
                raise BuildFailed(f'ADD {os.path.basename(host)}: the archive names "{member.name}", outside it')
            member.name = name.lstrip("/")
            _parents(tar, member.name, made)
            made.add(member.name)
            tar.addfile(member, src.extractfile(member) if member.isreg() else None)


def dockerignore(context: str) -> list[tuple[bool, str]]:
    """(exclude?, pattern) in order: the last pattern that matches a path decides (`!` re-includes)."""
    try:
        with open(os.path.join(context, ".dockerignore")) as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        out.append((not keep, pattern))
    return out


def ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    excluded = False
    for exclude, pattern in rules:
        if matches(rel, pattern):
            excluded = exclude
    return excluded


def matches(rel: str, pattern: str) -> bool:
    """Go's filepath.Match per path element, `**` for any number of them; a match of a
    directory covers everything below it."""
    import re

    parts = []
    for element in pattern.split("/"):
        parts.append(".*" if element == "**" else fnmatch.translate(element)[4:-3].replace(".*", "[^/]*"))
    regex = re.compile("^" + "/".join(parts).replace(".*/", "(?:.*/)?") + "(?:/.*)?$")
    return bool(regex.match(rel))


def image_sources(ins: df.Instruction, lowerdirs: tuple[str, ...]) -> list[tuple[str, str]]:
    """COPY --from: (host path, path in the image) for each source, read from another image's
    layers as overlayfs would show them (`lowerdirs` top first: a whiteout hides the name
    below it, an opaque directory everything below it). A source path that passes through a
    symlink of that image is refused rather than followed: followed on the host, it could
    lead out of the layer."""
    form = ins.exec_form()
    words = list(form) if form is not None else shlex.split(ins.args)
    if len(words) < 2:
        raise BuildFailed(f"Dockerfile line {ins.line}: COPY needs a source and a destination")
    *srcs, dest = words
    as_dir = dest.endswith("/") or len(srcs) > 1
    out: list[tuple[str, str]] = []
    for src in srcs:
        path = posixpath.normpath("/" + src).lstrip("/")
        if any(c in path for c in "*?["):
            raise BuildFailed(f'Dockerfile line {ins.line}: COPY --from="{ins.flag("from")}" "{src}": globs are not '
                              "supported by minibox build for --from; name the path")
        found = _topmost(lowerdirs, path, ins)
        if found is None:
            raise BuildFailed(f'Dockerfile line {ins.line}: COPY failed: "{src}" not found in '
                              f'--from="{ins.flag("from")}"')
        top, host = found
        if not os.path.isdir(host) or os.path.islink(host):
            out.append((host, posixpath.join(dest, posixpath.basename(path)) if as_dir else dest))
            continue
        out.append((host, dest.rstrip("/") or "/"))
        seen: dict[str, str] = {}
        hidden: set[str] = set()  # deleted or below an opaque directory, for the layers further down
        for layer in lowerdirs[top:]:
            root = os.path.join(layer, path) if path else layer
            chain = _dir_chain(layer, path)
            if chain is None:
                continue  # not in this layer
            if not chain:
                break  # a file, a symlink or a whiteout on the way hides this layer's and those below
            below: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, root)
                    if rel in seen or any(rel == h or rel.startswith(h + "/") for h in hidden):
                        continue
                    st = os.lstat(full)
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        below.add(rel)  # a whiteout: deleted in this layer
                        continue
                    seen[rel] = full
                    if stat.S_ISDIR(st.st_mode) and _xattr(full, OVERLAY_OPAQUE) == b"y":
                        below.add(rel)
            if _xattr(root, OVERLAY_OPAQUE) == b"y":
                break
            hidden |= below
        out += [(host_path, posixpath.join(dest, rel)) for rel, host_path in sorted(seen.items())]
    return out


def _topmost(lowerdirs: tuple[str, ...], path: str, ins: df.Instruction) -> tuple[int, str] | None:
    """(index of the layer, host path) of `path` as the image shows it, or None if deleted or absent."""
    parts = path.split("/") if path else []
    for i, layer in enumerate(lowerdirs):
        for depth in range(1, len(parts) + 1):
            here = os.path.join(layer, *parts[:depth])
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # deleted in this layer
            if depth < len(parts) and stat.S_ISLNK(st.st_mode):
                raise BuildFailed(f'Dockerfile line {ins.line}: COPY --from: "/{path}" passes through the symlink '
                                  f'"/{"/".join(parts[:depth])}"; name the path it leads to')
            if depth == len(parts):
                return i, here
            if stat.S_ISDIR(st.st_mode) and _xattr(here, OVERLAY_OPAQUE) == b"y":
                if not os.path.lexists(os.path.join(layer, *parts)):
                    return None  # an opaque directory above hides the lower layers' copy
        if not parts:
            return i, layer
    return None


def _dir_chain(layer: str, path: str) -> bool | None:
    """Whether `path` is a real directory in `layer` with a real directory at every step, each
    looked at with lstat (a symlink of the image is never followed on the host: it could lead
    out of the layer); None where the layer does not have it."""
    here = layer
    for part in path.split("/") if path else ():
        here = os.path.join(here, part)
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return False
        except FileNotFoundError:
            return None
    return True


def _xattr(path: str, name: str) -> bytes:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return b""
