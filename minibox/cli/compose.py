"""`minibox compose`: up, down, ps, logs, exec, run, start, stop, restart, build, pull and config of a compose project."""

import sys
from typing import List, Optional

import typer

from minibox import store
from minibox.cli.app import POSITIONAL_TAIL, app, say

compose_app = typer.Typer(no_args_is_help=True, help="Run a multi-container application from a compose file "
                                                      "(compose.yaml), as Docker Compose does.")
app.add_typer(compose_app, name="compose")
_opts: dict = {"files": [], "project": "", "profiles": ()}


@compose_app.callback()
def options(
    files: List[str] = typer.Option([], "-f", "--file", help="the compose file(s), merged in order (default: "
                                                            "compose.yaml and its older names, here)"),
    project: str = typer.Option("", "-p", "--project-name", help="the project's name (default: `name:`, or the "
                                                                 "directory's)"),
    profiles: List[str] = typer.Option([], "--profile", help="also the services of this profile"),
) -> None:
    """Each service is a `minibox run -d` of its own, on the project's network, named and
    labelled as Docker Compose names them (PROJECT-SERVICE-1, PROJECT_default)."""
    _opts.update(files=list(files), project=project, profiles=tuple(profiles))


def _project():
    from minibox.engine import composing

    store.require_root()
    return composing.load(_opts["files"], _opts["project"], _opts["profiles"])


def _say(text: str) -> None:
    say(text)
    sys.stdout.flush()


@compose_app.command()
def up(services: Optional[List[str]] = typer.Argument(None, help="only these services (and what they depend on)"),
       detach: bool = typer.Option(False, "-d", "--detach", help="start them in the background"),
       build: bool = typer.Option(False, "--build", help="build images before starting")) -> None:
    """Create and start the services' containers (only what changed, on a running project)."""
    from minibox.engine import composing

    code = composing.up(_project(), list(services or []), detach, build, _say)
    if code:
        raise typer.Exit(code)


@compose_app.command()
def down(volumes: bool = typer.Option(False, "-v", "--volumes", help="remove the named volumes it declares too"),
         rmi: str = typer.Option("", "--rmi", help="local: remove the images it built")) -> None:
    """Stop and remove the project's containers and networks."""
    from minibox.engine import composing
    from minibox.errors import InvalidSpec

    if rmi not in ("", "local", "all"):
        raise InvalidSpec(f'invalid --rmi "{rmi}": local or all')
    composing.down(_project(), volumes, bool(rmi), _say)


@compose_app.command()
def ps(all_: bool = typer.Option(False, "-a", "--all", help="stopped containers too"),
       quiet: bool = typer.Option(False, "-q", "--quiet", help="only ids")) -> None:
    """The project's containers (as `minibox ps --filter label=com.docker.compose.project=NAME`)."""
    from minibox.engine import composing

    p = _project()
    args = ["ps", "--filter", f"label={composing.PROJECT_LABEL}={p.name}"] + (["-a"] if all_ else []) + \
        (["-q"] if quiet else [])
    sys.stdout.write(composing.minibox(*args).stdout)


@compose_app.command()
def logs(services: Optional[List[str]] = typer.Argument(None),
         follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines")) -> None:
    """The services' output, each line prefixed with its container's name."""
    from minibox.engine import composing

    p = _project()
    composing.follow(p, list(services or []), _say, tail=follow)


@compose_app.command(context_settings=POSITIONAL_TAIL)
def exec(service: str = typer.Argument(...), command: List[str] = typer.Argument(...),
         no_tty: bool = typer.Option(False, "-T", help="no terminal (the default when stdin is not one)"),
         user: str = typer.Option("", "-u", "--user"), workdir: str = typer.Option("", "-w", "--workdir"),
         env: List[str] = typer.Option([], "-e", "--env")) -> None:
    """Run a command in a service's running container."""
    import os

    p = _project()
    tty = not no_tty and sys.stdin.isatty()
    args = ["exec", *(["-it"] if tty else ["-i"] if not sys.stdin.isatty() else [])]
    args += (["-u", user] if user else []) + (["-w", workdir] if workdir else []) + [x for e in env for x in ("-e", e)]
    os.execv(sys.executable, [sys.executable, "-m", "minibox", *args, p.service(service).container(p.name), *command])


@compose_app.command(context_settings=POSITIONAL_TAIL)
def run(service: str = typer.Argument(...), command: Optional[List[str]] = typer.Argument(None),
        rm: bool = typer.Option(False, "--rm", help="remove the container when it exits")) -> None:
    """A one-off container of a service, with the command given (no published ports, as Compose's)."""
    import os

    p = _project()
    s = p.service(service)
    keep, i = [], 0
    while i < len(s.flags):  # its flags but its name and published ports
        if s.flags[i] in ("-p", "--name"):
            i += 2
            continue
        keep.append(s.flags[i])
        i += 1
    name = f"{p.name}-{service}-run-{os.urandom(4).hex()}"
    argv = ["run", *(["--rm"] if rm else []), "--name", name, *keep, s.image, *(command or s.command)]
    os.execv(sys.executable, [sys.executable, "-m", "minibox", *argv])


def _each(verb: str, services: Optional[List[str]]) -> None:
    from minibox.engine import composing

    p = _project()
    names = [s.container(p.name) for s in composing._selected(p, list(services or []), with_deps=False)]
    composing.minibox(verb, *names)
    for n in names:
        _say(f" Container {n}  {verb.capitalize()}ed" if verb != "stop" else f" Container {n}  Stopped")


@compose_app.command()
def start(services: Optional[List[str]] = typer.Argument(None)) -> None:
    """Start the services' existing containers."""
    _each("start", services)


@compose_app.command()
def stop(services: Optional[List[str]] = typer.Argument(None)) -> None:
    """Stop the services' containers."""
    _each("stop", services)


@compose_app.command()
def restart(services: Optional[List[str]] = typer.Argument(None)) -> None:
    """Restart the services' containers."""
    _each("restart", services)


@compose_app.command()
def build(services: Optional[List[str]] = typer.Argument(None)) -> None:
    """Build the images of the services that have a build section."""
    from minibox.engine import composing

    p = _project()
    for s in composing._selected(p, list(services or []), with_deps=False):
        if s.build is not None:
            composing._build(s, _say)


@compose_app.command()
def pull(services: Optional[List[str]] = typer.Argument(None)) -> None:
    """Pull the images of the services that name one."""
    from minibox.engine import composing

    p = _project()
    for s in composing._selected(p, list(services or []), with_deps=False):
        if s.build is None:
            composing.minibox("pull", s.image, capture=False)


@compose_app.command()
def config(services: bool = typer.Option(False, "--services", help="only the services' names, in start order")) -> None:
    """The project as minibox reads it: each service's container and its `minibox run` command."""
    import shlex

    p = _project()
    if services:
        for s in p.services:
            say(s.name)
        return
    say(f"name: {p.name}")
    say("services:")
    for s in p.services:
        say(f"  {s.name}:")
        say(f"    container: {s.container(p.name)}")
        say(f"    image: {s.image}")
        if s.depends_on:
            say(f"    depends_on: {', '.join(f'{d} ({c})' for d, c in s.depends_on)}")
        say(f"    run: minibox run -d {shlex.join(s.run_args)}")
    say("networks: " + ", ".join(n for _, n, _ in p.networks))
    if p.volumes:
        say("volumes: " + ", ".join(n for _, n, _ in p.volumes))
