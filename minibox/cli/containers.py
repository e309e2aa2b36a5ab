"""The container verbs: run, exec, ps, logs, stop, kill, rm, inspect, port, gc."""

import json
import os
import signal
import sys
from typing import List, Optional

import typer

from minibox import config, lifecycle, store
from minibox.cli.app import POSITIONAL_TAIL, app, check_format, explainer, say
from minibox.errors import InvalidSpec, MiniboxError
from minibox.model import RUNNING, ContainerSpec


@app.command(context_settings=POSITIONAL_TAIL)
def run(
    image: str = typer.Argument(..., help="image name (see `minibox images`)"),
    command: Optional[List[str]] = typer.Argument(None, help="command and arguments"),
    detach: bool = typer.Option(False, "-d", "--detach", help="run in the background, print the id"),
    rm: bool = typer.Option(False, "--rm", help="remove the container when it exits"),
    name: str = typer.Option("", "--name", help="a name to refer to the container by"),
    env: List[str] = typer.Option([], "-e", "--env", help="set an environment variable, KEY=VALUE"),
    workdir: str = typer.Option("/", "-w", "--workdir", help="working directory inside (absolute)"),
    hostname: str = typer.Option("", "--hostname", "-h", help="hostname (default: first 12 hex of the id)"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="keep stdin attached"),
    tty: bool = typer.Option(False, "-t", "--tty", help="allocate a pseudo-terminal"),
    network: str = typer.Option("", "--network", "--net", help="bridge (default), none, host, or a network name"),
    publish: List[str] = typer.Option([], "-p", "--publish", help="publish a port: [IP:]HOST:CTR[/udp] or CTR"),
    ip: str = typer.Option("", "--ip", help="ask for this address on the network"),
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
    lifecycle.require_root()
    spec = build_spec(image=image, command=command or [], detach=detach, rm=rm, name=name, env=env,
                      workdir=workdir, hostname=hostname, interactive=interactive, tty=tty, network=network,
                      publish=publish, ip=ip, memory=memory, pids_limit=pids_limit, security_opt=security_opt,
                      log_opt=log_opt)
    if dry_run:
        from minibox.teach import dryrun

        args = " ".join(a for a in sys.argv[2:] if a != "--dry-run")
        sys.stdout.write(dryrun.script(spec, f"minibox run {args}"))
        return
    from minibox import launch

    title = f"minibox run {' '.join(a for a in sys.argv[2:] if a != '--explain')}"
    result = launch.run(spec, explain=explainer(title) if explain else None)
    if spec.detach:
        say(result.record.id)
        return
    raise typer.Exit(result.exit_code or 0)

def build_spec(*, image: str, command: list[str], detach: bool, rm: bool, name: str, env: list[str],
               workdir: str, hostname: str, interactive: bool, tty: bool, network: str, publish: list[str],
               ip: str, memory: str, pids_limit: int, security_opt: list[str], log_opt: list[str]) -> ContainerSpec:
    """The command line, validated, as a ContainerSpec (keyword-only: there are many)."""
    from minibox import images
    from minibox.plan import spec as specs

    if name:
        specs.validate_name(name)
    if hostname:
        specs.validate_hostname(hostname)
    if tty and interactive and not detach and not os.isatty(0):
        raise InvalidSpec("the input device is not a TTY: drop -t, or run from a terminal")
    ports = ()
    if publish:
        from minibox.plan import ports as portplan

        ports = tuple(portplan.parse_publish(p) for p in publish)
        if network in ("none", "host"):
            raise InvalidSpec(f"-p has no effect with --network {network}: use the default bridge network")
    if ip and network in ("none", "host"):
        raise InvalidSpec(f"--ip needs a bridge network, not --network {network}")
    profile = specs.parse_security_opt(security_opt)
    if profile not in ("", "unconfined"):
        profile = os.path.abspath(profile)
    max_size, max_files = specs.parse_log_opts(log_opt)
    return ContainerSpec(
        image=images.validate_ref(image), cmd=tuple(command), name=name,
        env=specs.parse_env(env, dict(os.environ)), workdir=specs.validate_workdir(workdir),
        hostname=hostname, interactive=interactive, tty=tty, detach=detach, remove=rm,
        network=network, ports=ports, ip=ip, memory=specs.parse_memory(memory) if memory else 0,
        pids_limit=specs.validate_pids_limit(pids_limit), seccomp=profile, log_max_size=max_size,
        log_max_files=max_files)

@app.command(name="exec", context_settings=POSITIONAL_TAIL)
def exec_(
    container: str = typer.Argument(..., help="container name or id"),
    command: List[str] = typer.Argument(..., help="command and arguments"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="keep stdin attached"),
    tty: bool = typer.Option(False, "-t", "--tty", help="allocate a pseudo-terminal"),
    env: List[str] = typer.Option([], "-e", "--env", help="set an environment variable, KEY=VALUE"),
    workdir: str = typer.Option("", "-w", "--workdir", help="working directory inside (absolute)"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Run a command in a running container: joins its namespaces and cgroup, same privileges.

    With --explain: the `nsenter` that joins them, the cgroup, the privileges, the exec."""
    lifecycle.require_root()
    from minibox.plan import spec as specs

    lifecycle.validate_exec_args(workdir)
    extra = specs.parse_env(env, dict(os.environ))
    rec, state = lifecycle.running(container)
    code = lifecycle.exec_in(rec, state, tuple(command), extra, workdir, tty, interactive,
                             explain=explainer(f"minibox exec {rec.name}", rec.id) if explain else None)
    raise typer.Exit(code)

@app.command()
def ps(
    all_: bool = typer.Option(False, "-a", "--all", help="show stopped containers too"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="only ids"),
    fmt: str = typer.Option("", "--format", help="json: one JSON object per line"),
) -> None:
    """List containers. One whose record cannot be read is listed as Dead, the rest as usual."""
    lifecycle.require_root()
    from minibox import present

    check_format(fmt, "json")
    rows = []
    for cid, rec in store.entries().items():
        if isinstance(rec, MiniboxError):
            rows.append((cid, None, None, str(rec)))
            continue
        try:
            state = lifecycle.refresh(rec.id)
        except FileNotFoundError:
            continue  # removed while we looked
        except MiniboxError as e:
            try:
                state = store.load_state(rec.id)
            except MiniboxError:
                rows.append((cid, rec, None, str(e)))
                continue
            print(f"minibox: warning: {e}", file=sys.stderr)
        if all_ or state.status == RUNNING:
            rows.append((cid, rec, state, ""))
    rows.sort(key=lambda r: r[1].created if r[1] else 0, reverse=True)
    if quiet:
        for cid, *_ in rows:
            say(cid[:12])
        return
    why = lambda text: "cannot read " + text.split(" is damaged")[0].rsplit("/", 1)[-1]  # noqa: E731
    if fmt == "json":
        for cid, rec, state, err in rows:
            say(json.dumps(present.ps_json(rec, state) if state else present.dead_json(cid, why(err))))
        return
    say(present.table(present.PS_HEADERS, [present.ps_row(r, s) if s else present.dead_row(c, why(e))
                                            for c, r, s, e in rows]))

@app.command()
def logs(
    container: str = typer.Argument(..., help="container name or id"),
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new output"),
) -> None:
    """Print a container's output (stdout to stdout, stderr to stderr), its rotated files included."""
    lifecycle.require_root()
    from minibox import logs as logmod

    rec = store.resolve(container)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    logmod.show(config.paths().container(rec.id), follow, lambda: lifecycle.refresh(rec.id).status == RUNNING)

def _each(refs: list[str], action, resolve=store.resolve) -> None:
    """Apply `action` to each container, going on past failures like Docker does."""
    failed = 0
    for ref in refs:
        try:
            action(resolve(ref))
            say(ref)
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e.code
    if failed:
        raise typer.Exit(failed)

@app.command()
def stop(
    containers: List[str] = typer.Argument(..., help="container names or ids"),
    time_: int = typer.Option(config.STOP_TIMEOUT, "-t", "--time", help="seconds to wait before SIGKILL"),
) -> None:
    """Stop containers: SIGTERM, then SIGKILL after the grace period."""
    lifecycle.require_root()
    if time_ < 0:
        raise InvalidSpec(f"invalid --time {time_}: give a number of seconds >= 0")
    _each(containers, lambda rec: lifecycle.stop(rec, time_))

@app.command()
def kill(
    containers: List[str] = typer.Argument(..., help="container names or ids"),
    sig: str = typer.Option("KILL", "-s", "--signal", help="signal name or number"),
) -> None:
    """Send a signal (default SIGKILL) to containers' PID 1."""
    lifecycle.require_root()
    signum = parse_signal(sig)
    _each(containers, lambda rec: lifecycle.kill(rec, signum))

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
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Remove containers and everything they held (damaged ones too, with -f).

    With --explain: the rules, conntrack entries, veth, address and cgroup given back."""
    lifecycle.require_root()

    def remove(cid: str) -> None:
        steps = lifecycle.remove(cid, force)
        if explain:
            explainer(f"minibox rm {cid[:12]}", cid)(steps)

    _each(containers, remove, resolve=store.resolve_id)

@app.command()
def inspect(containers: List[str] = typer.Argument(..., help="container names or ids")) -> None:
    """Low-level details as JSON, shaped like `docker inspect`."""
    lifecycle.require_root()
    from minibox import present
    from minibox.runtime import cgroups

    out, failed = [], None
    for ref in containers:
        try:
            rec = store.resolve(ref)
            state = lifecycle.refresh(rec.id)
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e
            continue
        cdir = config.paths().container(rec.id)
        paths = {"log": str(cdir / "container.log"), "upper": str(cdir / "upper"),
                 "work": str(cdir / "work"), "merged": str(cdir / "merged")}
        out.append(present.inspect(rec, state, paths, cgroups.existing_dirs(config.cgroup_parent(), rec.id)))
    say(json.dumps(out, indent=4))
    if failed:
        raise typer.Exit(failed.code)

@app.command()
def port(container: str = typer.Argument(..., help="container name or id")) -> None:
    """Show a container's published ports: `80/tcp -> 0.0.0.0:8080`."""
    lifecycle.require_root()
    rec = store.resolve(container)
    for p in rec.ports:
        say(p.docker_str())

@app.command()
def gc(explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand")) -> None:
    """Remove what a crash left behind: containers stuck half-way, firewall elements and rules,
    cgroups, veths, shims, address and name files of containers that no longer exist, found
    by the id each one carries."""
    lifecycle.require_root()
    from minibox import gc as collector

    steps, errors = collector.run()
    if explain:
        explainer("minibox gc")(steps)
    say(f"removed {len(steps)} leftover(s)")
    for e in errors:
        print(f"minibox: warning: {e}", file=sys.stderr)
    if errors:
        raise typer.Exit(1)
