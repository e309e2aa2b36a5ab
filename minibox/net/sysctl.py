"""Kernel settings under /proc/sys, read and written for the network namespace we run in."""

from __future__ import annotations

from minibox.plan.steps import Sysctl


def read(key: str) -> str:
    try:
        with open(Sysctl(key, "").proc_path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def apply(step: Sysctl) -> bool:
    """Set it if it differs; True when something changed."""
    if read(step.key) == step.value:
        return False
    with open(step.proc_path, "w") as f:
        f.write(step.value)
    return True
