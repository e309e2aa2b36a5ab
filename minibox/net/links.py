"""Links, addresses and routes with pyroute2: bridges, a veth pair per container, host routes.

`ensure_*` converge (and are no-ops when things are already right); `remove_*` treat
"already gone" as success. The link steps come from plan.steps, so what `--explain`
prints is what is applied here.
"""

from __future__ import annotations

import errno
import socket

from minibox.net import netlink
from minibox.plan.ipam import Route
from minibox.plan.steps import (AddrAdd, BridgeAdd, Hairpin, LinkDel, LinkUp, RouteAdd, SetMaster, Step,
                                VethAdd)


def _index(ipr, name: str) -> int | None:
    """A link's index in ipr's namespace. pyroute2's link_lookup dumps and decodes every
    link (~0.3 ms each, in Python): with a hundred containers that is most of a run. In our
    own namespace an ioctl answers at once."""
    if getattr(ipr, "minibox_host", False):
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _host():
    ipr = netlink.iproute()
    ipr.minibox_host = True
    return ipr


def exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def _name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""


def host_routes() -> list[Route]:
    """IPv4 routes of the main table, as dst CIDR + device name."""
    with netlink.iproute() as ipr:
        return [Route(dst=f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}", dev=_name(r.get("oif", 0)))
                for r in ipr.get_routes(family=socket.AF_INET, table=254)]


def plan_bridge(name: str, mac: str, gateway: str, prefixlen: int) -> list[Step]:
    return [BridgeAdd(name, mac, why="a virtual switch for this network's containers (MAC pinned: "
                                     "a bridge otherwise takes its ports' MACs and changes as they come and go)"),
            AddrAdd(name, f"{gateway}/{prefixlen}", why="the bridge's own address: the containers' gateway, "
                                                        "and the host's foot in their network"),
            LinkUp(name, why="")]


def ensure_bridge(steps: list[Step]) -> bool:
    """Create the bridge of `plan_bridge` if missing, fix its address and state. True if created."""
    br, addr, up = steps
    with _host() as ipr:
        idx = _index(ipr, br.name)
        created = idx is None
        if created:
            try:
                ipr.link("add", ifname=br.name, kind="bridge", address=br.mac)
            except netlink.netlink_error() as e:
                if e.code != errno.EEXIST:  # a parallel run made it first
                    raise
            idx = _index(ipr, br.name)
        ip, prefixlen = addr.cidr.split("/")
        if not any(a.get("address") == ip for a in ipr.get_addr(index=idx, family=socket.AF_INET)):
            try:
                ipr.addr("add", index=idx, address=ip, prefixlen=int(prefixlen))
            except netlink.netlink_error() as e:
                if e.code != errno.EEXIST:
                    raise
        ipr.link("set", index=idx, state="up")
        return created


def remove_link(name: str, why: str = "") -> tuple[list[Step], list[str]]:
    """Delete link `name` if it is there: (the step, if it was), (errors)."""
    step = LinkDel(name, why=why)
    if not exists(name):  # an ioctl: no need to load pyroute2 for a link already gone
        return [], []
    with _host() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return [], []
        try:
            ipr.link("del", index=idx)
        except netlink.netlink_error() as e:
            if e.code not in (errno.ENODEV, errno.ENOENT):
                return [step], [f"ip link del {name}: {e}"]
    return [step], []


def plan_endpoint(veth: str, bridge: str, mac: str, ip: str, prefixlen: int, gateway: str, pid: str) -> list[Step]:
    return [
        VethAdd(veth, "eth0", pid, mac, why="a virtual cable: one end stays on the host, the other is born "
                                            "inside the container's network namespace as eth0"),
        SetMaster(veth, bridge, why="plug the host end into the bridge"),
        Hairpin(veth, why="let the bridge send a frame back out of the port it came in on, so a container "
                          "can reach its own published port through the host"),
        LinkUp(veth, why=""),
        AddrAdd("eth0", f"{ip}/{prefixlen}", netns=pid, why="the container's address, from IPAM"),
        LinkUp("eth0", netns=pid, why=""),
        RouteAdd("default", gateway, netns=pid, why="everything not on the bridge's subnet goes via the bridge"),
    ]


def add_endpoint(steps: list[Step], pid: int) -> None:
    veth, master, _hairpin, _up, addr, _eth_up, route = steps
    with _host() as ipr:
        ipr.link("add", ifname=veth.host, kind="veth",
                 peer={"ifname": veth.peer, "address": veth.mac, "net_ns_pid": pid})
        idx = _index(ipr, veth.host)
        br = _index(ipr, master.master)
        ipr.link("set", index=idx, master=br)
        ipr.brport("set", index=idx, mode=1)  # IFLA_BRPORT_MODE 1 = hairpin
        ipr.link("set", index=idx, state="up")
    ip, prefixlen = addr.cidr.split("/")
    with netlink.iproute_in(pid) as ns:
        eth = _index(ns, "eth0")
        ns.addr("add", index=eth, address=ip, prefixlen=int(prefixlen))
        ns.link("set", index=eth, state="up")
        ns.route("add", dst="default", gateway=route.gateway)

