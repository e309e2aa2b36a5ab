"""The steps that put a network and a container's endpoint on the host: bridge, sysctls, veth pair, address, route.

Pure: names and addresses in, steps out. net.links and net.sysctl apply them; `--explain`
and `--dry-run` print the same objects.
"""

from __future__ import annotations

from minibox.model import NetworkRecord
from minibox.plan.steps import (
    AddrAdd,
    BridgeAdd,
    Hairpin,
    LinkUp,
    RouteAdd,
    SetMaster,
    Step,
    Sysctl,
    VethAdd,
)


def veth_name(cid: str) -> str:
    return f"mbx{cid[:12]}"  # 15 characters: the kernel's limit for an interface name


def plan_bridge(name: str, mac: str, gateway: str, prefixlen: int, gateway6: str = "",
                prefixlen6: int = 0) -> list[Step]:
    steps: list[Step] = [
        BridgeAdd(name, mac, why="a virtual switch for this network's containers (MAC pinned: "
                                 "a bridge otherwise takes its ports' MACs and changes as they come and go)"),
        AddrAdd(name, f"{gateway}/{prefixlen}", why="the bridge's own address: the containers' gateway, "
                                                    "and the host's foot in their network"),
        LinkUp(name, why="")]
    if gateway6:
        steps.append(AddrAdd(name, f"{gateway6}/{prefixlen6}", why="its IPv6 address (--ipv6): the containers' "
                                                                   "IPv6 gateway; nodad, as the subnet is ours"))
    return steps


def plan_sysctls(net: NetworkRecord) -> list[Sysctl]:
    steps = [Sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet", "1",
                    why="let 127.0.0.1 be routed out of this bridge (only this one), so "
                        "`curl 127.0.0.1:PORT` on the host reaches a published port")]
    if not net.internal:
        steps.append(Sysctl("net.ipv4.ip_forward", "1", why="the host must route between the bridge and its "
                                                            "uplink for egress and published ports"))
        if net.subnet6:
            # As Docker does for --ipv6. It makes every interface a router, and a router
            # ignores router advertisements unless that interface's accept_ra is 2.
            steps.append(Sysctl("net.ipv6.conf.all.forwarding", "1",
                                why="the same for IPv6 (a host-wide switch: with it, interfaces ignore router "
                                    "advertisements unless their accept_ra is 2)"))
    return steps


def plan_up(net: NetworkRecord) -> list[Step]:
    """The bridge and sysctls of `net`, in the order they are applied."""
    return plan_bridge(net.bridge, net.mac, net.gateway, net.prefixlen, net.gateway6,
                       net.prefixlen6) + plan_sysctls(net)


def plan_endpoint(veth: str, bridge: str, mac: str, ip: str, prefixlen: int, gateway: str, pid: str,
                  ifname: str = "eth0", ip6: str = "", prefixlen6: int = 0, gateway6: str = "") -> list[Step]:
    v6: list[Step] = []
    if ip6:
        v6 = [AddrAdd(ifname, f"{ip6}/{prefixlen6}", netns=pid, why="its IPv6 address, from the network's IPv6 "
                                                                    "subnet (nodad: no other host can hold it)"),
              RouteAdd("default", gateway6, netns=pid, why="IPv6 beyond the subnet goes via the bridge too")]
    return [
        VethAdd(veth, ifname, pid, mac, why="a virtual cable: one end stays on the host, the other is born "
                                            f"inside the container's network namespace as {ifname}"),
        SetMaster(veth, bridge, why="plug the host end into the bridge"),
        Hairpin(veth, why="let the bridge send a frame back out of the port it came in on, so a container "
                          "can reach its own published port through the host"),
        LinkUp(veth, why=""),
        AddrAdd(ifname, f"{ip}/{prefixlen}", netns=pid, why="the container's address, from IPAM"),
        LinkUp(ifname, netns=pid, why=""),
        RouteAdd("default", gateway, netns=pid, why="everything not on the bridge's subnet goes via the bridge"),
    ] + v6
