"""The typer app and what every verb shares: the one-line output, --format checks, the sub-apps."""

import os
import sys

import typer

from minibox import config
from minibox.entry import verb_starts
from minibox.errors import InvalidSpec, MiniboxError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, suggest_commands=False,
                  help="A small container runtime that shows what `docker run` does to the kernel.")
image_app = typer.Typer(no_args_is_help=True, help="Manage images (layers stored once each, overlaid per container).")
network_app = typer.Typer(no_args_is_help=True, help="Manage bridge networks (a bridge, a subnet, firewall rules).")
volume_app = typer.Typer(no_args_is_help=True, help="Manage named volumes (directories that outlive containers).")
container_app = typer.Typer(no_args_is_help=True, help="Manage containers: every container verb, as `docker "
                                                          "container ...` names them, and prune.")
app.add_typer(container_app, name="container")
system_app = typer.Typer(no_args_is_help=True, help="Disk use and clean-up over everything minibox keeps.")
app.add_typer(system_app, name="system")
app.add_typer(image_app, name="image")
app.add_typer(network_app, name="network")
app.add_typer(volume_app, name="volume")

# Docker-style `run [OPTIONS] IMAGE [COMMAND] [ARG...]`: options stop at IMAGE, so the
# `-p 80` in `minibox run busybox httpd -p 80` belongs to httpd, not to minibox.
POSITIONAL_TAIL = {"allow_interspersed_args": False}


def version_text() -> str:
    from importlib import metadata

    try:
        mine = metadata.version("minibox")
    except metadata.PackageNotFoundError:
        mine = "unknown"
    return f"minibox version {mine}"


def _print_version(asked: bool) -> None:
    if asked:
        say(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    firewall_backend: str = typer.Option("", "--firewall-backend", envvar="MINIBOX_FIREWALL_BACKEND",
                                         help="nftables (default) or iptables, for networks created now; "
                                              "each network keeps the backend it was created with"),
    version: bool = typer.Option(False, "--version", "-v", is_eager=True, callback=_print_version,
                                 help="print minibox's version and exit"),
) -> None:
    verb_starts()
    if firewall_backend:
        if firewall_backend not in config.FIREWALL_BACKENDS:
            raise InvalidSpec(f'unknown --firewall-backend "{firewall_backend}": use nftables or iptables')
        os.environ["MINIBOX_FIREWALL_BACKEND"] = firewall_backend


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def for_each(names: list[str], action) -> None:
    """Apply `action` to each name, printing the lines it returns; go on past failures, each
    said on stderr, and exit with the last one's code, as Docker does."""
    failed = 0
    for name in names:
        try:
            out = action(name)
            for line in [out] if isinstance(out, str) else out or ():
                say(line)
        except MiniboxError as e:
            print(f"minibox: {e}", file=sys.stderr)
            failed = e.code
    if failed:
        raise typer.Exit(failed)


def check_format(fmt: str, *allowed: str) -> str:
    """--format's value, if it is one the verb knows."""
    if fmt and fmt not in allowed:
        raise InvalidSpec(f'unknown --format "{fmt}": use {" or ".join(allowed)}')
    return fmt


def explainer(title: str, cid: str = ""):
    """A callback printing steps; a container's directory and id become $C and $ID."""
    from minibox.teach import explain

    def show(steps, pid=None, cid=cid):
        names = {}
        if cid:
            names = {str(config.paths().container(cid)): "C", cid: "ID"}
        explain.show(title, steps, pid if pid is not None else explain.PID, names)

    return show


def output(stream: str, data: bytes) -> None:
    """A container's output, to ours: its stdout to stdout, its stderr to stderr (logs, start -a)."""
    out = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
    out.write(data)
    out.flush()


def write_out(output: str, write) -> None:
    """`write(binary file)` to `-o FILE` (written beside it, then renamed into place: a
    failure leaves no half file) or to standard output, which must not be a terminal."""
    if not output and os.isatty(1):
        raise InvalidSpec("cowardly refusing to write a tar archive to a terminal: use -o FILE, or redirect")
    if not output:
        write(sys.stdout.buffer)
        return
    tmp = f"{output}.{os.getpid()}.part"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, output)
    except OSError as e:
        raise InvalidSpec(f"cannot write {output}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
