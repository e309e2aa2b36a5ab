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
#       \____________\__________________^            ^
#        \_____________\_____________________________/
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
    EXITED: {REMOVING},
    REMOVING: set(),
}


def can_move(old: str, new: str) -> bool:
    return new == old or new in TRANSITIONS.get(old, set())


def _from_dict(cls, data: dict[str, Any]):
    names = set(cls._fields)
    return cls(**{k: v for k, v in data.items() if k in names})


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

    def docker_str(self) -> str:
        """`80/tcp -> 0.0.0.0:8080`, as `docker port` prints it."""
        return f"{self.container_port}/{self.proto} -> {self.host_ip or '0.0.0.0'}:{self.host_port}"


class ContainerSpec(Value):
    """What the user asked for on the command line, validated."""

    image: str
    cmd: tuple[str, ...]
    name: str = ""
    env: tuple[str, ...] = ()
    workdir: str = "/"
    hostname: str = ""
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    remove: bool = False
    network: str = ""
    ports: tuple[PortMapping, ...] = ()
    ip: str = ""
    memory: int = 0
    pids_limit: int = 0
    seccomp: str = ""  # "" Docker's default, "unconfined", or a profile's path (--security-opt)
    log_max_size: int = 20 * 1024 * 1024  # --log-opt max-size: Docker's `local` driver keeps 20 MB x 5 files
    log_max_files: int = 5  # --log-opt max-file: the current file and the rotated ones

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["ports"] = [p.to_dict() for p in self.ports]
        d["cmd"], d["env"] = list(self.cmd), list(self.env)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        data = dict(data)
        data["cmd"] = tuple(data.get("cmd", ()))
        data["env"] = tuple(data.get("env", ()))
        data["ports"] = tuple(PortMapping.from_dict(p) for p in data.get("ports", ()))
        return _from_dict(cls, data)


class Endpoint(Value):
    """A container's place on a bridge network: the veth pair and its address."""

    network: str
    bridge: str
    veth: str  # host end; the container end is always eth0
    ip: str
    prefixlen: int
    gateway: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        return _from_dict(cls, data)


class ContainerRecord(Value):
    """A container as stored in containers/ID/config.json: written first, before anything of
    the container exists, and once more when its address and ports are chosen."""

    id: str
    name: str
    created: float
    spec: ContainerSpec
    image_dir: str
    hostname: str
    env: tuple[str, ...]
    endpoint: Endpoint | None = None
    ports: tuple[PortMapping, ...] = ()  # with ephemeral host ports resolved
    firewall: str = ""  # backend that installed this container's rules
    caps: tuple[str, ...] = ()  # capabilities its processes keep; () for Docker's default set

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "spec": self.spec.to_dict(),
            "image_dir": self.image_dir,
            "hostname": self.hostname,
            "env": list(self.env),
            "endpoint": self.endpoint.to_dict() if self.endpoint else None,
            "ports": [p.to_dict() for p in self.ports],
            "firewall": self.firewall,
            "caps": list(self.caps),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerRecord:
        return cls(
            id=data["id"],
            name=data["name"],
            created=data["created"],
            spec=ContainerSpec.from_dict(data["spec"]),
            image_dir=data["image_dir"],
            hostname=data["hostname"],
            env=tuple(data.get("env", ())),
            endpoint=Endpoint.from_dict(data["endpoint"]) if data.get("endpoint") else None,
            ports=tuple(PortMapping.from_dict(p) for p in data.get("ports", ())),
            firewall=data.get("firewall", ""),
            caps=tuple(data.get("caps", ())),
        )


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

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "labels": dict(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkRecord:
        net = _from_dict(cls, data)
        return net._replace(labels=tuple(sorted(dict(net.labels or {}).items())))
