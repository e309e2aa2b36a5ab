"""Address allocation on disk: one file per address, ipam/NETWORK/ADDRESS, holding the owner's id.

Allocation takes the network's lock, lists the files, asks plan.ipam for the lowest free
address and creates its file with O_EXCL, so parallel runs can never get the same one.
Like CNI's host-local IPAM (/var/lib/cni/networks/NET/IP), which `ls` makes readable.
"""

from __future__ import annotations

import os
from pathlib import Path

from minibox import config, store
from minibox.errors import Conflict
from minibox.plan import ipam
from minibox.plan.steps import RemovePath, Step


def _dir(network: str) -> Path:
    return config.paths().ipam / network


def taken(network: str) -> dict[str, str]:
    d = _dir(network)
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        if not p.name.startswith("."):
            try:
                out[p.name] = p.read_text().strip()
            except FileNotFoundError:
                continue
    return out


def allocate(network: str, subnet: str, gateway: str, owner: str, requested: str = "") -> str:
    d = _dir(network)
    d.mkdir(parents=True, exist_ok=True)
    with store.locked(d / ".lock"):
        used = {name for name in os.listdir(d) if not name.startswith(".")}  # names suffice here
        net = ipam.parse_subnet(subnet)
        try:
            ip = ipam.check_requested(net, gateway, requested, used) if requested else ipam.lowest_free(net, gateway, used)
        except Conflict:
            # Before refusing, free addresses whose container is gone (a crash between
            # allocation and release); a live allocation always has its directory.
            if not _drop_stale(network):
                raise
            used = {name for name in os.listdir(d) if not name.startswith(".")}
            ip = ipam.check_requested(net, gateway, requested, used) if requested else ipam.lowest_free(net, gateway, used)
        fd = os.open(d / ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(owner + "\n")
        return ip


def _drop_stale(network: str) -> bool:
    dropped = False
    for ip, owner in taken(network).items():
        if not config.paths().container(owner).exists():
            (_dir(network) / ip).unlink(missing_ok=True)
            dropped = True
    return dropped


def release(network: str, ip: str, owner: str) -> tuple[list[Step], list[str]]:
    """Free `ip` if `owner` holds it (a later owner of a reused address keeps it)."""
    path = _dir(network) / ip
    try:
        if path.read_text().strip() == owner:
            path.unlink()
            return [RemovePath(str(path), why=f"give {ip} back to the network's address pool")], []
    except FileNotFoundError:
        pass
    except OSError as e:
        return [], [f"releasing {ip}: {e}"]
    return [], []


def release_network(network: str) -> None:
    d = _dir(network)
    for p in d.glob(".*"):
        p.unlink(missing_ok=True)
    try:
        d.rmdir()
    except FileNotFoundError:
        pass
