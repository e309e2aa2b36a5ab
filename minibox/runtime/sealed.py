"""The last execve into a container, made from a sealed memfd copy of minibox-exec, never from a host file (CVE-2019-5736).

Every process minibox starts in a container (PID 1 of `run`, an `exec`, minibox-oci's
PID 1 and exec) is a fork of minibox's Python until its execve. A container process can
open /proc/PID/exe of any process in its PID namespace that is *dumpable*, and the file
it gets is the host's python3: once that file is no longer running, it can be written,
and the next minibox command runs the container's code on the host (runc's CVE-2019-5736,
where the file was runc). Two things close that:

  1. prepare(), before joining the container: PR_SET_DUMPABLE 0, so /proc/PID/exe of this
     process opens for nobody but a holder of CAP_SYS_PTRACE in the host's user namespace;
     and a memfd holding minibox-exec (execer.c), sealed against writing and resizing.
  2. execve(), last: exec that memfd, which exec's the command. From the moment this
     process stops being Python, all /proc/PID/exe can reach is the sealed copy; even an
     image whose command is `#!/proc/self/exe` only makes that copy run again.
"""

from __future__ import annotations

import errno
import fcntl
import os

import prctl

MFD_EXEC = 0x0010  # the memfd may be executed (Linux 6.3+ asks to say so; older ones refuse the flag)
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def prepare(execer: str) -> int:
    """Non-dumpable from now on, and a sealed, close-on-exec memfd of the program at
    `execer` (read now: later this process may be inside the container's root)."""
    prctl.set_dumpable(False)
    with open(execer, "rb") as f:
        program = f.read()
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create("minibox-exec", flags | MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fd = os.memfd_create("minibox-exec", flags)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def execve(memfd: int, report: str, path: str, argv: tuple[str, ...] | list[str], env: dict[str, str]) -> None:
    """Become `path` with `argv` and `env`, through the sealed program. `report` says where a
    failed execve is told: "fN" writes minibox's "CODE message" frame to the error pipe N,
    "l2" a line to stderr; N is kept open for it (the program closes it on success).
    Returns only if the memfd itself cannot be executed (an OSError)."""
    fd = int(report[1:])
    os.set_inheritable(fd, True)
    try:
        os.execve(memfd, ["minibox-exec", report, path, f"exec {argv[0]!r}", *argv], env)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise OSError(e.errno, "the kernel refuses to execute a memfd (vm.memfd_noexec is 2?), which minibox "
                                   "needs to start a container's command safely") from None
        raise
