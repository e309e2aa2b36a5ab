"""The verbs that teach: top, explain, trace, doctor, network show."""

import json
import os
import re
import sys

from typing import List, Optional

import typer

from minibox import store
from minibox.engine import lifecycle
from minibox.cli.app import POSITIONAL_TAIL, app, check_format, network_app, say
from minibox.errors import InvalidSpec, NotFound


@app.command(context_settings=POSITIONAL_TAIL)
def top(
    container: str = typer.Argument(..., help="container name or id"),
    ps_options: Optional[List[str]] = typer.Argument(None, help="ps options (aux, -o pid,comm): Docker's table, "
                                                                "from the host's ps"),
    fmt: str = typer.Option("", "--format", help="json"),
) -> None:
    """Every process of a container: its PID inside, the same process's PID on the host.

    Teaches "same process, other PID": the kernel's NSpid line, namespace by namespace,
    and which namespaces and cgroup the container has of its own. With ps options, as
    `docker top CTR aux`: the host's ps, its rows of the container's processes."""
    store.require_root()
    from minibox.cli import present
    from minibox.runtime import procs
    from minibox.teach import observe

    ps_options = list(ps_options or ())
    if ps_options[:1] == ["--format"] or (ps_options and ps_options[0].startswith("--format=")):
        # after the container, --format is still ours (ps has no such option), as before
        fmt = ps_options[0].partition("=")[2] or (ps_options[1] if len(ps_options) > 1 else "")
        ps_options = ps_options[1 if "=" in ps_options[0] else 2:]
    check_format(fmt, "json")
    rec, state = lifecycle.running(container)
    plist = procs.processes_in(state.pid)
    if ps_options:
        say(observe.ps_rows(list(ps_options), {p.host_pid for p in plist}))
        return
    ns = observe.ns_table(state.pid)
    if fmt == "json":
        say(json.dumps({"processes": [p._asdict() for p in plist],
                         "namespaces": [dict(zip(("kind", "container", "host", "shared"), r)) for r in ns],
                         "cgroup": observe.cgroup_lines(state.pid),
                         "host_cgroup": observe.cgroup_lines(os.getpid())}, indent=2))
        return
    cg = observe.cgroup_table(state.pid)
    rows = [[str(p.ctr_pid), str(p.host_pid), str(p.ppid), p.user, p.command] for p in plist]
    say(present.table(["PID (container)", "PID (host)", "PPID (container)", "USER", "COMMAND"], rows))
    say("")
    say(present.table(["NAMESPACE", "CONTAINER", "HOST", ""], ns))
    say("")
    say(present.table(["CGROUP", "CONTAINER'S GROUP", "ITS DIRECTORY ON THE HOST"], cg))

@app.command(name="explain")
def explain_ctr(container: str = typer.Argument(..., help="container name or id")) -> None:
    """A running container as commands, with what they print now: its namespaces, root,
    cgroup, veth pair, addresses, routes, DNAT elements (with packet counters), conntrack;
    then each defence that keeps it in, and the attack it stops."""
    store.require_root()
    from minibox.teach import explain, observe

    rec, state = lifecycle.running(container)
    dim, bold, reset = explain.colors(sys.stdout)
    for probe in observe.probes(rec, state):
        say(f"{dim}# {probe.why}{reset}")
        say(f"{bold}$ {probe.command}{reset}")
        text = observe.run_probe(probe, rec)
        if text:
            say("\n".join("  " + line for line in text.splitlines()))
        say("")
    say(f"{bold}# What keeps {rec.name} in: each defence as the kernel has it now, and the attack it stops{reset}")
    for d in observe.security(rec, state):
        say(f"{bold}{d.name:<17}{reset} {d.now}")
        say(f"{'':<17} {dim}stops: {d.stops}{reset}")

@app.command()
def trace(
    container: str = typer.Argument(..., help="container name or id"),
    port: int = typer.Option(0, "--port", help="the published host port to probe"),
    dns_name: str = typer.Option("", "--dns", help="instead: look NAME up from inside the container, step by step"),
    from_: str = typer.Option("host", "--from", help="outside, host, localhost or container"),
    to: str = typer.Option("", "--to", help="the address to probe (default: chosen for the path)"),
    ipv6: bool = typer.Option(False, "-6", "--ipv6", help="--from outside: probe over IPv6 (the LAN link gets a "
                                                         "unique local /64 too)"),
) -> None:
    """Send one probe to a published port along one of its four paths and show each rule its
    packets met (nftables tracing, iptables-nft's rules included), then how conntrack
    rewrote the flow: the DNAT to the container, and any SNAT (masquerade) on the way."""
    store.require_root()
    from minibox.teach import trace as tr

    rec, _state = lifecycle.running(container)
    if dns_name:
        from minibox.teach import dnstrace

        sys.stdout.write(dnstrace.run(rec, dns_name))
        return
    if not port:
        raise InvalidSpec("trace needs --port PORT (a published host port) or --dns NAME")
    sys.stdout.write(tr.render(tr.run(rec, port, from_, to, ipv6)))

@app.command()
def doctor(fmt: str = typer.Option("", "--format", help="json")) -> None:
    """Check this host for what breaks container networking: ip_forward, the FORWARD policy,
    drops above minibox's rules (iptables' or another nftables table's), iptables' variant and legacy tables, other runtimes' rules, route_localnet, br_netfilter,
    subnets against routes, host ports shadowed by DNAT, loopback nameservers, and whether
    another tool changed minibox's rules. For each finding: what it means and the command
    that fixes it. Exits 1 if `run -p` would break."""
    store.require_root()
    from minibox.teach import doctor as doc

    check_format(fmt, "json")
    findings = doc.run_checks()
    if fmt == "json":
        sys.stdout.write(doc.as_json(findings))
    else:
        sys.stdout.write(doc.render(findings, sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    if doc.failed(findings):
        raise typer.Exit(1)

@network_app.command(name="show")
def network_show(
    name: str = typer.Argument("", help="only this network"),
    fmt: str = typer.Option("text", "--format", help="text, svg, mermaid or json"),
    all_links: bool = typer.Option(False, "--all", "-a", help="every host interface, not only lo and the uplink"),
    port: str = typer.Option("", "--port", help="only the packet paths of this published host port (8080 or 8080/tcp)"),
) -> None:
    """The topology as the kernel has it: host interfaces, the NAT steps, bridges, each veth
    pair with both ends, containers' eth0 with address and MAC, routes, the four ways a
    packet travels for each published port, and the rules with their packet counters.
    `--format svg > net.svg` draws it."""
    store.require_root()
    from minibox.teach import paths, picture, topology, topotext

    if name:
        from minibox.net import networks

        networks.get(name)
    renderers = {"text": topotext.text, "svg": picture.svg, "mermaid": topotext.mermaid,
                 "json": lambda t, _port: topology.as_json(t)}
    check_format(fmt, *renderers)
    if port and not re.fullmatch(r"\d{1,5}(/(tcp|udp))?", port):
        raise InvalidSpec(f'invalid --port "{port}": give a published host port, like 8080 or 8080/tcp')
    snapshot = topology.gather(name, all_links)
    published = paths.published(snapshot)
    if port and not paths.select(published, port):
        have = ", ".join(sorted({f"{p.host_port}/{p.proto}" for p in published})) or "none"
        raise NotFound(f"no container publishes port {port}{f' on network {name}' if name else ''} "
                       f"(published: {have})")
    sys.stdout.write(renderers[fmt](snapshot, port))
