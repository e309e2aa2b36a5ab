"""A runtime-spec hook run: its program, with the container's state as JSON on stdin, within its timeout."""

from __future__ import annotations

import json
import subprocess

from minibox.errors import EXIT_MINIBOX
from minibox.plan.steps import RunHook
from minibox.runtime.command import InitError

HOOK_TIMEOUT = 30  # seconds, when the hook names none


def run_hook(hook: RunHook, state: dict) -> None:
    """A hook with the container's state on stdin; its failure (or timeout) fails the step."""
    env = dict(e.split("=", 1) for e in hook.env if "=" in e)
    try:
        res = subprocess.run(list(hook.args) or [hook.path], executable=hook.path, input=json.dumps(state).encode(),
                             env=env, capture_output=True, timeout=hook.timeout or HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}) timed out after {hook.timeout or HOOK_TIMEOUT} s") \
            from None
    except OSError as e:
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}): {e.strerror}") from None
    if res.returncode != 0:
        detail = res.stderr.decode(errors="replace").strip().splitlines()
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}) failed with exit status {res.returncode}"
                                      + (f": {detail[-1]}" if detail else ""))
