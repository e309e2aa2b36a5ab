"""A container's endpoint on a bridge network: reserve (ports, address), attach (veth), release.

Modelled on a CNI plugin's ADD/DEL: `reserve` + `attach` is ADD, split so the address and
host ports are held before any process exists; `release` is DEL, which succeeds when
repeated or when things are already gone, and goes on past errors, returning them.
Kernel names come from the container id (veth `mbx<id12>`), and every firewall element
carries it, so `release_orphan` can undo an endpoint whose record was never written.
"""

from __future__ import annotations

import errno
import socket
from typing import Callable

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec
from minibox.model import ContainerRecord, Endpoint, NetworkMode, NetworkRecord, PortMapping
from minibox.net import conntrack, firewall, ipam_store, links, networks, portindex
from minibox.plan import firewall as fwplan
from minibox.plan import ipam
from minibox.plan import ports as portplan
from minibox.plan import run as runplan
from minibox.plan.rules import PortFacts
from minibox.plan.steps import ConntrackFlush, DnsRecord, Step


def veth_name(cid: str) -> str:
    return f"mbx{cid[:12]}"  # 15 characters: the kernel's limit for an interface name


def resolve_network(mode: NetworkMode, spec_ports: tuple, create: bool = True) -> NetworkRecord:
    """The network a container joins; the default one is created on first use (when `create`)."""
    if mode.kind == "default" or mode.name == config.default_network():
        net = networks.default() if create else store.load_network(config.default_network())
        if net is None:  # a dry run on a fresh host: the network as it would be created
            net = networks.plan(config.default_network())
    else:
        net = networks.get(mode.name)
    networks.check_routes(net)
    if spec_ports and net.internal:
        raise InvalidSpec(f"network {net.name} is --internal: nothing can be published from it")
    return net


def port_facts(rec: ContainerRecord) -> list[PortFacts]:
    return list(runplan.port_facts(rec))


def hold_port(p: PortMapping) -> tuple[socket.socket, PortMapping]:
    """Bind the host port, as Docker does, so a host process already using it is caught
    now, and none can take it while the container runs (the shim holds the socket).

    A TCP port is also listened on (never accepted, as Podman does): a socket that is only
    bound still lets another server bind the port with SO_REUSEADDR and listen, and
    `ss -ltnp` would then name that server while our DNAT silently takes its traffic."""
    kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET, kind)
    if ":" in p.host_ip:  # [::] holds IPv6 only: 0.0.0.0 is held apart (or not at all)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if p.proto == "tcp":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
    try:
        s.bind((p.host_ip or "0.0.0.0", p.host_port))
        if p.proto == "tcp":
            s.listen(1)
    except OSError as e:
        s.close()
        where = f"{p.host_ip or '0.0.0.0'}:{p.host_port}/{p.proto}"
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"host port {where} is already in use on this host: pick another host port") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidSpec(f"{p.host_ip} is not an address of this host: use one of its addresses, "
                              "or leave the address out") from None
        raise
    return s, p._replace(host_port=s.getsockname()[1])


def hold_ports(wanted: tuple[PortMapping, ...], dual: bool = False) -> tuple[list[socket.socket],
                                                                          tuple[PortMapping, ...]]:
    """Sockets holding every wanted port (ephemeral ones resolved). Sockets die with the
    process, so a crash here leaves nothing behind. `dual`: a dual-stack container's port on
    every address is published on IPv6 too, so [::] is held as well (as Docker does)."""
    sockets, resolved = [], []
    try:
        with store.locked(portindex.directory() / ".lock"):
            others = [o for p in wanted if p.host_port for o in portindex.published_on(p.proto, p.host_port)]
            portplan.check_conflicts(wanted, others)
            for p in wanted:
                s, p2 = hold_port(p)
                sockets.append(s)
                resolved.append(p2)
                if dual and not p.host_ip and socket.has_ipv6:
                    sockets.append(hold_port(p2._replace(host_ip="::"))[0])
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return sockets, tuple(resolved)


def reserve(rec: ContainerRecord, wanted: tuple[PortMapping, ...], net: NetworkRecord, requested: str,
            requested6: str, record: Callable[[ContainerRecord], None] | None
            ) -> tuple[ContainerRecord, list[socket.socket]]:
    """rec's host ports held and its address chosen: the record naming them, and the
    sockets holding the ports (the caller hands them to the shim, or closes them). `record`
    saves the record before the address file exists, so a crash in between leaves an
    intent, never an orphan file. Without `record` (run --dry-run) nothing is held or
    written: ephemeral ports are those a bind gets now, the address the lowest free now."""
    v6_only = next((p for p in wanted if ":" in p.host_ip), None)
    if v6_only and not net.subnet6:
        raise InvalidSpec(f"-p [{v6_only.host_ip}]:{v6_only.host_port}: network {net.name} has no IPv6 subnet, so the "
                          "container has no IPv6 address to publish (create a network with --ipv6)")
    if requested6 and not net.subnet6:
        raise InvalidSpec(f"--ip6 {requested6}: network {net.name} has no IPv6 subnet (create one with "
                          "`network create --ipv6`)")
    if record is None:
        ports = tuple(p if p.host_port else p._replace(host_port=free_port(p)) for p in wanted)
        used = set(ipam_store.taken(net.name))

        def pick(subnet: str, gateway: str, want: str) -> str:
            sub = ipam.parse_any(subnet)
            return ipam.check_requested(sub, gateway, want, used) if want else ipam.lowest_free(sub, gateway, used)
        ip6 = pick(net.subnet6, net.gateway6, requested6) if net.subnet6 else ""
        return _placed(rec._replace(ports=ports), net, pick(net.subnet, net.gateway, requested), ip6), []
    sockets, ports = hold_ports(wanted, dual=bool(net.subnet6))
    try:
        chosen: list[ContainerRecord] = []

        def before_create(ip: str, ip6: str) -> None:
            chosen.append(_placed(rec._replace(ports=ports), net, ip, ip6))
            record(chosen[0])

        ipam_store.allocate(net.name, net.subnet, net.gateway, rec.id, requested, before_create,
                            net.subnet6, net.gateway6, requested6)
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return chosen[0], sockets


def _placed(rec: ContainerRecord, net: NetworkRecord, ip: str, ip6: str = "") -> ContainerRecord:
    ep = Endpoint(network=net.name, bridge=net.bridge, veth=veth_name(rec.id), ip=ip, prefixlen=net.prefixlen,
                  gateway=net.gateway, mac=ipam.container_mac(ip), ip6=ip6, prefixlen6=net.prefixlen6,
                  gateway6=net.gateway6)
    return rec._replace(endpoint=ep, firewall=net.firewall)


def free_port(p: PortMapping) -> int:
    """An ephemeral port a bind gets now (a dry run's stand-in for the one run will hold)."""
    family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM) as s:
        s.bind((p.host_ip or "0.0.0.0", 0))
        return s.getsockname()[1]


def index_ports(rec: ContainerRecord) -> list[PortFacts]:
    """rec's ports in the port index (what the firewall's desired state is read from)."""
    pf = port_facts(rec)
    portindex.add(pf, rec.endpoint.network)
    return pf


def publish(rec: ContainerRecord) -> list[Step]:
    """The port index and the firewall elements of rec's ports; the firewall steps applied."""
    pf = index_ports(rec)
    net = store.load_network(rec.endpoint.network)
    return firewall.change(rec.firewall, lambda ff: fwplan.add(ff, runplan.net_facts(net), tuple(pf)))


def attach(rec: ContainerRecord, link_steps: list[Step], flush: list[ConntrackFlush], pid: int,
           names: list[DnsRecord] = ()) -> None:
    """The veth into PID 1's network namespace, then forget flows that predate the DNAT,
    then its names on the network's DNS server."""
    links.add_endpoint(link_steps, pid)
    conntrack.flush(flush)
    if names:
        from minibox.net import dns

        for step in names:
            dns.apply(step)


def release(rec: ContainerRecord, bulk: bool = True) -> tuple[list[Step], list[str]]:
    """Give back the endpoint: rules, conntrack entries, DNS name, veth, address. Idempotent;
    returns (the steps it did, the errors it went on past). `bulk` False: release_bulk did
    its part already."""
    ep = rec.endpoint
    if ep is None:
        return [], []
    steps, errors = release_bulk([rec]) if bulk else ([], [])
    s, e = links.remove_link(ep.veth, why="the host end of its veth pair (the kernel removes the "
                                                   "pair by itself when the network namespace dies)")
    steps, errors = steps + s, errors + e
    for a in [a for a in (ep.ip, ep.ip6) if a]:
        s, e = ipam_store.release(ep.network, a, rec.id)
        steps, errors = steps + s, errors + e
    if rec.extra:
        from minibox.net import connect

        for other in rec.extra:  # the networks `network connect` added: the record keeps naming them
            s, e = connect.release(rec, other)
            steps, errors = steps + s, errors + e
    return steps, errors


def release_bulk(recs: list[ContainerRecord]) -> tuple[list[Step], list[str]]:
    """The part of `release` paid per host rather than per endpoint, for many at once: their
    published ports' firewall elements (one transaction per backend), the conntrack entries
    of their addresses (one pass), their names on the DNS server (one rewrite and reload per
    network). Idempotent; (steps, errors)."""
    by_backend: dict[str, list] = {}
    by_network: dict[str, list[str]] = {}
    flush: list[ConntrackFlush] = []
    for rec in recs:
        ep = rec.endpoint
        if ep is None:
            continue
        pf = port_facts(rec)
        if pf:
            fw = rec.firewall or (store.load_network(ep.network) or networks.plan(ep.network)).firewall
            by_backend.setdefault(fw, []).extend(pf)
        # Flows to its published ports were answered by its address: the address covers them.
        flush += [ConntrackFlush("", addr=a, why="forget the flows it started or answered (through its "
                                                 "published ports too): its address may be reused at once")
                  for a in (ep.ip, ep.ip6) if a]
        if ep.network != config.default_network():
            by_network.setdefault(ep.network, []).append(rec.id)
    steps: list[Step] = []
    errors: list[str] = []
    for fw, pf in by_backend.items():
        try:
            steps += firewall.change(fw, lambda ff, pf=tuple(pf): fwplan.remove_ports(ff, pf))
        except firewall.FirewallError as e:
            errors.append(str(e))
    for rec in recs:
        if rec.endpoint is not None:
            portindex.remove(rec.id, rec.ports)
    errors += conntrack.flush(flush)
    if by_network:
        from minibox.net import dns

        for network, cids in by_network.items():
            errors += dns.remove(network, *cids)
    return steps + flush, errors


def release_orphan(cid: str) -> tuple[list[Step], list[str]]:
    """Undo an endpoint whose record is unreadable or was never written, found by the id
    each object carries: port files and firewall elements (tag), the veth (name), and
    the address files naming it."""
    steps: list[Step] = []
    errors: list[str] = []
    tag = f"minibox ctr {cid[:12]}"
    portindex.remove(cid)
    for fw in {n.firewall for n in store.all_networks()}:
        try:
            steps += firewall.change(fw, lambda ff, fw=fw: fwplan.remove_elements(
                ff, tuple(firewall.backend(fw).owned_elements(tag)), owner=cid))
        except firewall.FirewallError as e:
            errors.append(str(e))
    s, e = links.remove_link(veth_name(cid), why="a veth whose container's record is gone")
    steps, errors = steps + s, errors + e
    from minibox.net import dns

    errors += dns.remove_everywhere(cid)
    for network, ip in ipam_store.held_by(cid):
        steps.append(ConntrackFlush("", addr=ip, why="forget flows of its address"))
        errors += conntrack.flush(steps[-1:])
        s, e = ipam_store.release(network, ip, cid)
        steps, errors = steps + s, errors + e
    return steps, errors
