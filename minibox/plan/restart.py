"""Docker's restart policies (`--restart`): parsed, and the decision after each exit.

    no                 never restart (the default)
    on-failure[:N]     restart when the command exits non-zero, at most N times (N unset: no limit)
    always             restart whatever the exit code, unless the user stopped it
    unless-stopped     the same, for minibox: with no daemon to restart, the two differ only
                       in what Docker does when its daemon starts again

The decision is made by the shim's exit command (minibox.engine.cleanup), as conmon's exit
command does for Podman. `stop` and `kill` mark the container stopped by the user first,
so a policy never fights them. Between restarts the wait doubles from 100 ms, as Docker's
does, and starts again from 100 ms once a run has lasted 10 s.
Pure: no I/O here.
"""

from __future__ import annotations

from minibox.errors import InvalidSpec
from minibox.value import Value

NAMES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY = 0.1  # seconds before the first restart
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # a run this long starts the backoff again


class Policy(Value):
    name: str = "no"
    max_retries: int = 0  # on-failure:N; 0 = no limit

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


def parse(text: str) -> Policy:
    """`--restart` as Docker spells it."""
    name, sep, count = (text or "no").partition(":")
    if name not in NAMES:
        raise InvalidSpec(f'invalid --restart "{text}": use no, on-failure[:N], always or unless-stopped')
    if sep and name != "on-failure":
        raise InvalidSpec(f'invalid --restart "{text}": only on-failure takes a count (on-failure:3)')
    if sep and not (count.isdigit() and int(count) > 0):
        raise InvalidSpec(f'invalid --restart "{text}": the count must be a positive number (on-failure:3)')
    return Policy(name, int(count) if sep else 0)


def should_restart(policy: Policy, exit_code: int, restarts: int, stopped_by_user: bool) -> bool:
    """After an exit: start the container again?"""
    if policy.name == "no" or stopped_by_user:
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and (not policy.max_retries or restarts < policy.max_retries)
    return True


def backoff(quick: int, ran_for: float) -> tuple[int, float]:
    """(quick restarts in a row, seconds to wait) after a run of `ran_for` seconds, given the
    quick restarts before it: each quick one doubles the wait, a long run resets it."""
    quick = 0 if ran_for >= RESET_AFTER else quick
    return quick + 1, min(MAX_DELAY, FIRST_DELAY * 2 ** quick)


def check(text: str, remove: bool, detach: bool) -> str:
    """`--restart` as `run` may take it: the policy's text, or InvalidSpec."""
    pol = parse(text)
    if pol.name != "no" and remove:
        raise InvalidSpec(f'conflicting options: --restart {text} and --rm (a container removed when it exits '
                          "cannot be restarted)")
    return str(pol)  # in the foreground too, as Docker: the run returns at the first exit, restarts go on detached
