"""What every firewall backend offers (a small typed interface), and how their tools are run.

A backend applies Firewall steps that plan.firewall computed, and answers two questions
about the kernel: which elements carry an owner's tag (teardown without state), and what
its rules look like now (for people). Choosing, gathering facts and bookkeeping live in
net.firewall (the package), so neither backend imports the other.
"""

from __future__ import annotations

import subprocess
from typing import Protocol, Sequence

from minibox.errors import MiniboxError
from minibox.plan.steps import Firewall


class FirewallError(MiniboxError):
    pass


class Backend(Protocol):
    NAME: str

    def apply(self, steps: Sequence[Firewall]) -> None:
        """Carry out the steps written for this backend, each one atomic; raise FirewallError."""

    def owned_elements(self, tag: str) -> list[tuple[str, str]]:
        """(map, key) of each published-port element whose owner comment starts with `tag`."""

    def listing(self) -> str:
        """minibox's rules as the backend's own tool prints them."""


def run_tool(argv: list[str], stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    except FileNotFoundError:
        raise FirewallError(f"{argv[0]} is not installed: run scripts/setup (apt-get install nftables iptables)") from None
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise FirewallError(f"{' '.join(argv)} failed: {' '.join(detail[:2])}")
    return res
