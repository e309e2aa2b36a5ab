"""Links, addresses and routes: bridges with pyroute2, a container's veth pair with net.rtnetlink, host routes from /proc.

`ensure_*` converge (and are no-ops when things are already right); `remove_*` treat
"already gone" as success. The link steps come from plan.network, so what `--explain`
prints is what is applied here. pyroute2 (~145 ms to import) is loaded only when a
network's bridge must change: reading routes and checking a bridge that is already right
take /proc/net/route and two ioctls, and what every container start and removal does goes
through net.rtnetlink, which imports nothing heavy.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct

from minibox.net import netlink
from minibox.plan.ipam import Route
from minibox.plan.steps import AddrAdd, Hairpin, LinkDel, LinkUp, RouteAdd, SetMaster, Step, VethAdd


def _index(name: str) -> int | None:
    """A link's index in this namespace: an ioctl (pyroute2's link_lookup dumps and decodes
    every link, ~0.3 ms each in Python)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def host_routes() -> list[Route]:
    """IPv4 routes of the main table, as dst CIDR + device name (from /proc/net/route, which
    lists exactly those, in this network namespace)."""
    out = []
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) < 8:
                continue
            dst = ipaddress.IPv4Address(struct.pack("<I", int(fields[1], 16)))
            mask = bin(int(fields[7], 16)).count("1")
            out.append(Route(dst=f"{dst}/{mask}", dev=fields[0]))
    return out


def host_routes6() -> list[Route]:
    """IPv6 routes a new network's subnet must not overlap, from /proc/net/ipv6_route: the
    default, link-local, multicast, single addresses and loopback's left out."""
    out = []
    try:
        with open("/proc/net/ipv6_route") as f:
            lines = f.readlines()
    except FileNotFoundError:  # IPv6 is off in this kernel
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[9] == "lo":
            continue
        net = ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16)), strict=False)
        if net.prefixlen in (0, 128) or net.is_link_local or net.is_multicast:
            continue
        out.append(Route(dst=str(net), dev=fields[9]))
    return out


SIOCGIFFLAGS, SIOCGIFADDR, IFF_UP = 0x8913, 0x8915, 0x1
IFA_F_NODAD = 0x02  # an IPv6 address without duplicate address detection


def _is_ready(name: str, ip: str) -> bool:
    """The link exists, is up, and its primary IPv4 address is `ip`: two ioctls."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", name.encode(), 0))[:18])[1]
            addr = fcntl.ioctl(s, SIOCGIFADDR, struct.pack("16sH14x", name.encode(), socket.AF_INET))
        except OSError:
            return False
    return bool(flags & IFF_UP) and socket.inet_ntoa(addr[20:24]) == ip


def _has_addr6(name: str, ip: str) -> bool:
    """Does link `name` hold IPv6 address `ip`? /proc/net/if_inet6, no netlink."""
    want = ipaddress.IPv6Address(ip).packed.hex()
    try:
        with open("/proc/net/if_inet6") as f:
            return any(line.split()[0] == want and line.split()[5] == name for line in f)
    except FileNotFoundError:
        return False


def _add_addr(ipr, idx: int, cidr: str) -> None:
    """Add an address unless it is there. IPv6 ones without duplicate address detection
    (nodad): the subnet is ours alone, and DAD would leave the address unusable ~1 s."""
    ip, prefixlen = cidr.split("/")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    if any(ipaddress.ip_address(a.get("address")) == ipaddress.ip_address(ip)
           for a in ipr.get_addr(index=idx, family=family)):
        return
    extra = {"flags": IFA_F_NODAD} if family == socket.AF_INET6 else {}
    try:
        ipr.addr("add", index=idx, address=ip, prefixlen=int(prefixlen), **extra)
    except netlink.netlink_error() as e:
        if e.code != errno.EEXIST:
            raise


def ensure_bridge(steps: list[Step]) -> bool:
    """Create the bridge of `plan_bridge` if missing, fix its addresses and state. True if created."""
    br, addr, up, *addrs6 = steps
    if _is_ready(br.name, addr.cidr.split("/")[0]) and all(_has_addr6(br.name, a.cidr.split("/")[0])
                                                           for a in addrs6):
        return False
    with netlink.iproute() as ipr:
        idx = _index(br.name)
        created = idx is None
        if created:
            try:
                ipr.link("add", ifname=br.name, kind="bridge", address=br.mac)
            except netlink.netlink_error() as e:
                if e.code != errno.EEXIST:  # a parallel run made it first
                    raise
            idx = _index(br.name)
        for a in [addr, *addrs6]:
            _add_addr(ipr, idx, a.cidr)
        ipr.link("set", index=idx, state="up")
        return created


def remove_link(name: str, why: str = "") -> tuple[list[Step], list[str]]:
    """Delete link `name` if it is there: (the step, if it was), (errors)."""
    from minibox.net import rtnetlink

    step = LinkDel(name, why=why)
    try:
        idx = socket.if_nametoindex(name)  # an ioctl: a link already gone needs no netlink
    except OSError:
        return [], []
    try:
        with rtnetlink.Rtnl() as host:
            host.delete(idx, step.command())
    except rtnetlink.NetlinkFailed as e:
        if e.errno not in (errno.ENODEV, errno.ENOENT):
            return [step], [str(e)]
    return [step], []


def add_endpoint(steps: list[Step], pid: int | str) -> None:
    """Apply plan_endpoint's steps, in their order: the veth pair with its peer in the
    network namespace of process `pid` (or of the namespace file at path `pid`, CNI_NETNS),
    plugged into the bridge, and the peer's addresses and routes."""
    from minibox.net import rtnetlink

    with rtnetlink.Rtnl() as host, rtnetlink.Rtnl(pid) as ns:
        for step in steps:
            cmd = step.command()
            if isinstance(step, VethAdd):
                host.add_veth(step.host, step.peer, step.mac, pid, cmd)
            elif isinstance(step, SetMaster):
                host.set_master(socket.if_nametoindex(step.dev), socket.if_nametoindex(step.master), cmd)
            elif isinstance(step, Hairpin):
                host.hairpin(socket.if_nametoindex(step.dev), cmd)
            elif isinstance(step, LinkUp):
                (ns.set_up(ns.index(step.dev, cmd), cmd) if step.netns else
                 host.set_up(socket.if_nametoindex(step.dev), cmd))
            elif isinstance(step, AddrAdd):
                ns.add_addr(ns.index(step.dev, cmd), step.cidr, cmd)
            elif isinstance(step, RouteAdd):
                ns.add_default_route(step.gateway, cmd)
            else:
                raise ValueError(f"not an endpoint step: {step!r}")
