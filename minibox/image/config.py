"""An image's config (its Cmd, Entrypoint, Env, WorkingDir, User, ports, labels), `--change` instructions, and how a run combines them.

The config is the OCI image config's `config` object (Docker writes the same keys). The
rules of `docker run`, kept here:

  - arguments after the image replace its CMD;
  - `--entrypoint` replaces its ENTRYPOINT, and then its CMD is dropped too;
  - what runs is ENTRYPOINT + CMD; nothing at all is an error.

Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from minibox.errors import InvalidSpec, shown
from minibox.value import Value


class ImageConfig(Value):
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    exposed: tuple[str, ...] = ()  # "80/tcp"
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()  # VOLUME: each run gets an anonymous volume there, as Docker's
    healthcheck: dict | None = None  # HEALTHCHECK: Test, and Interval, Timeout, StartPeriod (s), Retries

    @classmethod
    def from_oci(cls, doc: dict[str, Any]) -> ImageConfig:
        """From an image config document (its `config` object may be missing or null).
        Each field must have the type Docker writes, or InvalidSpec names it: the image
        came from outside, and these become argv, environment, paths and port numbers."""
        c = doc.get("config") or {}
        if not isinstance(c, dict):
            raise InvalidSpec("the image config's config is not a JSON object")
        exposed = _field(c, "ExposedPorts", dict)
        for port in exposed:
            if not EXPOSED.match(port) or not all(0 < int(n) < 65536 for n in re.findall(r"\d+", port)):
                raise InvalidSpec(f"the image config exposes {shown(port)}: not PORT[/tcp|/udp|/sctp]")
        labels = _field(c, "Labels", dict)
        if not all(isinstance(v, str) and "\0" not in v for v in labels.values()):
            raise InvalidSpec("the image config's Labels are not all strings")
        stop = _field(c, "StopSignal", str)
        if stop and not STOP_SIGNAL.match(stop.upper()):
            raise InvalidSpec(f"the image config's StopSignal {shown(stop)} is not a signal (SIGTERM, TERM, 15)")
        volumes = tuple(sorted(volume_path(v) for v in _field(c, "Volumes", dict)))
        return cls(cmd=_field(c, "Cmd", tuple), entrypoint=_field(c, "Entrypoint", tuple), env=_field(c, "Env", tuple),
                   workdir=_field(c, "WorkingDir", str), user=_field(c, "User", str), exposed=tuple(sorted(exposed)),
                   labels=tuple(sorted(labels.items())), stop_signal=stop, volumes=volumes,
                   healthcheck=_healthcheck(c.get("Healthcheck")))

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.env:
            out["Env"] = list(self.env)
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        if self.exposed:
            out["ExposedPorts"] = {p: {} for p in self.exposed}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.healthcheck:
            out["Healthcheck"] = {"Test": self.healthcheck["Test"], "Retries": self.healthcheck.get("Retries", 0),
                                  **{k: int(self.healthcheck.get(k, 0) * 1e9) for k in ("Interval", "Timeout",
                                                                                        "StartPeriod")}}
        return out


STOP_SIGNAL = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+-]*$|^(?:[1-9]|[1-5][0-9]|6[0-4])$")  # a name, or 1 to 64
EXPOSED = re.compile(r"^[0-9]{1,5}(?:-[0-9]{1,5})?(?:/(?:tcp|udp|sctp))?$")
_TYPES = {tuple: "a list of strings", str: "a string", dict: "a JSON object"}


def _field(c: dict, key: str, kind: type) -> Any:
    """config[key] as `kind` (a missing or null one is empty), or InvalidSpec naming it."""
    value = c.get(key)
    if value is None:
        return kind()
    if kind is tuple and isinstance(value, list) and all(isinstance(x, str) and "\0" not in x for x in value):
        return tuple(value)
    if kind is str and isinstance(value, str) and "\0" not in value:
        return value
    if kind is dict and isinstance(value, dict):
        return value
    raise InvalidSpec(f"the image config's {key} is not {_TYPES[kind]}")


def command(image: ImageConfig, args: tuple[str, ...], entrypoint: tuple[str, ...] | None) -> tuple[str, ...]:
    """What a container runs: docker run's rules for ENTRYPOINT, CMD, --entrypoint and arguments."""
    if entrypoint is not None:
        argv = tuple(entrypoint) + tuple(args)
    else:
        argv = image.entrypoint + (tuple(args) if args else image.cmd)
    if not argv:
        raise InvalidSpec("no command given, and the image has none (no CMD or ENTRYPOINT): name one after the "
                          "image, e.g. `minibox run busybox sh`")
    return argv


def _command_form(value: str, where: str) -> tuple[str, ...]:
    """CMD/ENTRYPOINT: a JSON array (exec form), or a shell line run by /bin/sh -c."""
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise InvalidSpec(f'invalid {where} "{value}": a JSON array of strings, e.g. ["httpd", "-f"]') from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise InvalidSpec(f'invalid {where} "{value}": a JSON array of strings, e.g. ["httpd", "-f"]')
        return tuple(parsed)
    return ("/bin/sh", "-c", value) if value else ()


def _pairs(value: str, where: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"`, or the old form `K V`."""
    from minibox.plan.dockerfile import pairs

    return pairs(value, f"invalid {where}")


def _healthcheck(hc) -> dict | None:
    """The image's Healthcheck, checked: it becomes argv in every container."""
    if hc is None:
        return None
    test = hc.get("Test") if isinstance(hc, dict) else None
    if not isinstance(test, list) or not test or not all(isinstance(t, str) and "\0" not in t for t in test) \
            or test[0] not in ("NONE", "CMD", "CMD-SHELL") or (test[0] != "NONE" and len(test) < 2):
        raise InvalidSpec("the image config's Healthcheck.Test is not [\"CMD\"|\"CMD-SHELL\"|\"NONE\", ...]")
    out = {"Test": test}
    for key in ("Interval", "Timeout", "StartPeriod"):
        v = hc.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 86400 * 10 ** 9):
            raise InvalidSpec(f"the image config's Healthcheck.{key} is not a duration in nanoseconds")
        out[key] = (v or 0) / 1e9
    retries = hc.get("Retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 1000):
        raise InvalidSpec("the image config's Healthcheck.Retries is not a count")
    out["Retries"] = retries or 0
    return out


def volume_path(path) -> str:
    """An image's VOLUME: it becomes a mount target in every container, so it must be an
    absolute path inside the root, not the root itself."""
    import posixpath

    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or len(path) > 4096:
        raise InvalidSpec(f"the image's VOLUME {shown(str(path))} is not an absolute path")
    clean = posixpath.normpath(path)
    if clean in ("/", "//") or ".." in clean.split("/"):
        raise InvalidSpec(f"the image's VOLUME {shown(path)} is not a directory below the root")
    return clean


def apply_changes(base: ImageConfig, changes: list[str] | tuple[str, ...]) -> ImageConfig:
    """Dockerfile instructions, as `docker import --change` takes them: CMD, ENTRYPOINT, ENV,
    WORKDIR, EXPOSE, USER, LABEL, STOPSIGNAL."""
    c = base
    for change in changes:
        word, _, value = change.strip().partition(" ")
        kind = word.upper()
        if kind == "CMD":
            c = c._replace(cmd=_command_form(value, "CMD"))
        elif kind == "ENTRYPOINT":
            c = c._replace(entrypoint=_command_form(value, "ENTRYPOINT"))
        elif kind == "ENV":
            env = dict(e.split("=", 1) for e in c.env)
            env.update(_pairs(value, "ENV"))
            c = c._replace(env=tuple(f"{k}={v}" for k, v in env.items()))
        elif kind == "WORKDIR":
            if not value.strip().startswith("/"):
                raise InvalidSpec(f'invalid WORKDIR "{value.strip()}": give an absolute path')
            c = c._replace(workdir=value.strip())
        elif kind == "EXPOSE":
            ports = set(c.exposed)
            for p in value.split():
                number, _, proto = p.partition("/")
                if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in ("", "tcp", "udp"):
                    raise InvalidSpec(f'invalid EXPOSE "{p}": use PORT or PORT/tcp or PORT/udp')
                ports.add(f"{int(number)}/{proto or 'tcp'}")
            c = c._replace(exposed=tuple(sorted(ports)))
        elif kind == "USER":
            c = c._replace(user=value.strip())
        elif kind == "LABEL":
            labels = dict(c.labels)
            labels.update(_pairs(value, "LABEL"))
            c = c._replace(labels=tuple(sorted(labels.items())))
        elif kind == "STOPSIGNAL":
            c = c._replace(stop_signal=value.strip())
        elif kind == "VOLUME":
            paths = _command_form(value, "VOLUME") if value.strip().startswith("[") else tuple(value.split())
            c = c._replace(volumes=tuple(sorted(set(c.volumes) | {volume_path(p) for p in paths})))
        else:
            raise InvalidSpec(f'unknown --change instruction "{word}": use CMD, ENTRYPOINT, ENV, WORKDIR, EXPOSE, '
                              "USER, LABEL, STOPSIGNAL or VOLUME")
    return c
