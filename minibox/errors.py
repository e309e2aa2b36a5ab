"""The error types minibox raises, each carrying the exit code the CLI turns it into.

A MiniboxError's message is what a user reads: one line that names the bad value and
says what would be valid. The CLI prints it as `minibox: <message>` and exits with
`code`; nothing else (no traceback) reaches the user.
"""

from __future__ import annotations

# Docker's exit codes. `run` says 125 for any failure of its own; the other verbs say 1
# when they fail on an object (missing, busy, not running) and 125 when the command itself
# is refused (a bad flag or value).
EXIT_FAILED = 1  # an existing (or missing) object made the verb fail: `rm` of a running container
EXIT_MINIBOX = 125  # minibox itself refused or failed
EXIT_CANNOT_EXEC = 126  # command found but not executable
EXIT_NOT_FOUND = 127  # command not found


def shown(value, limit: int = 80) -> str:
    """A value from outside (an image, a registry, an archive) as a message quotes it: in
    double quotes, control characters escaped (a registry's text must not drive the
    user's terminal), cut to `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return '"' + (text if len(text) <= limit else text[:limit] + "...") + '"'


class MiniboxError(Exception):
    """A failure a user can act on; `str(err)` is the one line they see."""

    code = EXIT_MINIBOX


class InvalidSpec(MiniboxError):
    """Bad input: a flag value, a name, a CIDR, a port spec."""


class NotFound(MiniboxError):
    """A container, image or network that does not exist."""

    code = EXIT_FAILED


class Conflict(MiniboxError):
    """The request collides with existing state (name in use, port taken, ...)."""

    code = EXIT_FAILED


class NotRunning(MiniboxError):
    """The verb needs a running container."""

    code = EXIT_FAILED


class BuildFailed(MiniboxError):
    """A build that could not finish: Docker's build exits 1 (a bad Dockerfile, a failing
    RUN, a source outside the context), and nothing is tagged."""

    code = EXIT_FAILED


class ExecFailed(MiniboxError):
    """The container's command could not be started; code is 126 or 127."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Damaged(MiniboxError):
    """A state file minibox cannot read (truncated, garbage): names the file."""

    def __init__(self, path, detail: str, remedy: str = "`minibox rm -f` removes what it belongs to"):
        self.path = str(path)
        super().__init__(f"{path} is damaged ({detail}): {remedy}")


class WriteFailed(MiniboxError):
    """A state file could not be written (a full disk, say); nothing half-written is left."""

    def __init__(self, path, error: OSError):
        self.path = str(path)
        self.errno = error.errno or 0  # ENOSPC for a full disk
        super().__init__(f"cannot write {path}: {error.strerror or error}")


class CleanupErrors(MiniboxError):
    """Teardown went on past failures; this lists every one of them."""

    def __init__(self, what: str, errors: list[str]):
        self.errors = list(errors)
        super().__init__(f"{what}: " + "; ".join(self.errors))
