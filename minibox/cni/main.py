"""`minibox-cni`: a CNI plugin (spec 1.0/1.1: ADD, DEL, CHECK, VERSION, GC, STATUS) built on minibox's bridge networks.

ADD is `minibox run`'s network half for a container an engine made: the network's bridge
(made on first use), a veth pair with its peer born in CNI_NETNS as CNI_IFNAME, an address
from minibox's IPAM (or the "ipam" plugin's), the network's MASQUERADE, and DNAT for
runtimeConfig.portMappings, all through net.endpoint and net.firewall, so `minibox network
show`, `trace` and `gc` see it. The attachment is recorded as cni/ID.json; DEL undoes it
from that record, or, without one, from the id every object carries (it is idempotent).

    minibox-cni --explain  < conf   (with CNI_* set): the steps ADD would take, changing nothing

Besides the spec's keys, the network config may say "stateRoot" (minibox's state directory,
default /var/lib/minibox) and "firewallBackend" (nftables or iptables, for a new network).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from minibox.cni import plugin
from minibox.cni.plugin import CniError
from minibox.model import Endpoint, PortMapping
from minibox.value import Value


class Attachment(Value):
    """What net.endpoint needs of a container (id, name, endpoint, ports, firewall), for an
    engine's container; saved as cni/ID.json."""

    id: str
    name: str
    endpoint: Endpoint | None
    ports: tuple[PortMapping, ...]
    firewall: str
    container_id: str = ""
    ifname: str = ""
    netns: str = ""
    ipam_type: str = ""
    extra: tuple = ()  # always none: an engine gives each attachment one endpoint (a record's `network connect`)

    def to_dict(self) -> dict:
        d = self._asdict()
        d["endpoint"] = self.endpoint.to_dict() if self.endpoint else None
        d["ports"] = [p.to_dict() for p in self.ports]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Attachment":
        d = dict(d)
        d["endpoint"] = Endpoint(**d["endpoint"]) if d.get("endpoint") else None
        d["ports"] = tuple(PortMapping(**p) for p in d.get("ports") or ())
        return cls(**d)


def _path(aid: str):
    from minibox import config

    return config.paths().cni / f"{aid}.json"


def load(aid: str) -> Attachment | None:
    try:
        return Attachment.from_dict(json.loads(_path(aid).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None  # damaged: DEL still finds everything by the id


def save(a: Attachment) -> None:
    from minibox import files

    _path(a.id).parent.mkdir(parents=True, exist_ok=True)
    files.write_json(_path(a.id), a.to_dict())


def veth_name(aid: str) -> str:
    return f"mbc{aid[:12]}"  # "mbc": an engine's container, beside minibox's own "mbx"


def network_for(req: plugin.Request):
    from minibox import store
    from minibox.errors import MiniboxError
    from minibox.net import networks

    net = store.load_network(req.network)
    if net is None:
        try:
            net, _ = networks.create(req.network, subnet=req.subnet)
        except MiniboxError as e:
            raise CniError(plugin.INVALID_CONFIG, f"network {req.network}: {e}") from None
    elif req.subnet and req.subnet != net.subnet:
        raise CniError(plugin.INVALID_CONFIG, f'network {req.network} exists with subnet {net.subnet}, not '
                                              f'"{req.subnet}": remove it (minibox network rm) or drop "subnet"')
    networks.check_routes(net)
    networks.ensure_up(net)
    return net


def delegate_ipam(req: plugin.Request, command: str) -> dict:
    """Run the "ipam" plugin named by the config, as the spec says a plugin delegates."""
    for d in os.environ.get("CNI_PATH", "").split(":"):
        exe = os.path.join(d, req.ipam_type)
        if d and os.access(exe, os.X_OK):
            res = subprocess.run([exe], input=json.dumps(req.conf), capture_output=True, text=True,
                                 env={**os.environ, "CNI_COMMAND": command})
            out = json.loads(res.stdout or "{}") if res.stdout.strip() else {}
            if res.returncode != 0:
                raise CniError(out.get("code", plugin.IO_FAILURE), f"ipam plugin {req.ipam_type}: "
                                                                   f"{out.get('msg', res.stderr.strip())}")
            return out
    raise CniError(plugin.INVALID_CONFIG, f'ipam plugin "{req.ipam_type}" not found in CNI_PATH')


def add(req: plugin.Request, explain: bool = False) -> dict:
    from minibox.net import endpoint, ipam_store, links, portindex
    from minibox.plan import ipam
    from minibox.plan import network as netplan
    from minibox.plan import ports as portplan
    from minibox.plan.steps import render

    aid = req.attachment
    if load(aid) is not None and not explain:
        raise CniError(plugin.TRY_LATER, f"{req.container_id} is already attached as {req.ifname}: DEL it first")
    net = network_for(req) if not explain else _planned_network(req)
    if req.ports and net.internal:
        raise CniError(plugin.INVALID_CONFIG, f"network {net.name} is internal: nothing can be published from it")
    a = Attachment(aid, req.container_id[:12], None, req.ports, net.firewall, req.container_id, req.ifname,
                   req.netns, req.ipam_type)
    veth = veth_name(aid)
    if explain:
        ep = Endpoint(net.name, net.bridge, veth, "$IP", net.prefixlen, net.gateway, "$MAC")
        steps = netplan.plan_endpoint(veth, net.bridge, "$MAC", "$IP", net.prefixlen, net.gateway, req.netns,
                                      req.ifname)
        sys.stderr.write(render(steps) + "\n")
        return plugin.result(req, net.bridge, veth, ep.mac, ep.ip, net.prefixlen, net.gateway)
    with _store_lock():
        others = [o for p in req.ports for o in portindex.published_on(p.proto, p.host_port)]
    try:
        portplan.check_conflicts(req.ports, others)
    except Exception as e:  # noqa: BLE001 - a Conflict: the spec's "try again later" is wrong here
        raise CniError(plugin.INVALID_CONFIG, str(e)) from None
    done: list[Attachment] = []
    try:
        if req.ipam_type:
            got = delegate_ipam(req, "ADD")
            ip, prefix = got["ips"][0]["address"].split("/")
            if not ipam.contains(net.subnet, ip):
                delegate_ipam(req, "DEL")  # give it back: nothing of this ADD may stay
                raise CniError(plugin.INVALID_CONFIG, f"ipam plugin {req.ipam_type} gave {ip}, outside network "
                                                      f"{net.name}'s subnet {net.subnet}: give it a range inside it")
            a = a._replace(endpoint=Endpoint(net.name, net.bridge, veth, ip, int(prefix),
                                             got["ips"][0].get("gateway", net.gateway), ipam.container_mac(ip)))
            save(a)
            done.append(a)
        else:
            def before_create(ip: str, _ip6: str) -> None:
                ep = Endpoint(net.name, net.bridge, veth, ip, net.prefixlen, net.gateway, ipam.container_mac(ip))
                done.append(a._replace(endpoint=ep))
                save(done[0])  # the record names the address before its file exists

            ipam_store.allocate(net.name, net.subnet, net.gateway, aid, "", before_create)
        a = done[0]
        ep = a.endpoint
        # The firewall first, as `minibox run` orders it: its rules name the address, not the veth.
        if a.ports:
            endpoint.publish(a)
        links.add_endpoint(netplan.plan_endpoint(veth, net.bridge, ep.mac, ep.ip, ep.prefixlen, ep.gateway,
                                               req.netns, req.ifname), req.netns)
    except BaseException:
        if done:
            release(done[0], req)
        raise
    return plugin.result(req, net.bridge, veth, ep.mac, ep.ip, ep.prefixlen, ep.gateway)


def _planned_network(req: plugin.Request):
    from minibox import store
    from minibox.net import networks

    return store.load_network(req.network) or networks.plan(req.network, subnet=req.subnet)


def _store_lock():
    from minibox import store
    from minibox.net import portindex

    return store.locked(portindex.directory() / ".lock")


def release(a: Attachment, req: plugin.Request | None = None) -> list[str]:
    from minibox.net import endpoint, links

    _, errors = endpoint.release(a)
    if a.ipam_type and req is not None:
        try:
            delegate_ipam(req, "DEL")
        except CniError as e:
            errors.append(e.msg)
    errors += links.remove_link(veth_name(a.id))[1]
    _path(a.id).unlink(missing_ok=True)
    return errors


def delete(req: plugin.Request) -> None:
    """DEL: from the record, or from the id alone; never an error for what is already gone."""
    from minibox.net import endpoint, links

    a = load(req.attachment)
    if a is not None:
        errors = release(a, req)
    else:
        _, errors = endpoint.release_orphan(req.attachment)
        errors += links.remove_link(veth_name(req.attachment))[1]
        _path(req.attachment).unlink(missing_ok=True)
    if errors:
        raise CniError(plugin.IO_FAILURE, "DEL went on past errors: " + "; ".join(errors))


def check(req: plugin.Request) -> None:
    from minibox.net import ipam_store, links

    a = load(req.attachment)
    if a is None or a.endpoint is None:
        raise CniError(plugin.UNKNOWN_CONTAINER, f"{req.container_id} ({req.ifname}) is not attached to {req.network}")
    if not links.exists(a.endpoint.veth):
        raise CniError(plugin.IO_FAILURE, f"the host end {a.endpoint.veth} of {req.container_id}'s veth is gone")
    if not a.ipam_type and ipam_store.taken(a.endpoint.network).get(a.endpoint.ip) != a.id:
        raise CniError(plugin.IO_FAILURE, f"address {a.endpoint.ip} is no longer held by {req.container_id}")


def on_network(network: str) -> list[Attachment]:
    """The readable attachments on `network` (gc, and `network rm`'s list of users)."""
    from minibox import config

    d = config.paths().cni
    found = [load(f.stem) for f in sorted(d.glob("*.json"))] if d.is_dir() else []
    return [a for a in found if a is not None and a.endpoint is not None and a.endpoint.network == network]


def gc(req: plugin.Request) -> None:
    """GC: every attachment on this network that the runtime no longer lists goes."""
    keep = plugin.valid_attachments(req.conf)
    errors = []
    for a in on_network(req.network):
        if (a.container_id, a.ifname) not in keep:
            errors += release(a)
    if errors:
        raise CniError(plugin.IO_FAILURE, "GC went on past errors: " + "; ".join(errors))


def status(req: plugin.Request) -> None:
    if os.geteuid() != 0:
        raise CniError(plugin.NOT_AVAILABLE, "minibox-cni needs root (it changes links and the firewall)")


def main(argv: list[str], env: dict, stdin: str) -> tuple[int, dict | None]:
    version = "1.1.0"
    try:
        try:
            conf = json.loads(stdin) if stdin.strip() else {}
        except ValueError as e:
            raise CniError(plugin.DECODE_FAILURE, f"the network configuration on stdin is not JSON: {e}") from None
        version = str(conf.get("cniVersion") or version) if isinstance(conf, dict) else version
        # Engines call plugins with a bare environment (Podman's cleanup, through conmon, passes
        # almost nothing): where minibox keeps its state, and which firewall a new network
        # uses, may come with the network config instead.
        for key, var in (("stateRoot", "MINIBOX_ROOT"), ("firewallBackend", "MINIBOX_FIREWALL_BACKEND")):
            if isinstance(conf, dict) and isinstance(conf.get(key), str) and conf[key]:
                os.environ[var] = conf[key]
        req = plugin.parse(env, conf)
        if req.command == "VERSION":
            return 0, {"cniVersion": "1.1.0", "supportedVersions": list(plugin.SUPPORTED)}
        if "--explain" in argv:
            if req.command != "ADD":
                raise CniError(plugin.INVALID_ENV, "--explain shows an ADD: set CNI_COMMAND=ADD")
            return 0, add(req, explain=True)
        from minibox.errors import MiniboxError

        try:
            if req.command == "ADD":
                return 0, add(req)
            {"DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}[req.command](req)
            return 0, None
        except MiniboxError as e:
            raise CniError(plugin.IO_FAILURE, str(e)) from None
    except CniError as e:
        return 1, e.document(version)


def run() -> None:
    """The command, after minibox.cni.run has forked the netlink helper."""
    from minibox.entry import exit_now

    code, doc = main(sys.argv[1:], dict(os.environ), sys.stdin.read() if not sys.stdin.isatty() else "")
    if doc is not None:
        sys.stdout.write(json.dumps(doc) + "\n")
    exit_now(code)
