"""Privilege dropping with python-prctl: Docker's 14 default capabilities, no_new_privs, signal reset.

Called in the container's PID 1 and in every exec'd process, just before execve. The
bounding set is what survives execve for root, so limiting it (and clearing the inheritable
and ambient sets) leaves exactly these capabilities in the new program.
"""

from __future__ import annotations

import os
import signal

import prctl

from minibox import linux
from minibox.plan.procsteps import CAP_NUMBERS

# Docker's default capability set (moby oci/caps/defaults.go), lower-case without CAP_.
DEFAULT_CAPS = ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                "audit_write")


def drop_privileges(keep: tuple[str, ...] = DEFAULT_CAPS) -> None:
    # Limit by the numbers of the caps we keep, never by the names of those we drop:
    # python-prctl 1.8 has no name for the newest caps (e.g. 40, checkpoint_restore),
    # and limit() clears every bit it was not given.
    prctl.capbset.limit(*[getattr(prctl, "CAP_" + c.upper()) for c in keep])
    prctl.cap_inheritable.limit()
    linux.clear_ambient_caps()
    prctl.set_no_new_privs(1)


def set_user(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """Become uid:gid with these supplementary groups. After drop_privileges: the bounding
    set is already limited, and setuid to a non-zero uid clears the permitted and effective
    sets, so a non-root user starts its command with no capabilities, as with Docker."""
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return max(CAP_NUMBERS.values())


def _mask(names: tuple[str, ...], top: int) -> int:
    return sum(1 << CAP_NUMBERS[n] for n in names if CAP_NUMBERS[n] <= top)


def set_capabilities(bounding: tuple[str, ...], effective: tuple[str, ...], permitted: tuple[str, ...],
                     inheritable: tuple[str, ...], ambient: tuple[str, ...], no_new_privs: bool) -> None:
    """OCI's five sets, exactly (caps this kernel lacks are skipped, as runc does). Called
    after the switch to the container's user, with PR_SET_KEEPCAPS kept the permitted set:
    raise effective from it first, to be allowed to change the rest."""
    top = last_cap()
    _, perm_now, inh_now = linux.capget()
    linux.capset(perm_now, perm_now, inh_now)
    keep = _mask(bounding, top)
    for cap in range(top + 1):
        if not keep & (1 << cap):
            linux.capbset_drop(cap)
    linux.capset(_mask(effective, top), _mask(permitted, top), _mask(inheritable, top))
    linux.clear_ambient_caps()
    # The kernel raises an ambient cap only if it is permitted and inheritable; runc skips
    # the others with a warning, and configs (runc spec's own) list them: skip them too.
    allowed = _mask(permitted, top) & _mask(inheritable, top)
    for name in ambient:
        if allowed & (1 << CAP_NUMBERS[name]):
            linux.ambient_raise(CAP_NUMBERS[name])
    prctl.set_keepcaps(False)
    if no_new_privs:
        prctl.set_no_new_privs(1)


def reset_signals() -> None:
    """Undo what Python did to signals: it ignores SIGPIPE and SIGXFSZ, and ignored
    signals stay ignored across execve (`yes | head -1` would print 'Broken pipe')."""
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # numbers glibc reserves for itself (32, 33)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
