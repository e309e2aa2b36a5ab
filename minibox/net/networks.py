"""Bridge networks: create, bring up, inspect and remove them, and the firewall snapshot of them all.

A network is a record (networks/NAME.json), a bridge named after it, two sysctls and the
firewall elements that make the fixed rules apply to it. `ensure_up` converges all of that
and runs on every `run`, so a bridge deleted by hand or rules flushed by another tool come
back; `minibox network reconcile` does it for every network at once.
"""

from __future__ import annotations

import re
import secrets
import sys
import time

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec, NotFound
from minibox.model import NetworkRecord
from minibox.net import ipam_store, links, sysctl
from minibox.net.firewall.base import Snapshot, backend
from minibox.plan import ipam
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import Step, Sysctl

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
RESERVED = ("bridge", "none", "host", "default")


def facts(net: NetworkRecord) -> NetFacts:
    return NetFacts(name=net.name, bridge=net.bridge, subnet=net.subnet, internal=net.internal)


def port_facts(rec) -> list[PortFacts]:
    if rec.endpoint is None:
        return []
    return [PortFacts(owner=rec.id, owner_name=rec.name, host_ip=p.host_ip, host_port=p.host_port,
                      proto=p.proto, ctr_ip=rec.endpoint.ip, ctr_port=p.container_port) for p in rec.ports]


def snapshot(fw: str, exclude_net: str = "", exclude_ctr: str = "", with_ports: bool = True) -> Snapshot:
    """The desired firewall state of backend `fw`: its networks and every published port of
    a container on them that still holds its resources. Reading the ports means reading
    every container; the nftables backend only needs them to rebuild (with_ports=False)."""
    nets = [n for n in store.all_networks() if n.firewall == fw and n.name != exclude_net]
    names = {n.name for n in nets}
    ports: list[PortFacts] = []
    for rec in store.all_records() if with_ports else ():
        if rec.id == exclude_ctr or rec.endpoint is None or rec.endpoint.network not in names:
            continue
        if not store.load_state(rec.id).released:
            ports += port_facts(rec)
    return Snapshot(tuple(facts(n) for n in nets), tuple(ports))


def validate_name(name: str) -> str:
    if name in RESERVED:
        raise InvalidSpec(f'"{name}" is a reserved network name: pick another')
    if not NAME_RE.match(name):
        raise InvalidSpec(f'invalid network name "{name}": use [a-zA-Z0-9][a-zA-Z0-9_.-], at most 64 characters')
    return name


def plan_sysctls(net: NetworkRecord) -> list[Sysctl]:
    steps = [Sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet", "1",
                    why="let 127.0.0.1 be routed out of this bridge (only this one), so "
                        "`curl 127.0.0.1:PORT` on the host reaches a published port")]
    if not net.internal:
        steps.append(Sysctl("net.ipv4.ip_forward", "1", why="the host must route between the bridge and its "
                                                            "uplink for egress and published ports"))
    return steps


def ensure_up(net: NetworkRecord, ports: list[PortFacts] = ()) -> list[Step]:
    """Bridge, sysctls and firewall for `net` (plus `ports`): converge, return what was applied."""
    bridge_steps = links.plan_bridge(net.bridge, net.mac, net.gateway, net.prefixlen)
    links.ensure_bridge(bridge_steps)
    steps: list[Step] = list(bridge_steps)
    for s in plan_sysctls(net):
        changed = sysctl.apply(s)
        steps.append(s)
        if changed and s.key == "net.ipv4.ip_forward":
            print("minibox: note: enabled net.ipv4.ip_forward (it was 0) so containers can reach "
                  "the outside and be reached through published ports", file=sys.stderr)
    fw = backend(net.firewall)
    steps += fw.up(snapshot(net.firewall, with_ports=net.firewall == "iptables"), facts(net), list(ports))
    return steps


def check_routes(net: NetworkRecord) -> None:
    """Refuse to use a network whose subnet a host route now overlaps (a VPN came up, say)."""
    clash = ipam.conflicting_route(ipam.parse_subnet(net.subnet), links.host_routes(), own_dev=net.bridge)
    if clash:
        raise Conflict(f"network {net.name}'s subnet {net.subnet} overlaps the host route {clash.dst} dev "
                       f"{clash.dev}: containers there would be unreachable; remove the network and create it "
                       "with another --subnet")


def plan(name: str, subnet: str = "", gateway: str = "", internal: bool = False,
         firewall: str = "") -> NetworkRecord:
    """The record of a new network, checked against host routes and the other networks;
    reads only (`create` saves and applies it, `run --dry-run` shows it)."""
    others = store.all_networks()
    routes = links.host_routes()
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
        sub = ipam.pick_subnet(config.DEFAULT_POOL, config.DEFAULT_POOL_PREFIX, routes, [o.subnet for o in others])
    nid = secrets.token_hex(32)
    bridge = config.DEFAULT_BRIDGE if name == config.default_network() else f"mbx-{nid[:11]}"
    return NetworkRecord(name=name, id=nid, bridge=bridge, subnet=str(sub), gateway=ipam.gateway_for(sub, gateway),
                         mac=ipam.bridge_mac(nid), internal=internal, firewall=firewall or config.firewall_backend(),
                         created=time.time())


def create(name: str, subnet: str = "", gateway: str = "", internal: bool = False,
           firewall: str = "") -> tuple[NetworkRecord, list[Step]]:
    name = validate_name(name) if name != config.default_network() else name
    fw = firewall or config.firewall_backend()
    backend(fw)  # validates the name
    with store.network_lock():
        if store.load_network(name):
            raise Conflict(f'network "{name}" already exists (see `minibox network ls`)')
        net = plan(name, subnet, gateway, internal, fw)
        store.save_network(net)
        try:
            steps = ensure_up(net)
        except Exception:
            _teardown(net, snapshot(fw, exclude_net=name))
            store.network_path(name).unlink(missing_ok=True)
            raise
    return net, steps


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
    return [r for r in store.all_records() if r.endpoint is not None and r.endpoint.network == name]


def remove(name: str) -> tuple[list[Step], list[str]]:
    from minibox import lifecycle

    net = get(name)
    with store.network_lock():
        running = [r.name for r in containers_on(name) if lifecycle.refresh(r.id).status == "running"]
        if running:
            raise Conflict(f"network {name} is in use by running container(s) {', '.join(running)}: "
                           "stop or remove them first")
        steps, errors = _teardown(net, snapshot(net.firewall, exclude_net=name))
        ipam_store.release_network(name)
        store.network_path(name).unlink(missing_ok=True)
    return steps, errors


def _teardown(net: NetworkRecord, remaining: Snapshot) -> tuple[list[Step], list[str]]:
    steps, errors = backend(net.firewall).net_down(remaining, facts(net))
    s, e = links.remove_link(net.bridge, why="delete the bridge; nothing is plugged into it any more")
    return steps + s, errors + e


def reconcile() -> list[Step]:
    """Re-apply every network and published port from state, for both backends."""
    steps: list[Step] = []
    with store.network_lock():
        for net in store.all_networks():
            bridge_steps = links.plan_bridge(net.bridge, net.mac, net.gateway, net.prefixlen)
            links.ensure_bridge(bridge_steps)
            steps += bridge_steps
            for s in plan_sysctls(net):
                sysctl.apply(s)
                steps.append(s)
        for fw in ("nftables", "iptables"):
            snap = snapshot(fw)
            if snap.nets:
                steps += backend(fw).rebuild(snap)
    return steps
