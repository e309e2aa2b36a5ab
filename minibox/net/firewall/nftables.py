"""The nftables backend (default): table `inet minibox`, fixed rules, networks and ports as set elements.

Every Firewall step is one `nft -f -` transaction, applied atomically. A step written for
iptables (the accept path in iptables' FORWARD, see net.firewall.coexist) goes to
iptables-restore. Elements carry their owner in a comment, so a container's can be found
and deleted even when minibox's own state is lost.
"""

from __future__ import annotations

import json
from typing import Sequence

from minibox.net.firewall.base import FirewallError, run_tool
from minibox.plan import rules
from minibox.plan.steps import Firewall

NAME = "nftables"


def apply(steps: Sequence[Firewall]) -> None:
    for step in steps:
        if step.backend != NAME:  # the accept path in iptables' (or ip6tables') FORWARD: net.firewall.coexist
            run_tool([f"{step.backend}-restore", "-w", "--noflush"], "\n".join(step.lines) + "\n")
            continue
        try:
            run_tool(["nft", "-f", "-"], "\n".join(step.lines) + "\n")
        except FirewallError:
            # Deleting what is already gone (a run killed before it added its elements) is
            # done, not an error; nft 1.0.6 has no `destroy`, so retry them one by one.
            if not all(line.startswith("delete element ") for line in step.lines):
                raise
            errors = delete_present([_key(line) for line in step.lines])
            if errors:
                raise FirewallError("; ".join(errors)) from None


def _key(line: str) -> tuple[str, str]:
    """(set, key) of a `delete element inet TABLE SET { KEY }` line."""
    head, _, rest = line.partition(" { ")
    return head.split()[-1], rest.rstrip(" }")


def delete_present(keys: list[tuple[str, str]]) -> list[str]:
    """Delete elements one by one, "already gone" counting as done; returns other errors."""
    errors = []
    for key in keys:
        try:
            run_tool(["nft", "-f", "-"], "\n".join(rules.nft_delete_elements([key])) + "\n")
        except FirewallError as e:
            if "No such file" not in str(e) and "does not exist" not in str(e):
                errors.append(str(e))
    return errors


def owned_elements(tag: str) -> list[tuple[str, str]]:
    """(map, key) of every published-port element whose comment names `tag`'s owner:
    teardown that works when minibox's own state is lost."""
    res = run_tool(["nft", "-j", "list", "table", "inet", rules.TABLE], check=False)
    if res.returncode != 0:
        return []
    found = []
    for obj in json.loads(res.stdout).get("nftables", []):
        m = obj.get("map")
        if not m or m.get("name") not in ("hostport-any", "hostport-addr", "hostport-any6", "hostport-addr6"):
            continue
        for key, _value in m.get("elem", []):
            elem = key.get("elem", {})
            if elem.get("comment", "").startswith(tag):
                parts = elem["val"]["concat"]
                found.append((m["name"], " . ".join(str(p) for p in parts)))
    return found


def listing() -> str:
    return run_tool(["nft", "list", "table", "inet", rules.TABLE], check=False).stdout
