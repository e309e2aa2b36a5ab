"""Plain values minibox passes around and stores: specs, port mappings, container and network records.

Immutable values (minibox.value) with `to_dict`/`from_dict` so they round-trip through the
JSON state files.
Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from minibox.value import Value

# Container states, as Docker names them, and the transitions between them. Each is written
# to state.json before the side effects it stands for (as runc and youki do), so whatever
# moment a minibox process is killed in, the state says what may exist, and `rm -f` and
# `gc` can finish the job.
#
#   creating -> created -> running -> exited -> removing
#       \____________\__________________^  |         ^
#        \_____________\___________________|_________/
#       ^___________________________________/  `start` again, or its restart policy
#
# creating: the record exists; addresses, ports, cgroups, processes may be on their way.
# created:  PID 1 exists with its network, waiting for "go". running: its command runs.
# exited:   PID 1 is gone (or never started: a crash during creation ends here too).
# removing: what it held is being given back; the directory goes last.
CREATING = "creating"
CREATED = "created"
RUNNING = "running"
EXITED = "exited"
REMOVING = "removing"
DEAD = "dead"  # shown, never stored: a record minibox cannot read (Docker's word for it)

TRANSITIONS = {
    CREATING: {CREATED, EXITED, REMOVING},
    CREATED: {RUNNING, EXITED, REMOVING},
    RUNNING: {EXITED},
    EXITED: {CREATING, REMOVING},  # `start` and restart policies create it again
    REMOVING: set(),
}


def can_move(old: str, new: str) -> bool:
    return new == old or new in TRANSITIONS.get(old, set())


def _from_dict(cls, data: dict[str, Any]):
    return cls._from_mapping(data)


class PortMapping(Value):
    """One `-p`: traffic to host_ip:host_port/proto goes to the container's container_port.

    host_ip "" means every host address (Docker's 0.0.0.0); host_port 0 means "pick one".
    """

    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortMapping:
        return _from_dict(cls, data)

    def ps_str(self) -> str:
        """`0.0.0.0:8080->80/tcp`, as `docker ps` shows it."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}->{self.container_port}/{self.proto}"

    def docker_str(self) -> str:
        """`80/tcp -> 0.0.0.0:8080`, as `docker port` prints it."""
        return f"{self.container_port}/{self.proto} -> {self.host_ip or '0.0.0.0'}:{self.host_port}"


class NetworkMode(Value):
    """--network, read once: the default bridge network ("" or "bridge"), "none" (lo only),
    "host" (the host's own stack), "container:NAME" (NAME's network namespace, shared), or
    a network's name. Every decision about a container's network asks this value, not the text."""

    kind: str  # "default", "none", "host", "container" or "named"
    name: str = ""  # the network joined, for "named"; the container, for "container"; else ""

    @classmethod
    def parse(cls, text: str) -> NetworkMode:
        if text in ("", "bridge", "default"):
            return cls("default")
        if text in ("none", "host"):
            return cls(text)
        if text.startswith("container:"):
            return cls("container", text.partition(":")[2])
        return cls("named", text)

    @property
    def bridged(self) -> bool:
        """A veth on a bridge, an address, published ports."""
        return self.kind in ("default", "named")

    @property
    def own_netns(self) -> bool:
        """A network namespace made for it (not the host's, nor another container's)."""
        return self.kind not in ("host", "container")

    def __str__(self) -> str:
        return {"default": "bridge", "named": self.name, "container": f"container:{self.name}"}.get(self.kind,
                                                                                                   self.kind)


class MountSpec(Value):
    """One mount a user asked for: -v, --mount or --tmpfs (see plan.volumes)."""

    kind: str  # "bind", "volume" or "tmpfs"
    source: str  # a host path (bind), a volume name ("" anonymous), "" (tmpfs)
    target: str  # inside the container
    readonly: bool = False
    options: str = ""  # tmpfs: size=64m,mode=1777
    create_source: bool = False  # -v makes a missing host directory; --mount refuses it
    anonymous: bool = False  # a volume named by minibox (-v /path): removed with the container by --rm, rm -v
    nocopy: bool = False  # a new volume is not given the image's content at its target

    def to_dict(self) -> dict:
        return self._asdict()

    @classmethod
    def from_dict(cls, d: dict) -> MountSpec:
        return cls(**{k: v for k, v in d.items() if k in cls._fields})


LIST_FIELDS = ("cmd", "env", "group_add", "labels", "expose", "add_hosts", "dns", "dns_search", "dns_options",
               "aliases", "cap_add", "cap_drop", "ulimits", "sysctls", "devices")


class ContainerSpec(Value):
    """What the user asked for on the command line, validated."""

    image: str
    cmd: tuple[str, ...] = ()  # () for the image's CMD
    name: str = ""
    env: tuple[str, ...] = ()
    workdir: str = ""  # "" for the image's WorkingDir, else /
    hostname: str = ""
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    remove: bool = False
    network: str = ""
    ports: tuple[PortMapping, ...] = ()
    ip: str = ""
    ip6: str = ""  # --ip6, on a network created with --ipv6
    memory: int = 0
    pids_limit: int = 0
    seccomp: str = ""  # "" Docker's default, "unconfined", or a profile's path (--security-opt)
    log_max_size: int = 20 * 1024 * 1024  # --log-opt max-size: Docker's `local` driver keeps 20 MB x 5 files
    log_max_files: int = 5  # --log-opt max-file: the current file and the rotated ones
    entrypoint: tuple[str, ...] | None = None  # --entrypoint; None for the image's
    user: str = ""  # -u; "" for the image's USER, else root
    group_add: tuple[str, ...] = ()
    mounts: tuple = ()  # plan.volumes.MountSpec, in the order given
    read_only: bool = False
    publish_all: bool = False  # -P: every port the image exposes, on an ephemeral host port
    labels: tuple[str, ...] = ()  # --label KEY=VALUE
    pull: str = "missing"  # --pull: missing, always or never
    restart: str = "no"  # --restart, as given (plan.restart parses it)
    expose: tuple[str, ...] = ()  # --expose PORT[-END][/PROTO]: exposed as the image's are (-P publishes them)
    add_hosts: tuple[str, ...] = ()  # --add-host NAME:IP, IP resolved ("host-gateway": the gateway)
    dns: tuple[str, ...] = ()  # --dns: nameservers instead of the host's
    dns_search: tuple[str, ...] = ()  # --dns-search
    dns_options: tuple[str, ...] = ()  # --dns-option
    domainname: str = ""  # --domainname: the UTS namespace's NIS domain name
    aliases: tuple[str, ...] = ()  # --network-alias: more names its user network's DNS answers for it
    cap_add: tuple[str, ...] = ()  # --cap-add, lower-case names without CAP_ ("all" for ALL)
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False  # every capability and host device, no seccomp, no masks, /sys writable
    no_new_privs: bool = False  # --security-opt no-new-privileges: off by default, as Docker's
    ulimits: tuple[str, ...] = ()  # --ulimit NAME=SOFT[:HARD], checked
    sysctls: tuple[str, ...] = ()  # --sysctl KEY=VALUE, namespaced ones only
    devices: tuple[str, ...] = ()  # --device HOST:CONTAINER:PERMS
    shm_size: int = 0  # --shm-size in bytes (0: Docker's 64 MB)
    stop_signal: str = ""  # --stop-signal (the image's, or SIGTERM, otherwise)
    stop_timeout: int = -1  # --stop-timeout in seconds (-1: `stop`'s 10)
    init: bool = False  # --init: tini as PID 1, the command its child
    cpus: float = 0.0  # --cpus: CPU time per period, as CPUs (a CFS quota)
    cpu_shares: int = 0  # --cpu-shares: relative weight (Docker's 1024 = one share)
    memory_swap: int = 0  # --memory-swap: memory plus swap, bytes (-1: unlimited; 0: Docker's 2x memory)
    memory_reservation: int = 0  # --memory-reservation: a soft limit, bytes
    oom_kill_disable: bool = False  # --oom-kill-disable
    cpuset_cpus: str = ""  # --cpuset-cpus: the CPUs it may run on ("0-1,3")
    cpuset_mems: str = ""  # --cpuset-mems: the memory nodes it may use
    blkio_weight: int = 0  # --blkio-weight: 10..1000, where the kernel has a weight (BFQ)
    health_cmd: str = ""  # --health-cmd, run with /bin/sh -c (Docker's CMD-SHELL)
    health_interval: float = 0.0  # seconds; 0: the image's, or 30
    health_timeout: float = 0.0
    health_retries: int = 0
    health_start_period: float = 0.0
    no_healthcheck: bool = False  # --no-healthcheck: the image's HEALTHCHECK is not run

    @property
    def mode(self) -> NetworkMode:
        """--network, read: what the container's network is."""
        return NetworkMode.parse(self.network)

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["ports"] = [p.to_dict() for p in self.ports]
        d["mounts"] = [m.to_dict() for m in self.mounts]
        for k in LIST_FIELDS:
            d[k] = list(d[k])
        d["entrypoint"] = list(self.entrypoint) if self.entrypoint is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        data = dict(data)
        for k in LIST_FIELDS:
            data[k] = tuple(data.get(k) or ())
        data["ports"] = tuple(PortMapping.from_dict(p) for p in data.get("ports", ()))
        data["mounts"] = tuple(MountSpec.from_dict(m) for m in data.get("mounts", ()))
        if data.get("entrypoint") is not None:
            data["entrypoint"] = tuple(data["entrypoint"])
        return _from_dict(cls, data)


class Endpoint(Value):
    """A container's place on a bridge network: the veth pair and its address."""

    network: str
    bridge: str
    veth: str  # host end
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    ifname: str = "eth0"  # the container's end: eth0, then eth1, ... for `network connect`
    aliases: tuple[str, ...] = ()  # `network connect --alias`: more names its DNS answers
    ip6: str = ""  # on a network created with --ipv6: its IPv6 address, prefix and gateway too
    prefixlen6: int = 0
    gateway6: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["aliases"] = list(self.aliases)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        return _from_dict(cls, {**data, "aliases": tuple(data.get("aliases") or ())})


class ContainerRecord(Value):
    """A container as stored in containers/ID/config.json: written first, before anything of
    the container exists, and once more when its address and ports are chosen. What the
    image contributed (command, environment, working directory, user) is resolved here."""

    id: str
    name: str
    created: float
    spec: ContainerSpec
    image_layers: tuple[str, ...]  # the image's layer directories, top first (overlayfs's lowerdir)
    hostname: str
    env: tuple[str, ...]
    endpoint: Endpoint | None = None
    ports: tuple[PortMapping, ...] = ()  # with ephemeral host ports resolved
    firewall: str = ""  # backend that installed this container's rules
    caps: tuple[str, ...] = ()  # capabilities its processes keep; () for Docker's default set
    image_id: str = ""
    argv: tuple[str, ...] = ()  # what runs: ENTRYPOINT + CMD, after the user's overrides
    workdir: str = "/"
    user: dict = None  # plan.users.User as a dict: uid, gid, groups, home, name
    mounts: tuple = ()  # plan.volumes.MountSpec, sources resolved (an anonymous volume named)
    stop_signal: str = ""
    labels: tuple[str, ...] = ()  # KEY=VALUE: the image's, then --label's
    extra: tuple[Endpoint, ...] = ()  # `network connect`: more networks (eth1, ...), no default route
    healthcheck: dict | None = None  # Test, Interval, Timeout, Retries, StartPeriod (seconds): flags over image

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every network it is on: the one it was run on (with the default route) first."""
        return ((self.endpoint,) if self.endpoint else ()) + self.extra

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["spec"] = self.spec.to_dict()
        d["endpoint"] = self.endpoint.to_dict() if self.endpoint else None
        d["extra"] = [e.to_dict() for e in self.extra]
        d["ports"] = [p.to_dict() for p in self.ports]
        d["mounts"] = [m.to_dict() for m in self.mounts]
        for k in ("image_layers", "env", "caps", "argv", "labels"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerRecord:
        data = dict(data)
        data["spec"] = ContainerSpec.from_dict(data["spec"])
        data["endpoint"] = Endpoint.from_dict(data["endpoint"]) if data.get("endpoint") else None
        data["extra"] = tuple(Endpoint.from_dict(e) for e in data.get("extra") or ())
        data["ports"] = tuple(PortMapping.from_dict(p) for p in data.get("ports", ()))
        data["mounts"] = tuple(MountSpec.from_dict(m) for m in data.get("mounts", ()))
        for k in ("image_layers", "env", "caps", "argv", "labels"):
            data[k] = tuple(data.get(k) or ())
        if "image_layers" not in data or not data["image_layers"]:
            data["image_layers"] = (data.get("image_dir", ""),) if data.get("image_dir") else ()
        return _from_dict(cls, data)


class ContainerState(Value):
    """What changes over a container's life: containers/ID/state.json."""

    status: str = CREATING
    pid: int = 0  # PID 1 of the container, as the host sees it
    pid_start: int = 0  # its start time in clock ticks, to tell a reused PID apart
    shim_pid: int = 0
    shim_start: int = 0
    creator_pid: int = 0  # the `minibox run` creating it: if that dies mid-way, creation failed
    creator_start: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    error: str = ""
    released: bool = False  # network, cgroups and rules given back after exit
    release_log: tuple = ()  # (why, command) of each step that gave them back
    parked: bool = False  # made by `create`: PID 1 waits on exec.fifo for `start`
    restart_count: int = 0  # times a restart policy (not the user) started it again
    quick_restarts: int = 0  # of those, in a row after runs shorter than 10 s: the backoff
    stopped_by_user: bool = False  # `stop` or `kill`: its restart policy stands down
    # Being started again (`start`, `restart`, a restart policy): it existed before this
    # command, so a crash of the command never makes it a killed `run`'s leftover for gc.
    again: bool = False
    # Its shim died before PID 1 (kill -9): PID 1 was killed with it (its parent-death
    # signal), and nothing applied its restart policy; `start` or `gc --restart` re-arm it.
    supervisor_died: bool = False
    paused: bool = False  # never stored: `ps` and `inspect` read it from the kernel's freezer
    health: str = ""  # never stored: `ps` reads it from containers/ID/health.json (engine.health)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerState:
        state = _from_dict(cls, data)
        return state._replace(release_log=tuple(tuple(x) for x in state.release_log))

    def replace(self, **changes) -> ContainerState:
        return self._replace(**changes)


class NetworkRecord(Value):
    """A bridge network as stored in networks/NAME.json."""

    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    mac: str
    internal: bool = False
    firewall: str = "nftables"
    created: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()  # (key, value) pairs; stored as a JSON object
    subnet6: str = ""  # `network create --ipv6`: dual stack; "" = IPv4 only
    gateway6: str = ""

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])

    @property
    def prefixlen6(self) -> int:
        return int(self.subnet6.split("/")[1]) if self.subnet6 else 0

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "labels": dict(self.labels)}

    @classmethod
    def checked(cls, data: Any) -> NetworkRecord:
        """from_dict of JSON read from disk, its shape checked: TypeError names what is wrong."""
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        net = cls.from_dict(data)
        for field in ("name", "id", "bridge", "subnet", "gateway", "mac", "firewall", "subnet6", "gateway6"):
            if not isinstance(getattr(net, field), str):
                raise TypeError(f"{field} is not a string")
        if not isinstance(net.internal, bool):
            raise TypeError("internal is not true or false")
        return net

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkRecord:
        net = _from_dict(cls, data)
        return net._replace(labels=tuple(sorted(dict(net.labels or {}).items())))
