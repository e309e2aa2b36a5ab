"""Run's flags that shape the container's process and its view of the kernel, checked as Docker checks them: capabilities, ulimits, sysctls, devices, the stop signal, /dev/shm's size.

Each function takes what the user typed and returns it in one checked form (or refuses it
in one line naming the value and what is valid); plan.runspec then writes it into the
runtime spec. Pure.
"""

from __future__ import annotations

import re
import signal

from minibox.errors import InvalidSpec
from minibox.plan.procsteps import CAP_NUMBERS

ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack", "as")
# Docker's list of namespaced sysctls (moby's opts/sysctls and runc's validation): what the
# container's own IPC and network namespaces hold. Anything else is the host's.
SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
              "kernel.shmmni", "kernel.shm_rmid_forced")


def capability(text: str, flag: str) -> str:
    """A capability as a lower-case name without CAP_ ("net_admin"), or "all"."""
    name = text.strip().lower().removeprefix("cap_")
    if name == "all" or name in CAP_NUMBERS:
        return name
    raise InvalidSpec(f'{flag} "{text}": unknown capability (names look like NET_ADMIN or CAP_NET_ADMIN, or ALL)')


def capabilities(default: tuple[str, ...], add: tuple[str, ...], drop: tuple[str, ...],
                 held: tuple[str, ...]) -> tuple[str, ...]:
    """Docker's rule: drop first (ALL drops every default), then add (ALL adds every one
    this runtime holds itself: it cannot grant more)."""
    caps = [] if "all" in drop else [c for c in default if c not in drop]
    wanted = held if "all" in add else add
    return tuple(caps + [c for c in wanted if c not in caps])


def ulimit(text: str) -> tuple[str, int, int]:
    """--ulimit NAME=SOFT[:HARD] ("-1": unlimited) as (RLIMIT_NAME, soft, hard)."""
    name, eq, values = text.partition("=")
    soft, colon, hard = values.partition(":")
    try:
        lo, hi = int(soft), int(hard if colon else soft)
    except ValueError:
        lo = hi = None
    if not eq or name not in ULIMITS or lo is None or hi is None:
        raise InvalidSpec(f'invalid --ulimit "{text}": expected NAME=SOFT[:HARD], NAME one of {", ".join(ULIMITS)}')
    unlimited = 2 ** 64 - 1
    lo, hi = (unlimited if v == -1 else v for v in (lo, hi))
    if lo < 0 or hi < 0 or lo > hi:
        raise InvalidSpec(f'invalid --ulimit "{text}": the soft limit must be at most the hard one (-1: unlimited)')
    return f"RLIMIT_{name.upper()}", lo, hi


def sysctl(text: str, own_netns: bool) -> tuple[str, str]:
    """--sysctl KEY=VALUE, KEY one the container's own namespaces hold, as Docker allows."""
    key, eq, value = text.partition("=")
    if not eq or not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_*-]+)+", key):
        raise InvalidSpec(f'invalid --sysctl "{text}": expected KEY=VALUE, e.g. net.ipv4.ip_forward=1')
    if key.startswith("net."):
        if not own_netns:
            raise InvalidSpec(f'--sysctl {key}: the container shares a network namespace (--network host or '
                              "container:), so its net.* settings are not its own")
        return key, value
    if key in SYSCTL_IPC or key.startswith("fs.mqueue."):
        return key, value
    raise InvalidSpec(f'--sysctl {key} is not allowed: it is the host\'s, not the container\'s (allowed: net.*, '
                      "kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*)")


def device(text: str) -> tuple[str, str, str]:
    """--device HOST[:CONTAINER][:PERMISSIONS] as (host path, container path, "rwm" subset)."""
    parts = text.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm") and not parts[-1].startswith("/"):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0].startswith("/") or (len(parts) == 2 and not parts[1].startswith("/")):
        raise InvalidSpec(f'invalid --device "{text}": expected /HOST/PATH[:/CONTAINER/PATH][:rwm]')
    return parts[0], parts[1] if len(parts) == 2 else parts[0], perms


def stop_signal(text: str) -> str:
    """--stop-signal: a name (TERM, SIGTERM) or a number, as SIGNAME."""
    t = text.strip().upper()
    if t.isdigit():
        try:
            return signal.Signals(int(t)).name
        except ValueError:
            pass
    else:
        name = t if t.startswith("SIG") else "SIG" + t
        if name in signal.Signals.__members__:
            return name
    raise InvalidSpec(f'invalid --stop-signal "{text}": expected a signal name (SIGTERM, QUIT) or number')


def duration(text: str, flag: str) -> float:
    """A Go duration, as Docker's --health-* take them (30s, 1m30s, 500ms), in seconds."""
    t = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise InvalidSpec(f'invalid {flag} "{text}": give a duration like 30s, 1m30s or 500ms')
    return sum(float(n) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
