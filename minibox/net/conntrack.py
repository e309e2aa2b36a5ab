"""Deleting conntrack entries, so a (un)published port is not bypassed by flows that predate it.

NAT is decided once per connection, when conntrack creates the entry. A UDP sender that
keeps talking to a port keeps its old entry alive, and the new DNAT rule never sees it
(measured: the reply source stayed the host until the entry was deleted). So minibox
deletes entries by the host port it (un)publishes, and by the address a container leaves.

The kernel does the looking (net.nfnetlink, ctnetlink's CTA_FILTER): each dump returns only
the entries of one address or one protocol and port, so the cost does not grow with the
table. Parsing a busy host's 20,000 unrelated entries in Python made every `rm` take 5 s;
only a table small enough for it (see WALK_US) is dumped once and matched here.
"""

from __future__ import annotations

import socket

from minibox.net import nfnetlink
from minibox.plan.steps import ConntrackFlush

PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


# One filtered dump walks the kernel's whole hash table (~10 ms here, whatever it holds); one
# unfiltered dump walks it once too, and then each entry it holds is decoded here (~8.5 µs,
# measured at 0 to 8,000 entries). So addresses (two filtered walks each) are matched in one
# dump unless the table holds more entries than the walks saved would pay for: one address,
# below ~1,000 entries; a hundred (`rm -f` of a hundred containers), below ~200,000.
WALK_US, DECODE_US = 10000, 10


def flush(steps: list[ConntrackFlush]) -> list[str]:
    """Delete the entries any step names; returns errors instead of raising (teardown goes on)."""
    errors = []
    by_family: dict[int, list[ConntrackFlush]] = {}
    for step in steps:
        if step.addr:
            by_family.setdefault(socket.AF_INET6 if ":" in step.addr else socket.AF_INET, []).append(step)
            continue
        try:
            nfnetlink.conntrack_delete(proto=PROTO[step.proto], dport=step.port,
                                       family=socket.AF_INET6 if step.ipv6 else socket.AF_INET)
        except OSError as e:
            errors.append(_error(step, e))
    for family, group in by_family.items():
        if (2 * len(group) - 1) * WALK_US > _entries() * DECODE_US:
            try:
                nfnetlink.conntrack_delete_sources({s.addr for s in group}, family)
            except OSError as e:
                errors.append(_error(group[0], e))
            continue
        for step in group:
            try:
                # Flows it started (original source), and flows it answered (reply source):
                # direct ones and those DNAT'd to it through a published port alike.
                nfnetlink.conntrack_delete(src=step.addr)
                nfnetlink.conntrack_delete(src=step.addr, reply=True)
            except OSError as e:
                errors.append(_error(step, e))
    return errors


def _entries() -> int:
    """How many entries this network namespace's table holds (a guess of ~all if unreadable)."""
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _error(step: ConntrackFlush, e: OSError) -> str:
    return f"conntrack ({step.command().split(' ||')[0]}): {e.strerror or e}"
