"""Bridge networks: plan, create, bring up, remove and reconcile them.

A network is a record (networks/NAME.json), a bridge named after it, two sysctls and the
firewall elements that make the fixed rules apply to it. `ensure_up` converges the bridge
and sysctls on every `run`, so a bridge deleted by hand comes back; firewall rules heal
through net.firewall's generation check; `minibox network reconcile` re-asserts it all.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import time
from typing import Callable

from minibox import notes
from minibox import config, store
from minibox.errors import Conflict, Damaged, InvalidSpec, NotFound
from minibox.model import NetworkRecord
from minibox.net import firewall, ipam_store, links, sysctl
from minibox.plan import firewall as fwplan
from minibox.plan import ipam
from minibox.plan import network as netplan
from minibox.plan import run as runplan
from minibox.plan.steps import RemovePath, Step, Sysctl

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
RESERVED = ("bridge", "none", "host", "default")
FORWARDING = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def validate_name(name: str) -> str:
    if name in RESERVED:
        raise InvalidSpec(f'"{name}" is a reserved network name: pick another')
    if not NAME_RE.match(name):
        raise InvalidSpec(f'invalid network name "{name}": use [a-zA-Z0-9][a-zA-Z0-9_.-], at most 64 characters')
    return name


def ensure_up(net: NetworkRecord) -> list[Step]:
    """Bridge and sysctls for `net`: converge (no netlink when already right); the steps."""
    steps = netplan.plan_up(net)
    links.ensure_bridge([s for s in steps if not isinstance(s, Sysctl)])
    for s in steps:
        if isinstance(s, Sysctl) and sysctl.apply(s) and s.key in FORWARDING:
            notes.say(f"note: enabled {s.key} (it was 0) so containers can reach the outside and be "
                      "reached through published ports")
    return steps


def check_routes(net: NetworkRecord) -> None:
    """Refuse to use a network whose subnet a host route now overlaps (a VPN came up, say)."""
    clash = ipam.conflicting_route(ipam.parse_subnet(net.subnet), links.host_routes(), own_dev=net.bridge)
    if clash:
        raise Conflict(f"network {net.name}'s subnet {net.subnet} overlaps the host route {clash.dst} dev "
                       f"{clash.dev}: containers there would be unreachable; remove the network and create it "
                       "with another --subnet")


def split_families(subnets: list[str], gateways: list[str], ipv6: bool) -> tuple[str, str, str, str]:
    """(subnet, gateway, subnet6, gateway6) from `--subnet`/`--gateway` given once per family, as
    Docker takes them; an IPv6 one needs --ipv6."""
    by: dict[int, list[str]] = {4: [], 6: []}
    for s in subnets:
        by[6 if ":" in s else 4].append(s)
    gw: dict[int, list[str]] = {4: [], 6: []}
    for g in gateways:
        gw[6 if ":" in g else 4].append(g)
    for fam in (4, 6):
        if len(by[fam]) > 1 or len(gw[fam]) > 1:
            raise InvalidSpec(f"more than one IPv{fam} --subnet or --gateway: give one of each family")
        if gw[fam] and not by[fam]:
            raise InvalidSpec(f"--gateway {gw[fam][0]} needs an IPv{fam} --subnet too")
    if by[6] and not ipv6:
        raise InvalidSpec(f"--subnet {by[6][0]} is IPv6: add --ipv6 to make a dual-stack network")
    one = lambda xs: xs[0] if xs else ""  # noqa: E731
    return one(by[4]), one(gw[4]), one(by[6]), one(gw[6])


def _plan6(nid: str, subnet6: str, gateway6: str, others: list[NetworkRecord]) -> tuple[str, str]:
    """The IPv6 subnet and gateway of a new --ipv6 network, checked as the IPv4 one is."""
    taken = [o.subnet6 for o in others if o.subnet6]
    if subnet6:
        sub = ipam.parse_subnet6(subnet6)
        for o in others:
            if o.subnet6 and sub.overlaps(ipam.parse_subnet6(o.subnet6)):
                raise Conflict(f"subnet {sub} overlaps network {o.name} ({o.subnet6}): pick another --subnet")
    else:
        sub = ipam.pick_subnet6(nid, taken + [r.dst for r in links.host_routes6()])
    clash = next((r for r in links.host_routes6() if sub.overlaps(ipaddress.IPv6Network(r.dst))), None)
    if clash:
        raise Conflict(f"subnet {sub} overlaps the host route {clash.dst} dev {clash.dev}: pick another --subnet")
    return str(sub), ipam.gateway_for(sub, gateway6)


def plan(name: str, subnet: str = "", gateway: str = "", internal: bool = False,
         firewall_backend: str = "", ipv6: bool = False, subnet6: str = "", gateway6: str = "") -> NetworkRecord:
    """The record of a new network, checked against host routes and the other networks;
    reads only (`create` saves and applies it, `run --dry-run` shows it)."""
    others = store.all_networks()
    nid = secrets.token_hex(32)
    bridge = config.DEFAULT_BRIDGE if name == config.default_network() else f"mbx-{nid[:11]}"
    # A route on this network's own bridge is a leftover of a run killed while it made the
    # network (the bridge exists, the record was never saved): not a reason to pick another
    # subnet, which would leave the default network off 10.222.0.0/24 for good.
    routes = [r for r in links.host_routes() if r.dev != bridge]
    if subnet:
        sub = ipam.parse_subnet(subnet)
        clash = ipam.conflicting_route(sub, routes)
        if clash:
            raise Conflict(f"subnet {sub} overlaps the host route {clash.dst} dev {clash.dev}: pick another --subnet")
        for o in others:
            if sub.overlaps(ipam.parse_subnet(o.subnet)):
                raise Conflict(f"subnet {sub} overlaps network {o.name} ({o.subnet}): pick another --subnet")
    else:
        if gateway:
            raise InvalidSpec("--gateway needs --subnet too")
        taken = [o.subnet for o in others]
        if name != config.default_network() and not any(o.name == config.default_network() for o in others):
            # The pool's first /24 is kept for the default network, made on first use, as
            # docker0 keeps 172.17/16: a network created before it must not take its subnet.
            taken.append(str(next(ipaddress.IPv4Network(config.DEFAULT_POOL).subnets(
                new_prefix=config.DEFAULT_POOL_PREFIX))))
        sub = ipam.pick_subnet(config.DEFAULT_POOL, config.DEFAULT_POOL_PREFIX, routes, taken)
    sub6, gw6 = _plan6(nid, subnet6, gateway6, others) if ipv6 else ("", "")
    return NetworkRecord(name=name, id=nid, bridge=bridge, subnet=str(sub), gateway=ipam.gateway_for(sub, gateway),
                         mac=ipam.bridge_mac(nid), internal=internal,
                         firewall=firewall_backend or config.firewall_backend(), created=time.time(),
                         subnet6=sub6, gateway6=gw6)


def create(name: str, subnet: str = "", gateway: str = "", internal: bool = False,
           firewall_backend: str = "", ipv6: bool = False, subnet6: str = "",
           gateway6: str = "") -> tuple[NetworkRecord, list[Step]]:
    name = validate_name(name) if name != config.default_network() else name
    fw = firewall_backend or config.firewall_backend()
    firewall.backend(fw)  # validates the name
    with store.network_lock():
        if store.load_network(name):
            raise Conflict(f'network "{name}" already exists (see `minibox network ls`)')
        fw = _one_backend(fw, explicit=bool(firewall_backend or os.environ.get("MINIBOX_FIREWALL_BACKEND")))
        net = plan(name, subnet, gateway, internal, fw, ipv6, subnet6, gateway6)
        try:
            steps = ensure_up(net)
            steps += firewall.change(fw, lambda ff: fwplan.add_network(ff, runplan.net_facts(net)),
                                     networks_change=True)
            store.save_network(net)
        except BaseException:
            _teardown(net)
            raise
    return net, steps


def _one_backend(fw: str, explicit: bool) -> str:
    """The backend of a new network: the one this host's networks use. Two at once share
    iptables' FORWARD chain (the nftables backend's accept path is there too), and each
    rewrite of it by one backend cut the other's networks off (#24): like Docker, one host,
    one backend. Asked for explicitly, another one is refused."""
    others = [n for n in store.all_networks() if n.firewall != fw]
    if not others:
        return fw
    if explicit:
        names = ", ".join(n.name for n in others[:3]) + (" ..." if len(others) > 3 else "")
        raise Conflict(f"this host's minibox networks use {others[0].firewall} ({names}): minibox keeps one firewall "
                       f"backend per host; remove those networks before creating one on {fw}")
    return others[0].firewall


def get(name: str) -> NetworkRecord:
    net = store.load_network(name)
    if net is None:
        known = ", ".join(n.name for n in store.all_networks()) or "none yet"
        raise NotFound(f'no such network: "{name}" (networks: {known}; create one with `minibox network create`)')
    return net


def default() -> NetworkRecord:
    """The default network, created on first use like Docker's docker0."""
    name = config.default_network()
    net = store.load_network(name)
    if net is not None:
        return net
    try:
        return create(name)[0]
    except Conflict:
        return get(name)  # a parallel run created it first


def containers_on(name: str) -> list:
    return [r for r in store.all_records() if any(e.network == name for e in r.endpoints())]


def remove(name: str, busy: Callable[[NetworkRecord], list[str]]) -> tuple[list[Step], list[str]]:
    """Remove network `name` unless `busy(net)` names containers still using it. Of parallel
    removals exactly one succeeds: the record is read again under the lock."""
    with store.network_lock():
        try:
            net = get(name)
        except Damaged:
            return _remove_damaged(name, busy)
        users = busy(net)
        if users:
            raise Conflict(f"network {name} is in use by running container(s) {', '.join(users)}: "
                           "stop or remove them first")
        steps, errors = _teardown(net)
        ipam_store.release_network(name)
        store.network_path(name).unlink(missing_ok=True)
    return steps, errors


def _remove_damaged(name: str, busy: Callable[[NetworkRecord], list[str]]) -> tuple[list[Step], list[str]]:
    """`network rm` of a network whose record cannot be read: the record and its address
    files go; its bridge and rules, which no record names now, are gc's (the caller runs it)."""
    users = busy(NetworkRecord(name=name, id="", bridge="", subnet="", gateway="", mac=""))
    if users:
        raise Conflict(f"network {name} is in use by running container(s) {', '.join(users)}: "
                       "stop or remove them first")
    path = store.network_path(name)
    path.unlink(missing_ok=True)
    ipam_store.release_network(name)
    return [RemovePath(str(path), why="its record, which cannot be read")], []


def _teardown(net: NetworkRecord) -> tuple[list[Step], list[str]]:
    """Firewall elements, then the bridge; goes on past errors and returns them all."""
    steps: list[Step] = []
    errors: list[str] = []
    try:
        steps += firewall.change(net.firewall, lambda ff: fwplan.remove_network(ff, runplan.net_facts(net)),
                                 networks_change=True)
    except firewall.FirewallError as e:
        errors.append(str(e))
    remaining = [n for n in store.all_networks() if n.firewall == "nftables" and n.name != net.name]
    if net.firewall == "nftables" and (not remaining or net.subnet6 and not any(n.subnet6 for n in remaining)):
        from minibox.net.firewall import coexist

        errors += coexist.teardown(v6=True)  # the last --ipv6 network: ip6tables' accept path goes
        if not remaining:
            errors += coexist.teardown()
    if net.firewall == "iptables" and not any(n.firewall == "iptables" and n.name != net.name
                                              for n in store.all_networks()):
        from minibox.net.firewall import iptables

        errors += iptables.teardown()
    if net.firewall == "iptables" and net.subnet6 and not any(n.firewall == "iptables" and n.subnet6 and
                                                              n.name != net.name for n in store.all_networks()):
        from minibox.net.firewall import iptables

        errors += iptables.teardown(v6=True)
    s, e = links.remove_link(net.bridge, why="delete the bridge; nothing is plugged into it any more")
    return steps + s, errors + e


def reconcile() -> list[Step]:
    """Re-apply every network and published port from state, for both backends."""
    steps: list[Step] = []
    with store.network_lock():
        for net in store.all_networks():
            steps += ensure_up(net)
        for fw in firewall.BACKENDS:
            if any(n.firewall == fw for n in store.all_networks()):
                steps += firewall.change(fw, fwplan.reassert, force_full=True, networks_change=True)
    return steps
