"""What every firewall backend offers, the desired-state snapshot they work from, and how to run their tools.

A backend converges the kernel to a Snapshot: every network that uses it and every
published port of a live container on those networks. Four verbs:

    up(snap, net, ports)    a network and (optionally) a container's ports appear
    down(snap, ports)       a container's ports go (snap no longer holds them)
    net_down(snap, net)     a network goes (snap no longer holds it)
    rebuild(snap)           everything from scratch (`minibox network reconcile`)

`up` and `rebuild` return the Firewall steps they applied (for --explain) and raise
FirewallError; the teardown verbs return (steps applied, errors they went on past).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from minibox.errors import MiniboxError
from minibox.plan.rules import NetFacts, PortFacts


class FirewallError(MiniboxError):
    pass


@dataclass(frozen=True)
class Snapshot:
    nets: tuple[NetFacts, ...]
    ports: tuple[PortFacts, ...]


def run_tool(argv: list[str], stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    except FileNotFoundError:
        raise FirewallError(f"{argv[0]} is not installed: run scripts/setup (apt-get install nftables iptables)") from None
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise FirewallError(f"{' '.join(argv)} failed: {' '.join(detail[:2])}")
    return res


def backend(name: str):
    """The module implementing backend `name` ("nftables" or "iptables")."""
    if name == "iptables":
        from minibox.net.firewall import iptables

        return iptables
    if name == "nftables":
        from minibox.net.firewall import nftables

        return nftables
    raise MiniboxError(f'unknown firewall backend "{name}": use nftables or iptables')
