"""`minibox run` as Docker's client does it: flags, the image's config and the reserved resources become a runtime spec, planned by the one planner.

    runtime_spec(...)          the container's config.json (plan.runspec): every run flag
                               that the spec has a field for, set there once
    plan_run(spec, facts)      plan.oci.plan of it, and what no runtime spec holds:

    files      the container's directories and /etc files (on the host)
    network    bridge and sysctls, and the firewall transaction
    endpoint   the veth pair into PID 1's network namespace, address, route; conntrack

`minibox run` applies the plan (minibox.engine.launch), `--explain` prints it as it is applied, and
`--dry-run` prints it as a script (teach.dryrun): one plan, so the lesson cannot drift
from what the kernel got; and one planner, so a flag that becomes a spec field works for
`minibox run` and `minibox-oci` alike. Pure.
"""

from __future__ import annotations

from minibox.model import ContainerRecord, ContainerSpec, NetworkRecord
from minibox.plan import firewall as fwplan
from minibox.plan import network as netplan
from minibox.plan import oci as ociplan
from minibox.plan import ociresources
from minibox.plan import spec as specs
from minibox.plan import volumes as volplan
from minibox.plan.mounts import RootfsLayout, overlay
from minibox.plan.runspec import runtime_spec
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import (
    PID,
    ConntrackFlush,
    DnsRecord,
    Firewall,
    LoadSeccomp,
    MakeDir,
    Step,
    UserlandProxy,
    WriteFile,
)
from minibox.value import Value

class RunFacts(Value):
    record: ContainerRecord  # id, name, image, hostname, env, endpoint (address), ports (resolved), caps
    container_dir: str
    host_resolv: str  # the host's /etc/resolv.conf
    seccomp: LoadSeccomp | None  # None: unconfined
    cgroup_dirs: tuple[str, ...]
    cgroup_v2: bool
    network: NetworkRecord | None = None  # None for --network none|host
    network_is_new: bool = False  # its bridge and firewall base must be made (a dry run on a fresh host)
    firewall: fwplan.FirewallFacts | None = None
    volume_root: str = ""  # where named volumes live (volumes/NAME/_data)
    present: tuple[str, ...] = ()  # the -v host paths that exist already
    netns: str = ""  # --network container:NAME: NAME's network namespace, joined
    etc_dir: str = ""  # ... and where NAME's hostname, hosts and resolv.conf are (shared, as Docker's)
    host_hosts: str = ""  # --network host: the host's /etc/hosts, which the container's starts from
    host_gateway: str = ""  # what --add-host NAME:host-gateway names: the gateway of its (or the default) network
    # The DNS server's directory (net.dns), on a user-defined network only: Docker's rule is
    # that its containers resolve each other through it; the default network keeps the
    # host's resolvers and /etc/hosts.
    dns_dir: str = ""
    devices: tuple = ()  # linux.devices entries (--device, or all the host's with --privileged), read
    init: str = ""  # --init: the host's tini-static, bind-mounted as /sbin/docker-init


def port_facts(rec: ContainerRecord) -> tuple[PortFacts, ...]:
    if rec.endpoint is None:
        return ()
    ep = rec.endpoint
    return tuple(PortFacts(owner=rec.id, owner_name=rec.name, host_ip=p.host_ip, host_port=p.host_port,
                           proto=p.proto, ctr_ip=ep.ip, ctr_port=p.container_port, ctr_ip6=ep.ip6) for p in rec.ports)


def net_facts(net: NetworkRecord) -> NetFacts:
    return NetFacts(name=net.name, bridge=net.bridge, subnet=net.subnet, internal=net.internal,
                    subnet6=net.subnet6)


def plan_files(rec: ContainerRecord, layout: RootfsLayout, facts: RunFacts) -> list[Step]:
    cdir = facts.container_dir
    ip = rec.endpoint.ip if rec.endpoint else ""
    spec = rec.spec
    steps = volplan.plan_create(rec.mounts, facts.volume_root, rec.created, facts.present) + [
        MakeDir(layout.upper, why="its copy-on-write layer: everything the container writes"),
        MakeDir(layout.work, why="overlayfs's scratch space"),
        MakeDir(layout.merged, why="where the overlay is mounted"),
    ]
    if facts.etc_dir:
        return steps  # it shares the /etc files of the container whose network it joins
    extra = tuple((name, facts.host_gateway if addr == "host-gateway" else addr)
                  for name, _, addr in (h.partition(":") for h in spec.add_hosts))
    if facts.host_hosts:  # --network host: the host's own file, and what --add-host adds
        hosts = facts.host_hosts.rstrip("\n") + "\n" + "".join(f"{a}\t{n}\n" for n, a in extra)
    else:
        hosts = specs.hosts_file(rec.hostname, ip, extra, rec.endpoint.ip6 if rec.endpoint else "")
    return steps + [
        WriteFile(f"{cdir}/hostname", rec.hostname + "\n", why="per-container /etc files, bind-mounted over the "
                                                                "image's"),
        WriteFile(f"{cdir}/hosts", hosts),
        WriteFile(f"{cdir}/resolv.conf", resolv(rec, facts)),
    ]


def resolv(rec: ContainerRecord, facts: RunFacts) -> str:
    spec = rec.spec
    if facts.dns_dir and rec.endpoint is not None:
        # the network's DNS server, which forwards other names to the host's (or --dns) resolvers
        return specs.resolv_conf(facts.host_resolv, (rec.endpoint.gateway,), spec.dns_search, spec.dns_options,
                                 via=f"the DNS server of network {rec.endpoint.network}")
    return specs.resolv_conf(facts.host_resolv, spec.dns, spec.dns_search, spec.dns_options,
                             keep_loopback=spec.mode.kind == "host")


def plan_network(rec: ContainerRecord, facts: RunFacts) -> list[Step]:
    net = facts.network
    if net is None:
        return []
    steps: list[Step] = netplan.plan_up(net)
    if facts.firewall is None:
        return steps
    ff = facts.firewall
    if facts.network_is_new:
        new: list[Firewall] = fwplan.add_network(ff, net_facts(net))
        steps += new
        # what the network's creation leaves, as the next change will find it
        ff = fwplan.FirewallFacts(ff.backend, ff.desired.with_(net_facts(net)), True, (), ff.forward_chain)
    else:
        steps += fwplan.in_place(ff, net_facts(net))  # made earlier: shown, so the lesson is the whole path
    return steps + fwplan.add(ff, net_facts(net), port_facts(rec))


def plan_endpoint(rec: ContainerRecord, dns_dir: str = "") -> list[Step]:
    ep = rec.endpoint
    if ep is None:
        return []
    steps: list[Step] = netplan.plan_endpoint(ep.veth, ep.bridge, ep.mac, ep.ip, ep.prefixlen, ep.gateway, PID,
                                              ip6=ep.ip6, prefixlen6=ep.prefixlen6, gateway6=ep.gateway6)
    steps += [ConntrackFlush(p.proto, p.host_port, why="forget flows to this port that predate its DNAT rule")
              for p in rec.ports if ":" not in p.host_ip]
    steps += [ConntrackFlush(p.proto, p.host_port, ipv6=True, why="forget IPv6 flows to this port that predate "
                                                                  "its DNAT rule")
              for p in rec.ports if ep.ip6 and (not p.host_ip or ":" in p.host_ip)]
    # A port on every IPv6 address, or on ::1, answers on ::1 too, as Docker's does. The proxy
    # listens on IPv6 alone ([::] or [::1]); DNAT still takes every packet but ::1's.
    steps += [UserlandProxy(p.proto, p.host_ip or "::", p.host_port, ep.ip6, p.container_port,
                            why=f"[{p.host_ip or '::'}]:{p.host_port}/{p.proto}: connections to ::1 meet no DNAT "
                                "(IPv6 has no route_localnet), so a process carries them to the container, as "
                                "Docker's docker-proxy does")
              for p in rec.ports if ep.ip6 and p.host_ip in ("", "::", "::1")]
    if dns_dir:
        steps.append(DnsRecord(dns_dir, ep.network, ep.gateway, rec.id, ep.ip, dns_names(rec), rec.spec.dns,
                               why=f"its names on the DNS server of {ep.network} (aardvark-dns, on {ep.gateway}:53), "
                                   "which its resolv.conf names", ip6=ep.ip6))
    return steps


def dns_names(rec: ContainerRecord) -> tuple[str, ...]:
    """What the DNS server answers with its address: its name, --network-alias's, and its
    short id, as Docker's embedded DNS does."""
    return tuple(dict.fromkeys((rec.name, *rec.spec.aliases, rec.id[:12])))


def plan_run(spec: ContainerSpec, facts: RunFacts, park: bool = False) -> ociplan.Plan:
    """The container's plan; `park` (`minibox create`): PID 1 waits before its command, at
    WaitStart on containers/ID/exec.fifo, until `minibox start` (runc's create/start split)."""
    rec = facts.record
    layout = RootfsLayout.for_container(rec.image_layers, facts.container_dir)
    if facts.etc_dir:
        layout = layout._replace(etc_dir=facts.etc_dir)
    doc = runtime_spec(spec, rec, layout, facts.volume_root, bool(facts.cgroup_dirs), facts.netns, facts.devices,
                       facts.init, cgroup_fs=("v2" if facts.cgroup_v2 else "v1") if facts.cgroup_dirs else "")
    p = ociplan.plan(doc, ociplan.Facts(id=rec.id, bundle=facts.container_dir, state_dir=facts.container_dir,
                                        cgroup_dirs=facts.cgroup_dirs, cgroup_v2=facts.cgroup_v2,
                                        seccomp=ociplan.seccomp_timing(facts.seccomp, spec.no_new_privs),
                                        prepare=(overlay(layout),), wait_start=park))
    return p._replace(record=rec, files=tuple(plan_files(rec, layout, facts)),
                      network=tuple(plan_network(rec, facts)), endpoint=tuple(plan_endpoint(rec, facts.dns_dir)),
                      cgroups=p.cgroups + tuple(ociresources.plan_join(facts.cgroup_dirs, PID)))
