"""`minibox gc`: find what a crash left behind, by name prefix and owner tag, and remove it.

A kill -9 of minibox, or a reboot, can leave objects whose owner no longer exists: firewall
elements and rules tagged "minibox ctr ID", cgroups and veths named after an id, address
and name files, half-created container directories. Every one of them carries its owner's
id, so none needs minibox's state to be found. Returns the steps it took.
"""

from __future__ import annotations

import os
import re
import shutil
import socket

from minibox import config, store
from minibox.plan.steps import Firewall, RemovePath, Step

TAG = re.compile(r"minibox ctr ([0-9a-f]{12})")


def _known() -> set[str]:
    """Short ids of containers minibox still has a record of."""
    return {cid[:12] for cid in store.container_ids()}


def run() -> tuple[list[Step], list[str]]:
    from minibox.net import links
    from minibox.net.firewall import iptables, nftables
    from minibox.plan import rules
    from minibox.runtime import cgroups

    known, steps, errors = _known(), [], []
    d = config.paths().containers
    for entry in (d.iterdir() if d.is_dir() else ()):
        if not (entry / "config.json").exists() and entry.name[:12] not in known:
            shutil.rmtree(entry, ignore_errors=True)  # created, never finished (killed mid-run)
            steps.append(RemovePath(str(entry), "tree", why="a container directory without a record"))
    # nftables: published-port elements whose owner is gone
    gone = []
    for short in {m for m in TAG.findall(nftables.listing())} - known:
        gone += nftables.elements_owned_by(f"minibox ctr {short}")
    if gone:
        step = Firewall("nftables", tuple(rules.nft_delete_elements(gone)),
                        why="published-port elements of containers that no longer exist")
        try:
            nftables.apply([step])
            steps.append(step)
        except Exception as e:  # noqa: BLE001 - gc goes on past failures and reports them
            errors.append(str(e))
    # iptables: rewriting our chains from state drops the rules of containers that are gone
    if any(TAG.search(line) and TAG.search(line).group(1) not in known for line in iptables.listing().splitlines()):
        from minibox.net import networks

        steps += iptables.rebuild(networks.snapshot("iptables"))
    # cgroups, veths, address and name files named after an id
    parent = config.cgroup_parent()
    for root in cgroups.all_roots():
        top = f"{root}/{parent}"
        for name in (os.listdir(top) if os.path.isdir(top) else ()):
            if re.fullmatch(r"[0-9a-f]{64}", name) and name[:12] not in known:
                s, e = cgroups.remove([f"{top}/{name}"])
                steps, errors = steps + s, errors + e
    for _index, name in socket.if_nameindex():  # this network namespace's links (sysfs may show another's)
        if re.fullmatch(r"mbx[0-9a-f]{12}", name) and name[3:] not in known:
            s, e = links.remove_link(name, why="a veth whose container no longer exists")
            steps, errors = steps + s, errors + e
    ipam = config.paths().ipam
    for f in (ipam.glob("*/*") if ipam.is_dir() else ()):
        owner = f.read_text().strip() if f.is_file() and not f.name.startswith(".") else ""
        if owner and owner[:12] not in known:
            f.unlink(missing_ok=True)
            steps.append(RemovePath(str(f), why="an address held by a container that no longer exists"))
    for sub, what in (("names", "a name"), ("ports", "a host port")):
        d = config.paths().root / sub
        for f in (d.iterdir() if d.is_dir() else ()):
            if f.name.startswith("."):
                continue
            if f.read_text().strip()[:12] not in known:
                f.unlink(missing_ok=True)
                steps.append(RemovePath(str(f), why=f"{what} held by a container that no longer exists"))
    return steps, errors
