"""`minibox container VERB`: the container verbs under the names Docker's `container` group gives them, and `container prune`."""

from typing import List

import typer

from minibox import store
from minibox.cli import containers, listing, manage, teach
from minibox.cli.app import POSITIONAL_TAIL, container_app, say
from minibox.engine import lifecycle, removal

for name, verb in (("ls", listing.ps), ("ps", listing.ps), ("logs", containers.logs), ("stop", containers.stop),
                   ("kill", containers.kill), ("rm", containers.rm), ("inspect", containers.inspect),
                   ("cp", containers.cp), ("port", containers.port), ("wait", manage.wait), ("rename", manage.rename),
                   ("start", manage.start), ("attach", manage.attach), ("restart", manage.restart),
                   ("pause", manage.pause), ("unpause", manage.unpause), ("diff", manage.diff),
                   ("update", manage.update), ("export", manage.export)):
    container_app.command(name=name)(verb)
for name, verb in (("run", containers.run), ("exec", containers.exec_), ("top", teach.top)):
    container_app.command(name=name, context_settings=POSITIONAL_TAIL)(verb)
container_app.command(name="create", context_settings=POSITIONAL_TAIL,
                      help="Create a container without starting its command (as `minibox create`).")(containers.run)


@container_app.command(name="prune")
def container_prune(force: bool = typer.Option(False, "-f", "--force", help="(accepted for Docker's scripts: "
                                                                          "minibox does not ask)"),
                    filters: List[str] = typer.Option([], "--filter", help="label=KEY[=VALUE]")) -> None:
    """Remove every stopped container (exited, or created and never started), with what it held."""
    store.require_root()
    from minibox.cli import present
    from minibox.engine import listing
    from minibox.model import CREATED, EXITED

    wanted = present.parse_filters(filters, ("label",))
    gone = []
    for rec in store.all_records():
        state = lifecycle.refresh(rec.id)
        if state.status in (EXITED, CREATED) and present.ps_matches(listing.PsView.of(rec), state, wanted):
            removal.remove(rec.id, force=state.status == CREATED)  # a created one's PID 1 waits: it goes too
            gone.append(rec.id)
    say("Deleted Containers:\n" + "".join(c + "\n" for c in gone) if gone else "Deleted Containers:")
