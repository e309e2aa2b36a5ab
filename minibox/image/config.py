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
import shlex
from typing import Any

from minibox.errors import InvalidSpec
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

    @classmethod
    def from_oci(cls, doc: dict[str, Any]) -> ImageConfig:
        """From an image config document (its `config` object may be missing or null)."""
        c = doc.get("config") or {}
        return cls(cmd=tuple(c.get("Cmd") or ()), entrypoint=tuple(c.get("Entrypoint") or ()),
                   env=tuple(c.get("Env") or ()), workdir=c.get("WorkingDir") or "", user=c.get("User") or "",
                   exposed=tuple(sorted(c.get("ExposedPorts") or {})),
                   labels=tuple(sorted((c.get("Labels") or {}).items())), stop_signal=c.get("StopSignal") or "")

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
        return out


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
    words = shlex.split(value)
    if words and "=" not in words[0]:
        return [(words[0], value.split(None, 1)[1] if len(value.split(None, 1)) > 1 else "")]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidSpec(f'invalid {where} "{value}": use KEY=VALUE')
        out.append((k, v))
    return out


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
        else:
            raise InvalidSpec(f'unknown --change instruction "{word}": use CMD, ENTRYPOINT, ENV, WORKDIR, EXPOSE, '
                              "USER, LABEL or STOPSIGNAL")
    return c
