"""`network connect` and `disconnect`: a container's further endpoints (eth1, eth2, ...), each on another network, with an address and DNS names but no default route.

As Docker does it: the default route stays with the network the container was run on;
another network's subnet is reached through its own interface (the route the kernel makes
with the address). The record names each endpoint before its address file exists (as
`run` does), so a crash in between leaves an intent `gc` can finish. A container keeps
its networks across stop and start: its extra endpoints give back their addresses when it
stops, and `attach_all` plugs them in again when it starts.
"""

from __future__ import annotations

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec, NotFound
from minibox.model import ContainerRecord, Endpoint, NetworkRecord
from minibox.net import conntrack, dns, firewall, ipam_store, links, networks
from minibox.plan import firewall as fwplan
from minibox.plan import ipam
from minibox.plan import network as netplan
from minibox.plan import run as runplan
from minibox.plan.netsteps import ConntrackFlush, DnsRecord, RouteAdd
from minibox.plan.steps import PID, Step

MAX_ENDPOINTS = 9  # eth1..eth9: the host end's name, mb<N><id12>, has room for one digit


def check(rec: ContainerRecord, net: NetworkRecord) -> None:
    """What Docker refuses: a second endpoint on one network, a container without a network
    namespace of its own, or one on no network (--network none)."""
    if rec.spec.mode.kind in ("host", "container"):
        raise Conflict(f"container {rec.name} shares a network namespace (--network {rec.spec.network}): it cannot be "
                       "connected to another network")
    if rec.endpoint is None:
        raise Conflict(f"container {rec.name} was run with --network none: it cannot be connected to a network")
    if any(e.network == net.name for e in rec.endpoints()):
        raise Conflict(f"container {rec.name} is already connected to network {net.name}")
    if len(rec.extra) >= MAX_ENDPOINTS:
        raise Conflict(f"container {rec.name} is on {len(rec.endpoints())} networks already: the most minibox gives "
                       "one container is 10")


def connect(rec: ContainerRecord, net: NetworkRecord, aliases: tuple[str, ...], ip: str, pid: int) -> list[Step]:
    """A new endpoint on `net` for running container `rec` (PID 1 `pid`): the record first,
    then the address, the veth into its namespace, its DNS names. Undone if a step fails."""
    check(rec, net)
    used = {e.ifname for e in rec.extra}
    n = next(i for i in range(1, MAX_ENDPOINTS + 1) if f"eth{i}" not in used)
    if not pid:  # not running: named in the record now, plugged in by its next start (attach_all)
        ep = Endpoint(network=net.name, bridge=net.bridge, veth=f"mb{n}{rec.id[:12]}", ip=ip, prefixlen=net.prefixlen,
                      gateway=net.gateway, mac="", ifname=f"eth{n}", aliases=aliases)
        with store.container_lock(rec.id):
            now = store.load_record(rec.id)
            store.save_record(now._replace(extra=now.extra + (ep,)))
        return []
    return _attach(rec, net, aliases, ip, pid, n)


def _attach(rec: ContainerRecord, net: NetworkRecord, aliases: tuple[str, ...], ip: str, pid: int,
            n: int) -> list[Step]:
    steps: list[Step] = networks.ensure_up(net)
    steps += firewall.change(net.firewall, lambda ff: fwplan.add(ff, runplan.net_facts(net), ()))
    chosen: list[Endpoint] = []

    def before_create(addr: str, ip6: str) -> None:
        ep = Endpoint(network=net.name, bridge=net.bridge, veth=f"mb{n}{rec.id[:12]}", ip=addr,
                      prefixlen=net.prefixlen, gateway=net.gateway, mac=ipam.container_mac(addr),
                      ifname=f"eth{n}", aliases=aliases, ip6=ip6, prefixlen6=net.prefixlen6, gateway6=net.gateway6)
        chosen.append(ep)
        with store.container_lock(rec.id):
            now = store.load_record(rec.id)
            store.save_record(now._replace(extra=tuple(e for e in now.extra if e.network != net.name) + (ep,)))

    ipam_store.allocate(net.name, net.subnet, net.gateway, rec.id, ip, before_create, net.subnet6, net.gateway6)
    ep = chosen[0]
    link_steps = [s for s in netplan.plan_endpoint(ep.veth, net.bridge, ep.mac, ep.ip, net.prefixlen, net.gateway,
                                                   PID, ep.ifname, ep.ip6, ep.prefixlen6, ep.gateway6)
                  if not isinstance(s, RouteAdd)]  # the default routes stay with the first network
    try:
        links.add_endpoint(link_steps, pid)
        if net.name != config.default_network():
            names = tuple(dict.fromkeys((rec.name, *aliases, rec.id[:12])))
            step = DnsRecord(str(config.paths().dns), net.name, net.gateway, rec.id, ep.ip, names, rec.spec.dns,
                             why=f"its names on the DNS server of {net.name}", ip6=ep.ip6)
            dns.apply(step)
            link_steps.append(step)
    except BaseException:
        release(rec, ep)
        raise
    return steps + link_steps


def attach_all(rec: ContainerRecord, pid: int) -> list[str]:
    """`start` of a container connected to more networks: each plugged in again (its last
    address if it is free). A network removed meanwhile is dropped from the record."""
    errors = []
    for ep in rec.extra:
        net = store.load_network(ep.network)
        if net is None:
            errors.append(f"network {ep.network} is gone: {rec.name} is no longer on it")
            with store.container_lock(rec.id):
                now = store.load_record(rec.id)
                store.save_record(now._replace(extra=tuple(e for e in now.extra if e.network != ep.network)))
            continue
        free = ep.ip and ep.ip not in ipam_store.taken(net.name)
        _attach(rec, net, ep.aliases, ep.ip if free else "", pid, int(ep.ifname[3:]))
    return errors


def release(rec: ContainerRecord, ep: Endpoint) -> tuple[list[Step], list[str]]:
    """Give back one further endpoint: its flows, veth, DNS line and address (the record
    keeps naming the network). Idempotent; errors returned, not raised."""
    if not ep.mac:
        return [], []  # connected while stopped, and not started since: nothing was made
    flush = [ConntrackFlush("", addr=a, why="forget the flows of its address on " + ep.network)
             for a in (ep.ip, ep.ip6) if a]
    errors = conntrack.flush(flush)
    steps, e = links.remove_link(ep.veth, why=f"the host end of its veth on {ep.network}")
    errors += e
    if ep.network != config.default_network():
        errors += dns.remove(ep.network, rec.id)
    for a in [a for a in (ep.ip, ep.ip6) if a]:
        s, e = ipam_store.release(ep.network, a, rec.id)
        steps, errors = steps + s, errors + e
    return flush + steps, errors


def disconnect(rec: ContainerRecord, name: str) -> list[Step]:
    """Take the container off `name`: a network it was connected to (the one it was run on
    keeps its default route, and stays)."""
    ep = next((e for e in rec.extra if e.network == name), None)
    if ep is None:
        if rec.endpoint is not None and rec.endpoint.network == name:
            raise InvalidSpec(f"container {rec.name} was run on network {name}: minibox keeps a container on that "
                              "one (it holds its default route and published ports); disconnect the others")
        if store.load_network(name) is None:
            raise NotFound(f'no such network: "{name}"')
        raise Conflict(f"container {rec.name} is not connected to network {name}")
    with store.container_lock(rec.id):
        now = store.load_record(rec.id)
        store.save_record(now._replace(extra=tuple(e for e in now.extra if e.network != name)))
    steps, errors = release(rec, ep)
    if errors:
        from minibox import notes

        notes.say(f"warning: disconnecting {rec.name} from {name}: {'; '.join(errors)}")
    return steps
