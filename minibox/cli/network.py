"""The network verbs: network create|ls|inspect|rm|prune|connect|disconnect|reconcile."""

import json
import sys
from typing import List

import typer

from minibox import store
from minibox.engine import lifecycle
from minibox.cli.app import explainer, network_app, say
from minibox.errors import MiniboxError
from minibox.model import RUNNING


@network_app.command(name="create")
def network_create(
    name: str = typer.Argument(..., help="network name"),
    subnet: List[str] = typer.Option([], "--subnet", help="a CIDR, once per family (default: a free /24 of "
                                                          "10.222.0.0/16; with --ipv6, a unique local /64)"),
    gateway: List[str] = typer.Option([], "--gateway", help="the bridge's address in a --subnet (default: its "
                                                            "first host)"),
    ipv6: bool = typer.Option(False, "--ipv6", help="dual stack: an IPv6 subnet too, for addresses, routes, "
                                                    "egress and published ports"),
    internal: bool = typer.Option(False, "--internal", help="no egress, no published ports"),
    explain: bool = typer.Option(False, "--explain", help="print every step as the command that does it by hand"),
) -> None:
    """Create a bridge network: a bridge with the gateway address, and its firewall elements.

    The lecture's virtual switch: `network create --subnet 192.168.15.0/24 --gateway
    192.168.15.5 v-net-0`; --explain shows the `ip link add ... type bridge` and the rest."""
    store.require_root()
    from minibox.net import networks

    sub, gw, sub6, gw6 = networks.split_families(subnet, gateway, ipv6)
    net, steps = networks.create(name, sub, gw, internal, ipv6=ipv6, subnet6=sub6, gateway6=gw6)
    if explain:
        explainer(f"minibox network create {name}")(steps)
    say(net.id)

NETWORK_FILTERS = ("name", "id", "driver", "type")


def _ls_doc(n) -> dict:
    from minibox import config

    return {"ID": n.id[:12], "Name": n.name, "Driver": "bridge", "Scope": "local",
            "IPv6": "true" if n.subnet6 else "false",
            "Internal": "true" if n.internal else "false", "Subnet": n.subnet, "Gateway": n.gateway,
            "Bridge": n.bridge, "Type": "builtin" if n.name == config.default_network() else "custom"}


def _ls_matches(doc: dict, wanted: list[tuple[str, str]]) -> bool:
    """Docker's rule: one key's values OR-ed, different keys AND-ed; name is a substring."""
    by_key: dict[str, list[str]] = {}
    for k, v in wanted:
        by_key.setdefault(k, []).append(v)
    tests = {"name": lambda v: v in doc["Name"], "id": lambda v: doc["ID"].startswith(v[:12]),
             "driver": lambda v: v == "bridge", "type": lambda v: v == doc["Type"]}
    return all(any(tests[k](v) for v in vs) for k, vs in by_key.items())


@network_app.command(name="ls")
def network_ls(quiet: bool = typer.Option(False, "-q", "--quiet", help="only the network ids"),
               fmt: str = typer.Option("", "--format", help="json, a Go template ('{{.Name}} {{.Subnet}}'), or "
                                                            "'table ...'"),
               filters: List[str] = typer.Option([], "-f", "--filter", help="name=, id=, driver=, "
                                                                             "type=custom|builtin")) -> None:
    """List networks."""
    store.require_root()
    from minibox.cli import present

    shape = present.Output(fmt)
    wanted = present.parse_filters(filters, NETWORK_FILTERS)
    nets = [n for n in store.all_networks() if _ls_matches(_ls_doc(n), wanted)]
    if quiet:
        if nets:
            say("\n".join(n.id[:12] for n in nets))
        return
    if shape.custom:
        shape.print([_ls_doc(n) for n in nets], {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER"})
        return
    rows = [[n.id[:12], n.name, n.bridge, n.subnet, n.gateway, "yes" if n.internal else "no", n.firewall]
            for n in nets]
    damaged = store.damaged_networks()
    rows += [["-", name, "-", "DAMAGED", "-", "-", "-"] for name in damaged
             if not wanted]  # one line each; `network rm NAME` removes it
    say(present.table(["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "INTERNAL", "FIREWALL"], rows))
    for line in damaged.values():
        print(f"minibox: warning: {line}", file=sys.stderr)

@network_app.command(name="inspect")
def network_inspect(names: List[str] = typer.Argument(..., help="network names"),
                    fmt: str = typer.Option("", "-f", "--format", help="a Go template, e.g. "
                                                                        "'{{range .IPAM.Config}}{{.Subnet}}{{end}}'")) -> None:
    """Details as JSON: subnet, gateway, bridge, and each container with its address and veth."""
    store.require_root()
    from minibox.cli import present
    from minibox.net import networks

    shape = present.Output(fmt, allow_table=False)
    out = []
    for name in names:
        net = networks.get(name)
        on = [(rec, store.load_state(rec.id)) for rec in networks.containers_on(name)]
        out.append(present.network_inspect(net, on))
    if shape.custom:
        shape.print(out)
        return
    say(json.dumps(out, indent=4))

def network_users(net) -> list[str]:
    """Names of running containers on `net`: what keeps it from being removed."""
    from minibox.cni.main import on_network
    from minibox.net import networks

    users = [r.name for r in networks.containers_on(net.name) if lifecycle.refresh(r.id).status == RUNNING]
    # an engine's containers attached by minibox-cni: their runtime DELs them, not us
    return users + [f"{a.container_id[:12]} (via minibox-cni)" for a in on_network(net.name)]

@network_app.command(name="rm")
def network_rm(names: List[str] = typer.Argument(..., help="network names")) -> None:
    """Remove networks no running container uses: bridge, firewall elements, address files."""
    store.require_root()
    from minibox.net import networks

    failed = 0
    for name in names:
        try:
            damaged = name in store.damaged_networks()
            _steps, errors = networks.remove(name, network_users)
            if damaged:  # what its record named (the bridge, rules) no record names now
                from minibox.engine import gc

                errors += gc.sweep_networks()[1]
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e.code
            continue
        for e in errors:
            print(f"minibox: warning: {e}", file=sys.stderr)
        say(name)
    if failed:
        raise typer.Exit(failed)

@network_app.command(name="connect")
def network_connect(network: str = typer.Argument(..., help="network name"),
                    container: str = typer.Argument(..., help="container name or id"),
                    alias: List[str] = typer.Option([], "--alias", help="another name the network's DNS answers"),
                    ip: str = typer.Option("", "--ip", help="ask for this address on the network"),
                    explain: bool = typer.Option(False, "--explain", help="print every step as the command that "
                                                                          "does it by hand")) -> None:
    """Connect a container to another network: an interface (eth1, ...) with an address there, its names on
    that network's DNS; the default route stays with the first network."""
    store.require_root()
    from minibox.net import connect, networks
    from minibox.plan import ipam
    from minibox.plan.spec import validate_hostname

    net = networks.get(network)
    for a in alias:
        validate_hostname(a, "--alias")
    if ip:
        ipam.check_requested(ipam.parse_subnet(net.subnet), net.gateway, ip, set())
    rec = store.resolve(container)
    state = lifecycle.refresh(rec.id)
    steps = connect.connect(rec, net, tuple(alias), ip, state.pid if state.status == RUNNING else 0)
    if explain:
        explainer(f"minibox network connect {network} {container}", rec.id)(steps, state.pid)


@network_app.command(name="disconnect")
def network_disconnect(network: str = typer.Argument(..., help="network name"),
                       container: str = typer.Argument(..., help="container name or id"),
                       force: bool = typer.Option(False, "-f", "--force", help="(accepted for Docker's scripts)")
                       ) -> None:
    """Take a container off a network it was connected to: its interface, address and DNS names there go."""
    store.require_root()
    from minibox.net import connect

    connect.disconnect(store.resolve(container), network)


@network_app.command(name="prune")
def network_prune(force: bool = typer.Option(False, "-f", "--force", help="(accepted for Docker's scripts: "
                                                                          "minibox does not ask)")) -> None:
    """Remove every user-defined network no container (running or not) is on."""
    store.require_root()
    from minibox import config
    from minibox.cni.main import on_network
    from minibox.net import networks

    gone = []
    for net in store.all_networks():
        if net.name == config.default_network() or networks.containers_on(net.name) or on_network(net.name):
            continue
        try:
            _steps, errors = networks.remove(net.name, network_users)
        except MiniboxError as e:
            print(f"minibox: warning: {net.name}: {e}", file=sys.stderr)
            continue
        for e in errors:
            print(f"minibox: warning: {e}", file=sys.stderr)
        gone.append(net.name)
    if gone:
        say("Deleted Networks:\n" + "\n".join(gone))


@network_app.command(name="reconcile")
def network_reconcile() -> None:
    """Re-apply every bridge, sysctl and firewall rule from minibox's state (after a flush)."""
    store.require_root()
    from minibox.net import networks

    networks.reconcile()
    say("reconciled")
