"""How minibox prints for humans: aligned tables, Docker-style durations and sizes, inspect JSON.

Pure: takes records and states, returns strings and dicts.
"""

from __future__ import annotations

import shlex
import time
from datetime import datetime, timezone

from minibox.model import (
    CREATED,
    CREATING,
    EXITED,
    REMOVING,
    RUNNING,
    ContainerRecord,
    ContainerState,
)

ZERO_TIME = "0001-01-01T00:00:00Z"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = []
    for row in [headers] + rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration: 'Less than a second', '5 seconds', 'About a minute', ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = round(s / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = s // 86400
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{days // 7} weeks"
    if days < 365 * 2:
        return f"{days // 30} months"
    return f"{days // 365} years"


def ago(ts: float, now: float | None = None) -> str:
    return human_duration((now or time.time()) - ts) + " ago"


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return f"{n}GB"  # pragma: no cover


def status_text(state: ContainerState, now: float | None = None) -> str:
    now = now or time.time()
    if state.status == RUNNING:
        return f"Up {human_duration(now - state.started_at)}"
    if state.status == EXITED:
        return f"Exited ({state.exit_code}) {ago(state.finished_at, now)}"
    if state.status == REMOVING:
        return "Removal In Progress"
    if state.status == CREATING:
        return "Creating"
    return "Created" if state.status == CREATED else state.status.capitalize()


def command_text(rec: ContainerRecord, width: int = 20) -> str:
    text = shlex.join(rec.spec.cmd)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return f'"{text}"'


def ports_text(rec: ContainerRecord) -> str:
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}" for p in rec.ports)


def iso(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def ps_row(rec: ContainerRecord, state: ContainerState, now: float | None = None) -> list[str]:
    return [rec.short_id, rec.spec.image, command_text(rec), ago(rec.created, now),
            status_text(state, now), ports_text(rec), rec.name]


PS_HEADERS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


def dead_row(cid: str, why: str) -> list[str]:
    """A container minibox cannot read: Docker shows such ones as Dead."""
    return [cid[:12], "?", '""', "?", f"Dead ({why})", "", "?"]


def dead_json(cid: str, why: str) -> dict:
    return {"ID": cid[:12], "Image": "", "Command": "", "CreatedAt": "", "Status": f"Dead ({why})", "State": "dead",
            "Ports": "", "Names": ""}


def ps_json(rec: ContainerRecord, state: ContainerState) -> dict:
    return {"ID": rec.short_id, "Image": rec.spec.image, "Command": shlex.join(rec.spec.cmd),
            "CreatedAt": iso(rec.created), "Status": status_text(state), "State": state.status,
            "Ports": ports_text(rec), "Names": rec.name}


def inspect(rec: ContainerRecord, state: ContainerState, paths: dict, cgroup_dirs: list[str]) -> dict:
    """A container as `docker inspect` shapes it, plus a Minibox section of what it built."""
    ep = rec.endpoint
    ports: dict[str, list[dict]] = {}
    for p in rec.ports:
        ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    networks = {}
    if ep is not None:
        networks[ep.network] = {"IPAddress": ep.ip, "IPPrefixLen": ep.prefixlen, "Gateway": ep.gateway,
                                "MacAddress": ep.mac, "NetworkID": ep.network}
    return {
        "Id": rec.id,
        "Created": iso(rec.created),
        "Path": rec.spec.cmd[0] if rec.spec.cmd else "",
        "Args": list(rec.spec.cmd[1:]),
        "State": {
            "Status": state.status,
            "Running": state.status == RUNNING,
            "Pid": state.pid if state.status == RUNNING else 0,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": iso(state.started_at),
            "FinishedAt": iso(state.finished_at),
        },
        "Image": rec.spec.image,
        "Name": "/" + rec.name,
        "LogPath": paths["log"],
        "HostConfig": {
            "NetworkMode": rec.spec.network or "bridge",
            "AutoRemove": rec.spec.remove,
            "PortBindings": {k: v for k, v in ports.items()},
            "Memory": rec.spec.memory,
            "PidsLimit": rec.spec.pids_limit,
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": rec.image_dir, "UpperDir": paths["upper"], "WorkDir": paths["work"],
            "MergedDir": paths["merged"]}},
        "Config": {
            "Hostname": rec.hostname,
            "Env": list(rec.env),
            "Cmd": list(rec.spec.cmd),
            "Image": rec.spec.image,
            "WorkingDir": rec.spec.workdir,
            "Tty": rec.spec.tty,
            "OpenStdin": rec.spec.interactive,
        },
        "NetworkSettings": {
            "IPAddress": ep.ip if ep else "",
            "IPPrefixLen": ep.prefixlen if ep else 0,
            "Gateway": ep.gateway if ep else "",
            "MacAddress": ep.mac if ep else "",
            "Ports": ports,
            "Networks": networks,
        },
        "Minibox": {
            "ShimPid": state.shim_pid if state.status == RUNNING else 0,
            "Cgroups": cgroup_dirs,
            "HostVeth": ep.veth if ep else "",
            "Bridge": ep.bridge if ep else "",
            "FirewallBackend": rec.firewall,
        },
    }


def network_inspect(net, containers: list[tuple[ContainerRecord, ContainerState]]) -> dict:
    """A network as `docker network inspect` shapes it, with the containers on it."""
    ctrs = {}
    for rec, state in containers:
        if state.released or rec.endpoint is None:
            continue
        ep = rec.endpoint
        ctrs[rec.id] = {"Name": rec.name, "IPv4Address": f"{ep.ip}/{ep.prefixlen}", "MacAddress": ep.mac,
                        "HostVeth": ep.veth, "ContainerVeth": "eth0"}
    return {"Name": net.name, "Id": net.id, "Created": iso(net.created), "Driver": "bridge", "Internal": net.internal,
            "IPAM": {"Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Options": {"bridge.name": net.bridge, "bridge.mac": net.mac, "firewall": net.firewall},
            "Containers": ctrs}
