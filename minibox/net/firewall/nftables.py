"""The nftables backend (default): table `ip minibox`, fixed rules, networks and ports as set elements.

Every change is one `nft -f -` transaction, applied atomically. Bringing a container up
re-declares the table (a no-op when present), rewrites the fixed rules and adds its
elements; taking it down deletes exactly its elements, found by key or, if minibox's
state is gone, by the owner comment each element carries.

When iptables' FORWARD policy is DROP (Docker's doing), an accept here cannot overrule
it (every base chain on a hook must accept), so the accepts are mirrored into iptables'
FORWARD through MINIBOX-FORWARD (see firewall.iptables).
"""

from __future__ import annotations

import json

from minibox.net.firewall import iptables
from minibox.net.firewall.base import FirewallError, Snapshot, run_tool
from minibox.plan import rules
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import Firewall, Step

NAME = "nftables"


def _nft(lines: list[str]) -> None:
    run_tool(["nft", "-f", "-"], "\n".join(lines) + "\n")


def _step(lines: list[str], why: str) -> Firewall:
    return Firewall("nftables", tuple(lines), why=why)


def apply(steps: list[Step]) -> None:
    for step in steps:
        if isinstance(step, Firewall):
            if step.backend == "nftables":
                _nft(list(step.lines))
            else:
                iptables.apply([step])


def _coexistence(snap: Snapshot) -> list[Step]:
    """MINIBOX-FORWARD accepts in iptables, when its FORWARD policy would drop our traffic."""
    if not snap.nets or not iptables.forward_policy_drops():
        return []
    steps = iptables.converge_steps(snap, full=False)
    return [Firewall(s.backend, s.lines, why="iptables' FORWARD policy is DROP (Docker?): an nft accept cannot "
                                              "overrule it, so accept minibox's traffic there too") for s in steps]


def up(snap: Snapshot, net: NetFacts, ports: list[PortFacts]) -> list[Step]:
    steps: list[Step] = [_step(rules.nft_apply([net], ports),
                               why="minibox's nft table, its fixed rules, and this network's and "
                                   "container's elements, in one atomic transaction")]
    steps += _coexistence(snap)
    apply(steps)
    return steps


def down(snap: Snapshot, ports: list[PortFacts]) -> tuple[list[Step], list[str]]:
    if not ports:
        return [], []
    keys = [rules.nft_port_key(p) for p in ports]
    step = _step(rules.nft_delete_elements(keys), why="delete this container's published-port elements")
    try:
        apply([step])
        return [step], []
    except FirewallError:
        pass  # some already gone: delete what is still there, one by one
    return [step], _delete_present(keys)


def _delete_present(keys: list[tuple[str, str]]) -> list[str]:
    errors = []
    for key in keys:
        try:
            _nft(rules.nft_delete_elements([key]))
        except FirewallError as e:
            if "No such file" not in str(e) and "does not exist" not in str(e):
                errors.append(str(e))
    return errors


def net_down(snap: Snapshot, net: NetFacts) -> tuple[list[Step], list[str]]:
    errors: list[str] = []
    if not snap.nets:
        step = _step([f"add table ip {rules.TABLE}", f"delete table ip {rules.TABLE}"],
                     why="the last minibox network is gone: delete minibox's table")
        try:
            apply([step])
        except FirewallError as e:
            errors.append(str(e))
        if iptables.saved("filter"):
            errors += iptables.teardown(full=False)
        return [step], errors
    keys = rules.nft_network_keys(net)
    errors += _delete_present(keys)
    steps: list[Step] = [_step(rules.nft_delete_elements(keys), why="forget this network's bridge and subnet")]
    try:
        coexist = _coexistence(snap)
        apply(coexist)
        steps += coexist
    except FirewallError as e:
        errors.append(str(e))
    return steps, errors


def rebuild(snap: Snapshot) -> list[Step]:
    if not snap.nets:
        return net_down(snap, NetFacts("", "", "0.0.0.0/32"))[0]
    steps: list[Step] = [_step(rules.nft_rebuild(list(snap.nets), list(snap.ports)),
                               why="rebuild minibox's nft table from its state, atomically")]
    steps += _coexistence(snap)
    apply(steps)
    return steps


def elements_owned_by(tag: str) -> list[tuple[str, str]]:
    """(map, key) of every published-port element whose comment names `tag`'s owner:
    teardown that works when minibox's own state is lost."""
    res = run_tool(["nft", "-j", "list", "table", "ip", rules.TABLE], check=False)
    if res.returncode != 0:
        return []
    found = []
    for obj in json.loads(res.stdout).get("nftables", []):
        m = obj.get("map")
        if not m or m.get("name") not in ("hostport-any", "hostport-addr"):
            continue
        for key, _value in m.get("elem", []):
            elem = key.get("elem", {})
            if elem.get("comment", "").startswith(tag):
                parts = elem["val"]["concat"]
                found.append((m["name"], " . ".join(str(p) for p in parts)))
    return found


def listing() -> str:
    return run_tool(["nft", "list", "table", "ip", rules.TABLE], check=False).stdout
