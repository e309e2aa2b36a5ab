"""`minibox cp`: files in and out of a container, running or stopped, with `docker cp`'s rules.

    minibox cp web:/etc/hostname ./h        out; a directory comes out whole
    minibox cp ./site web:/www              in; into /www/site if /www is a directory
    minibox cp web:/var/log - | tar t       out as a tar stream;  `- web:/dir` reads one in

Every path in the container is resolved inside its root (fs.inroot): a symlink in the
container leads somewhere in the container, never to the host. The copy itself runs in a
child process: for a running container its root is /proc/PID/root (its mounts included);
for a stopped one the child mounts the container's overlay and volumes again in a mount
namespace of its own, which vanishes when it exits. Ownership as Docker sets it: files
copied in belong to root, files copied out to the caller (-a keeps the source's owners).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile

from minibox import config
from minibox.errors import InvalidSpec, MiniboxError, NotFound
from minibox.model import ContainerRecord, ContainerState
from minibox.fs import fscopy, inroot
from minibox.value import Value


class Endpoint(Value):
    container: str  # "" for a host path
    path: str


def parse(text: str) -> Endpoint:
    """CTR:PATH, or a host path (a host path with ':' in it: write it as ./a:b)."""
    if text == "-" or text.startswith(("/", ".")) or ":" not in text:
        return Endpoint("", text)
    name, _, path = text.partition(":")
    return Endpoint(name, path or "/")


def check(src: Endpoint, dst: Endpoint) -> None:
    if bool(src.container) == bool(dst.container):
        raise InvalidSpec("cp copies between a container and the host: give one of SRC and DEST as CONTAINER:PATH "
                          "(e.g. `minibox cp web:/etc/hosts .`)")
    if src.path == "-" and dst.path == "-":
        raise InvalidSpec("cp: SRC and DEST cannot both be -")
    inside = src.path if src.container else dst.path
    if inside == "-":
        raise InvalidSpec("cp: - (a tar stream) goes on the host side, e.g. `minibox cp - web:/dir < files.tar`")


def plan(rec: ContainerRecord, state: ContainerState, src: Endpoint, dst: Endpoint) -> list:
    """The copy as steps, for --explain: a running container is frozen around it."""
    from minibox.model import RUNNING
    from minibox.plan.steps import CopyFiles, Freeze
    from minibox.runtime import cgroups

    running = state.status == RUNNING
    inside = f"/proc/{state.pid}/root" if running else f"{config.paths().container(rec.id)}/merged"
    copy_step = CopyFiles(f"{inside}{_abs(src.path)}" if src.container else src.path,
                          f"{inside}{_abs(dst.path)}" if dst.container else dst.path,
                          why="every path inside resolved in the container's root (openat2 RESOLVE_IN_ROOT); "
                              "owner, mode and times set through each new file's own fd")
    if not running:
        return [copy_step._replace(why=copy_step.why + "; the container is stopped: its overlay, mounted in a "
                                                       "mount namespace of the copy's own")]
    path = cgroups.freezer_file(cgroups.existing_dirs(config.cgroup_parent(), rec.id))
    if not path:
        return [copy_step._replace(why=copy_step.why + "; no freezer for this container's cgroup: copied while "
                                                       "it runs")]
    return [Freeze(path, True, why="freeze the container: none of its processes can swap a path for a symlink "
                                   "during the copy (CVE-2018-15664)"),
            copy_step,
            Freeze(path, False, why="thaw it, on every way out (a guard process does it if minibox is killed)")]


def _abs(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))  # (normpath keeps a leading "//")


def copy(rec: ContainerRecord, state: ContainerState, src: Endpoint, dst: Endpoint, archive: bool,
         follow: bool, steps: list, streams=(None, None)) -> None:
    """Carry out plan()'s steps: the copy in a child (see the module's docstring), the
    container frozen around it when they say so; the child's error, if any, raised here.
    `streams`: the caller's (stdin, stdout), binary, for a tar stream in or out (`-`)."""
    import contextlib

    from minibox.plan.steps import Freeze
    from minibox.runtime import cgroups

    freeze = next((s for s in steps if isinstance(s, Freeze)), None)
    with cgroups.held_frozen([os.path.dirname(freeze.path)]) if freeze else contextlib.nullcontext():
        _copy(rec, state, src, dst, archive, follow, streams)


def _copy(rec: ContainerRecord, state: ContainerState, src: Endpoint, dst: Endpoint, archive: bool,
          follow: bool, streams) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            root = _container_root(rec, state)
            if src.container:
                _out(root, src.path, dst.path, archive, follow, streams[1])
            else:
                _in(root, src.path, dst.path, archive, follow, streams[0])
        except MiniboxError as e:
            os.write(w, f"{e.code} {e}".encode())
            code = 1
        except OSError as e:
            os.write(w, f"1 {_describe(e)}".encode())
            code = 1
        except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
            os.write(w, f"1 cp: {e!r}".encode())
            code = 1
        finally:
            try:
                if streams[1] is not None:
                    streams[1].flush()
            finally:
                os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if msg:
        code, _, text = msg.partition(" ")
        err = MiniboxError(text)
        err.code = int(code) if code.isdigit() else 1
        raise err


def _describe(e: OSError) -> str:
    return f"cp: {e.strerror}: {e.filename}" if e.filename else f"cp: {e.strerror or e}"


def _container_root(rec: ContainerRecord, state: ContainerState) -> inroot.Root:
    from minibox.model import RUNNING

    if state.status == RUNNING:
        return inroot.Root(f"/proc/{state.pid}/root")
    from minibox import linux
    from minibox.plan import mounts as mplan
    from minibox.plan import ocifs
    from minibox.plan.runspec import volume_mounts
    from minibox.plan.steps import MS_PRIVATE, MS_REC, Mount
    from minibox.runtime.applier import Applier

    linux.unshare(linux.CLONE_NEWNS)
    Applier("/").apply(Mount("none", "/", flags=MS_REC | MS_PRIVATE))  # (in a chroot too)
    cdir = str(config.paths().container(rec.id))
    layout = mplan.RootfsLayout.for_container(rec.image_layers, cdir)
    if not os.path.isdir(layout.upper):
        raise NotFound(f"container {rec.name} has no filesystem left to copy from")
    # Its root and its volumes and binds, as its runtime spec mounts them (not tmpfs: nothing lives there now)
    binds = [m for m in volume_mounts(rec, str(config.paths().volumes)) if m["type"] == "bind"]
    applier = Applier(layout.merged)
    for step in [mplan.overlay(layout)] + [s for i, m in enumerate(binds)
                                           for s in ocifs.plan_mount(i, m, layout.merged, cdir)]:
        if isinstance(step, Mount):
            applier.apply(step)  # (a first use's copy-up is for the container's own start)
    return inroot.Root(layout.merged)


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a path inside the container, relative to its root."""
    norm = posixpath.normpath("/" + path)
    parent, name = posixpath.split(norm)
    return parent.lstrip("/") or ".", name


def _open_dir(root: inroot.Root, rel: str, what: str) -> int:
    try:
        return root.open(rel, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"no such directory in the container: /{rel if rel != '.' else ''} ({what})") from None
    except NotADirectoryError:
        raise InvalidSpec(f"/{rel} in the container is not a directory ({what})") from None


def _out(root: inroot.Root, path: str, dest: str, archive: bool, follow: bool, stdout) -> None:
    norm = posixpath.normpath("/" + path)
    contents = path.endswith("/.") or norm == "/"  # SRC/. : what is in the directory, not itself
    parent_rel, name = _split(norm) if norm != "/" else (".", ".")
    parent = _open_dir(root, parent_rel, path)
    try:
        if follow and name != ".":
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=parent)
                resolved = posixpath.normpath(posixpath.join("/" + parent_rel, target))
                os.close(parent)
                parent_rel, name = _split(resolved)
                parent = _open_dir(root, parent_rel, path)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"no such file in the container: {path}") from None
        if dest == "-":
            _tar_out(parent, name, posixpath.basename(norm) or ".", contents, stdout)
            return
        owner = fscopy.PRESERVE if archive else fscopy.Owner(os.getuid(), os.getgid())
        _copy_to_host(parent, name, st, dest, contents, owner)
    finally:
        os.close(parent)


def _copy_to_host(parent: int, name: str, st: os.stat_result, dest: str, contents: bool, owner) -> None:
    is_dir = stat.S_ISDIR(st.st_mode)
    if os.path.isdir(dest):
        target_dir, target = dest, (name if not contents else None)
    else:
        if dest.endswith("/") and not is_dir:
            raise NotFound(f"destination directory {dest} does not exist")
        target_dir, target = os.path.dirname(os.path.abspath(dest)), os.path.basename(os.path.abspath(dest))
        if not os.path.isdir(target_dir):
            raise NotFound(f"destination directory {target_dir} does not exist")
    dfd = os.open(target_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fscopy.copy_as(parent, name, dfd, target or name, owner, contents=target is None)
    finally:
        os.close(dfd)


def _tar_out(parent: int, name: str, arcname: str, contents: bool, stdout) -> None:
    with tarfile.open(fileobj=stdout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if contents:
            d = os.open(name, fscopy.DIR_FLAGS, dir_fd=parent)
            try:
                for child in sorted(os.listdir(d)):
                    _add(tar, d, child, child)
            finally:
                os.close(d)
        else:
            _add(tar, parent, name, arcname)
    stdout.flush()


def _add(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        d = os.open(name, fscopy.DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(d)):
                _add(tar, d, child, f"{arcname}/{child}")
        finally:
            os.close(d)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)


def _in(root: inroot.Root, src: str, path: str, archive: bool, follow: bool, stdin) -> None:
    if src == "-":
        from minibox.image import layers

        d = _open_dir(root, _rel(path), f"{path} must be a directory to extract into")
        try:
            sub = inroot.Root(inroot.fd_path(d))
            try:
                layers.extract(stdin, sub, layer=False)
            except tarfile.TarError as e:
                raise InvalidSpec(f"cp: the input is not a tar archive: {e}") from None
            finally:
                sub.close()
        finally:
            os.close(d)
        return
    contents = src.endswith("/.")
    host = os.path.abspath(src)
    if not os.path.lexists(host):
        raise NotFound(f"no such file on the host: {src}")
    st = os.stat(host) if follow else os.lstat(host)
    owner = fscopy.PRESERVE if archive else fscopy.Owner(0, 0)
    sparent = os.open(os.path.dirname(host) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        name = os.path.basename(host) or "."
        if follow and stat.S_ISLNK(os.lstat(host).st_mode):
            os.close(sparent)
            real = os.path.realpath(host)
            sparent = os.open(os.path.dirname(real), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            name = os.path.basename(real)
        rel = _rel(path)
        try:
            d = root.open(rel, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            d = -1
        if d >= 0:  # an existing directory: copy into it
            try:
                fscopy.copy_as(sparent, name, d, name, owner, contents)
            finally:
                os.close(d)
            return
        if path.endswith("/") and not stat.S_ISDIR(st.st_mode):
            raise NotFound(f"no such directory in the container: {path}")
        parent_rel, target = _split(path)
        pd = _open_dir(root, parent_rel, path)
        try:
            fscopy.copy_entry(sparent, name, pd, target, owner)
        finally:
            os.close(pd)
    finally:
        os.close(sparent)


def _rel(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/") or "."
