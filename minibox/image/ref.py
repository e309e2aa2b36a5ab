"""Image references as Docker reads them: `nginx` is docker.io/library/nginx:latest.

    [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]

A first component with a dot or a colon, or `localhost`, is a registry; otherwise the
registry is Docker Hub and a single-component path gets `library/`. Each path component
is lower-case alphanumerics joined by one ".", "_", "__" or dashes, so no reference can
name a directory outside the image store. Pure.
"""

from __future__ import annotations

import re

from minibox.errors import InvalidSpec
from minibox.value import Value

DOCKER_HUB = "docker.io"
HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REF_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class Ref(Value):
    domain: str  # docker.io, registry:5000, localhost:5000
    path: str  # library/nginx, team/app
    tag: str = ""  # "" when only a digest is given
    digest: str = ""

    @property
    def repository(self) -> str:
        """As Docker lists it: `nginx` for docker.io/library/nginx, else domain/path."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return f"{self.domain}/{self.path}"

    @property
    def name(self) -> str:
        """The full reference, as minibox stores it."""
        out = f"{self.domain}/{self.path}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        """As a user types it: nginx:latest, registry:5000/app:1."""
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def api_host(self) -> str:
        return HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest if given, else the tag."""
        return self.digest or self.tag


def parse(text: str) -> Ref:
    """`text` as a reference, or InvalidSpec naming it and what would be valid."""
    m = REF_RE.match(text) if len(text) <= 255 else None
    if not m:
        raise InvalidSpec(f'invalid image reference "{text}": use NAME[:TAG] with lower-case letters, digits and '
                          'single ".", "_" or "-" between them, e.g. busybox or registry:5000/team/app:1.0')
    domain, path, tag, digest = m.groups()
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        path, domain = f"{domain}/{path}", None  # `team/app`: a Docker Hub path, not a registry
    if domain and domain != domain.lower() and "." not in domain and ":" not in domain:
        raise InvalidSpec(f'invalid image reference "{text}": a registry name must be lower-case')
    domain = domain or DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if digest and not DIGEST_RE.match(digest):
        raise InvalidSpec(f'invalid digest "{digest}" in "{text}": use sha256: and 64 hex digits')
    return Ref(domain, path, tag or ("" if digest else "latest"), digest or "")


def normalize(text: str) -> str:
    """The stored name of a reference: docker.io/library/busybox:latest."""
    return parse(text).name


def key(name: str) -> str:
    """A reference as one directory name: "/" cannot be part of one, "%" never occurs in a reference."""
    return name.replace("/", "%")


def unkey(k: str) -> str:
    return k.replace("%", "/")
