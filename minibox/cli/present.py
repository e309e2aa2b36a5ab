"""How minibox prints for humans: aligned tables, Docker-style durations and sizes, inspect JSON.

Pure: takes records and states, returns strings and dicts.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from minibox.model import (
    CREATED,
    CREATING,
    EXITED,
    REMOVING,
    RUNNING,
    ContainerRecord,
    ContainerState,
)

if TYPE_CHECKING:
    from minibox.engine.listing import PsView

ZERO_TIME = "0001-01-01T00:00:00Z"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their widest cell, three spaces apart. The cells are padded by
    str.ljust mapped over each row, which runs no Python code per cell: at 1000 rows ~30%
    fewer instructions than one format string, which parses its specs again every row."""
    widths = [max(map(len, column)) for column in zip(headers, *rows)]
    spaced, pad = "   ".join, str.ljust
    return "\n".join([spaced(map(pad, row, widths)).rstrip() for row in (headers, *rows)])


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
        health = f" (health: {state.health})" if state.health == "starting" else \
            f" ({state.health})" if state.health else ""
        return f"Up {human_duration(now - state.started_at)}" + (" (Paused)" if state.paused else health)
    if state.status == EXITED:
        return f"Exited ({state.exit_code}) {ago(state.finished_at, now)}" + \
            (" (supervisor died)" if state.supervisor_died else "")
    if state.status == REMOVING:
        return "Removal In Progress"
    if state.status == CREATING:
        return "Creating"
    return "Created" if state.status == CREATED else state.status.capitalize()


def command_text(view: PsView, width: int = 20) -> str:
    text = view.command
    if len(text) > width:
        text = text[: width - 1] + "…"
    return f'"{text}"'


def iso(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def live_ports(rec: PsView, state: ContainerState) -> str:
    """As Docker shows them: the ports of a running container only (an exited one's are
    released, and may already be someone else's)."""
    return rec.ports if state.status == RUNNING else ""


def ps_row(view: PsView, state: ContainerState, now: float | None = None) -> list[str]:
    return [view.short_id, view.image, command_text(view), ago(view.created, now),
            status_text(state, now), live_ports(view, state), view.name]


PS_HEADERS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


def dead_row(cid: str, why: str) -> list[str]:
    """A container minibox cannot read: Docker shows such ones as Dead."""
    return [cid[:12], "?", '""', "?", f"Dead ({why})", "", "?"]


def dead_json(cid: str, why: str) -> dict:
    return {"ID": cid[:12], "Image": "", "Command": "", "CreatedAt": "", "Status": f"Dead ({why})", "State": "dead",
            "Ports": "", "Names": ""}


def ps_json(view: PsView, state: ContainerState) -> dict:
    """One container as `docker ps --format '{{json .}}'` shows it."""
    return {"ID": view.short_id, "Image": view.image, "Command": command_text(view),
            "CreatedAt": iso(view.created), "RunningFor": ago(view.created), "Status": status_text(state),
            "State": state.status, "Ports": live_ports(view, state), "Names": view.name,
            "Labels": ",".join(view.labels), "Mounts": ",".join(view.mounts), "Networks": view.network}


PS_HEADINGS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT", "Names": "NAMES"}
PS_FILTERS = ("name", "status", "ancestor", "label", "id", "exited")


def parse_filters(items: list[str], known: tuple[str, ...]) -> list[tuple[str, str]]:
    """--filter KEY=VALUE, each key one of `known`."""
    from minibox.errors import InvalidSpec

    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise InvalidSpec(f'invalid filter "{item}": use {", ".join(k + "=..." for k in known)}')
        out.append((key, value))
    return out


def ps_matches(rec: PsView, state: ContainerState, filters: list[tuple[str, str]]) -> bool:
    """Docker's rule: filters of one key are OR-ed, different keys AND-ed."""
    if not filters:
        return True
    import re

    by_key: dict[str, list[str]] = {}
    for k, v in filters:
        by_key.setdefault(k, []).append(v)
    docker_status = {CREATING: "created", REMOVING: "removing"}.get(state.status, state.status)
    labels = dict(item.partition("=")[::2] for item in rec.labels)
    tests = {
        "name": lambda v: re.search(v, rec.name) is not None,
        "id": lambda v: rec.id.startswith(v),
        "status": lambda v: docker_status == v,
        "exited": lambda v: state.status == EXITED and str(state.exit_code) == v,
        "ancestor": lambda v: _same_image(v, rec),
        "label": lambda v: (v.partition("=")[0] in labels) if "=" not in v
        else labels.get(v.partition("=")[0]) == v.partition("=")[2],
    }
    return all(any(tests[k](v) for v in vs) for k, vs in by_key.items())


def _same_image(text: str, rec: PsView) -> bool:
    from minibox.image import ref as refs

    if rec.image_id and rec.image_id.removeprefix("sha256:").startswith(text.removeprefix("sha256:")) \
            and len(text.removeprefix("sha256:")) >= 4:
        return True
    try:
        return refs.normalize(text) == refs.normalize(rec.image)
    except Exception:  # noqa: BLE001 - not a reference: no match
        return False


class Output:
    """--format: "" (the verb's own table), "json" (one object per line), "table TEMPLATE"
    (a header, then a row each), or a Go template (one line each)."""

    def __init__(self, fmt: str, allow_table: bool = True):
        self.fmt = fmt
        self.custom = bool(fmt)
        self.shape = None
        if fmt and fmt != "json":
            from minibox.cli import template
            from minibox.errors import InvalidSpec

            self.shape = template.Format(fmt)
            if self.shape.table and not allow_table:
                raise InvalidSpec(f'invalid --format "{fmt}": "table" is for ps and images, not here')

    def print(self, docs: list[dict], headings: dict[str, str] | None = None) -> None:
        import json
        import sys

        if self.shape is None:
            for d in docs:
                sys.stdout.write(json.dumps(d) + "\n")
            return
        lines = [self.shape.line(d) for d in docs]
        if self.shape.table:
            rows = [self.shape.header(headings or {}).split("\t")] + [line.split("\t") for line in lines]
            sys.stdout.write(_columns(rows) + "\n")
            return
        for line in lines:
            sys.stdout.write(line + "\n")


def _columns(rows: list[list[str]]) -> str:
    widths: list[int] = []
    for row in rows:
        for i, c in enumerate(row):
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(c))
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def image_rows(imgs, now: float | None = None) -> list[list[str]]:
    """`images`: one row per name an image has (or one <none> row), newest first."""
    rows = []
    for img in sorted(imgs, key=lambda i: -built(i)):
        names = image_names(img) or [("<none>", "<none>")]
        for repo, tag in names:
            rows.append([repo, tag, img.short_id, ago(built(img), now), human_size(img.size)])
    return rows


def built(img) -> float:
    """When the image was made (its config's `created`, as Docker's CREATED shows), else
    when it was stored here."""
    from minibox.engine.logs import epoch

    return (epoch(img.built) if img.built else 0.0) or img.created


def image_names(img) -> list[tuple[str, str]]:
    from minibox.image import ref as refs

    out = []
    for name in img.refs:
        r = refs.parse(name)
        out.append((r.repository, r.tag or "<none>"))
    return out


def image_json_rows(img) -> list[dict]:
    """`images --format`: Docker's fields per row."""
    return [{"Repository": repo, "Tag": tag, "ID": img.short_id, "CreatedSince": ago(built(img)),
             "CreatedAt": iso(built(img)), "Size": human_size(img.size), "Digest": (img.repo_digests or [""])[0]
             .partition("@")[2] or "<none>"} for repo, tag in (image_names(img) or [("<none>", "<none>")])]


def image_inspect(img) -> dict:
    """An image as `docker inspect` shapes it."""
    from minibox.image import ref as refs

    return {"Id": img.id, "RepoTags": [refs.parse(n).familiar for n in img.refs],
            "RepoDigests": list(img.repo_digests), "Created": img.built or iso(img.created),
            "Config": img.config.to_oci(), "Architecture": img.architecture, "Os": img.os, "Size": img.size,
            "RootFS": {"Type": "layers", "Layers": list(img.layers)},
            "Metadata": {"LastTagTime": iso(img.created)}}


def volume_inspect(v) -> dict:
    return {"Name": v.name, "Driver": "local", "Mountpoint": v.path, "CreatedAt": iso(v.created),
            "Scope": "local", "Labels": {"com.docker.volume.anonymous": ""} if v.anonymous else {}, "Options": {}}


def network_inspect(net, containers: list[tuple[ContainerRecord, ContainerState]]) -> dict:
    """A network as `docker network inspect` shapes it, with the containers on it."""
    ctrs = {}
    for rec, state in containers:
        for ep in rec.endpoints() if not state.released else ():
            if ep.network == net.name:
                ctrs[rec.id] = {"Name": rec.name, "IPv4Address": f"{ep.ip}/{ep.prefixlen}", "MacAddress": ep.mac,
                                "IPv6Address": f"{ep.ip6}/{ep.prefixlen6}" if ep.ip6 else "",
                                "HostVeth": ep.veth, "ContainerVeth": ep.ifname}
    config = [{"Subnet": net.subnet, "Gateway": net.gateway}]
    config += [{"Subnet": net.subnet6, "Gateway": net.gateway6}] if net.subnet6 else []
    return {"Name": net.name, "Id": net.id, "Created": iso(net.created), "Driver": "bridge", "Internal": net.internal,
            "EnableIPv6": bool(net.subnet6), "IPAM": {"Config": config},
            "Options": {"bridge.name": net.bridge, "bridge.mac": net.mac, "firewall": net.firewall},
            "Containers": ctrs}
