"""A helper forked as `run` begins that imports pyroute2 beside the start, then plugs the veth in.

pyroute2 stays the netlink library, but importing it (its asyncio and ssl included) is
the largest single cost of a bridged `run`: ~110 ms here, a third of the whole command.
The import depends on nothing the start decides, so `prefetch`, at the process's first
moment, forks a helper that imports it on the machine's other CPU while this process
imports typer and click, parses, reserves the address and ports, writes the files,
changes the firewall and spawns PID 1. The helper then runs the one step that needs
pyroute2, links.add_endpoint, for PID 1, and reports. It applies the plan's own steps,
so --explain shows what the kernel got. (Forked later, at launch, it saved nothing
measurable: the import outlasted what was left of the start.)

The helper is forked by minibox.helper: it never outlives its parent, ignores the
terminal's Ctrl-C (the parent decides), holds /dev/null as stdio, and leaves with
os._exit: nothing of the parent's (buffers, atexit handlers) runs twice. Forked before the start takes any
lock or holds any port, it holds neither. An unused helper is killed and reaped before
the parent exits (entry.exit_now): not every host's init reaps orphans.
"""

from __future__ import annotations

import marshal
import os
import signal

from minibox import helper
from minibox.errors import MiniboxError
from minibox.model import NetworkMode


class LinkError(MiniboxError):
    """The helper's netlink step failed; the message is the helper's error."""


class Worker:
    """The helper process and the two pipes to it: jobs in, answers out."""

    def __init__(self) -> None:
        jobs_r, self._jobs = os.pipe()
        self._results, results_w = os.pipe()
        self.pid = helper.fork()
        if self.pid == 0:
            os.close(self._jobs)
            os.close(self._results)
            _serve(jobs_r, results_w)  # never returns
        os.close(jobs_r)
        os.close(results_w)

    def add_endpoint(self, steps: list, pid: int | str) -> None:
        """links.add_endpoint(steps, pid), in the helper."""
        self._call("add_endpoint", steps, pid)

    def remove_link(self, name: str, why: str = "") -> tuple[list, list[str]]:
        """links.remove_link(name, why), in the helper: (the step, if it was), (errors). A
        teardown goes on past failures: if the helper itself fails, it is done here."""
        try:
            return self._call("remove_link", name, why)
        except LinkError:
            from minibox.net import links

            return links.remove_link(name, why)

    def _call(self, job: str, *args):
        """One job, then the helper ends; raises LinkError with the helper's message."""
        try:
            _send(self._jobs, (job, _encode(args)))
            failure, result = _receive(self._results)
        except (OSError, EOFError, ValueError) as e:
            raise LinkError(f"the netlink helper (pid {self.pid}) ended without an answer: {e}") from None
        finally:
            self.close()
        if failure:
            raise LinkError(failure)
        return _decode(result)

    def close(self, kill: bool = False) -> None:
        """End the helper (EOF on its job pipe, or SIGKILL when the start failed and its
        import need not finish) and reap it. Idempotent."""
        if kill and self.pid > 0:
            os.kill(self.pid, signal.SIGKILL)
        for fd in (self._jobs, self._results):
            try:
                os.close(fd)
            except OSError:
                pass
        self._jobs = self._results = -1
        if self.pid > 0:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def _serve(jobs_r: int, results_w: int) -> None:
    code = 1
    try:
        try:
            from minibox.net import links, netlink

            netlink.iproute_module()  # the point of this process: the import, now
            failure = ""
        except Exception as e:  # noqa: BLE001 - said when the job comes
            failure = f"{type(e).__name__}: {e}"
        try:
            job, args = _receive(jobs_r)
        except (OSError, EOFError, ValueError):
            return  # the start ended before it needed us
        result = None
        if not failure:
            try:
                if job not in JOBS:
                    raise ValueError(f"no such job {job!r}")
                result = _encode(getattr(links, job)(*_decode(args)))
            except Exception as e:  # noqa: BLE001 - every failure goes back as the parent's error
                failure = f"{type(e).__name__}: {e}"
        _send(results_w, (failure, result))
        code = 0
    finally:
        os._exit(code)


def _encode(value):
    """Steps (plan Values) as marshal can carry them: ("step", kind, fields)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v) for v in value)
    if hasattr(value, "_asdict"):
        return ("step", type(value).__name__, value._asdict())
    return value


def _decode(value):
    from minibox.plan import steps

    if isinstance(value, tuple) and len(value) == 3 and value[0] == "step":
        return getattr(steps, value[1])(**value[2])
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v) for v in value)
    return value


# Framed, not read to EOF: PID 1 and the shim are forked from the parent after this helper
# and hold copies of the job pipe's write end until they exec.
def _send(fd: int, value) -> None:
    data = marshal.dumps(value)
    os.write(fd, len(data).to_bytes(4, "little") + data)  # a pipe holds 64 KiB: one write


def _receive(fd: int):
    size = int.from_bytes(_read_exact(fd, 4), "little")
    return marshal.loads(_read_exact(fd, size))


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the other end went away")
        data += chunk
    return data


JOBS = ("add_endpoint", "remove_link")  # what a Worker does, by the names links gives them
_early: Worker | None = None  # forked by begin, at the process's first moment
STARTS = ("run", "create")


def prefetch(args: list[str]) -> None:
    """Fork the helper before typer and click are even imported, if the command line reads
    as a start on a bridge network: its pyroute2 import then runs beside every import and
    step of the start and is done when the veth is due. This is a guess, not a parse (typer
    parses): a wrong one costs a helper that is killed, or a start that does its own."""
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in STARTS:
        return
    for i, arg in enumerate(args):
        mode = arg.split("=", 1)[1] if arg.startswith(("--network=", "--net=")) else \
            args[i + 1] if arg in ("--network", "--net") and i + 1 < len(args) else "bridge"
        if not NetworkMode.parse(mode).bridged:
            return
    begin()


def begin() -> None:
    """Fork the helper now (minibox-cni, for ADD and DEL; `prefetch` for the CLI)."""
    global _early
    try:
        _early = Worker()
    except OSError:
        pass  # the caller plugs its veth in itself


def take(mode: NetworkMode) -> Worker | None:
    """The helper `begin` forked, for a start on a bridge network; None when there is none
    (the caller then uses links itself, whose functions a Worker mirrors) or when the start
    turned out not to need one."""
    global _early
    early, _early = _early, None
    if early is not None and not mode.bridged:
        early.close(kill=True)
        return None
    return early


def discard() -> None:
    """Kill and reap a prefetched helper nobody used (the command failed before its start)."""
    global _early
    if _early is not None:
        _early.close(kill=True)
        _early = None
