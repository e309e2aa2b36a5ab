"""Deleting conntrack entries, so a (un)published port is not bypassed by flows that predate it.

NAT is decided once per connection, when conntrack creates the entry. A UDP sender that
keeps talking to a port keeps its old entry alive, and the new DNAT rule never sees it
(measured: the reply source stayed the host until the entry was deleted). So minibox
deletes entries by the host port it (un)publishes, and by the address a container leaves.

The kernel does the looking (net.nfnetlink, ctnetlink's CTA_FILTER): each dump returns only
the entries of one address or one protocol and port, so the cost does not grow with the
table. Parsing a busy host's 20,000 unrelated entries in Python made every `rm` take 5 s.
"""

from __future__ import annotations

import socket

from minibox.net import nfnetlink
from minibox.plan.steps import ConntrackFlush

PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def flush(steps: list[ConntrackFlush]) -> list[str]:
    """Delete the entries any step names; returns errors instead of raising (teardown goes on)."""
    errors = []
    for step in steps:
        try:
            if step.addr:
                # Flows it started (original source), and flows it answered (reply source):
                # direct ones and those DNAT'd to it through a published port alike.
                nfnetlink.conntrack_delete(src=step.addr)
                nfnetlink.conntrack_delete(src=step.addr, reply=True)
            else:
                nfnetlink.conntrack_delete(proto=PROTO[step.proto], dport=step.port,
                                           family=socket.AF_INET6 if step.ipv6 else socket.AF_INET)
        except OSError as e:
            errors.append(f"conntrack ({step.command().split(' ||')[0]}): {e.strerror or e}")
    return errors
