"""The network verbs: network create|ls|inspect|rm|reconcile."""

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
        explainer(f"minibox network create {name}")(steps)
    say(net.id)

@network_app.command(name="ls")
def network_ls() -> None:
    """List networks."""
    lifecycle.require_root()
    from minibox.cli import present

    rows = [[n.id[:12], n.name, n.bridge, n.subnet, n.gateway, "yes" if n.internal else "no", n.firewall]
            for n in store.all_networks()]
    say(present.table(["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "INTERNAL", "FIREWALL"], rows))

@network_app.command(name="inspect")
def network_inspect(names: List[str] = typer.Argument(..., help="network names")) -> None:
    """Details as JSON: subnet, gateway, bridge, and each container with its address and veth."""
    lifecycle.require_root()
    from minibox.cli import present
    from minibox.net import networks

    out = []
    for name in names:
        net = networks.get(name)
        on = [(rec, store.load_state(rec.id)) for rec in networks.containers_on(name)]
        out.append(present.network_inspect(net, on))
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
    lifecycle.require_root()
    from minibox.net import networks

    failed = 0
    for name in names:
        try:
            _steps, errors = networks.remove(name, network_users)
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e.code
            continue
        for e in errors:
            print(f"minibox: warning: {e}", file=sys.stderr)
        say(name)
    if failed:
        raise typer.Exit(failed)

@network_app.command(name="reconcile")
def network_reconcile() -> None:
    """Re-apply every bridge, sysctl and firewall rule from minibox's state (after a flush)."""
    lifecycle.require_root()
    from minibox.net import networks

    networks.reconcile()
    say("reconciled")
