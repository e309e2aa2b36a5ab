"""Address allocation on disk: one file per address, ipam/NETWORK/ADDRESS, holding the owner's id.

Allocation takes the network's lock, lists the files, asks plan.ipam for the lowest free
address, lets the caller record it in the container's record, and only then creates the
file with O_EXCL: parallel runs never get the same address, and a crash never leaves a
file no record names. Like CNI's host-local IPAM (/var/lib/cni/networks/NET/IP).

An address is free again only on evidence that its holder is gone: no record names it,
and the id in the file (if it reads as one) has no container directory. What the file
says alone never frees an address: garbage written into a live container's file must not
hand its address to the next container.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable

from minibox import config, files, store
from minibox.errors import Conflict, Damaged
from minibox.model import EXITED
from minibox.plan import ipam
from minibox.plan.steps import RemovePath, Step

ID_RE = re.compile(r"[0-9a-f]{64}")


def _dir(network: str) -> Path:
    return config.paths().ipam / network


def taken(network: str) -> dict[str, str]:
    """address -> what its file says (its holder's id, or whatever else is in it)."""
    d = _dir(network)
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        if not p.name.startswith("."):
            try:
                out[p.name] = p.read_bytes().decode(errors="replace").strip()
            except OSError:
                out[p.name] = ""
    return out


def _used(d: Path) -> set[str]:
    return {name for name in os.listdir(d) if not name.startswith(".")}


def allocate(network: str, subnet: str, gateway: str, owner: str, requested: str = "",
             before_create: Callable[[str, str], None] = lambda ip, ip6: None, subnet6: str = "",
             gateway6: str = "", requested6: str = "") -> str:
    """The lowest free address of `subnet` (or `requested`), and of `subnet6` too on a
    dual-stack network: both chosen under the network's lock, `before_create(ip, ip6)`
    told (it records them), then their files made."""
    d = _dir(network)
    files.make_dirs(d)
    net = ipam.parse_subnet(subnet)
    net6 = ipam.parse_subnet6(subnet6) if subnet6 else None

    def choose(used: set[str]) -> tuple[str, str]:
        ip = ipam.check_requested(net, gateway, requested, used) if requested else \
            ipam.lowest_free(net, gateway, used)
        if net6 is None:
            return ip, ""
        return ip, (ipam.check_requested(net6, gateway6, requested6, used) if requested6 else
                    ipam.lowest_free(net6, gateway6, used))

    with store.locked(d / ".lock"):
        if not (d / INDEX).exists():  # the directory is new, or was deleted: the records first
            restore(network)
        try:
            ip, ip6 = choose(_used(d))
        except Conflict:
            # Before refusing, free addresses whose holder is provably gone (a crash).
            if not drop_stale(network):
                raise
            ip, ip6 = choose(_used(d))
        before_create(ip, ip6)
        files.create_exclusive(d / ip, owner + "\n")  # a full disk leaves no empty address file
        if ip6:
            try:
                files.create_exclusive(d / ip6, owner + "\n")
            except BaseException:
                (d / ip).unlink(missing_ok=True)
                raise
        return ip


INDEX = ".index"  # made with the directory, gone with it: an address file may be missing


def restore(network: str) -> list[tuple[str, str]]:
    """Write the file of every address a record claims on `network` that has none (its
    directory or file was deleted): the files are an index of the records, and a missing
    one must not hand a running container's address to the next. (address, holder) of each
    file written."""
    d = _dir(network)
    files.make_dirs(d)
    have = _used(d)
    out = []
    for ip, cid in claimed(network).items():
        if ip not in have and _holds(cid):
            with contextlib.suppress(FileExistsError):
                files.create_exclusive(d / ip, cid + "\n")
                out.append((ip, cid))
    with contextlib.suppress(OSError):  # a read-only root: nothing could take an address anyway
        (d / INDEX).touch()
    return out


def _holds(cid: str) -> bool:
    """Does the container hold its addresses now (not exited with them given back)?"""
    try:
        state = store.load_state(cid)
    except (Damaged, OSError):
        return True  # no evidence it let go
    return not state.released and state.status != EXITED


def claimed(network: str) -> dict[str, str]:
    """address -> id of each container whose record names it on `network` (any state but removed)."""
    out = {}
    for cid, rec in store.entries().items():
        if isinstance(rec, Damaged):
            continue
        for ep in rec.endpoints():
            if ep.network == network:
                out[ep.ip] = cid
                if ep.ip6:
                    out[ep.ip6] = cid
    return out


def stale(network: str) -> list[str]:
    """Addresses whose holder is gone, on evidence: no record names the address, and the id
    in its file (if the file holds one) has no container directory. Unreadable files and
    garbage count for nothing either way."""
    names = claimed(network)
    out = []
    for ip, content in taken(network).items():
        if ip in names:
            continue
        if ID_RE.fullmatch(content) and (config.paths().container(content).exists() or store.owner_exists(content)):
            continue
        out.append(ip)
    return out


def drop_stale(network: str) -> list[str]:
    dropped = []
    for ip in stale(network):
        (_dir(network) / ip).unlink(missing_ok=True)
        dropped.append(ip)
    return dropped


def held_by(cid: str) -> list[tuple[str, str]]:
    """(network, address) of every address file naming `cid`."""
    root = config.paths().ipam
    out = []
    for f in root.glob("*/*") if root.is_dir() else ():
        if f.name.startswith("."):
            continue
        try:
            if f.read_bytes().decode(errors="replace").strip() == cid:
                out.append((f.parent.name, f.name))
        except OSError:
            continue
    return out


def release(network: str, ip: str, owner: str) -> tuple[list[Step], list[str]]:
    """Free `ip` if `owner` holds it (a later owner of a reused address keeps it). A file
    that names no one (damaged) is freed when no other record claims the address."""
    path = _dir(network) / ip
    try:
        content = path.read_bytes().decode(errors="replace").strip()
        damaged_but_ours = not ID_RE.fullmatch(content) and claimed(network).get(ip, owner) == owner
        if content == owner or damaged_but_ours:
            path.unlink()
            return [RemovePath(str(path), why=f"give {ip} back to the network's address pool")], []
    except FileNotFoundError:
        pass
    except OSError as e:
        return [], [f"releasing {ip} ({path}): {e.strerror}"]
    return [], []


def release_network(network: str) -> None:
    d = _dir(network)
    for p in d.glob(".*"):
        p.unlink(missing_ok=True)
    try:
        d.rmdir()
    except (FileNotFoundError, OSError):
        pass
