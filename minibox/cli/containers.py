"""The container verbs: run, exec, ps, logs, stop, kill, rm, inspect, port, gc."""

import json
import os
import signal
import sys
from typing import List, Optional

import click
import typer

from minibox import config, store
from minibox.engine import lifecycle
from minibox.cli.app import POSITIONAL_TAIL, app, explainer, for_each, output, say
from minibox.errors import InvalidSpec, MiniboxError
from minibox.model import RUNNING


@app.command(context_settings=POSITIONAL_TAIL)
def run(
    image: str = typer.Argument(..., help="image: NAME[:TAG] or HOST[:PORT]/NAME[:TAG], pulled if not here"),
    command: Optional[List[str]] = typer.Argument(None, help="command and arguments (default: the image's)"),
    detach: bool = typer.Option(False, "-d", "--detach", help="run in the background, print the id"),
    rm: bool = typer.Option(False, "--rm", help="remove the container (and its anonymous volumes) when it exits"),
    name: str = typer.Option("", "--name", help="a name to refer to the container by"),
    env: List[str] = typer.Option([], "-e", "--env", help="set an environment variable: KEY=VALUE, or KEY to "
                                                          "pass the caller's value"),
    env_file: List[str] = typer.Option([], "--env-file", help="read KEY=VALUE lines from a file"),
    workdir: str = typer.Option("", "-w", "--workdir", help="working directory inside (default: the image's, or /)"),
    user: str = typer.Option("", "-u", "--user", help="UID[:GID] or NAME[:GROUP] (default: the image's, or root)"),
    group_add: List[str] = typer.Option([], "--group-add", help="an additional group to join"),
    entrypoint: Optional[str] = typer.Option(None, "--entrypoint", help="replace the image's ENTRYPOINT "
                                                                        "(and drop its CMD)"),
    hostname: str = typer.Option("", "--hostname", "-h", help="hostname (default: first 12 hex of the id)"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="keep stdin attached"),
    tty: bool = typer.Option(False, "-t", "--tty", help="allocate a pseudo-terminal"),
    network: str = typer.Option("", "--network", "--net", help="bridge (default), none, host, container:NAME "
                                                                "(share its network), or a network name"),
    publish: List[str] = typer.Option([], "-p", "--publish", help="publish a port: [IP:]HOST:CTR[/udp] or CTR; "
                                                                  "a range, 8000-8010:80-90, for each of its ports"),
    expose: List[str] = typer.Option([], "--expose", help="expose a port or a range, PORT[-END][/udp], as the "
                                                          "image's EXPOSE does (-P publishes it)"),
    add_host: List[str] = typer.Option([], "--add-host", help="a line in /etc/hosts: NAME:IP (IP may be "
                                                              "host-gateway: the network's gateway)"),
    dns: List[str] = typer.Option([], "--dns", help="a nameserver for /etc/resolv.conf, instead of the host's"),
    dns_search: List[str] = typer.Option([], "--dns-search", help="a search domain for /etc/resolv.conf"),
    dns_option: List[str] = typer.Option([], "--dns-option", help="an option for /etc/resolv.conf (ndots:2)"),
    domainname: str = typer.Option("", "--domainname", help="the container's NIS domain name"),
    network_alias: List[str] = typer.Option([], "--network-alias", help="another name its user-defined network's "
                                                                        "DNS answers for it"),
    cap_add: List[str] = typer.Option([], "--cap-add", help="add a capability (NET_ADMIN, or ALL)"),
    cap_drop: List[str] = typer.Option([], "--cap-drop", help="drop a capability (CHOWN, or ALL)"),
    privileged: bool = typer.Option(False, "--privileged", help="give the container the host: every capability "
                                                                "and device, no seccomp, no masks"),
    ulimit: List[str] = typer.Option([], "--ulimit", help="a resource limit, NAME=SOFT[:HARD] (nofile=1024:2048)"),
    sysctl: List[str] = typer.Option([], "--sysctl", help="a namespaced kernel setting, KEY=VALUE (net.*, "
                                                          "kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)"),
    device: List[str] = typer.Option([], "--device", help="a host device, /HOST[:/CONTAINER][:rwm]"),
    shm_size: str = typer.Option("", "--shm-size", help="the size of /dev/shm (default 64m)"),
    stop_signal: str = typer.Option("", "--stop-signal", help="the signal `stop` sends (default: the image's, "
                                                              "or SIGTERM)"),
    stop_timeout: int = typer.Option(-1, "--stop-timeout", help="seconds `stop` waits before SIGKILL "
                                                                "(default 10)"),
    init: bool = typer.Option(False, "--init", help="run an init (tini) as PID 1: it reaps zombies and "
                                                    "forwards signals to the command"),
    cpus: str = typer.Option("", "--cpus", help="CPU time it may use, in CPUs (1.5)"),
    cpu_shares: int = typer.Option(0, "--cpu-shares", "-c", help="its weight against other containers (1024: "
                                                                 "Docker's default)"),
    memory_swap: str = typer.Option("", "--memory-swap", help="memory plus swap (with -m; -1: unlimited)"),
    memory_reservation: str = typer.Option("", "--memory-reservation", help="a soft memory limit"),
    oom_kill_disable: bool = typer.Option(False, "--oom-kill-disable", help="do not OOM-kill it at its limit"),
    cpuset_cpus: str = typer.Option("", "--cpuset-cpus", help="the CPUs it may run on (0-1,3)"),
    cpuset_mems: str = typer.Option("", "--cpuset-mems", help="the memory nodes it may use (0)"),
    blkio_weight: int = typer.Option(0, "--blkio-weight", help="its block I/O weight, 10 to 1000 (needs BFQ)"),
    health_cmd: str = typer.Option("", "--health-cmd", help="a command (run with sh -c) that says it is healthy"),
    health_interval: str = typer.Option("", "--health-interval", help="time between checks (default 30s)"),
    health_timeout: str = typer.Option("", "--health-timeout", help="a check taking longer fails (default 30s)"),
    health_retries: int = typer.Option(0, "--health-retries", help="failures in a row that make it unhealthy "
                                                                   "(default 3)"),
    health_start_period: str = typer.Option("", "--health-start-period", help="failures during this time after "
                                                                              "start do not count"),
    no_healthcheck: bool = typer.Option(False, "--no-healthcheck", help="do not run the image's HEALTHCHECK"),
    publish_all: bool = typer.Option(False, "-P", "--publish-all", help="publish every port the image exposes "
                                                                        "on a free host port"),
    ip: str = typer.Option("", "--ip", help="ask for this address on the network"),
    ip6: str = typer.Option("", "--ip6", help="ask for this IPv6 address (on a network made with --ipv6)"),
    volume: List[str] = typer.Option([], "-v", "--volume", help="/HOST/PATH:/CTR/PATH[:ro], NAME:/CTR/PATH[:ro] "
                                                                "or /CTR/PATH (an anonymous volume)"),
    mount: List[str] = typer.Option([], "--mount", help="type=bind|volume|tmpfs,source=...,target=...[,readonly]"),
    tmpfs: List[str] = typer.Option([], "--tmpfs", help="a tmpfs: /PATH[:size=64m,mode=1777]"),
    read_only: bool = typer.Option(False, "--read-only", help="mount the root filesystem read-only"),
    label: List[str] = typer.Option([], "-l", "--label", help="set a label, KEY=VALUE (for ps --filter label=)"),
    pull: str = typer.Option("missing", "--pull", help="pull the image: missing (if not here), always, never"),
    restart: str = typer.Option("no", "--restart", help="no, on-failure[:N], always or unless-stopped (with -d)"),
    memory: str = typer.Option("", "-m", "--memory", help="memory limit, e.g. 64m"),
    pids_limit: int = typer.Option(0, "--pids-limit", help="maximum number of processes (-1: unlimited)"),
    security_opt: List[str] = typer.Option([], "--security-opt",
                                           help="seccomp=unconfined, seccomp=PROFILE.json (Docker's format), "
                                                "or no-new-privileges"),
    log_opt: List[str] = typer.Option([], "--log-opt", help="max-size=20m (per file), max-file=5 (files kept)"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
    dry_run: bool = typer.Option(False, "--dry-run", help="change nothing; print a runnable shell script instead"),
) -> None:
    """Run a command in a new container (new PID, mount, network, UTS and IPC namespaces).

    With --explain, see each namespace, mount, veth, address, route, sysctl and firewall rule
    it takes, as `unshare`, `mount`, `ip`, `sysctl` and `nft`/`iptables` commands."""
    store.require_root()
    creating = click.get_current_context().info_name == "create"  # the same options make `create`
    from minibox.cli.runflags import build_spec

    spec = build_spec(image=image, command=command or [], detach=detach, rm=rm, name=name, env=env,
                      workdir=workdir, hostname=hostname, interactive=interactive, tty=tty, network=network,
                      publish=publish, ip=ip, ip6=ip6, memory=memory, pids_limit=pids_limit, security_opt=security_opt,
                      log_opt=log_opt, env_file=env_file, user=user, group_add=group_add, entrypoint=entrypoint,
                      publish_all=publish_all, volume=volume, mount=mount, tmpfs=tmpfs, read_only=read_only,
                      label=label, pull=pull, restart=restart, create=creating, expose=expose, add_host=add_host,
                      dns=dns, dns_search=dns_search, dns_option=dns_option, domainname=domainname,
                      network_alias=network_alias, cap_add=cap_add, cap_drop=cap_drop, privileged=privileged,
                      ulimit=ulimit, sysctl=sysctl, device=device, shm_size=shm_size, stop_signal=stop_signal,
                      stop_timeout=stop_timeout, init=init, cpus=cpus, cpu_shares=cpu_shares,
                      memory_swap=memory_swap, memory_reservation=memory_reservation,
                      oom_kill_disable=oom_kill_disable, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                      blkio_weight=blkio_weight, health=(health_cmd, health_interval, health_timeout,
                                                                 health_retries, health_start_period, no_healthcheck))
    if dry_run:
        from minibox.teach import dryrun

        args = " ".join(a for a in sys.argv[2:] if a != "--dry-run")
        sys.stdout.write(dryrun.script(spec, f"minibox run {args}"))
        return
    from minibox.engine import launch

    title = f"minibox {'create' if creating else 'run'} {' '.join(a for a in sys.argv[2:] if a != '--explain')}"
    result = launch.run(spec, explain=explainer(title) if explain else None, park=creating)
    if spec.detach:
        say(result.record.id)
        return
    raise typer.Exit(result.exit_code or 0)

@app.command(name="exec", context_settings=POSITIONAL_TAIL)
def exec_(
    container: str = typer.Argument(..., help="container name or id"),
    command: List[str] = typer.Argument(..., help="command and arguments"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="keep stdin attached"),
    tty: bool = typer.Option(False, "-t", "--tty", help="allocate a pseudo-terminal"),
    env: List[str] = typer.Option([], "-e", "--env", help="set an environment variable, KEY=VALUE"),
    workdir: str = typer.Option("", "-w", "--workdir", help="working directory inside (absolute)"),
    user: str = typer.Option("", "-u", "--user", help="UID[:GID] or NAME[:GROUP] (default: the container's user)"),
    detach: bool = typer.Option(False, "-d", "--detach", help="start it in the background, its output discarded"),
    privileged: bool = typer.Option(False, "--privileged", help="every capability this runtime holds, for this "
                                                                "command only"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Run a command in a running container: joins its namespaces and cgroup, same privileges.

    With --explain: the `nsenter` that joins them, the cgroup, the privileges, the exec."""
    store.require_root()
    from minibox.engine import execute
    from minibox.plan import spec as specs

    execute.validate_exec_args(workdir)
    extra = specs.parse_env(env, dict(os.environ))
    rec, state = lifecycle.running(container)
    if detach and (tty or interactive):
        raise InvalidSpec("exec -d runs the command in the background: -i and -t need it in the foreground")
    code = execute.exec_in(rec, state, tuple(command), extra, workdir, tty, interactive,
                           explain=explainer(f"minibox exec {rec.name}", rec.id) if explain else None, user=user,
                           detach=detach, privileged=privileged)
    raise typer.Exit(code)

@app.command()
def logs(
    container: str = typer.Argument(..., help="container name or id"),
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new output"),
    tail: str = typer.Option("all", "-n", "--tail", help="only the last N lines"),
    since: str = typer.Option("", "--since", help="from this time: 2026-11-26T10:00:00, a Unix time, or 10m ago"),
    until: str = typer.Option("", "--until", help="up to this time (same forms)"),
    timestamps: bool = typer.Option(False, "-t", "--timestamps", help="prefix each line with when it was written"),
) -> None:
    """Print a container's output (stdout to stdout, stderr to stderr), its rotated files included."""
    store.require_root()
    import time

    from minibox.engine import logs as logmod

    if tail != "all" and not (tail.isdigit() or tail == "-1"):
        raise InvalidSpec(f'invalid --tail "{tail}": give a number of lines, or all')
    now = time.time()
    opts = logmod.Options(follow=follow, tail=-1 if tail == "all" else int(tail),
                          since=logmod.parse_since(since, now) if since else 0.0,
                          until=logmod.parse_since(until, now) if until else 0.0, timestamps=timestamps)
    rec = store.resolve(container)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    logmod.show(config.paths().container(rec.id), lambda: lifecycle.refresh(rec.id).status == RUNNING, output, opts)

def _each(refs: list[str], action, resolve=store.resolve) -> None:
    """Apply `action` to each container, printing its name as Docker does."""
    def one(ref: str) -> str:
        action(resolve(ref))
        return ref

    for_each(refs, one)

@app.command()
def stop(
    containers: List[str] = typer.Argument(..., help="container names or ids"),
    time_: Optional[int] = typer.Option(None, "-t", "--time", help="seconds to wait before SIGKILL (default: "
                                                                   "its --stop-timeout, or 10)"),
) -> None:
    """Stop containers: SIGTERM, then SIGKILL after the grace period."""
    store.require_root()
    if time_ is not None and time_ < 0:
        raise InvalidSpec(f"invalid --time {time_}: give a number of seconds >= 0")
    from minibox.engine import signals

    _each(containers, lambda rec: signals.stop(rec, time_))

@app.command()
def kill(
    containers: List[str] = typer.Argument(..., help="container names or ids"),
    sig: str = typer.Option("KILL", "-s", "--signal", help="signal name or number"),
) -> None:
    """Send a signal (default SIGKILL) to containers' PID 1."""
    store.require_root()
    signum = parse_signal(sig)
    from minibox.engine import signals

    _each(containers, lambda rec: signals.kill(rec, signum))

def parse_signal(text: str) -> int:
    t = text.upper()
    if t.isdigit() and 0 < int(t) < signal.NSIG:
        return int(t)
    name = t if t.startswith("SIG") else "SIG" + t
    if name in signal.Signals.__members__:
        return int(signal.Signals[name])
    raise InvalidSpec(f'invalid signal "{text}": use a name like TERM, KILL, HUP or a number 1-{signal.NSIG - 1}')

@app.command()
def rm(
    containers: List[str] = typer.Argument(..., help="container names or ids"),
    force: bool = typer.Option(False, "-f", "--force", help="kill a running container first"),
    volumes: bool = typer.Option(False, "-v", "--volumes", help="remove its anonymous volumes too"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Remove containers and everything they held (damaged ones too, with -f).

    With --explain: the rules, conntrack entries, veth, address and cgroup given back."""
    store.require_root()
    from minibox.engine import removal

    ids: dict[str, str] = {}
    unknown: dict[str, MiniboxError] = {}
    listing = sorted(p.name for p in d.iterdir()) if (d := config.paths().containers).is_dir() else []
    for ref in containers:
        try:
            ids[ref] = store.resolve_id(ref, listing)
        except MiniboxError as e:
            unknown[ref] = e
    # all in one pass: one firewall transaction and one conntrack pass for all of them
    results = dict(zip(ids.values(), removal.remove_many(list(ids.values()), force, volumes)))

    def one(ref: str) -> str:
        result = unknown.get(ref) or results[ids[ref]]
        if isinstance(result, MiniboxError):
            raise result
        if explain:
            explainer(f"minibox rm {ids[ref][:12]}", ids[ref])(result)
        return ref

    for_each(containers, one)

@app.command()
def inspect(
    names: List[str] = typer.Argument(..., help="container, image or volume names or ids"),
    fmt: str = typer.Option("", "-f", "--format", help="a Go template, e.g. '{{.NetworkSettings.IPAddress}}'"),
    kind: str = typer.Option("", "--type", help="container, image or volume (default: whichever has the name)"),
) -> None:
    """Low-level details as JSON, shaped like `docker inspect`: containers, then images, then volumes."""
    store.require_root()
    from minibox.cli import present

    if kind not in ("", "container", "image", "volume"):
        raise InvalidSpec(f'invalid --type "{kind}": use container, image or volume')
    shape = present.Output(fmt, allow_table=False)
    out, failed = [], None
    for ref in names:
        try:
            out.append(inspect_one(ref, kind))
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e
    if shape.custom:
        shape.print(out)
    else:
        say(json.dumps(out, indent=4))
    if failed:
        raise typer.Exit(failed.code)

def inspect_one(ref: str, kind: str) -> dict:
    """What `ref` names, as inspect shows it; NotFound naming all three kinds."""
    from minibox.cli import present
    from minibox.errors import NotFound

    if kind in ("", "container"):
        try:
            rec = store.resolve(ref)
        except NotFound:
            if kind:
                raise
        else:
            from minibox.runtime import cgroups

            state = lifecycle.refresh(rec.id)
            dirs = cgroups.existing_dirs(config.cgroup_parent(), rec.id)
            state = state.replace(paused=state.status == RUNNING and cgroups.frozen(dirs))
            cdir = config.paths().container(rec.id)
            paths = {"log": str(cdir / "container.log"), "upper": str(cdir / "upper"),
                     "work": str(cdir / "work"), "merged": str(cdir / "merged"),
                     "volumes": str(config.paths().volumes)}
            from minibox.cli import inspectdoc

            return inspectdoc.inspect(rec, state, paths, dirs)
    if kind in ("", "image"):
        from minibox.image import store as images

        try:
            img = images.find(ref)
        except MiniboxError:
            img = None
        if img is not None:
            return present.image_inspect(img)
        if kind:
            images.get(ref)
    if kind in ("", "volume"):
        from minibox.engine import volumes

        try:
            return present.volume_inspect(volumes.get(ref))
        except (NotFound, InvalidSpec):
            if kind:
                raise
    raise NotFound(f'no such object: "{ref}" (not a container, image or volume here)')

@app.command()
def cp(
    src: str = typer.Argument(..., help="CONTAINER:PATH, a host path, or - (a tar stream on stdin)"),
    dest: str = typer.Argument(..., help="CONTAINER:PATH, a host path, or - (a tar stream on stdout)"),
    archive: bool = typer.Option(False, "-a", "--archive", help="keep the files' owners (uid:gid)"),
    follow: bool = typer.Option(False, "-L", "--follow-link", help="copy what SRC links to, not the link"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Copy files between a container (running or stopped) and the host, as `docker cp`.

    A running container is frozen for the copy (--explain shows the freeze and the thaw)."""
    store.require_root()
    from minibox.engine import copying

    s, d = copying.parse(src), copying.parse(dest)
    copying.check(s, d)
    rec = store.resolve(s.container or d.container)
    state = lifecycle.refresh(rec.id)
    steps = copying.plan(rec, state, s, d)
    if explain:
        explainer(f"minibox cp {src} {dest}", rec.id)(steps, state.pid)
    copying.copy(rec, state, s, d, archive, follow, steps, (sys.stdin.buffer, sys.stdout.buffer))

@app.command()
def port(
    container: str = typer.Argument(..., help="container name or id"),
    private: str = typer.Argument("", help="only this container port: 80 or 80/tcp"),
) -> None:
    """Show a container's published ports: `80/tcp -> 0.0.0.0:8080`."""
    store.require_root()
    rec = store.resolve(container)
    number, _, proto = private.partition("/")
    if private and (not number.isdigit() or proto not in ("", "tcp", "udp")):
        raise InvalidSpec(f'invalid port "{private}": use PORT or PORT/tcp or PORT/udp')
    # An exited container's ports are released (and may be someone else's now): none, as Docker.
    live = rec.ports if lifecycle.refresh(rec.id).status == RUNNING else ()
    shown = [p for p in live if not private or (p.container_port == int(number) and p.proto == (proto or "tcp"))]
    if private and not shown:
        raise InvalidSpec(f"no public port '{number}/{proto or 'tcp'}' published for {rec.name}")
    for p in shown:
        say(f"{p.host_ip or '0.0.0.0'}:{p.host_port}" if private else p.docker_str())
