"""Printing steps for people: what minibox did (--explain) or would do (--dry-run), as commands.

The steps printed are the objects that were applied: this module only formats them.
Colour only on a terminal (and never with NO_COLOR set); plain text when piped.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from minibox.plan.steps import PID, Step  # noqa: F401 - PID is part of this module's interface


def colors(stream: TextIO) -> tuple[str, str, str]:
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return "\033[2m", "\033[1m", "\033[0m"  # dim, bold, reset
    return "", "", ""


def script(steps: list[Step], pid: int | str = PID, names: dict[str, str] | None = None,
           color: tuple[str, str, str] = ("", "", "")) -> list[str]:
    """The lines of a commented script. `names` maps long literal values (a container's
    directory, its id) to shell variables, defined once at the top, to keep lines short."""
    dim, bold, reset = color
    names = names or {}
    out = [f"{var}={value}" for value, var in names.items()]

    def short(text: str) -> str:
        text = text.replace(PID, str(pid))
        for value, var in names.items():  # longest first: the directory contains the id
            text = text.replace(value, f"${var}")
        return text

    last_why = None
    for step in steps:
        if step.why and step.why != last_why:  # one comment for a run of like steps
            out.append(f"{dim}# {step.why}{reset}")
        last_why = step.why
        out.append(f"{bold}{short(step.command())}{reset}")
    return out


def show(title: str, steps: list[Step], pid: int | str = PID, names: dict[str, str] | None = None,
         stream: TextIO | None = None) -> None:
    """Each step's why as a comment, then its command: a script a learner can read and type."""
    stream = stream or sys.stderr
    color = colors(stream)
    lines = [f"{color[1]}# {title}{color[2]}"] + script(steps, pid, names, color)
    stream.write("\n".join(lines) + "\n\n")
    stream.flush()
