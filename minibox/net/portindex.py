"""Published host ports, one file each: ports/PROTO-PORT-ADDRESS, naming the owner and where the port leads.

    ports/tcp-8080-any   ->   <container id> <name> <network> <container address> <container port> [<its IPv6 address>]

Two readers: a new `-p` checks only the files of its own port for conflicts, however many
containers run; and the firewall's desired state (every published port of every live
container) is this directory, read only when the rules must be re-asserted whole. A file
whose owner's directory is gone is a crash's leftover and is dropped when met.
"""

from __future__ import annotations

from pathlib import Path

from minibox import config, files, store
from minibox.model import PortMapping
from minibox.plan.rules import PortFacts


def directory() -> Path:
    return config.paths().root / "ports"


def _path(p: PortMapping) -> Path:
    return directory() / f"{p.proto}-{p.host_port}-{p.host_ip or 'any'}"


def _alive(owner: str) -> bool:
    return store.owner_exists(owner)


def published_on(proto: str, port: int) -> list[tuple[str, PortMapping]]:
    """(owner name, mapping) of live containers publishing proto/port."""
    out = []
    for f in directory().glob(f"{proto}-{port}-*") if directory().is_dir() else ():
        try:
            owner, name = f.read_text().split()[:2]
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not _alive(owner):
            f.unlink(missing_ok=True)
            continue
        addr = f.name.split("-", 2)[2]
        out.append((name, PortMapping("" if addr == "any" else addr, port, 0, proto)))
    return out


def add(facts: list[PortFacts], network: str) -> None:
    if not facts:
        return
    files.make_dirs(directory())
    for p in facts:
        f = _path(PortMapping(p.host_ip, p.host_port, p.ctr_port, p.proto))
        ip6 = f" {p.ctr_ip6}" if p.ctr_ip6 else ""
        files.replace_file(f, f"{p.owner} {p.owner_name} {network} {p.ctr_ip} {p.ctr_port}{ip6}\n")


def remove(owner: str, ports: tuple[PortMapping, ...] = ()) -> None:
    """Drop `owner`'s files: those of `ports`, or (ports unknown) every file naming it."""
    candidates = [_path(p) for p in ports] if ports else (list(directory().iterdir()) if directory().is_dir() else [])
    for f in candidates:
        try:
            if f.read_text().split()[0] == owner:
                f.unlink()
        except (OSError, IndexError, UnicodeDecodeError):
            pass


def all_facts(networks: set[str]) -> list[PortFacts]:
    """Every published port of a live container on one of `networks`: the firewall's desired state."""
    out = []
    for f in directory().iterdir() if directory().is_dir() else ():
        if f.name.startswith("."):
            continue
        try:
            owner, name, network, ctr_ip, ctr_port, *ip6 = f.read_text().split()
            proto, port, addr = f.name.split("-", 2)
            if len(ip6) > 1:
                continue
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # unreadable: gc decides about it from evidence, not here
        if network in networks and _alive(owner):
            out.append(PortFacts(owner, name, "" if addr == "any" else addr, int(port), proto, ctr_ip, int(ctr_port),
                                 ip6[0] if ip6 else ""))
    return sorted(out, key=lambda p: (p.proto, p.host_port, p.host_ip))
