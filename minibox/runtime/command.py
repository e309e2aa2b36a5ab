"""A container's command found and started: Docker's 126/127 for what cannot run, and the last execve through the sealed minibox-exec.

Shared by every launch (runtime.init's PID 1, minibox-oci's, runtime.enter's exec'd
process). Failures are "CODE message" on the launcher's error pipe (fail), and the CODE
is the exit status: 126 for a command that cannot be executed, 127 for one not found.
"""

from __future__ import annotations

import os

from minibox import linux
from minibox.errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND
from minibox.runtime import caps, sealed


class InitError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def describe(e: OSError) -> str:
    """An OSError as one line: its message, and the path when the message lacks it."""
    text = e.strerror or str(e)
    path = e.filename if isinstance(e.filename, str) else ""
    return f"{text}: {path}" if path and path not in text else text


def fail(err_fd: int, code: int, message: str) -> None:
    try:
        os.write(err_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)


def execute(path: str, argv: tuple[str, ...], env: tuple[str, ...], seccomp: bytes, exec_fd: int,
            report: str) -> None:
    """The end of every start of a process in a container (PID 1 or exec, minibox's or
    minibox-oci's), once `path` is found (resolve_command): reset signals, load the seccomp
    filter, and execve through the sealed minibox-exec (runtime.sealed). Returns only by
    raising."""
    caps.reset_signals()
    if seccomp:
        linux.seccomp_load(seccomp)  # last: from here on only what the profile allows
    sealed.execve(exec_fd, report, path, argv, env_dict(env))


def env_dict(env: tuple[str, ...]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in env)


def resolve_command(cmd: str, env: tuple[str, ...]) -> str:
    """Find the program as execvp would, with the errors Docker reports (126/127)."""
    if "/" in cmd:
        candidates = [cmd]
    else:
        path = env_dict(env).get("PATH", "/usr/bin:/bin")
        candidates = [os.path.join(d or ".", cmd) for d in path.split(":")]
    denied = None
    for c in candidates:
        if os.path.isfile(c):
            if os.access(c, os.X_OK):
                return c
            denied = c
        elif os.path.isdir(c) and "/" in cmd:
            raise InitError(EXIT_CANNOT_EXEC, f'exec "{cmd}": is a directory')
    if denied:
        raise InitError(EXIT_CANNOT_EXEC, f'exec "{cmd}": permission denied')
    if "/" in cmd:
        raise InitError(EXIT_NOT_FOUND, f'exec "{cmd}": no such file or directory')
    raise InitError(EXIT_NOT_FOUND, f'exec "{cmd}": executable file not found in $PATH')
