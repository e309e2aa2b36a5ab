"""`minibox-oci`: the OCI runtime command line (runc's verbs and flags), for engines such as Podman and containerd.

Engines call it as they call runc:

    minibox-oci [--root DIR] [--log FILE] [--log-format text|json] create --bundle DIR --pid-file F ID
    minibox-oci start ID;  minibox-oci state ID;  minibox-oci kill ID [SIGNAL];  minibox-oci delete [--force] ID

An error is one line on stderr and, with --log, one line in that file (a JSON object with
--log-format json, which is what conmon and containerd-shim read back), and exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer

from minibox.entry import verb_starts
from minibox.errors import MiniboxError
from minibox.oci import ops
from minibox.oci.state import DEFAULT_ROOT

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, invoke_without_command=True,
                  help="minibox as an OCI runtime: runc's command line over minibox's plan.",
                  context_settings={"help_option_names": ["-h", "--help"]})


class Globals:
    root = DEFAULT_ROOT
    log = ""
    log_format = "text"


G = Globals()


@app.callback()
def main_options(
    root: str = typer.Option(DEFAULT_ROOT, "--root", help="where container state lives"),
    log: str = typer.Option("", "--log", help="also write errors to this file"),
    log_format: str = typer.Option("text", "--log-format", help="text or json"),
    debug: bool = typer.Option(False, "--debug", help="accepted for runc compatibility"),
    systemd_cgroup: bool = typer.Option(False, "--systemd-cgroup",
                                        help="refused: minibox-oci manages cgroupfs paths only"),
    rootless: str = typer.Option("false", "--rootless", help="accepted for runc compatibility; only false works"),
    version: bool = typer.Option(False, "--version", "-v", is_eager=True, help="print the version (as runc does)"),
) -> None:
    verb_starts()
    if version:
        from importlib.metadata import version as dist_version

        sys.stdout.write(f"minibox-oci version {dist_version('minibox')}\nspec: 1.0.2\n")
        raise typer.Exit(0)
    G.root, G.log = root, log
    if log_format not in ("text", "json"):
        raise MiniboxError(f'unknown --log-format "{log_format}": use text or json')
    G.log_format = log_format
    if systemd_cgroup:
        raise MiniboxError("--systemd-cgroup is not supported: minibox-oci manages cgroupfs paths "
                           "(set the engine's cgroup manager to cgroupfs)")
    if rootless not in ("false", "auto") and os.geteuid() != 0:
        raise MiniboxError("minibox-oci runs as root only")


@app.command()
def create(cid: str = typer.Argument(..., metavar="ID"),
           bundle: str = typer.Option(".", "--bundle", "-b", help="the bundle directory (holds config.json)"),
           pid_file: str = typer.Option("", "--pid-file", help="write PID 1's host PID here"),
           console_socket: str = typer.Option("", "--console-socket",
                                              help="unix socket to send the terminal's master to"),
           preserve_fds: int = typer.Option(0, "--preserve-fds", help="pass fds 3..3+N-1 to the process"),
           no_pivot: bool = typer.Option(False, "--no-pivot", help="refused: minibox always uses pivot_root"),
           no_new_keyring: bool = typer.Option(False, "--no-new-keyring", help="accepted; no keyring is made"),
           explain: bool = typer.Option(False, "--explain", help="print each step and the config.json field "
                                                                "behind it, and change nothing")) -> None:
    """Create a container from a bundle: everything but the process's exec."""
    from minibox.oci import create as oc

    if no_pivot:
        raise MiniboxError("--no-pivot is refused: without pivot_root a container can chroot back to the host")
    if explain:
        from minibox.plan import steps

        sys.stdout.write(steps.render(oc.prepare(G.root, cid, bundle)[2].steps()) + "\n")
        return
    oc.create(G.root, cid, bundle, pid_file, console_socket, preserve_fds)


@app.command()
def run(cid: str = typer.Argument(..., metavar="ID"),
        bundle: str = typer.Option(".", "--bundle", "-b"),
        pid_file: str = typer.Option("", "--pid-file"),
        console_socket: str = typer.Option("", "--console-socket"),
        detach: bool = typer.Option(False, "--detach", "-d")) -> None:
    """create then start; without --detach, wait for the process, delete the container and
    exit with the process's status (128+N for signal N), as runc run does."""
    import prctl

    from minibox.oci import create as oc
    from minibox.runtime import procs

    if not detach:
        prctl.set_child_subreaper(1)  # the container's process becomes our child: its status is ours to read
    pid = oc.create(G.root, cid, bundle, pid_file, console_socket)
    ops.start(G.root, cid)
    if detach:
        return
    code = procs.wait_child(pid)
    ops.delete(G.root, cid, force=True)
    raise typer.Exit(code)


@app.command()
def update(cid: str = typer.Argument(..., metavar="ID"),
           resources: str = typer.Option("", "--resources", "-r",
                                         help="a JSON file of linux.resources to apply, - for stdin"),
           memory: str = typer.Option("", "--memory", help="memory limit: bytes, or 64m, 1g"),
           pids_limit: Optional[int] = typer.Option(None, "--pids-limit", help="maximum number of processes")) -> None:
    """Change a created or running container's resources in its cgroup, as runc update does."""
    ops.update(G.root, cid, ops.update_resources(resources, memory, pids_limit))


@app.command()
def start(cid: str = typer.Argument(..., metavar="ID")) -> None:
    """Start a created container: its process execs the configured command."""
    ops.start(G.root, cid)


@app.command()
def state(cid: str = typer.Argument(..., metavar="ID")) -> None:
    """Print the container's state as runtime-spec defines it."""
    sys.stdout.write(ops.dump(ops.state(G.root, cid)))


@app.command()
def kill(cid: str = typer.Argument(..., metavar="ID"),
         sig: str = typer.Argument("SIGTERM", metavar="[SIGNAL]"),
         all_procs: bool = typer.Option(False, "--all", "-a", help="signal every process in the container")) -> None:
    """Send a signal (default SIGTERM) to the container's process."""
    ops.kill(G.root, cid, sig, all_procs)


@app.command()
def delete(cid: str = typer.Argument(..., metavar="ID"),
           force: bool = typer.Option(False, "--force", "-f", help="kill a running container first")) -> None:
    """Delete a stopped container: its cgroup, its state, then the poststop hooks."""
    ops.delete(G.root, cid, force)


@app.command("list")
def list_(fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="ids only")) -> None:
    """List the containers under --root."""
    items = ops.list_all(G.root)
    if fmt == "json":
        sys.stdout.write(json.dumps(items) + "\n")
    elif fmt == "table":
        sys.stdout.write(ops.list_text(items, quiet))
    else:
        raise MiniboxError(f'unknown --format "{fmt}": use table or json')


@app.command()
def ps(cid: str = typer.Argument(..., metavar="ID"),
       fmt: str = typer.Option("table", "--format", "-f", help="table or json")) -> None:
    """The host PIDs of the container's processes."""
    pids = ops.ps(G.root, cid)
    if fmt == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
    else:
        sys.stdout.write("PID\n" + "".join(f"{p}\n" for p in pids))


@app.command()
def pause(cid: str = typer.Argument(..., metavar="ID")) -> None:
    """Freeze every process of the container (its freezer cgroup)."""
    ops.pause(G.root, cid, True)


@app.command()
def resume(cid: str = typer.Argument(..., metavar="ID")) -> None:
    """Thaw a paused container."""
    ops.pause(G.root, cid, False)


@app.command()
def features() -> None:
    """What this runtime supports, as runtime-spec's features document."""
    sys.stdout.write(ops.dump(ops.features()))


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(cid: str = typer.Argument(..., metavar="ID"),
          command: list[str] = typer.Argument(None, metavar="[COMMAND]..."),
          process: str = typer.Option("", "--process", "-p", help="a process.json (config.json's process)"),
          detach: bool = typer.Option(False, "--detach", "-d", help="return once the process runs"),
          pid_file: str = typer.Option("", "--pid-file", help="write the process's host PID here"),
          console_socket: str = typer.Option("", "--console-socket", help="unix socket for the terminal's master"),
          tty: bool = typer.Option(False, "--tty", "-t", help="a terminal (with --console-socket)"),
          cwd: str = typer.Option("", "--cwd", help="working directory inside"),
          env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE, added to the container's"),
          user: str = typer.Option("", "--user", "-u", help="UID[:GID]"),
          preserve_fds: int = typer.Option(0, "--preserve-fds", help="pass fds 3..3+N-1 to the process")) -> None:
    """Run another process in a running container."""
    from minibox.oci import exec as oe

    code = oe.exec_process(G.root, cid, process, list(command or ()), detach=detach, pid_file=pid_file,
                           console_socket=console_socket, tty=tty, cwd=cwd, env=list(env), user=user,
                           preserve_fds=preserve_fds)
    raise typer.Exit(code)


def log_error(msg: str) -> None:
    sys.stderr.write(f"minibox-oci: {msg}\n")
    if not G.log:
        return
    if G.log_format == "json":
        line = json.dumps({"level": "error", "msg": msg, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    else:
        line = f"minibox-oci: error: {msg}"
    try:
        with open(G.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass  # the engine's log directory gone: stderr has it


def main(argv: list[str] | None = None) -> int:
    """Every failure as one line on stderr (and in --log, as runc's JSON lines with
    --log-format json), exit status 1, as runc does."""
    from minibox.entry import run_app

    return run_app(lambda: app, sys.argv[1:] if argv is None else argv, "minibox-oci", log_error, 1, lambda _e: 1)


def run_main() -> None:
    from minibox.entry import exit_now

    exit_now(main())
