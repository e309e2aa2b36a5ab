"""The whole plan of `minibox run`, as one pure function: plan_run(spec, facts) -> RunPlan.

Facts are what was read (or reserved) before planning: the image, the id and name, the
address and host ports held for the container, the network and whether its bridge must
be made, where its cgroup goes, the capabilities and seccomp filter it keeps, the
firewall's state. From them the plan is every step, in the order applied:

    files      the container's directories and /etc files (on the host)
    network    bridge and sysctls, and the firewall transaction
    unshare    the namespaces
    cgroups    its groups (limits, device allowlist), joined by PID 1 itself
    endpoint   the veth pair into PID 1's network namespace, address, route; conntrack
    init       inside PID 1: mounts, pivot_root, hostname, lo, privileges, seccomp, exec

`minibox run` applies it (minibox.launch), `--explain` prints it as it is applied, and
`--dry-run` prints it as a script (teach.dryrun): one plan, so the lesson cannot drift
from what the kernel got. The OCI runtime will build the same plan from a config.json.
"""

from __future__ import annotations

from minibox.model import ContainerRecord, ContainerSpec, NetworkRecord
from minibox.plan import cgroups as cgplan
from minibox.plan import firewall as fwplan
from minibox.plan import network as netplan
from minibox.plan import spec as specs
from minibox.plan import volumes as volplan
from minibox.plan.mounts import RootfsLayout, plan_rootfs
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import (
    PID,
    ConntrackFlush,
    DropCapabilities,
    Exec,
    Firewall,
    LinkUp,
    LoadSeccomp,
    MakeDir,
    SetHostname,
    SetUser,
    Step,
    Unshare,
    WriteFile,
)
from minibox.value import Value

NAMESPACES = ("pid", "mount", "net", "uts", "ipc")


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
    peers: tuple[tuple[str, str], ...] = ()  # (address, name) of the others on a user network
    volume_root: str = ""  # where named volumes live (volumes/NAME/_data)
    present: tuple[str, ...] = ()  # the -v host paths that exist already


class RunPlan(Value):
    record: ContainerRecord
    files: tuple[Step, ...]
    network: tuple[Step, ...]
    unshare: Unshare
    cgroups: tuple[Step, ...]
    endpoint: tuple[Step, ...]
    init: tuple[Step, ...]

    def steps(self) -> list[Step]:
        return [*self.files, *self.network, self.unshare, *self.cgroups, *self.endpoint, *self.init]

    @property
    def cgroup_dirs(self) -> list[str]:
        return [s.path for s in self.cgroups if type(s).__name__ == "CgroupCreate"]


def port_facts(rec: ContainerRecord) -> tuple[PortFacts, ...]:
    if rec.endpoint is None:
        return ()
    return tuple(PortFacts(owner=rec.id, owner_name=rec.name, host_ip=p.host_ip, host_port=p.host_port,
                           proto=p.proto, ctr_ip=rec.endpoint.ip, ctr_port=p.container_port) for p in rec.ports)


def net_facts(net: NetworkRecord) -> NetFacts:
    return NetFacts(name=net.name, bridge=net.bridge, subnet=net.subnet, internal=net.internal)


def plan_files(rec: ContainerRecord, layout: RootfsLayout, facts: RunFacts) -> list[Step]:
    cdir = facts.container_dir
    ip = rec.endpoint.ip if rec.endpoint else ""
    return volplan.plan_create(rec.mounts, facts.volume_root, rec.created, facts.present) + [
        MakeDir(layout.upper, why="its copy-on-write layer: everything the container writes"),
        MakeDir(layout.work, why="overlayfs's scratch space"),
        MakeDir(layout.merged, why="where the overlay is mounted"),
        WriteFile(f"{cdir}/hostname", rec.hostname + "\n", why="per-container /etc files, bind-mounted over the "
                                                                "image's"),
        WriteFile(f"{cdir}/hosts", specs.hosts_file(rec.hostname, ip, facts.peers)),
        WriteFile(f"{cdir}/resolv.conf", specs.resolv_conf(facts.host_resolv)),
    ]


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
    return steps + fwplan.add(ff, net_facts(net), port_facts(rec))


def plan_endpoint(rec: ContainerRecord) -> list[Step]:
    ep = rec.endpoint
    if ep is None:
        return []
    steps: list[Step] = netplan.plan_endpoint(ep.veth, ep.bridge, ep.mac, ep.ip, ep.prefixlen, ep.gateway, PID)
    steps += [ConntrackFlush(p.proto, p.host_port, why="forget flows to this port that predate its DNAT rule")
              for p in rec.ports]
    return steps


def plan_init(spec: ContainerSpec, rec: ContainerRecord, layout: RootfsLayout, facts: RunFacts) -> list[Step]:
    volumes = volplan.to_volumes(rec.mounts, facts.volume_root)
    steps = plan_rootfs(layout, volumes=volumes, read_only=spec.read_only, workdir=rec.workdir)
    steps.append(SetHostname(rec.hostname, why="the UTS namespace's own hostname"))
    if spec.network != "host":
        steps.append(LinkUp("lo", netns=PID, why="a new network namespace starts with lo down"))
    what = "Docker's 14 default capabilities" if len(rec.caps) == 14 else f"{len(rec.caps)} of Docker's capabilities"
    steps.append(DropCapabilities(rec.caps, why=f"keep {what}, nothing inheritable or ambient, and no_new_privs"))
    user = rec.user or {"uid": 0, "gid": 0}
    who = user.get("name") or str(user["uid"])
    steps.append(SetUser(user["uid"], user["gid"], tuple(user.get("groups") or ()),
                         why=f"run as {who}, with the groups the image's /etc/group gives it (not minibox's own); "
                             + ("a uid other than 0 keeps no capabilities" if user["uid"] else "as root, it keeps the "
                                                                                             "capabilities above")))
    if facts.seccomp is not None:
        steps.append(facts.seccomp)
    steps.append(Exec(rec.argv, rec.env, rec.workdir, why="replace minibox with the command, all signals reset to "
                                                          "their defaults: it becomes the container's PID 1"))
    return steps


def plan_run(spec: ContainerSpec, facts: RunFacts) -> RunPlan:
    rec = facts.record
    layout = RootfsLayout.for_container(rec.image_layers, facts.container_dir)
    namespaces = tuple(n for n in NAMESPACES if not (n == "net" and spec.network == "host"))
    limits = cgplan.Limits(memory=spec.memory, pids=spec.pids_limit)
    cgroups = cgplan.plan_create(facts.cgroup_dirs, facts.cgroup_v2, limits)
    cgroups += cgplan.plan_join(facts.cgroup_dirs, PID)
    return RunPlan(
        record=rec,
        files=tuple(plan_files(rec, layout, facts)),
        network=tuple(plan_network(rec, facts)),
        unshare=Unshare(namespaces, why="new namespaces: the container's own PIDs, mounts, network, hostname "
                                        "and IPC"),
        cgroups=tuple(cgroups),
        endpoint=tuple(plan_endpoint(rec)),
        init=tuple(plan_init(spec, rec, layout, facts)),
    )
