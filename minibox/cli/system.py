"""The verbs about minibox and this host rather than one object: version, info, and stats of the running containers."""

import os
import sys
import time
from typing import List

import typer


from minibox import config, store
from minibox.cli.app import app, explainer, say, system_app, version_text
from minibox.engine import lifecycle
from minibox.errors import NotRunning


@app.command()
def version() -> None:
    """minibox's version, and what it runs on: Python, the kernel, the OCI runtime spec it speaks."""
    import platform  # here: 2.5 ms to import, which every other verb would pay

    say(version_text())
    say(f" Python:          {platform.python_version()}")
    say(f" Kernel:          {os.uname().release}")
    say(" OCI runtime spec: 1.0.2 (minibox-oci speaks runc's command line)")


@app.command()
def info() -> None:
    """This host as minibox sees it: containers by state, images, networks, storage, cgroups, firewall, DNS."""
    store.require_root()
    from minibox.image import store as images
    from minibox.model import CREATED, EXITED, RUNNING
    from minibox.net import dns
    from minibox.runtime import cgroups

    counts = {RUNNING: 0, "paused": 0, EXITED: 0, CREATED: 0}
    for rec in store.all_records():
        try:
            st = lifecycle.refresh(rec.id)
        except Exception:  # noqa: BLE001 - a damaged container is still counted, as stopped
            counts[EXITED] += 1
            continue
        if st.status == RUNNING and cgroups.frozen(cgroups.existing_dirs(config.cgroup_parent(), rec.id)):
            counts["paused"] += 1
        else:
            counts[st.status if st.status in counts else EXITED] += 1
    total = sum(counts.values())
    lay = cgroups.layout()
    server = dns.server_pid()
    lines = [
        f"Containers: {total}",
        f" Running: {counts[RUNNING]}",
        f" Paused: {counts['paused']}",
        f" Stopped: {counts[EXITED] + counts[CREATED]}",
        f"Images: {len(images.all_images())}",
        f"Networks: {len(store.all_networks())} (default: {config.default_network()})",
        f"Server Version: {version_text().split()[-1]}",
        "Storage Driver: overlay2 (one overlay per container, layers stored once each)",
        f"Cgroup Version: {lay.version[1:] if lay.version.startswith('v') else lay.version}",
        f"Firewall Backend: {config.firewall_backend()}",
        f"Embedded DNS: aardvark-dns{f' (PID {server})' if server else ' (not running: no user network has containers)'}",
        "Runtimes: minibox-oci (runc's command line)",
        "Init Binary: tini-static (--init)",
        f"Kernel Version: {os.uname().release}",
        f"CPUs: {os.cpu_count()}",
        f"Minibox Root Dir: {config.paths().root}",
    ]
    say("\n".join(lines))


def _iec(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}B"


STATS_HEADINGS = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                  "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def _stats_rows(refs: list[str], interval: float) -> list[dict]:
    """One row per running container named (all running ones if none is), from two samples
    `interval` apart; one that stops meanwhile is left out."""
    from minibox.cli.present import human_size as si  # kB, MB: Docker's units for I/O
    from minibox.engine import stats
    from minibox.model import RUNNING

    recs = [store.resolve(r) for r in refs] if refs else store.all_records()
    live = []
    for rec in recs:
        st = lifecycle.refresh(rec.id)
        if st.status == RUNNING:
            live.append((rec, st.pid))
        elif refs:
            raise NotRunning(f"container {rec.name} is not running")
    from minibox.runtime import cgroups

    groups = {rec.id: cgroups.existing_dirs(config.cgroup_parent(), rec.id) for rec, _pid in live}
    first = {rec.id: stats.sample(rec.id, pid, groups[rec.id]) for rec, pid in live}
    time.sleep(interval)
    rows = []
    for rec, pid in live:
        if not os.path.exists(f"/proc/{pid}"):
            continue  # it stopped meanwhile
        b = stats.sample(rec.id, pid, groups[rec.id])
        a = first[rec.id]
        rows.append({"ID": rec.id[:12], "Name": rec.name, "Container": rec.name,
                     "CPUPerc": f"{stats.cpu_percent(a, b):.2f}%",
                     "MemUsage": f"{_iec(b.mem)} / {_iec(b.mem_limit)}",
                     "MemPerc": f"{100.0 * b.mem / b.mem_limit if b.mem_limit else 0:.2f}%",
                     "NetIO": f"{si(b.net_rx)} / {si(b.net_tx)}", "BlockIO": f"{si(b.blk_read)} / {si(b.blk_write)}",
                     "PIDs": str(b.pids)})
    return rows


@app.command()
def stats(containers: List[str] = typer.Argument(None, help="container names or ids (default: every running one)"),
          no_stream: bool = typer.Option(False, "--no-stream", help="one table, then exit"),
          fmt: str = typer.Option("", "--format", help="json, a Go template ('{{.Name}} {{.CPUPerc}}'), or "
                                                       "'table ...'")) -> None:
    """Live CPU %, memory use and limit, network and block I/O, and PIDs of running containers, from their cgroups."""
    store.require_root()
    from minibox.cli import present

    shape = present.Output(fmt)
    while True:
        rows = _stats_rows(list(containers or ()), 0.2 if no_stream else 1.0)
        if not no_stream:
            sys.stdout.write("\033[2J\033[H")  # a fresh screen each second, as Docker's
        if shape.custom:
            shape.print(rows, STATS_HEADINGS)
        else:
            cols = list(STATS_HEADINGS)
            say(present.table([STATS_HEADINGS[c] for c in cols], [[r[c] for c in cols] for r in rows]))
        sys.stdout.flush()
        if no_stream or (containers and not rows):
            return


EVENT_FILTERS = ("container", "event", "type", "image")


def _when(text: str, flag: str) -> int:
    """--since/--until as nanoseconds: a Unix time (1700000000[.5]), a duration back from now
    (10m, 1h30m, 45s), or an RFC 3339 time."""
    import re
    from datetime import datetime

    from minibox.errors import InvalidSpec

    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return int(float(t) * 1e9)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if parts and any(parts.groups()):
        h, m, sec = (int(x or 0) for x in parts.groups())
        return time.time_ns() - (h * 3600 + m * 60 + sec) * 10 ** 9
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise InvalidSpec(f'invalid {flag} "{text}": give a Unix time, a duration (10m, 1h) or an RFC 3339 '
                          "time") from None


@app.command()
def events(since: str = typer.Option("", "--since", help="events from then (Unix time, 10m, or RFC 3339)"),
           until: str = typer.Option("", "--until", help="stop at then (without it, follow new events)"),
           filters: List[str] = typer.Option([], "-f", "--filter", help="container=, event=, image=, type=container"),
           fmt: str = typer.Option("", "--format", help="json, or a Go template ('{{.Action}} {{.Actor.ID}}')")
           ) -> None:
    """Container events (create, start, die, destroy, pause, kill, rename, ...), as the commands and shims
    that caused them wrote them; without --until, new ones as they come."""
    store.require_root()
    from datetime import datetime, timezone

    from minibox.cli import present
    from minibox.engine import events as journal

    wanted = present.parse_filters(filters, EVENT_FILTERS)
    by: dict[str, list[str]] = {}
    for k, v in wanted:
        by.setdefault(k, []).append(v)
    start = _when(since, "--since") if since else time.time_ns()
    end = _when(until, "--until") if until else 0
    shape = present.Output(fmt, allow_table=False)

    def matches(e: dict) -> bool:
        a = e["Actor"]["Attributes"]
        tests = {"container": lambda v: e["id"].startswith(v) or a.get("name") == v,
                 "event": lambda v: e["Action"] == v, "type": lambda v: e["Type"] == v,
                 "image": lambda v: a.get("image") == v}
        return all(any(tests[k](v) for v in vs) for k, vs in by.items())

    def emit(e: dict) -> None:
        if not matches(e):
            return
        if shape.custom:
            shape.print([e])
        else:
            ns = e["timeNano"]
            stamp = datetime.fromtimestamp(ns // 10 ** 9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
            say(f"{stamp}.{ns % 10 ** 9:09d}Z {e['Type']} {e['Action']} {e['id']} ({attrs})")
        sys.stdout.flush()

    if end and end <= time.time_ns():
        for e in journal.read(start, end):
            emit(e)
        return
    for e in journal.read(start):
        emit(e)
    journal.follow(max([start] + [e["timeNano"] for e in journal.read(start)]), end, emit)


@app.command()
def gc(explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
       restart: bool = typer.Option(False, "--restart", help="also start the containers whose restart policy did "
                                                             "not run because their supervisor died")) -> None:
    """Remove what a crash left behind: containers stuck half-way, firewall elements and rules,
    cgroups, veths, shims, address and name files of containers that no longer exist, found
    by the id each one carries. With --restart (for a systemd timer or cron), start again
    the containers a dead supervisor left exited against their restart policy."""
    store.require_root()
    from minibox.engine import gc as collector

    steps, errors = collector.run()
    if restart:
        more, errs = collector.restart_orphans()
        steps, errors = steps + more, errors + errs
    if explain:
        explainer("minibox gc")(steps)
    say(f"removed {len(steps)} leftover(s)")
    for e in errors:
        print(f"minibox: warning: {e}", file=sys.stderr)
    if errors:
        raise typer.Exit(1)


@system_app.command(name="df")
def system_df() -> None:
    """Disk use: images (their layers, each counted once), containers (what each wrote) and volumes, and what
    a prune could give back."""
    store.require_root()
    from minibox.cli import present
    from minibox.engine import volumes
    from minibox.image import store as images
    from minibox.model import RUNNING

    recs = store.all_records()
    used_images = {r.image_id for r in recs}
    imgs = images.all_images()
    layer_size = {d: images.layer_size(d) for i in imgs for d in i.layers}
    used_layers = {d for i in imgs if i.id in used_images for d in i.layers}
    running = {r.id for r in recs if lifecycle.refresh(r.id).status == RUNNING}
    sizes = {r.id: volumes.bytes_under(config.paths().container(r.id) / "upper") for r in recs}
    vols = volumes.all_volumes()
    vol_users = {v.name: volumes.users(v.name) for v in vols}
    vol_size = {v.name: volumes.size(v) for v in vols}
    rows = [
        ["Images", str(len(imgs)), str(len([i for i in imgs if i.id in used_images])),
         present.human_size(sum(layer_size.values())),
         present.human_size(sum(s for d, s in layer_size.items() if d not in used_layers))],
        ["Containers", str(len(recs)), str(len(running)), present.human_size(sum(sizes.values())),
         present.human_size(sum(s for c, s in sizes.items() if c not in running))],
        ["Local Volumes", str(len(vols)), str(len([v for v in vols if vol_users[v.name]])),
         present.human_size(sum(vol_size.values())),
         present.human_size(sum(s for n, s in vol_size.items() if not vol_users[n]))],
    ]
    say(present.table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows))


@system_app.command(name="prune")
def system_prune(all_: bool = typer.Option(False, "-a", "--all", help="every image no container uses, not only "
                                                                       "unnamed ones"),
                 with_volumes: bool = typer.Option(False, "--volumes", help="anonymous volumes no container uses "
                                                                            "too"),
                 force: bool = typer.Option(False, "-f", "--force", help="(accepted: minibox does not ask)")) -> None:
    """Remove stopped containers, networks no container is on, unnamed images (-a: unused ones), and with
    --volumes unused volumes: container prune, network prune, image prune and volume prune in turn."""
    store.require_root()
    from minibox.cli import containergroup, images, network
    from minibox.cli import volumes as volume_verbs

    containergroup.container_prune(force=True, filters=[])
    network.network_prune(force=True)
    images.image_prune(all_=all_, force=True)
    if with_volumes:
        volume_verbs.volume_prune(all_=False, force=True)
