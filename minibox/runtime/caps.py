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
