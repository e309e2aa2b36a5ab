"""The iptables backend: our own chains, rewritten whole in one iptables-restore, and reading iptables' tables.

`iptables-restore --noflush` leaves every chain alone except those it declares; declaring
ours (`:MINIBOX - [0:0]`) empties them, and the rules that follow refill them, all in one
atomic commit per table. The jumps from the built-in chains are inserted only when
missing (another tool may have flushed them; Docker re-inserts its own at the top).
"""

from __future__ import annotations

from typing import Sequence

from minibox.net.firewall.base import FirewallError, run_tool
from minibox.plan import iptrules
from minibox.plan.steps import Firewall

NAME = "iptables"
TOOL = {False: "iptables", True: "ip6tables"}


def saved(table: str, v6: bool = False) -> list[str]:
    """iptables-save (`v6`: ip6tables-save) of one table; empty when that table does not
    exist (listing it through iptables-nft does not create it)."""
    return run_tool([TOOL[v6] + "-save", "-t", table], check=False).stdout.splitlines()


def forward_chain_exists(lines: list[str] | None = None) -> bool:
    return any(line.startswith(":FORWARD ") for line in (saved("filter") if lines is None else lines))


def present_jumps(lines_by_table: dict[str, list[str]], v6: bool = False) -> dict[str, list[str]]:
    """Our jumps from built-in chains, as iptables-save prints them, per table."""
    out: dict[str, list[str]] = {}
    for table, lines in lines_by_table.items():
        for line in lines:
            for t, chain, _, target in iptrules.jumps_of(v6):
                if t == table and line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}"):
                    out.setdefault(table, []).append(line)
    return out


def missing_jumps(lines_by_table: dict[str, list[str]], targets: tuple[str, ...] | None = None,
                  v6: bool = False) -> list:
    """Jumps of iptrules.jumps_of(v6) (only to `targets`, if given) not in the tables read."""
    present = present_jumps(lines_by_table, v6)
    out = []
    for jump in iptrules.jumps_of(v6):
        table, chain, _, target = jump
        if table not in lines_by_table or (targets is not None and target not in targets):
            continue
        if not any(line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}")
                   for line in present.get(table, [])):
            out.append(jump)
    return out


def apply(steps: Sequence[Firewall]) -> None:
    for step in steps:
        if step.backend in (NAME, "ip6tables"):
            run_tool([TOOL[step.backend == "ip6tables"] + "-restore", "-w", "--noflush"], "\n".join(step.lines) + "\n")


def teardown(full: bool = True, v6: bool = False) -> list[str]:
    """Remove our jumps and chains entirely (the last network is gone; `v6`: the last
    --ipv6 one, from ip6tables); full=False: only MINIBOX-FORWARD and its jump (the
    nftables backend's accept path). Returns errors."""
    tables = ("nat", "filter") if full else ("filter",)
    lines = {t: saved(t, v6) for t in tables}
    ours = {t: tuple(c for c in iptrules.chains_of(t, v6) if any(line.startswith(f":{c} ") for line in lines[t]))
            for t in tables}
    jumps = present_jumps(lines, v6)
    if not full:
        ours = {"filter": tuple(c for c in ours.get("filter", ()) if c == "MINIBOX-FORWARD")}
        jumps = {"filter": [j for j in jumps.get("filter", []) if j.endswith("-j MINIBOX-FORWARD")]}
    text = iptrules.ipt_teardown(jumps, ours)
    if text.strip():
        try:
            run_tool([TOOL[v6] + "-restore", "-w", "--noflush"], text)
        except FirewallError as e:
            return [str(e)]
    return []


def owned_elements(tag: str) -> list[tuple[str, str]]:
    """iptables has no elements: a container's rules go when the chains are rewritten."""
    return []


def listing() -> str:
    return "\n".join(line for v6 in (False, True) for t in ("nat", "filter") for line in saved(t, v6)
                     if "MINIBOX" in line or line.startswith("*"))
