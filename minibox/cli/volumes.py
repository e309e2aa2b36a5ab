"""The volume verbs: volume create|ls|inspect|rm|prune."""

import json
import sys
from typing import List

import typer

from minibox import store
from minibox.cli.app import for_each, say, volume_app
from minibox.errors import MiniboxError


@volume_app.command(name="create")
def volume_create(name: str = typer.Argument("", help="a name (default: a random one)")) -> None:
    """Create a named volume: a directory of minibox's that containers mount with -v NAME:/path."""
    store.require_root()
    import os

    from minibox.engine import volumes

    say(volumes.create(name or os.urandom(32).hex()).name)

@volume_app.command(name="ls")
def volume_ls(quiet: bool = typer.Option(False, "-q", "--quiet", help="only names"),
              fmt: str = typer.Option("", "--format", help="json, a Go template, or 'table ...'")) -> None:
    """List volumes."""
    store.require_root()
    from minibox.cli import present
    from minibox.engine import volumes

    vols = volumes.all_volumes()
    if quiet:
        for v in vols:
            say(v.name)
        return
    if fmt:
        present.Output(fmt).print([{"Driver": "local", "Name": v.name, "Mountpoint": v.path, "Scope": "local"}
                                   for v in vols], {"Name": "VOLUME NAME"})
        return
    bad = volumes.damaged()
    say(present.table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in vols] +
                      [["DAMAGED", name] for name in bad]))
    for line in bad.values():
        print(f"minibox: warning: {line}", file=sys.stderr)

@volume_app.command(name="inspect")
def volume_inspect(names: List[str] = typer.Argument(...),
                   fmt: str = typer.Option("", "-f", "--format", help="a Go template")) -> None:
    """Details of volumes, as `docker volume inspect`."""
    store.require_root()
    from minibox.cli import present
    from minibox.engine import volumes

    out, failed = [], None
    for n in names:
        try:
            out.append(present.volume_inspect(volumes.get(n)))
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e
    if fmt:
        present.Output(fmt, allow_table=False).print(out)
    else:
        say(json.dumps(out, indent=4))
    if failed:
        raise typer.Exit(failed.code)

@volume_app.command(name="rm")
def volume_rm(names: List[str] = typer.Argument(...)) -> None:
    """Remove volumes no container (in any state) uses."""
    store.require_root()
    from minibox.engine import volumes

    def one(name: str) -> str:
        volumes.remove(name)
        return name

    for_each(names, one)

@volume_app.command(name="prune")
def volume_prune(all_: bool = typer.Option(False, "-a", "--all", help="named volumes too, not only anonymous ones"),
                 force: bool = typer.Option(False, "-f", "--force", help="do not ask (minibox never asks)")) -> None:
    """Remove the volumes no container uses: anonymous ones (with -a, named ones too)."""
    store.require_root()
    from minibox.engine import volumes

    gone = volumes.prune(all_)
    if gone:
        say("Deleted Volumes:")
        for n in gone:
            say(n)
    say(f"Total reclaimed volumes: {len(gone)}")
