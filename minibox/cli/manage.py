"""The verbs that manage a container's record without touching its processes: wait, rename."""

import time
from typing import List

import typer

from minibox import lifecycle, store
from minibox.cli.app import app, for_each
from minibox.errors import Conflict
from minibox.model import CREATED, CREATING, RUNNING


@app.command()
def wait(containers: List[str] = typer.Argument(..., help="container names or ids")) -> None:
    """Block until each container stops, then print its exit code (as `docker wait`)."""
    lifecycle.require_root()

    def one(ref: str) -> str:
        cid = store.resolve(ref).id
        # The shim records the exit; refresh reads it. A poll, as the record is the only
        # thing a second process can watch (the container is not our child).
        while (state := lifecycle.refresh(cid)).status in (CREATING, CREATED, RUNNING):
            time.sleep(0.05)
        return str(state.exit_code)

    for_each(containers, one)


@app.command()
def rename(container: str = typer.Argument(..., help="container name or id"),
           new_name: str = typer.Argument(..., metavar="NEW_NAME")) -> None:
    """Give a container another name; its id, processes and network stay."""
    lifecycle.require_root()
    from minibox.plan.spec import validate_name

    validate_name(new_name)
    with store.global_lock():
        rec = store.resolve(container)
        cid = rec.id
        if rec.name == new_name:
            raise Conflict(f'container {rec.name} is already named "{new_name}"')
        store.reserve_name(new_name, cid)  # Conflict if another container has it
        store.save_record(rec._replace(name=new_name))
        store.release_name(rec.name, cid)
