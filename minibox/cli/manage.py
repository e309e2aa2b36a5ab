"""The verbs of a container's life after `run`: create, start, attach, restart, wait, rename."""

import time
from typing import List, Optional

import typer

from minibox import config, store
from minibox.engine import lifecycle
from minibox.cli.app import POSITIONAL_TAIL, app, for_each, output, say, write_out
from minibox.cli.containers import run
from minibox.errors import Conflict, InvalidSpec
from minibox.model import CREATED, CREATING, RUNNING


@app.command()
def wait(containers: List[str] = typer.Argument(..., help="container names or ids")) -> None:
    """Block until each container stops, then print its exit code (as `docker wait`)."""
    store.require_root()

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
    store.require_root()
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
    if rec.endpoint is not None and rec.endpoint.network != config.default_network():
        from minibox.net import dns

        dns.rename(rec.endpoint.network, cid, rec.name, new_name)  # answered at once, as Docker's
    from minibox.engine import events

    events.record(cid, "rename", oldName=rec.name)


# `create` is `run` with the same options, leaving the command waiting for `start`.
app.command(name="create", context_settings=POSITIONAL_TAIL,
            help="Create a container without starting its command: namespaces, root, network and cgroup "
                 "are made, and its PID 1 waits for `minibox start`. Takes run's options; prints the id.")(run)


@app.command()
def start(containers: List[str] = typer.Argument(..., help="container names or ids"),
          attach: bool = typer.Option(False, "-a", "--attach", help="follow its output and exit with its status "
                                                                      "(one container)"),
          interactive: bool = typer.Option(False, "-i", "--interactive", help="attach this terminal's input too")
          ) -> None:
    """Start created or exited containers: a created one's command runs; an exited one runs
    again (same id, name, files, volumes and host ports), in the background."""
    store.require_root()
    from minibox.engine import start as starting

    if (attach or interactive) and len(containers) > 1:
        raise InvalidSpec("start -a and -i take one container")
    if interactive:
        rec = store.resolve(containers[0])
        raise typer.Exit(join(rec, lambda: starting.start(rec.id)))
    if attach:
        raise typer.Exit(_attached(store.resolve(containers[0]).id, starting))

    def one(ref: str) -> str:
        starting.start(store.resolve(ref).id)
        return ref

    for_each(containers, one)


@app.command()
def attach(container: str = typer.Argument(..., help="container name or id")) -> None:
    """Join this terminal to a running container's output and input (its pty, with -t):
    Ctrl-P Ctrl-Q detaches and leaves it running; its end ends the attach, with its status."""
    store.require_root()
    rec, _state = lifecycle.running(container)
    raise typer.Exit(join(rec))


def _attached(cid: str, starting) -> int:
    """`start -a`: its output from the start on, as it comes, then its exit code."""
    from minibox import config
    from minibox.engine import logs as logmod

    since = time.time()
    starting.start(cid)
    logmod.show(config.paths().container(cid), lambda: lifecycle.refresh(cid).status in (CREATING, CREATED, RUNNING),
                output, logmod.Options(follow=True, since=since))
    return lifecycle.refresh(cid).exit_code


def join(rec, start=None) -> int:
    """Connect to the shim's attach socket (before `start`, so no output is missed), copy
    until the shim lets go; 0 if it runs on (detached), else its exit code."""
    from minibox import config
    from minibox.engine import launch
    from minibox.runtime import attach as att

    sock = att.connect(str(config.paths().container(rec.id) / launch.ATTACH_SOCKET))
    with sock:
        if start is not None:
            start()
        pid = lifecycle.refresh(rec.id).pid
        att.copy(sock, tty=rec.spec.tty, pty=f"/proc/{pid}/fd/0" if pid else "")
    state = lifecycle.refresh(rec.id)
    return 0 if state.status == RUNNING else state.exit_code


@app.command()
def restart(containers: List[str] = typer.Argument(..., help="container names or ids"),
            time_: Optional[int] = typer.Option(None, "-t", "--time", help="seconds to wait for it to stop before "
                                                                           "killing it (default: its --stop-timeout, "
                                                                           "or 10)")) -> None:
    """Stop (SIGTERM, then SIGKILL after -t seconds) and start each container again."""
    store.require_root()
    from minibox.engine import signals
    from minibox.engine import start as starting

    def one(ref: str) -> str:
        rec = store.resolve(ref)
        signals.stop(rec, time_)
        starting.start(rec.id)
        return ref

    for_each(containers, one)


@app.command()
def pause(containers: List[str] = typer.Argument(..., help="container names or ids")) -> None:
    """Freeze every process of each container (its cgroup's freezer), as Docker's pause."""
    store.require_root()
    from minibox.cli.containers import _each
    from minibox.engine import signals

    _each(containers, signals.pause)


@app.command()
def unpause(containers: List[str] = typer.Argument(..., help="container names or ids")) -> None:
    """Thaw what pause froze."""
    store.require_root()
    from minibox.cli.containers import _each
    from minibox.engine import signals

    _each(containers, signals.unpause)


@app.command()
def diff(container: str = typer.Argument(..., help="container name or id")) -> None:
    """What the container changed in its image's files: A added, C changed, D deleted (its overlay's upper layer)."""
    store.require_root()
    from minibox.engine import diffing

    for kind, path in diffing.changes(store.resolve(container)):
        say(f"{kind} {path}")


@app.command()
def commit(container: str = typer.Argument(..., help="container name or id"),
           name: str = typer.Argument("", help="REPOSITORY[:TAG] for the new image"),
           change: List[str] = typer.Option([], "-c", "--change", help="a Dockerfile instruction: CMD, ENTRYPOINT, "
                                                                       "ENV, WORKDIR, EXPOSE, USER, LABEL, STOPSIGNAL"),
           message: str = typer.Option("", "-m", "--message", help="a commit message (in `history`)"),
           author: str = typer.Option("", "-a", "--author", help="the author"),
           pause: bool = typer.Option(True, "-p/--pause", help="freeze it while its changes are read (default)")
           ) -> None:
    """A new image from a container's changes: its image's layers, and one more of what it wrote and deleted."""
    store.require_root()
    from minibox.engine import committing

    rec = store.resolve(container)
    img = committing.commit(rec, lifecycle.refresh(rec.id), name, list(change), message, author, pause)
    say(img.id)


@app.command()
def export(container: str = typer.Argument(..., help="container name or id"),
           output: str = typer.Option("", "-o", "--output", help="write to this file (default: standard output)")
           ) -> None:
    """A container's filesystem as a tar archive: its image's layers and its own changes, not its volumes."""
    store.require_root()
    from minibox.engine import exporting

    rec = store.resolve(container)
    write_out(output, lambda f: exporting.export(rec, f))


@app.command()
def update(containers: List[str] = typer.Argument(..., help="container names or ids"),
           cpus: str = typer.Option("", "--cpus", help="CPU time it may use, in CPUs"),
           cpu_shares: Optional[int] = typer.Option(None, "--cpu-shares", "-c", help="its CPU weight"),
           memory: str = typer.Option("", "--memory", "-m", help="memory limit, e.g. 64m"),
           memory_swap: str = typer.Option("", "--memory-swap", help="memory plus swap (-1: unlimited)"),
           memory_reservation: str = typer.Option("", "--memory-reservation", help="a soft memory limit"),
           pids_limit: Optional[int] = typer.Option(None, "--pids-limit", help="maximum number of processes"),
           cpuset_cpus: str = typer.Option("", "--cpuset-cpus", help="the CPUs it may run on (0-1,3)"),
           cpuset_mems: str = typer.Option("", "--cpuset-mems", help="the memory nodes it may use"),
           restart: str = typer.Option("", "--restart", help="no, on-failure[:N], always or unless-stopped")) -> None:
    """Change containers' resource limits (at once, in their cgroups, if they run) or restart policy."""
    store.require_root()
    from minibox.cli.runflags import resources
    from minibox.engine import update as updating
    from minibox.plan import restart as policy
    from minibox.plan import spec as specs

    given = {"cpus": cpus, "cpu_shares": cpu_shares, "memory": memory, "memory_swap": memory_swap,
             "memory_reservation": memory_reservation, "pids_limit": pids_limit, "restart": restart,
             "cpuset_cpus": cpuset_cpus, "cpuset_mems": cpuset_mems}
    if not any(v not in ("", None) for v in given.values()):
        raise InvalidSpec("nothing to update: give --cpus, --cpu-shares, --cpuset-cpus, --cpuset-mems, -m, "
                          "--memory-swap, --memory-reservation, --pids-limit or --restart")

    def one(ref: str) -> str:
        rec = store.resolve(ref)
        mem = memory or (str(rec.spec.memory) if rec.spec.memory else "")
        checked = resources(mem, cpus, cpu_shares or 0, memory_swap, memory_reservation, False, cpuset_cpus,
                            cpuset_mems)
        changes = {k: checked[k] for k in ("cpus", "memory_swap", "memory_reservation", "cpuset_cpus", "cpuset_mems")
                   if given[k]}
        if cpu_shares is not None:
            changes["cpu_shares"] = checked["cpu_shares"]
        if memory:
            changes["memory"] = specs.parse_memory(memory)
        if pids_limit is not None:
            changes["pids_limit"] = specs.validate_pids_limit(pids_limit)
        if restart:
            changes["restart"] = policy.check(restart, rec.spec.remove, True)
        updating.update(rec, changes)
        return ref

    for_each(containers, one)
