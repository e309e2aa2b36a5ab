"""A container's endpoint on a bridge network: prepare (address, ports), attach, release.

Modelled on a CNI plugin's ADD/DEL: `prepare` + `attach` is ADD, split so the address and
host ports are reserved before any process exists; `release` is DEL, which must succeed
when repeated or when things are already gone, and goes on past errors, returning them.
Kernel names come from the container id (veth `mbx<id12>`), so release works without
state too.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec
from minibox.model import ContainerRecord, ContainerSpec, Endpoint, NetworkRecord, PortMapping
from minibox.net import conntrack, ipam_store, links, networks
from minibox.net.firewall.base import backend
from minibox.plan import ipam, ports as portplan
from minibox.plan.steps import PID, ConntrackFlush, Step


def veth_name(cid: str) -> str:
    return f"mbx{cid[:12]}"  # 15 characters: the kernel's limit for an interface name


def resolve_network(mode: str, spec: ContainerSpec) -> NetworkRecord:
    net = networks.default() if mode in ("bridge", config.default_network()) else networks.get(mode)
    networks.check_routes(net)
    if spec.ports and net.internal:
        raise InvalidSpec(f"network {net.name} is --internal: nothing can be published from it")
    return net


# Published host ports, one file each: ports/PROTO-PORT-ADDRESS (ADDRESS "any" for every
# host address), holding the owner's id and name. Checking a new -p reads only the files of
# its own port, however many containers there are.


def _ports_dir():
    return config.paths().root / "ports"


def _port_file(p: PortMapping):
    return _ports_dir() / f"{p.proto}-{p.host_port}-{p.host_ip or 'any'}"


def published_on(proto: str, port: int) -> list[tuple[str, PortMapping]]:
    """(owner name, mapping) of live containers publishing proto/port."""
    out = []
    for f in _ports_dir().glob(f"{proto}-{port}-*") if _ports_dir().is_dir() else ():
        try:
            owner, name = f.read_text().split()
        except (OSError, ValueError):
            continue
        if not (config.paths().container(owner) / "config.json").exists() or store.load_state(owner).released:
            f.unlink(missing_ok=True)  # its container is gone or stopped: a leftover
            continue
        addr = f.name.split("-", 2)[2]
        out.append((name, PortMapping("" if addr == "any" else addr, port, 0, proto)))
    return out


def _record_ports(rec: ContainerRecord, add: bool) -> None:
    for p in rec.ports:
        f = _port_file(p)
        if add:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{rec.id} {rec.name}\n")
        else:
            try:
                if f.read_text().split()[0] == rec.id:
                    f.unlink()
            except (OSError, IndexError):
                pass


def reserve_port(p: PortMapping) -> tuple[socket.socket, PortMapping]:
    """Bind the host port, as Docker does, so a host process already using it is caught
    now, and none can take it while the container runs (the shim holds the socket).

    A TCP port is also listened on (never accepted, as Podman does): a socket that is only
    bound still lets another server bind the port with SO_REUSEADDR and listen, and
    `ss -ltnp` would then name that server while our DNAT silently takes its traffic."""
    kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
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
    return s, dataclasses.replace(p, host_port=s.getsockname()[1])


@dataclasses.dataclass
class Prepared:
    record: ContainerRecord
    net: NetworkRecord
    sockets: list[socket.socket]

    def close_sockets(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets = []

    def attach(self, pid: int) -> list[Step]:
        ep = self.record.endpoint
        steps = networks.ensure_up(self.net, networks.port_facts(self.record))
        link_steps = links.plan_endpoint(ep.veth, ep.bridge, ep.mac, ep.ip, ep.prefixlen, ep.gateway, PID)
        links.add_endpoint(link_steps, pid)
        flush = [ConntrackFlush(p.proto, p.host_port, why="forget flows to this port that predate its DNAT rule")
                 for p in self.record.ports]
        conntrack.flush(flush)
        update_peer_hosts(self.record, add=True)
        return steps + link_steps + flush  # in the order they were applied

    def rollback(self) -> None:
        self.close_sockets()
        _, errors = release(self.record)
        if errors:
            print(f"minibox: warning: rolling back {self.record.name}: {'; '.join(errors)}", file=sys.stderr)


def prepare(record: ContainerRecord, net: NetworkRecord) -> Prepared:
    spec = record.spec
    sockets, resolved = [], []
    try:
        with store.locked(_ports_dir() / ".lock"):
            others = [o for p in spec.ports if p.host_port for o in published_on(p.proto, p.host_port)]
            portplan.check_conflicts(spec.ports, others)
            for p in spec.ports:
                s, p2 = reserve_port(p)
                sockets.append(s)
                resolved.append(p2)
            rec = dataclasses.replace(record, ports=tuple(resolved))
            _record_ports(rec, add=True)
        ip = ipam_store.allocate(net.name, net.subnet, net.gateway, record.id, spec.ip)
    except Exception:
        for s in sockets:
            s.close()
        if resolved:
            _record_ports(dataclasses.replace(record, ports=tuple(resolved)), add=False)
        raise
    ep = Endpoint(network=net.name, bridge=net.bridge, veth=veth_name(record.id), ip=ip,
                  prefixlen=net.prefixlen, gateway=net.gateway, mac=ipam.container_mac(ip))
    rec = dataclasses.replace(record, endpoint=ep, ports=tuple(resolved), firewall=net.firewall)
    return Prepared(record=rec, net=net, sockets=sockets)


def release(rec: ContainerRecord) -> tuple[list[Step], list[str]]:
    """Give back the endpoint: rules, conntrack entries, veth, address. Idempotent; returns
    (the steps it did, the errors it went on past)."""
    ep = rec.endpoint
    if ep is None:
        return [], []
    steps: list[Step] = []
    errors: list[str] = []
    net = store.load_network(ep.network)
    fw = rec.firewall or (net.firewall if net else config.firewall_backend())
    pf = networks.port_facts(rec)
    if pf:
        snap = networks.snapshot(fw, exclude_ctr=rec.id, with_ports=fw == "iptables")
        s, e = backend(fw).down(snap, pf)
        steps, errors = steps + s, errors + e
    _record_ports(rec, add=False)
    flush = [ConntrackFlush(p.proto, p.host_port, why="forget flows DNAT'd to it") for p in rec.ports]
    flush.append(ConntrackFlush("", addr=ep.ip, why="forget flows of its address, which may be reused at once"))
    errors += conntrack.flush(flush)
    steps += flush
    s, e = links.remove_link(ep.veth, why="the host end of its veth pair (the kernel removes the pair "
                                          "by itself when the network namespace dies)")
    steps, errors = steps + s, errors + e
    update_peer_hosts(rec, add=False)
    s, e = ipam_store.release(ep.network, ep.ip, rec.id)
    return steps + s, errors + e


def peers(rec: ContainerRecord) -> tuple[tuple[str, str], ...]:
    """(address, name) of the other live containers on rec's user-defined network: the
    /etc/hosts lines that let containers there reach each other by name."""
    ep = rec.endpoint
    if ep is None or ep.network == config.default_network():
        return ()
    out = []
    for other in networks.containers_on(ep.network):
        if other.id != rec.id and not store.load_state(other.id).released:
            out.append((other.endpoint.ip, other.name))
    return tuple(out)


def update_peer_hosts(rec: ContainerRecord, add: bool) -> None:
    """Add (or drop) rec's line in its peers' /etc/hosts. Written in place: the file is
    bind-mounted into the peer, and a rename would leave the mount on the old inode."""
    ep = rec.endpoint
    if ep is None or ep.network == config.default_network():
        return
    line = f"{ep.ip}\t{rec.name}\n"
    with store.locked(config.paths().ipam / ep.network / ".hosts.lock"):
        for other in networks.containers_on(ep.network):
            if other.id == rec.id:
                continue
            path = config.paths().container(other.id) / "hosts"
            try:
                with open(path, "r+") as f:
                    lines = [x for x in f.readlines() if x != line]
                    if add:
                        lines.append(line)
                    f.seek(0)
                    f.write("".join(lines))
                    f.truncate()
            except FileNotFoundError:
                continue
