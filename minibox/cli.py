"""The `minibox` command line: one typer function per verb; parsing and printing only.

Every verb hands validated values to lifecycle (or images, net) and prints what comes back.
Errors are raised as MiniboxError and turned into one line and an exit code by __main__.
"""

import json
import os
import signal
import sys
from typing import List, Optional

import typer

from minibox import config, lifecycle, store
from minibox.errors import InvalidSpec, MiniboxError
from minibox.model import RUNNING, ContainerSpec

# Modules only some verbs need (images, present, plan.spec, the network) are imported in
# those verbs: every import here is paid by every command, `exec` included.

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="A small container runtime that shows what `docker run` does to the kernel.")
image_app = typer.Typer(no_args_is_help=True, help="Manage images (rootfs directories).")


@app.callback()
def main_options(
    firewall_backend: str = typer.Option("", "--firewall-backend", envvar="MINIBOX_FIREWALL_BACKEND",
                                         help="nftables (default) or iptables, for networks created now; "
                                              "each network keeps the backend it was created with"),
) -> None:
    if firewall_backend:
        if firewall_backend not in config.FIREWALL_BACKENDS:
            raise InvalidSpec(f'unknown --firewall-backend "{firewall_backend}": use nftables or iptables')
        os.environ["MINIBOX_FIREWALL_BACKEND"] = firewall_backend
app.add_typer(image_app, name="image")

# Docker-style `run [OPTIONS] IMAGE [COMMAND] [ARG...]`: options stop at IMAGE, so the
# `-p 80` in `minibox run busybox httpd -p 80` belongs to httpd, not to minibox.
POSITIONAL_TAIL = {"allow_interspersed_args": False}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


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
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
    dry_run: bool = typer.Option(False, "--dry-run", help="change nothing; print a runnable shell script instead"),
) -> None:
    """Run a command in a new container (new PID, mount, network, UTS and IPC namespaces).

    With --explain, see each namespace, mount, veth, address, route, sysctl and firewall rule
    it takes, as `unshare`, `mount`, `ip`, `sysctl` and `nft`/`iptables` commands."""
    lifecycle.require_root()
    spec = build_spec(image=image, command=command or [], detach=detach, rm=rm, name=name, env=env,
                      workdir=workdir, hostname=hostname, interactive=interactive, tty=tty, network=network,
                      publish=publish, ip=ip, memory=memory, pids_limit=pids_limit, security_opt=security_opt)
    if dry_run:
        from minibox import dryrun

        args = " ".join(a for a in sys.argv[2:] if a != "--dry-run")
        sys.stdout.write(dryrun.script(spec, f"minibox run {args}"))
        return
    title = f"minibox run {' '.join(a for a in sys.argv[2:] if a != '--explain')}"
    result = lifecycle.run(spec, explain=_explainer(title) if explain else None)
    if spec.detach:
        _out(result.record.id)
        return
    raise typer.Exit(result.exit_code or 0)


def _explainer(title: str, cid: str = ""):
    """A callback printing steps; a container's directory and id become $C and $ID."""
    from minibox import explain

    def show(steps, pid=None, cid=cid):
        names = {}
        if cid:
            names = {str(config.paths().container(cid)): "C", cid: "ID"}
        explain.show(title, steps, pid if pid is not None else explain.PID, names)

    return show


def build_spec(*, image: str, command: list[str], detach: bool, rm: bool, name: str, env: list[str],
               workdir: str, hostname: str, interactive: bool, tty: bool, network: str, publish: list[str],
               ip: str, memory: str, pids_limit: int, security_opt: list[str]) -> ContainerSpec:
    """The command line, validated, as a ContainerSpec (keyword-only: sixteen of them)."""
    from minibox import images
    from minibox.plan import seccomp
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
    profile = seccomp.parse_security_opt(security_opt)
    if profile not in ("", "unconfined"):
        profile = os.path.abspath(profile)
    return ContainerSpec(
        image=images.validate_ref(image), cmd=tuple(command), name=name,
        env=specs.parse_env(env, dict(os.environ)), workdir=specs.validate_workdir(workdir),
        hostname=hostname, interactive=interactive, tty=tty, detach=detach, remove=rm,
        network=network, ports=ports, ip=ip, memory=specs.parse_memory(memory) if memory else 0,
        pids_limit=specs.validate_pids_limit(pids_limit), seccomp=profile)


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
    rec = store.resolve(container)
    code = lifecycle.exec_in(rec, tuple(command), extra, workdir, tty, interactive,
                             explain=_explainer(f"minibox exec {rec.name}", rec.id) if explain else None)
    raise typer.Exit(code)


@app.command()
def ps(
    all_: bool = typer.Option(False, "-a", "--all", help="show stopped containers too"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="only ids"),
    fmt: str = typer.Option("", "--format", help="json: one JSON object per line"),
) -> None:
    """List containers."""
    lifecycle.require_root()
    from minibox import present

    rows = []
    for rec in sorted(store.all_records(), key=lambda r: r.created, reverse=True):
        try:
            state = lifecycle.refresh(rec.id)
        except FileNotFoundError:
            continue  # removed while we looked
        except MiniboxError as e:
            print(f"minibox: warning: {e}", file=sys.stderr)
            state = store.load_state(rec.id)
        if all_ or state.status == RUNNING:
            rows.append((rec, state))
    if quiet:
        for rec, _ in rows:
            _out(rec.short_id)
    elif fmt == "json":
        for rec, state in rows:
            _out(json.dumps(present.ps_json(rec, state)))
    elif fmt:
        raise InvalidSpec(f'unknown --format "{fmt}": use json')
    else:
        _out(present.table(present.PS_HEADERS, [present.ps_row(r, s) for r, s in rows]))


@app.command()
def top(
    container: str = typer.Argument(..., help="container name or id"),
    fmt: str = typer.Option("", "--format", help="json"),
) -> None:
    """Every process of a container: its PID inside, the same process's PID on the host.

    Teaches "same process, other PID": the kernel's NSpid line, namespace by namespace,
    and which namespaces and cgroup the container has of its own."""
    lifecycle.require_root()
    from minibox import observe, present
    from minibox.runtime import procs

    rec = store.resolve(container)
    state = lifecycle.refresh(rec.id)
    if state.status != RUNNING:
        raise MiniboxError(f"container {rec.name} is not running")
    plist = procs.processes_in(state.pid)
    ns = observe.ns_table(state.pid)
    cg = observe.cgroup_lines(state.pid)
    if fmt == "json":
        _out(json.dumps({"processes": [p.__dict__ for p in plist],
                         "namespaces": [dict(zip(("kind", "container", "host", "shared"), r)) for r in ns],
                         "cgroup": cg, "host_cgroup": observe.cgroup_lines(os.getpid())}, indent=2))
        return
    if fmt:
        raise InvalidSpec(f'unknown --format "{fmt}": use json')
    rows = [[str(p.ctr_pid), str(p.host_pid), str(p.ppid), p.user, p.command] for p in plist]
    _out(present.table(["PID (container)", "PID (host)", "PPID (container)", "USER", "COMMAND"], rows))
    _out("")
    _out(present.table(["NAMESPACE", "CONTAINER", "HOST", ""], ns))
    _out("")
    mine = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in cg}
    host = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in observe.cgroup_lines(os.getpid())}
    _out(present.table(["CGROUP", "CONTAINER", "HOST (minibox)"],
                       [[k or "(v2)", v, host.get(k, "")] for k, v in mine.items() if v != host.get(k)]))


@app.command(name="explain")
def explain_ctr(container: str = typer.Argument(..., help="container name or id")) -> None:
    """A running container as commands, with what they print now: its namespaces, root,
    cgroup, veth pair, addresses, routes, DNAT elements (with packet counters), conntrack."""
    lifecycle.require_root()
    from minibox import observe
    from minibox.explain import _colors

    rec = store.resolve(container)
    state = lifecycle.refresh(rec.id)
    if state.status != RUNNING:
        raise MiniboxError(f"container {rec.name} is not running: `minibox inspect {rec.name}` shows what is left")
    dim, bold, reset = _colors(sys.stdout)
    for probe in observe.probes(rec, state):
        _out(f"{dim}# {probe.why}{reset}")
        _out(f"{bold}$ {probe.command}{reset}")
        text = observe.run_probe(probe, rec)
        if text:
            _out("\n".join("  " + line for line in text.splitlines()))
        _out("")
    _out(f"{bold}# What keeps {rec.name} in: each defence as the kernel has it now, and the attack it stops{reset}")
    for d in observe.security(rec, state):
        _out(f"{bold}{d.name:<17}{reset} {d.now}")
        _out(f"{'':<17} {dim}stops: {d.stops}{reset}")


@app.command()
def logs(
    container: str = typer.Argument(..., help="container name or id"),
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new output"),
) -> None:
    """Print a container's output (stdout to stdout, stderr to stderr)."""
    lifecycle.require_root()
    from minibox import logs as logmod

    rec = store.resolve(container)
    path = str(config.paths().container(rec.id) / "container.log")
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    logmod.show(path, follow, lambda: lifecycle.refresh(rec.id).status == RUNNING)


def _each(refs: list[str], action) -> None:
    """Apply `action` to each container, going on past failures like Docker does."""
    failed = 0
    for ref in refs:
        try:
            action(store.resolve(ref))
            _out(ref)
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
    """Remove containers and everything they held.

    With --explain: the rules, conntrack entries, veth, address and cgroup given back."""
    lifecycle.require_root()

    def remove(rec):
        steps = lifecycle.remove(rec, force)
        if explain:
            _explainer(f"minibox rm {rec.name}", rec.id)(steps)

    _each(containers, remove)


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
    _out(json.dumps(out, indent=4))
    if failed:
        raise typer.Exit(failed.code)


@app.command(name="images")
def images_() -> None:
    """List images."""
    lifecycle.require_root()
    from minibox import images, present

    rows = [[i.name, present.ago(i.created), present.human_size(i.size)] for i in images.list_images()]
    _out(present.table(["IMAGE", "CREATED", "SIZE"], rows))


@image_app.command(name="ls")
def image_ls() -> None:
    """List images."""
    images_()


@image_app.command(name="import")
def image_import(
    source: str = typer.Argument(..., help="a rootfs directory or tar archive (`docker export` output)"),
    name: str = typer.Argument(..., help="name for the image"),
) -> None:
    """Import a root filesystem as an image."""
    lifecycle.require_root()
    from minibox import images, present

    img = images.import_image(source, name)
    _out(f"{img.name} ({present.human_size(img.size)})")
    if img.device_nodes:
        print(f"minibox: note: {img.device_nodes} device node(s) in this image will not open in a container: its "
              "root is mounted nodev, and the device cgroup allows only /dev/null, zero, full, random, urandom, "
              "tty, ptmx and pts", file=sys.stderr)


@image_app.command(name="rm")
def image_rm(names: List[str] = typer.Argument(..., help="image names")) -> None:
    """Remove images no container uses."""
    lifecycle.require_root()
    from minibox import images

    for n in names:
        images.remove_image(n)
        _out(f"Deleted: {images.normalize(n)}")


@app.command()
def trace(
    container: str = typer.Argument(..., help="container name or id"),
    port: int = typer.Option(..., "--port", help="the published host port to probe"),
    from_: str = typer.Option("host", "--from", help="outside, host, localhost or container"),
    to: str = typer.Option("", "--to", help="the address to probe (default: chosen for the path)"),
) -> None:
    """Send one probe to a published port along one of its four paths and show each rule its
    packets met (nftables tracing, iptables-nft's rules included), then how conntrack
    rewrote the flow: the DNAT to the container, and any SNAT (masquerade) on the way."""
    lifecycle.require_root()
    from minibox import trace as tr

    rec = store.resolve(container)
    if lifecycle.refresh(rec.id).status != RUNNING:
        raise MiniboxError(f"container {rec.name} is not running")
    sys.stdout.write(tr.render(tr.run(rec, port, from_, to)))


@app.command()
def doctor(fmt: str = typer.Option("", "--format", help="json")) -> None:
    """Check this host for what breaks container networking: ip_forward, the FORWARD policy,
    iptables' variant and legacy tables, other runtimes' rules, route_localnet, br_netfilter,
    subnets against routes, host ports shadowed by DNAT, loopback nameservers. For each
    finding: what it means and the command that fixes it. Exits 1 if `run -p` would break."""
    lifecycle.require_root()
    from minibox import doctor as doc

    findings = doc.run_checks()
    if fmt == "json":
        sys.stdout.write(doc.as_json(findings))
    elif fmt:
        raise InvalidSpec(f'unknown --format "{fmt}": use json')
    else:
        sys.stdout.write(doc.render(findings, sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    if doc.failed(findings):
        raise typer.Exit(1)


@app.command()
def gc(explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand")) -> None:
    """Remove what a crash left behind: firewall elements and rules, cgroups, veths, address
    and name files of containers that no longer exist, found by the id each one carries."""
    lifecycle.require_root()
    from minibox import gc as collector

    steps, errors = collector.run()
    if explain:
        _explainer("minibox gc")(steps)
    _out(f"removed {len(steps)} leftover(s)")
    for e in errors:
        print(f"minibox: warning: {e}", file=sys.stderr)
    if errors:
        raise typer.Exit(1)


network_app = typer.Typer(no_args_is_help=True, help="Manage bridge networks (a bridge, a subnet, firewall rules).")
app.add_typer(network_app, name="network")


@app.command()
def port(container: str = typer.Argument(..., help="container name or id")) -> None:
    """Show a container's published ports: `80/tcp -> 0.0.0.0:8080`."""
    lifecycle.require_root()
    rec = store.resolve(container)
    for p in rec.ports:
        _out(p.docker_str())


@network_app.command(name="create")
def network_create(
    name: str = typer.Argument(..., help="network name"),
    subnet: str = typer.Option("", "--subnet", help="IPv4 CIDR (default: a free /24 of 10.222.0.0/16)"),
    gateway: str = typer.Option("", "--gateway", help="the bridge's address (default: first host of the subnet)"),
    internal: bool = typer.Option(False, "--internal", help="no egress, no published ports"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Create a bridge network: a bridge with the gateway address, and its firewall elements.

    The lecture's virtual switch: `network create --subnet 192.168.15.0/24 --gateway
    192.168.15.5 v-net-0`; --explain shows the `ip link add ... type bridge` and the rest."""
    lifecycle.require_root()
    from minibox.net import networks

    net, steps = networks.create(name, subnet, gateway, internal)
    if explain:
        _explainer(f"minibox network create {name}")(steps)
    _out(net.id)


@network_app.command(name="ls")
def network_ls() -> None:
    """List networks."""
    lifecycle.require_root()
    from minibox import present

    rows = [[n.id[:12], n.name, n.bridge, n.subnet, n.gateway, "yes" if n.internal else "no", n.firewall]
            for n in store.all_networks()]
    _out(present.table(["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "INTERNAL", "FIREWALL"], rows))


@network_app.command(name="inspect")
def network_inspect(names: List[str] = typer.Argument(..., help="network names")) -> None:
    """Details as JSON: subnet, gateway, bridge, and each container with its address and veth."""
    lifecycle.require_root()
    from minibox import present
    from minibox.net import networks

    out = []
    for name in names:
        net = networks.get(name)
        ctrs = {}
        for rec in networks.containers_on(name):
            if store.load_state(rec.id).released:
                continue
            ep = rec.endpoint
            ctrs[rec.id] = {"Name": rec.name, "IPv4Address": f"{ep.ip}/{ep.prefixlen}", "MacAddress": ep.mac,
                            "HostVeth": ep.veth, "ContainerVeth": "eth0"}
        out.append({"Name": net.name, "Id": net.id, "Created": present.iso(net.created), "Driver": "bridge",
                    "Internal": net.internal,
                    "IPAM": {"Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
                    "Options": {"bridge.name": net.bridge, "bridge.mac": net.mac, "firewall": net.firewall},
                    "Containers": ctrs})
    _out(json.dumps(out, indent=4))


@network_app.command(name="rm")
def network_rm(names: List[str] = typer.Argument(..., help="network names")) -> None:
    """Remove networks no running container uses: bridge, firewall elements, address files."""
    lifecycle.require_root()
    from minibox.net import networks

    for name in names:
        _steps, errors = networks.remove(name)
        for e in errors:
            print(f"minibox: warning: {e}", file=sys.stderr)
        _out(name)


@network_app.command(name="show")
def network_show(
    name: str = typer.Argument("", help="only this network"),
    fmt: str = typer.Option("text", "--format", help="text, svg, mermaid or json"),
) -> None:
    """The topology as the kernel has it: host interfaces, bridges, each veth pair with both
    ends, containers' eth0 with address and MAC, routes, and the rules on each hook with
    their packet counters. `--format svg > net.svg` draws it."""
    lifecycle.require_root()
    from minibox import topology

    if name:
        from minibox.net import networks

        networks.get(name)
    renderers = {"text": topology.text, "svg": topology.svg, "mermaid": topology.mermaid,
                 "json": lambda t: json.dumps(t, default=lambda o: o.__dict__, indent=2) + "\n"}
    if fmt not in renderers:
        raise InvalidSpec(f'unknown --format "{fmt}": use text, svg, mermaid or json')
    sys.stdout.write(renderers[fmt](topology.gather(name)))


@network_app.command(name="reconcile")
def network_reconcile() -> None:
    """Re-apply every bridge, sysctl and firewall rule from minibox's state (after a flush)."""
    lifecycle.require_root()
    from minibox.net import networks

    networks.reconcile()
    _out("reconciled")
