"""What the engine has to tell the user as it works (a note, a warning, a pull's progress), handed to the stream the command chose.

Nothing below the command line prints (tests/unit/test_layers.py holds that): the engine
says things here, and the entry point decides where they go. `minibox` sends them to its
stderr; the shim's exit command to its own (the container's journal of failures); a
command that set nothing keeps them (they are dropped with it, and tests can read them).
"""

from __future__ import annotations

import io
from typing import TextIO

_stream: TextIO | None = None
kept: list[str] = []


def use(stream: TextIO | None) -> None:
    """Where notes go from now on (None: kept in `kept`)."""
    global _stream
    _stream = stream


def say(text: str) -> None:
    """One line for the user: `minibox: TEXT`."""
    if _stream is None:
        kept.append(text)
        return
    _stream.write(f"minibox: {text}\n")
    _stream.flush()


def stream() -> TextIO:
    """The stream itself, for output that draws (a pull's progress bars)."""
    return _stream if _stream is not None else io.StringIO()
