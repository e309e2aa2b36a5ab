"""A compose file as a checked project: services in start order, each as the `minibox run` arguments Docker Compose would give it, and the networks and volumes they need; pure, the YAML already parsed.

What the compose specification fixes, and this follows for its common subset: files given
with -f are merged in order (mappings key by key, lists replaced, as Compose merges most);
`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}` and `$$` are replaced
from the environment and the project's `.env`; a project is named by -p, `name:`, or its
directory; its objects are named as Compose names them (container `PROJECT-SERVICE-1`,
network `PROJECT_default`, volume `PROJECT_NAME`) and carry `com.docker.compose.*`
labels; services start after what they `depends_on`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from typing import Any

from minibox.errors import InvalidSpec
from minibox.value import Value

SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
                "networks", "depends_on", "healthcheck", "restart", "user", "working_dir", "hostname", "labels",
                "cap_add", "cap_drop", "init", "tmpfs", "ulimits", "sysctls", "deploy", "container_name",
                "profiles", "read_only", "privileged", "stop_signal", "network_mode", "dns", "extra_hosts",
                "shm_size", "stop_grace_period", "security_opt", "devices", "domainname", "mem_limit", "cpus"}
TOP_KEYS = {"version", "name", "services", "networks", "volumes", "secrets", "configs"}
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
VAR_RE = re.compile(r"\$(?:\$|\{([a-zA-Z_][a-zA-Z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([a-zA-Z_][a-zA-Z0-9_]*))")
PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")


class Service(Value):
    name: str
    image: str  # what it runs: given, or PROJECT-SERVICE when it is built
    build: dict | None  # context, dockerfile, args, target (context absolute)
    flags: tuple[str, ...]  # `minibox run -d`'s flags for it
    command: tuple[str, ...]  # after the image: its command ("" none: the image's)
    depends_on: tuple[tuple[str, str], ...]  # (service, condition)
    networks: tuple[str, ...]  # the project's network keys it is on
    config_hash: str  # of everything above: `up` recreates a container whose hash differs

    @property
    def run_args(self) -> tuple[str, ...]:
        return (*self.flags, self.image, *self.command)

    def container(self, project: str) -> str:
        return dict(zip(self.flags, self.flags[1:])).get("--name") or f"{project}-{self.name}-1"


class Project(Value):
    name: str
    directory: str
    services: tuple[Service, ...]  # in start order (what each depends on first)
    networks: tuple[tuple[str, str, bool], ...]  # (key, the network's name, external)
    volumes: tuple[tuple[str, str, bool], ...]  # (key, the volume's name, external)

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise InvalidSpec(f'no such service: "{name}" (services: {", ".join(s.name for s in self.services)})')


def merge(base: Any, over: Any) -> Any:
    """A later -f file over an earlier one: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return over


def interpolate(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Every string in the document, with ${VAR} and its forms replaced, as Compose does."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2) or "", m.group(3) or ""
        got = env.get(name)
        if op in (":-", "-"):
            return got if (got if op == ":-" else got is not None) else arg
        if op in (":?", "?"):
            if not (got if op == ":?" else got is not None):
                raise InvalidSpec(f"required variable {name} is missing a value: {arg or where}")
            return got or ""
        if op in (":+", "+"):
            return arg if (got if op == ":+" else got is not None) else ""
        return got or ""

    if "${" in value and not VAR_RE.search(value):
        raise InvalidSpec(f'invalid interpolation format for {where}: "{value}"')
    return VAR_RE.sub(one, value)


def dotenv(text: str) -> dict[str, str]:
    """A .env file: KEY=VALUE lines, # comments, optional quotes."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        out[k.strip().removeprefix("export ").strip()] = v
    return out


def project_name(given: str, doc: dict, directory: str) -> str:
    """-p, else `name:`, else the directory's name, normalised as Compose does (lower case,
    letters, digits, _ and -)."""
    import os

    raw = given or str(doc.get("name") or "") or os.path.basename(os.path.abspath(directory))
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    if not PROJECT_RE.fullmatch(name):
        raise InvalidSpec(f'invalid project name "{raw}": use lower-case letters, digits, _ and -, starting with a '
                          "letter or digit")
    return name


def load(doc: Any, name: str, directory: str, profiles: tuple[str, ...] = ()) -> Project:
    """The project a merged, interpolated document describes, checked."""
    import os

    if not isinstance(doc, dict):
        raise InvalidSpec("the compose file is not a mapping (it should start with `services:`)")
    unknown = sorted(set(doc) - TOP_KEYS - {k for k in doc if str(k).startswith("x-")})
    if unknown:
        raise InvalidSpec(f"the compose file has an unknown top-level key: {unknown[0]} (known: "
                          f"{', '.join(sorted(TOP_KEYS))})")
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        raise InvalidSpec("the compose file has no services")
    nets = _objects(doc.get("networks"), "networks", name)
    if "default" not in nets:
        nets["default"] = (f"{name}_default", False)
    vols = _objects(doc.get("volumes"), "volumes", name)
    active = {s: d for s, d in services.items()
              if not (isinstance(d, dict) and d.get("profiles")) or set(d["profiles"]) & set(profiles)}
    built = {s: _service(s, d, name, directory, nets, vols) for s, d in active.items()}
    for s in built.values():
        for dep, _ in s.depends_on:
            if dep not in built:
                raise InvalidSpec(f'service "{s.name}" depends on undefined service "{dep}"')
    order: list[str] = []

    def visit(s: str, path: tuple[str, ...]) -> None:
        if s in order:
            return
        if s in path:
            raise InvalidSpec(f"dependency cycle: {' -> '.join(path + (s,))}")
        for dep, _ in built[s].depends_on:
            visit(dep, path + (s,))
        order.append(s)

    for s in sorted(built):
        visit(s, ())
    used = {n for s in built.values() for n in s.networks}
    return Project(name, os.path.abspath(directory), tuple(built[s] for s in order),
                   tuple((k, n, ext) for k, (n, ext) in sorted(nets.items()) if k in used),
                   tuple((k, n, ext) for k, (n, ext) in sorted(vols.items())))


def _objects(section: Any, kind: str, project: str) -> dict[str, tuple[str, bool]]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise InvalidSpec(f"top-level {kind} must be a mapping")
    out = {}
    for key, spec in section.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise InvalidSpec(f"{kind}.{key} must be a mapping")
        external = bool(spec.get("external"))
        out[str(key)] = (str(spec.get("name") or (key if external else f"{project}_{key}")), external)
    return out


def _service(name: str, d: Any, project: str, directory: str, nets: dict, vols: dict) -> Service:
    import os

    where = f"services.{name}"
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidSpec(f'invalid service name "{name}": letters, digits, _ . and -')
    if not isinstance(d, dict):
        raise InvalidSpec(f"{where} must be a mapping")
    unknown = sorted(set(d) - SERVICE_KEYS)
    if unknown:
        raise InvalidSpec(f"{where} has an unsupported key: {unknown[0]}")
    build = d.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else dict(build)
        build["context"] = os.path.normpath(os.path.join(directory, str(build.get("context") or ".")))
    image = str(d.get("image") or (f"{project}-{name}" if build is not None else ""))
    if not image:
        raise InvalidSpec(f"{where} has neither an image nor a build")
    args: list[str] = ["--name", str(d.get("container_name") or f"{project}-{name}-1")]
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": name,
              "com.docker.compose.container-number": "1",
              "com.docker.compose.project.working_dir": os.path.abspath(directory)}
    labels.update(_mapping(d.get("labels"), f"{where}.labels"))
    # networks: its own keys (default unless it names some), its name as an alias on each
    service_nets = d.get("networks") or ["default"]
    aliases: dict[str, list[str]] = {}
    if isinstance(service_nets, dict):
        for key, spec in service_nets.items():
            aliases[str(key)] = [str(a) for a in ((spec or {}).get("aliases") or [])]
    else:
        aliases = {str(k): [] for k in service_nets}
    for key in aliases:
        if key not in nets:
            raise InvalidSpec(f'{where} uses network "{key}", which the top-level networks do not declare')
    mode = d.get("network_mode")
    if isinstance(mode, str) and mode.startswith("service:"):  # another service's container's network
        mode = f"container:{project}-{mode.split(':', 1)[1]}-1"
    keys = tuple(aliases) if not mode else ()
    if mode:
        args += ["--network", str(mode)]
    elif keys:
        args += ["--network", nets[keys[0]][0]]
        for a in [name, *aliases[keys[0]]]:
            args += ["--network-alias", a]
    for k, v in _mapping(d.get("environment"), f"{where}.environment").items():
        args += ["-e", f"{k}={v}" if v is not None else k]
    for f in _list(d.get("env_file"), f"{where}.env_file"):
        args += ["--env-file", os.path.join(directory, f)]
    for p in _list(d.get("ports"), f"{where}.ports"):
        args += ["-p", _port(p, where)]
    for p in _list(d.get("expose"), f"{where}.expose"):
        args += ["--expose", str(p)]
    for v in _list(d.get("volumes"), f"{where}.volumes"):
        args += ["-v", _volume(v, where, directory, vols)]
    for t in _list(d.get("tmpfs"), f"{where}.tmpfs"):
        args += ["--tmpfs", str(t)]
    for flag, key in (("--cap-add", "cap_add"), ("--cap-drop", "cap_drop"), ("--dns", "dns"),
                      ("--add-host", "extra_hosts"), ("--security-opt", "security_opt"), ("--device", "devices")):
        for x in _list(d.get(key), f"{where}.{key}"):
            args += [flag, str(x)]
    for k, v in _mapping(d.get("sysctls"), f"{where}.sysctls").items():
        args += ["--sysctl", f"{k}={v}"]
    for k, v in _mapping(d.get("ulimits"), f"{where}.ulimits").items():
        v = f"{v.get('soft')}:{v.get('hard')}" if isinstance(v, dict) else v
        args += ["--ulimit", f"{k}={v}"]
    for flag, key in (("--restart", "restart"), ("-u", "user"), ("-w", "working_dir"), ("--hostname", "hostname"),
                      ("--domainname", "domainname"), ("--stop-signal", "stop_signal"), ("--shm-size", "shm_size"),
                      ("-m", "mem_limit"), ("--cpus", "cpus")):
        if d.get(key) is not None:
            args += [flag, str(d[key])]
    for flag, key in (("--init", "init"), ("--read-only", "read_only"), ("--privileged", "privileged")):
        if d.get(key):
            args.append(flag)
    limits = (((d.get("deploy") or {}).get("resources") or {}).get("limits") or {})
    if limits.get("cpus") is not None:
        args += ["--cpus", str(limits["cpus"])]
    if limits.get("memory") is not None:
        args += ["-m", str(limits["memory"])]
    args += _healthcheck(d.get("healthcheck"), where)
    if d.get("entrypoint") is not None:
        ep = _command(d["entrypoint"], f"{where}.entrypoint")
        args += ["--entrypoint", ep[0] if ep else ""]
        command = list(ep[1:]) + list(_command(d.get("command"), f"{where}.command") or ())
    else:
        command = list(_command(d.get("command"), f"{where}.command") or ())
    depends = _depends(d.get("depends_on"), where)
    digest = hashlib.sha256(json.dumps([image, build, args, command, sorted(labels.items())], sort_keys=True)
                            .encode()).hexdigest()
    labels["com.docker.compose.config-hash"] = digest
    for k, v in sorted(labels.items()):
        args += ["--label", f"{k}={v}"]
    return Service(name, image, build, tuple(args), tuple(command), depends, keys, digest)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A mapping, or Compose's list of KEY=VALUE (KEY alone: no value)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): (None if v is None else _scalar(v)) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            k, eq, v = str(item).partition("=")
            out[k] = v if eq else None
        return out
    raise InvalidSpec(f"{where} must be a mapping or a list of KEY=VALUE")


def _scalar(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list):
        raise InvalidSpec(f"{where} must be a list")
    return value


def _command(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as e:
            raise InvalidSpec(f"{where}: {e}") from None
    if isinstance(value, list):
        return tuple(str(x) for x in value)
    raise InvalidSpec(f"{where} must be a string or a list")


def _port(p: Any, where: str) -> str:
    if isinstance(p, dict):
        target = p.get("target")
        if target is None:
            raise InvalidSpec(f"{where}.ports: the long form needs target")
        host = f"{p['host_ip']}:" if p.get("host_ip") else ""
        published = f"{p['published']}:" if p.get("published") not in (None, "") else ""
        return f"{host}{published}{target}" + (f"/{p['protocol']}" if p.get("protocol") else "")
    return str(p)


def _volume(v: Any, where: str, directory: str, vols: dict) -> str:
    """-v's form: a relative bind made absolute, a named volume by its project name."""
    import os

    if isinstance(v, dict):
        kind, src, target = v.get("type", "volume"), str(v.get("source") or ""), str(v.get("target") or "")
        if not target:
            raise InvalidSpec(f"{where}.volumes: the long form needs target")
        mode = ":ro" if v.get("read_only") else ""
        if kind == "tmpfs":
            raise InvalidSpec(f"{where}.volumes: use tmpfs: for a tmpfs")
        v = f"{src}:{target}{mode}" if src else target
    parts = str(v).split(":")
    if len(parts) == 1:
        return parts[0]  # an anonymous volume
    src = parts[0]
    if src.startswith((".", "~")) or "/" in src:
        src = os.path.normpath(os.path.join(directory, os.path.expanduser(src)))
    elif src in vols:
        src = vols[src][0]
    else:
        raise InvalidSpec(f'{where} uses volume "{src}", which the top-level volumes do not declare')
    return ":".join([src, *parts[1:]])


def _healthcheck(hc: Any, where: str) -> list[str]:
    if not hc:
        return []
    if not isinstance(hc, dict):
        raise InvalidSpec(f"{where}.healthcheck must be a mapping")
    if hc.get("disable"):
        return ["--no-healthcheck"]
    test = hc.get("test")
    args = []
    if isinstance(test, list) and test and test[0] == "NONE":
        return ["--no-healthcheck"]
    if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        args += ["--health-cmd", test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])]
    elif isinstance(test, str):
        args += ["--health-cmd", test]
    elif test is not None:
        raise InvalidSpec(f'{where}.healthcheck.test: a string, or ["CMD", ...] / ["CMD-SHELL", "..."]')
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("start_period", "--health-start-period"), ("retries", "--health-retries")):
        if hc.get(key) is not None:
            args += [flag, str(hc[key])]
    return args


def _depends(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple((str(s), "service_started") for s in value)
    if isinstance(value, dict):
        out = []
        for s, spec in value.items():
            cond = str((spec or {}).get("condition") or "service_started")
            if cond not in CONDITIONS:
                raise InvalidSpec(f'{where}.depends_on.{s}.condition "{cond}": one of {", ".join(CONDITIONS)}')
            out.append((str(s), cond))
        return tuple(out)
    raise InvalidSpec(f"{where}.depends_on must be a list or a mapping")
