"""Running a typer app as a command: every failure one line with Docker's exit code, no traceback; shared by minibox, minibox-oci and minibox-cni.

Click's own usage errors (unknown flag, missing argument) are reworded into one line too,
and nothing, not even an unexpected bug, reaches the user as a traceback unless
MINIBOX_DEBUG=1 asks for it. The process then exits at once, without interpreter teardown.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys

from minibox.errors import EXIT_FAILED, EXIT_MINIBOX, MiniboxError


def run_app(load_app, args: list[str], prog: str, report, refused: int, failed) -> int:
    """Run a typer app with every failure as one line through `report`: a usage error and
    an unexpected bug exit with `refused`, a MiniboxError with `failed(err)`. Shared by
    minibox and minibox-oci, whose callers read different codes and places."""
    try:
        import click

        command = click_command(load_app())
        try:
            # standalone_mode=False: click returns Exit codes instead of calling sys.exit,
            # and leaves usage errors to us.
            code = command.main(args=args, prog_name=prog, standalone_mode=False)
            return code if isinstance(code, int) else 0
        except click.exceptions.Exit as e:
            return e.exit_code
        except click.exceptions.Abort:
            return 130
        except click.exceptions.UsageError as e:
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            report(f"{docker_flag(e) or e.format_message()}{where}")
            return refused
    except MiniboxError as e:
        report(one_line(str(e)))
        return failed(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("MINIBOX_DEBUG"):
            raise
        report(f"internal error: {type(e).__name__}: {one_line(str(e))} (MINIBOX_DEBUG=1 shows the traceback)")
        return refused


def click_command(app):
    """The click group for a typer app, each verb converted only when click asks for it.

    typer.main.get_command converts every verb up front: an inspect.signature and a click
    parameter per option of all ~50 verbs, a third of a second's worth of `run` on a slow
    day, for the one verb click then runs. Here click itself still parses the command line
    (typer stays the only parser); its group reads verbs through `commands.get`, so a verb
    is converted on first read, and --help, which reads them all, converts them all."""
    import typer

    if app._add_completion or any(not g.name for g in app.registered_groups):
        return typer.main.get_command(app)  # shapes the lazy group does not cover
    style = {"pretty_exceptions_short": app.pretty_exceptions_short, "rich_markup_mode": app.rich_markup_mode}
    return _lazy_group(typer.main.TyperInfo(app), style, app.suggest_commands)


def _lazy_group(info, style: dict, suggest: bool):
    import copy

    from typer import main

    makers = {}
    for verb in info.typer_instance.registered_commands:
        name = verb.name or main.get_command_name(verb.callback.__name__)
        makers[name] = lambda verb=verb: main.get_command_from_info(verb, **style)
    for sub in info.typer_instance.registered_groups:
        makers[sub.name] = lambda sub=sub: _lazy_group(sub, style, suggest)
    bare = copy.copy(info.typer_instance)
    bare.registered_commands, bare.registered_groups = [], []
    shell = copy.copy(info)
    shell.typer_instance = bare
    group = main.get_group_from_info(shell, suggest_commands=suggest, **style)
    group.commands = _Verbs(makers)
    return group


class _Verbs(dict):
    """Verb name -> click command, made on first read from the maker stored under its name."""

    def __getitem__(self, name):
        made = dict.__getitem__(self, name)
        if callable(made) and not hasattr(made, "invoke"):
            made = made()
            self[name] = made
        return made

    def get(self, name, default=None):
        return self[name] if name in self else default

    def values(self):
        return [self[name] for name in self]

    def items(self):
        return [(name, self[name]) for name in self]


# Docker's flags that minibox does not have, and what they do in Docker: a Docker user's
# habit gets that, rather than click's guess at a similar-looking minibox flag.
DOCKER_ONLY = {
    "--gpus": "Docker's flag to pass GPUs", "--device-read-bps": "Docker's flag to throttle a device's reads",
    "--platform": "Docker's flag to pick an architecture", "--pid": "Docker's flag to share a PID namespace",
    "--ipc": "Docker's flag to share an IPC namespace",
    "--userns": "Docker's flag to choose a user namespace", "--link": "Docker's legacy container links",
    "--log-driver": "Docker's log driver choice",
    "--cidfile": "Docker's flag to write the container id to a file",
}


def docker_flag(e) -> str:
    """"--cpus is Docker's flag to limit CPU; minibox does not support it" for a Docker-only flag."""
    name = getattr(e, "option_name", "") or ""
    if name in DOCKER_ONLY:
        return f"{name} is {DOCKER_ONLY[name]}; minibox does not support it"
    return ""


# Verbs that fail with 125 whatever went wrong: Docker's run and create; and pull, whose
# bad input (an unknown image or tag) the image issue asks to be 125.
WHOLE_125 = ("run", "create", "pull")


def exit_code(args: list[str], code: int) -> int:
    """Docker's: `run` and `create` fail with 125 whatever went wrong in minibox (126 and 127
    stay the command's); other verbs with 1 when an object made them fail."""
    return EXIT_MINIBOX if verb_of(args) in WHOLE_125 and code == EXIT_FAILED else code


def verb_of(args: list[str]) -> str:
    """The verb a `minibox` command line runs: its first word that is not an option (nor the
    value of --firewall-backend, the one top-level option that takes one); "" if none."""
    rest = [a for i, a in enumerate(args) if not (a.startswith("-") or (i and args[i - 1] == "--firewall-backend"))]
    return rest[0] if rest else ""


def one_line(text: str) -> str:
    """A message from a library may span lines (tarfile lists each method it tried): the
    first, and the count of the others, keep minibox's errors to one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0]} (+{len(lines) - 1} more lines)" if lines else text


def collector_off() -> None:
    """Called first by a command's process entry: no cyclic collection while Python, click,
    typer and minibox's modules are imported and the verb's click command is built. Those
    objects live as long as the process, yet ~30 collector passes walked them again and
    again: ~11 M instructions, ~4 ms of every command (measured with callgrind).
    verb_starts() turns the collector back on."""
    gc.disable()


def verb_starts() -> None:
    """Called by an app's callback, the verb parsed: what exists now lives as long as the
    process, so it is frozen (never walked again), and the collector is on for what the verb
    makes, which may loop for hours (`logs -f`, `events`). Nothing where collector_off was
    not called (a test calling main() in its own process)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def collector_paused():
    """No cyclic collection in the block: for one whose objects all live past it, which the
    collector would only walk again and again (ps: ~30 objects a container, ~10% of it at
    1000 containers, measured). They are frozen as it ends, so the first collection after
    it does not walk them all once more (4.5 M instructions at 1000 containers, as `ps`
    returned and its process was about to end; measured). Freezing hides them only from
    the cyclic collector: what holds no cycle is freed by its count as before."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


def exit_now(code: int) -> None:
    """Flush what was printed and leave without tearing the interpreter down: collecting
    every module and object costs ~8 ms, and minibox holds nothing that needs it (files are
    closed where they are written, the shim holds what must outlive us)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)
