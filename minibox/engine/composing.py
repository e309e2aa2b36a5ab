"""`minibox compose`: a compose project brought up, listed and taken down by driving minibox's own verbs, one command per container, as Docker Compose drives Docker's API.

Everything a service becomes is an ordinary minibox object a user can see and touch:
`PROJECT_default` is a `network create`, each service a `run -d` (plan.compose gives its
flags), named volumes `volume create`, built images `build`. So `minibox ps --filter
label=com.docker.compose.project=NAME` finds a project's containers, and the lesson of a
multi-container app is the list of commands `--dry-run` prints. `up` on a running
project recreates only the containers whose configuration hash changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from minibox.errors import EXIT_FAILED, InvalidSpec, MiniboxError
from minibox.plan import compose as plan

FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
PROJECT_LABEL = "com.docker.compose.project"


class ComposeFailed(MiniboxError):
    """A compose command that could not finish (a container that would not start, a
    dependency that never became healthy): Docker Compose exits 1."""

    code = EXIT_FAILED


def load(files: list[str], name: str = "", profiles: tuple[str, ...] = ()) -> plan.Project:
    """The project the files describe (compose.yaml & co. in this directory by default),
    variables from the environment and the project's .env (the environment wins)."""
    import yaml

    if not files:
        files = [next((f for f in FILES if os.path.isfile(f)), "")]
        if not files[0]:
            raise InvalidSpec(f"no compose file here: looked for {', '.join(FILES)} (or give -f FILE)")
    directory = os.path.dirname(os.path.abspath(files[0]))
    env: dict[str, str] = {}
    try:
        with open(os.path.join(directory, ".env")) as f:
            env = plan.dotenv(f.read(1 << 20))
    except OSError:
        pass
    env.update(os.environ)
    doc: dict = {}
    for path in files:
        try:
            with open(path) as f:
                part = yaml.safe_load(f.read(1 << 22))
        except OSError as e:
            raise InvalidSpec(f"cannot read {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise InvalidSpec(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        doc = plan.merge(doc, part or {})
    doc = plan.interpolate(doc, env)
    return plan.load(doc, plan.project_name(name or env.get("COMPOSE_PROJECT_NAME", ""), doc, directory),
                     directory, profiles)


def minibox(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """One minibox verb, as a user would type it; its own one-line error passed on."""
    res = subprocess.run([sys.executable, "-m", "minibox", *args], capture_output=capture, text=True,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        message = (res.stderr or "").strip().splitlines()
        raise ComposeFailed((message[-1].removeprefix("minibox: ") if message else f"minibox {args[0]} failed"))
    return res


def _inspect(kind: str, name: str) -> dict | None:
    res = minibox(*([kind, "inspect"] if kind != "container" else ["inspect"]), name, check=False)
    if res.returncode != 0:
        return None
    try:
        doc = json.loads(res.stdout)
        return doc[0] if isinstance(doc, list) and doc else doc if isinstance(doc, dict) else None
    except ValueError:
        return None


def _selected(project: plan.Project, services: list[str], with_deps: bool = True) -> list[plan.Service]:
    """The services asked for (all without names) and, for up, what they depend on; in start order."""
    if not services:
        return list(project.services)
    wanted = {project.service(s).name for s in services}
    if with_deps:
        changed = True
        while changed:
            before = len(wanted)
            wanted |= {d for s in project.services if s.name in wanted for d, _ in s.depends_on}
            changed = len(wanted) != before
    return [s for s in project.services if s.name in wanted]


def up(project: plan.Project, services: list[str], detach: bool, build: bool, say) -> int:
    """Networks, volumes, images, then each service's container in order, each after its
    dependencies meet their condition. Attached (no -d): their logs until they all end.
    A failure names the service, and takes back what this call made (its containers,
    networks and volumes): nothing is left half-started."""
    made: list[tuple[str, str]] = []  # (kind, name), in the order made
    chosen = _selected(project, services)
    try:
        for kind, declared in (("network", project.networks), ("volume", project.volumes)):
            for _key, name, external in declared:
                if _inspect(kind, name) is None:
                    if external:
                        raise ComposeFailed(f"{kind} {name} is declared external, and there is none")
                    minibox(kind, "create", name)
                    made.append((kind, name))
                    say(f" {kind.capitalize()} {name}  Created")
        for s in chosen:
            if s.build is not None and (build or _inspect("image", s.image) is None):
                _build(s, say)
        for s in chosen:
            try:
                _wait_for(project, s, say)
                if _ensure(project, s, say):
                    made.append(("container", s.container(project.name)))
            except ComposeFailed as e:
                raise ComposeFailed(f"service {s.name}: {e}") from None
    except BaseException:
        for kind, name in reversed(made):
            minibox(*(["rm", "-f"] if kind == "container" else [kind, "rm"]), name, check=False)
        if made:
            say(f" Rolled back what this up made: {', '.join(n for _, n in made)}")
        raise
    if detach:
        return 0
    return follow(project, [s.name for s in chosen], say, stop_on_interrupt=True)


def _build(s: plan.Service, say) -> None:
    b = s.build or {}
    args = ["build", "-t", s.image]
    if b.get("dockerfile"):
        args += ["-f", os.path.join(b["context"], str(b["dockerfile"]))]
    for k, v in plan._mapping(b.get("args"), f"services.{s.name}.build.args").items():
        args += ["--build-arg", f"{k}={v}" if v is not None else k]
    if b.get("target"):
        args += ["--target", str(b["target"])]
    say(f" Service {s.name}  Building")
    res = minibox(*args, b["context"], check=False, capture=False)
    if res.returncode != 0:
        raise ComposeFailed(f"service {s.name}: its build failed (exit {res.returncode})")


def _ensure(project: plan.Project, s: plan.Service, say) -> bool:
    """Its container as the file says: kept if its hash is the file's, started if stopped,
    recreated if it changed, created if missing. True if it made one."""
    name = s.container(project.name)
    found = _inspect("container", name)
    if found is not None:
        labels = (found.get("Config") or {}).get("Labels") or {}
        if labels.get("com.docker.compose.config-hash") == s.config_hash:
            if (found.get("State") or {}).get("Running"):
                say(f" Container {name}  Running")
            else:
                minibox("start", name)
                say(f" Container {name}  Started")
            return False
        minibox("rm", "-f", name)
        say(f" Container {name}  Recreate")
    try:
        minibox("run", "-d", *s.run_args)
        for key in s.networks[1:]:
            net = dict((k, n) for k, n, _ in project.networks)[key]
            minibox("network", "connect", "--alias", s.name, net, name)
    except ComposeFailed:
        minibox("rm", "-f", name, check=False)  # a run that failed half-way, or a network it could not join
        raise
    say(f" Container {name}  Started")
    return True


def _wait_for(project: plan.Project, s: plan.Service, say, timeout: float = 300) -> None:
    """depends_on's conditions: started (it runs), healthy (its health check said so),
    completed successfully (it exited 0)."""
    for dep, condition in s.depends_on:
        name = project.service(dep).container(project.name)
        if condition == "service_completed_successfully":
            res = minibox("wait", name, check=False)
            code = res.stdout.strip()
            if code != "0":
                raise ComposeFailed(f"service \"{dep}\" didn't complete successfully: exit {code or '?'}")
        elif condition == "service_healthy":
            deadline = time.monotonic() + timeout
            while True:
                state = (_inspect("container", name) or {}).get("State") or {}
                status = (state.get("Health") or {}).get("Status")
                if status == "healthy":
                    break
                if not state.get("Running") or status == "unhealthy" or time.monotonic() > deadline:
                    raise ComposeFailed(f"dependency failed to start: container {name} is "
                                        f"{status or state.get('Status') or 'gone'}")
                time.sleep(0.5)
            say(f" Container {name}  Healthy")


def down(project: plan.Project, volumes: bool, rmi_local: bool, say) -> None:
    """Every container of the project (found by its label), then its networks, and with -v
    its volumes; --rmi local: the images it built."""
    names = minibox("ps", "-a", "--filter", f"label={PROJECT_LABEL}={project.name}", "--format",
                    "{{.Names}}").stdout.split()
    if names:
        minibox("rm", "-f", *names)
    for name in names:
        say(f" Container {name}  Removed")
    for _key, name, external in project.networks:
        if not external and _inspect("network", name) is not None:
            minibox("network", "rm", name)
            say(f" Network {name}  Removed")
    if volumes:
        for _key, name, external in project.volumes:
            if not external and _inspect("volume", name) is not None:
                minibox("volume", "rm", name)
                say(f" Volume {name}  Removed")
    if rmi_local:
        for s in project.services:
            if s.build is not None and _inspect("image", s.image) is not None:
                minibox("rmi", s.image)
                say(f" Image {s.image}  Removed")


def follow(project: plan.Project, services: list[str], say, stop_on_interrupt: bool = False,
           tail: bool = True) -> int:
    """Each service's log lines as they come, prefixed `NAME  | `, as Compose prints them;
    until all end (or Ctrl-C: then, for up, the containers are stopped)."""
    width = max(len(s.container(project.name)) for s in project.services)
    procs = []
    lock = threading.Lock()

    def pump(prefix: str, stream) -> None:
        for line in stream:
            with lock:  # one line at a time, whole, whichever container it came from
                say(f"{prefix.ljust(width)}  | {line.rstrip(chr(10))}")

    threads = []
    for s in _selected(project, services, with_deps=False):
        name = s.container(project.name)
        p = subprocess.Popen([sys.executable, "-m", "minibox", "logs", *(["-f"] if tail else []), name],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        procs.append(p)
        t = threading.Thread(target=pump, args=(name, p.stdout), daemon=True)
        t.start()
        threads.append(t)
    try:
        for p in procs:
            p.wait()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        if stop_on_interrupt:
            say("Gracefully stopping... (press Ctrl+C again to force)")
            minibox("stop", *[s.container(project.name) for s in _selected(project, services, False)], check=False)
        return 130
    return 0
