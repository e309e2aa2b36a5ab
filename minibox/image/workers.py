"""The layers of a pull fetched and unpacked at once, each in a process of its own.

Unpacking a layer is CPU work: inflating gzip, hashing twice (the blob and the tar),
parsing the tar, creating files. zlib lets go of the interpreter lock while it inflates,
but the rest holds it, so layers in threads queue for one lock: two layers of this
project's bench image took ~320 ms in threads against ~260 ms in two processes (390 ms
one after the other) on this 2-CPU machine. A forked worker needs nothing passed to it:
it inherits the registry session (its token) and runs the same function a thread would.

Each worker reports over a pipe of its own, in pickled frames: progress (for the bars
the parent draws), then its result or its exception. A worker is forked by
minibox.helper: it ignores Ctrl-C (the parent decides), never outlives the parent, holds
/dev/null as stdio and leaves with os._exit. On the first failure, or Ctrl-C, the parent
kills the workers it started, by PID, and reaps them; what they left half-unpacked is
named after their PIDs and removed by store.clean_tmp.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
from typing import Callable

from minibox import helper
from minibox.errors import MiniboxError

Progress = Callable[[int, int], None]
_HEADER = struct.Struct("I")


class _Worker:
    def __init__(self, index: int, job: Callable[[Progress], str], bar: Progress):
        self.index, self.bar, self.buf = index, bar, b""
        self.fd, w = os.pipe()
        self.pid = helper.fork()
        if self.pid == 0:
            os.close(self.fd)
            _serve(job, w)  # never returns
        os.close(w)

    def frames(self, data: bytes) -> list:
        """The whole frames received so far."""
        self.buf += data
        out = []
        while len(self.buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self.buf)
            if len(self.buf) < _HEADER.size + n:
                break
            out.append(pickle.loads(self.buf[_HEADER.size:_HEADER.size + n]))
            self.buf = self.buf[_HEADER.size + n:]
        return out

    def end(self, kill: bool = False) -> None:
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def run(jobs: list[Callable[[Progress], str]], bars: list[Progress], parallel: int) -> list[str]:
    """Every job's result, in order, with at most `parallel` running at once; the first
    failure (an exception raised in a worker) is raised here once all are ended."""
    results: list[str | None] = [None] * len(jobs)
    waiting = list(range(len(jobs)))
    running: dict[int, _Worker] = {}
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                with helper.ctrl_c_held():  # no Ctrl-C between the fork and the record
                    w = _Worker(waiting[0], jobs[waiting[0]], bars[waiting[0]])
                    running[w.fd] = w
                    waiting.pop(0)
            ready, _, _ = select.select(list(running), [], [])
            for fd in ready:
                w = running[fd]
                data = os.read(fd, 1 << 16)
                for kind, *value in w.frames(data):
                    if kind == "progress":
                        w.bar(*value)
                    elif kind == "done":
                        results[w.index] = value[0]
                    else:
                        raise value[0]
                if not data:
                    del running[fd]
                    w.end()
                    if results[w.index] is None:
                        raise MiniboxError(f"the worker unpacking layer {w.index + 1} (pid {w.pid}) ended "
                                           "without an answer")
    except BaseException:
        for w in running.values():
            w.end(kill=True)
        raise
    return [r for r in results if r is not None]


def _serve(job: Callable[[Progress], str], w: int) -> None:
    try:
        shown = [-1]

        def progress(done: int, total: int) -> None:
            step = done * 200 // total if total else done >> 20
            if step != shown[0] or done == total:  # what the bar can show, not every read
                shown[0] = step
                _send(w, ("progress", done, total))

        try:
            _send(w, ("done", job(progress)))
        except BaseException as e:  # noqa: BLE001 - every failure goes back as the parent's error
            _send(w, ("error", _portable(e)))
    finally:
        os._exit(0)


def _portable(e: BaseException) -> BaseException:
    """`e` if the parent can rebuild it from a pickle, else a MiniboxError with its text and
    exit code: an exception whose __init__ takes other arguments than its args (WriteFailed,
    ExecFailed) pickles, but does not unpickle."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - whatever pickle refuses
        plain = MiniboxError(str(e) if isinstance(e, MiniboxError) else f"{type(e).__name__}: {e}")
        plain.code = getattr(e, "code", plain.code)
        return plain


def _send(fd: int, frame: tuple) -> None:
    data = pickle.dumps(frame)
    data = _HEADER.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]
