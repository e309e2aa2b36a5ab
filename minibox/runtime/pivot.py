"""pivot_root done safely: from the mount namespace's real root, with a private parent mount, the old root detached as a slave.

runc's trick: pivot onto "." with "." as put_old, then lazily detach the old root, which is
now stacked under the new one; no put_old directory needed.

Always from the mount namespace's real root, never from where minibox was started:
pivot_root hangs the new root where the caller's root mount was. Started in a chroot whose
'/' is a mount (a bind, as scripts/sandbox makes under fresh-check), that is somewhere
below the host's tree, and `chroot` + `cd ..` from inside the container reaches the host
(measured); whose '/' is a plain directory, pivot_root fails outright. Leaving the chroot
first, in PID 1's own mount namespace, fixes both, and on a normal host it is a no-op of a
few syscalls.
"""

from __future__ import annotations

import os

from minibox import linux
from minibox.errors import EXIT_MINIBOX
from minibox.plan.steps import MS_PRIVATE, MS_REC, MS_SLAVE


class PivotError(Exception):
    code = EXIT_MINIBOX


def pivot_root(new_root: str) -> None:
    os.chdir(new_root)
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    climb_to_namespace_root()
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    os.fchdir(here)
    os.close(here)
    # pivot_root refuses a shared new root or parent mount (a rootfsPropagation "shared"
    # config makes them so): both private, in this namespace only, as runc does.
    linux.mount("none", ".", None, MS_PRIVATE)
    parent_mount_private(os.getcwd())
    try:
        linux.pivot_root(".", ".")
    except OSError as e:
        raise PivotError(f"container init: pivot_root failed ({e.strerror}): minibox will not start a "
                         "container it cannot pivot into") from None
    # The old root, now stacked on the new one, may share propagation with the host's (an
    # OCI config's rootfsPropagation "shared"): a slave first, so that detaching it here
    # cannot unmount anything on the host. From the old root's own fd, as runc does: "."
    # would be the new root, whose mounts (an rshared volume) would turn into slaves.
    os.fchdir(old_root)
    os.close(old_root)
    linux.mount("none", ".", None, MS_SLAVE | MS_REC)
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def climb_to_namespace_root() -> None:
    """chroot to the root of our mount namespace from inside a chroot: the classic escape
    (chroot into a subdirectory, then `..` until it stops), done by minibox's own PID 1, in
    the container's new mount namespace, before anything of the container runs."""
    os.chroot(".")  # cwd (the new root) is now the root; the `..` below climb past it
    os.chdir("/")
    os.chroot("/proc")  # any directory below the root, so that cwd is outside the new root
    for _ in range(256):
        here, up = os.stat("."), os.stat("..")
        if (here.st_dev, here.st_ino) == (up.st_dev, up.st_ino):
            break
        os.chdir("..")
    os.chroot(".")


def parent_mount_private(new_root: str, inclusive: bool = False) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make that one mount
    (in this namespace only) private, as runc does. `inclusive`: the mount holding
    new_root itself, which may be new_root (an engine's overlay, before the root is bound
    onto itself: the bind's parent is then that overlay, and runc makes it private first)."""
    parent = (new_root.rstrip("/") or "/") if inclusive else (os.path.dirname(new_root.rstrip("/")) or "/")
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if (parent == mp or parent.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, shared = mp, any(x.startswith("shared:") for x in fields[6:fields.index("-")])
    if shared:
        linux.mount("none", best, None, MS_PRIVATE)


def make_all_private() -> None:
    """'/' is not a mount point (a chroot): make each mount we can see private instead."""
    with open("/proc/self/mountinfo") as f:
        points = sorted({line.split()[4] for line in f}, key=len)
    for mp in points:
        try:
            linux.mount("none", mp, None, MS_REC | MS_PRIVATE)
        except OSError:
            pass  # outside our chroot, or gone
