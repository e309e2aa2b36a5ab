"""`minibox pull`: the OCI distribution API, as Docker speaks it, over the standard library's HTTP.

    GET /v2/NAME/manifests/REF     an index (one manifest per platform: linux/amd64 is kept)
                                   or a manifest: the config's digest and the layers'
    GET /v2/NAME/blobs/DIGEST      the config, then each layer (gzip tar), several at once,
                                   each in a process of its own (image.workers)

Authentication as a registry asks for it: a 401 with `WWW-Authenticate: Bearer realm=...,
service=...,scope=...` means fetching a token from the realm (anonymously, as Docker Hub
allows for public images, or with the user's credentials), then retrying with it; `Basic`
means sending the credentials themselves. Credentials come from `minibox login` (kept in
the state root, 0600) or Docker's ~/.docker/config.json. Every blob is checked against its
digest; a layer already stored (same diff id, or fetched before as the same blob) is not
fetched again. Registries on localhost speak plain HTTP, as Docker allows; others HTTPS.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from minibox import config, files
from minibox.errors import MiniboxError, NotFound, shown
from minibox.image import archive, checked, store, workers
from minibox.image import ref as refs
from minibox.image.layers import Hashing, read_verified

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"))
PARALLEL = 3  # layers fetched at once, as Docker's default max-concurrent-downloads
TOKEN_LIMIT = 1 << 20  # bytes of a token service's answer (a JWT is a few KB)
ERROR_LIMIT = 64 << 10  # bytes of an error body read for its message


class AuthError(MiniboxError):
    pass


def _auth_file():
    return config.paths().root / "auth.json"


def credentials(host: str) -> str:
    """base64(user:password) for `host`, from `minibox login` or ~/.docker/config.json; "" if none."""
    for path, section in ((_auth_file(), None), (os.path.expanduser("~/.docker/config.json"), "auths")):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        entries = doc.get(section, {}) if section else doc
        for key in (host, f"https://{host}", f"http://{host}") + (
                ("https://index.docker.io/v1/",) if host == refs.HUB_API else ()):
            value = entries.get(key)
            if isinstance(value, dict):
                value = value.get("auth")
            if value:
                return value
    return ""


def save_credentials(host: str, user: str, password: str) -> None:
    path = _auth_file()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc[host] = base64.b64encode(f"{user}:{password}".encode()).decode()
    files.make_dirs(path.parent, 0o700)
    files.replace_file(path, json.dumps(doc), mode=0o600)  # credentials: root's alone


def forget_credentials(host: str) -> bool:
    path = _auth_file()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    found = doc.pop(host, None) is not None
    if found:
        path.write_text(json.dumps(doc))
    return found


def login(host: str, user: str, password: str) -> None:
    """Check the credentials with the registry (GET /v2/, answering its challenge), then keep them."""
    creds = base64.b64encode(f"{user}:{password}".encode()).decode()
    reg = Registry(refs.Ref(host, "library/login-check", "latest"), creds=creds)
    reg.host, reg.base = host, f"{'http' if _insecure(host) else 'https'}://{host}"
    reg.check(scope=False)
    save_credentials(host, user, password)


def _insecure(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    extra = os.environ.get("MINIBOX_INSECURE_REGISTRIES", "").split(",")
    return name in ("localhost", "::1", "[::1]") or name.startswith("127.") or host in extra


class Registry:
    """One registry and repository, with the token it was given."""

    def __init__(self, ref: refs.Ref, creds: str | None = None):
        self.ref = ref
        self.host = ref.api_host
        self.base = f"{'http' if _insecure(self.host) else 'https'}://{self.host}"
        self.creds = credentials(self.host) if creds is None else creds
        self.auth = ""  # the Authorization header that worked
        self.scope = True  # ask the token service for access to the repository: `actions`
        self.actions = "pull"
        self.opener = _opener(direct=_insecure(self.host))

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{path}"

    def request(self, url: str, accept: str = "", method: str = "GET", data=None, headers: dict | None = None):
        """One request (`data`: bytes or a file, sent from its start), authenticated as the
        registry asks; an HTTP error becomes one line."""
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={**({"Accept": accept} if accept else {}), **(headers or {})})
        if self.auth:
            req.add_unredirected_header("Authorization", self.auth)  # never to a redirect's host
        try:
            return self.opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code == 401 and not self.auth:
                self._authenticate(e.headers.get("WWW-Authenticate", ""))
                if hasattr(data, "seek"):
                    data.seek(0)
                return self.request(url, accept, method, data, headers)
            raise self._error(e, url) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise MiniboxError(f"cannot reach the registry at {self.base}/v2/: {reason}") from None

    def _error(self, e: urllib.error.HTTPError, url: str) -> MiniboxError:
        try:
            errors = json.loads(e.read(ERROR_LIMIT)).get("errors")
            detail = "; ".join(str(x.get("message", "")) for x in errors if isinstance(x, dict))
            detail = shown(detail, 200)[1:-1]  # the registry's words, quoted safely
        except (ValueError, AttributeError, TypeError, OSError, RecursionError):
            detail = ""
        if e.code == 401 and not self.creds:
            return AuthError(f"{self.actions.split(',')[-1]} access denied for {self.ref.familiar}: the repository "
                             "does not exist or needs "
                             f"`minibox login {self.host}` ({detail or 'unauthorized'})")
        if e.code == 401:
            return AuthError(f"{self.host} refused the credentials ({detail or 'unauthorized'}): check them with "
                             f"`minibox login {self.host}`")
        if e.code == 404:
            return NotFound(f"{self.ref.familiar}: not found in {self.host} ({detail or 'manifest unknown'})")
        return MiniboxError(f"{url}: {e.code} {e.reason}{': ' + detail if detail else ''}")

    def _authenticate(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme.lower() == "basic":
            if not self.creds:
                raise AuthError(f"{self.host} needs credentials: `minibox login {self.host}`")
            self.auth = f"Basic {self.creds}"
            return
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise AuthError(f"{self.host} asks for an authentication minibox does not speak: {shown(challenge)}")
        realm = fields["realm"]
        send_creds = self._check_realm(realm)
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        if self.scope and (self.actions != "pull" or "scope" not in query):
            # a push asks for push on its first request, whose challenge names pull only
            query["scope"] = f"repository:{self.ref.path}:{self.actions}"
        req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        if self.creds and send_creds:
            req.add_unredirected_header("Authorization", f"Basic {self.creds}")
        try:
            with self.opener.open(req, timeout=30) as resp:
                doc = json.loads(_read_capped(resp, TOKEN_LIMIT, f"the token service {shown(realm)}'s answer"))
        except urllib.error.HTTPError as e:
            raise AuthError(f"the token service {shown(realm)} refused: {e.code} (check the credentials with "
                            f"`minibox login {self.host}`)") from None
        except (urllib.error.URLError, OSError, ValueError, RecursionError) as e:
            raise MiniboxError(f"cannot get a token from {shown(realm)}: {shown(str(getattr(e, 'reason', e)))}") \
                from None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or not TOKEN_RE.match(token):
            raise AuthError(f"the token service {shown(realm)} sent no usable token")
        self.auth = f"Bearer {token}"

    def _check_realm(self, realm: str) -> bool:
        """Whether the token service at `realm` may be asked, and be sent the stored
        credentials. Only https (plain http only for a registry itself on http, on this
        machine or named insecure): a `file:` or `ftp:` realm would have minibox read a
        local file and send it back as a token. The credentials stored for this registry go
        only to a realm of the same site (Docker Hub's auth.docker.io for
        registry-1.docker.io): another host asks anonymously."""
        parts = urllib.parse.urlsplit(realm)
        plain_ok = self.base.startswith("http://")
        if parts.scheme not in ("https",) + (("http",) if plain_ok else ()) or not parts.hostname:
            raise AuthError(f"{self.host} names the token service {shown(realm)}: minibox asks one only over https "
                            "(http only for a registry on this machine or in MINIBOX_INSECURE_REGISTRIES)")
        return same_site(parts.hostname, urllib.parse.urlsplit(self.base).hostname or "")

    def check(self, scope: bool = True) -> None:
        """GET /v2/: reachable, and (when credentials were given) accepting them."""
        self.scope = scope
        with self.request(self.url("")) as resp:
            resp.read()

    def manifest(self, reference: str, limit: int = checked.MANIFEST_LIMIT) -> tuple[dict, str]:
        """A manifest or index (at most `limit` bytes), and its digest (checked when
        `reference` is a digest)."""
        with self.request(self.url(f"{self.ref.path}/manifests/{reference}"), MANIFEST_TYPES) as resp:
            body = _read_capped(resp, limit, f"the manifest {shown(reference)}")
        h = Hashing(_Bytes(body))
        h.drain()
        if reference.startswith("sha256:") and h.digest != reference:
            raise MiniboxError(f"digest mismatch: {self.host} sent {h.digest} for manifest {reference}")
        doc = checked.parse_json(body, f"the manifest {self.host} sent for {shown(reference)}")
        if doc.get("schemaVersion") == 1:
            raise MiniboxError(f"{self.ref.familiar} is a schema 1 manifest, which minibox does not read")
        return doc, h.digest

    def blob(self, desc: checked.Descriptor) -> bytes:
        """A config blob, whole: at most the size its descriptor gives, checked against its digest."""
        with self.request(self.url(f"{self.ref.path}/blobs/{desc.digest}")) as resp:
            return read_verified(resp, desc.digest, self.host, desc.size)

    def layer(self, desc: checked.Descriptor, diff_id: str, progress: Callable[[int, int], None]) -> str:
        """Fetch, verify and store one layer (in a worker of its own: minibox.image.workers),
        streamed to disk: never more bytes than its descriptor's size."""
        with self.request(self.url(f"{self.ref.path}/blobs/{desc.digest}")) as resp:
            return store.add_layer(_Counting(resp, desc, progress), expected_diff_id=diff_id,
                                   expected_blob=desc.digest)


class _Bytes:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


class _Counting:
    """A layer's bytes as they arrive, counted against the size its descriptor gives: a
    registry sending more is stopped there, one sending less is refused at the end."""

    def __init__(self, raw, desc: checked.Descriptor, progress: Callable[[int, int], None]):
        self.raw, self.desc, self.progress, self.done = raw, desc, progress, 0

    def read(self, n: int = -1) -> bytes:
        want = self.desc.size - self.done + 1  # one byte more than is due shows an overrun
        data = self.raw.read(want if n < 0 else min(n, want))
        self.done += len(data)
        if self.done > self.desc.size:
            raise MiniboxError(f"the registry sent more than the {self.desc.size} bytes the manifest gives for "
                               f"layer {self.desc.digest}")
        if not data and self.done < self.desc.size:
            raise MiniboxError(f"the registry sent {self.done} of the {self.desc.size} bytes of layer "
                               f"{self.desc.digest}")
        self.progress(self.done, self.desc.size)
        return data


def _read_capped(resp, limit: int, what: str) -> bytes:
    """The whole body, or MiniboxError once it passes `limit` bytes: the server chooses
    how much it sends, minibox how much it keeps in memory."""
    data = resp.read(limit + 1)
    if len(data) > limit:
        raise MiniboxError(f"{what} is larger than {limit} bytes, which minibox refuses")
    return data


TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # a bearer token's characters (RFC 6750)


def same_site(a: str, b: str) -> bool:
    """Two hosts of one site: the same name, or names that share their parent domain
    (auth.docker.io and registry-1.docker.io), or one the other's parent (gitlab.com and
    registry.gitlab.com). Addresses only when equal. The parent must have two labels or
    more, so no public suffix (io, com) joins two sites."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    if not a or not b or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789.-" for c in a + b) \
            or a.replace(".", "").isdigit() or b.replace(".", "").isdigit():
        return False

    def parent(h: str) -> str:
        return h.partition(".")[2] if h.count(".") >= 2 else ""

    pa, pb = parent(a), parent(b)
    return bool(pa and pa == pb) or a == pb or b == pa


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects (a registry sends blobs to its storage) to http and https only."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = urllib.parse.urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
            raise MiniboxError(f"{urllib.parse.urlsplit(req.full_url).netloc} redirected to {shown(target)}: "
                               "minibox follows only http and https")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener(direct: bool) -> urllib.request.OpenerDirector:
    """HTTP and HTTPS, and nothing else: urllib's default opener also reads file:, ftp: and
    data: URLs, which a registry would choose for minibox. A registry on this machine is
    reached directly, whatever proxy the environment names."""
    opener = urllib.request.OpenerDirector()
    for h in (urllib.request.ProxyHandler({} if direct else None), urllib.request.HTTPHandler(),
              urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(), _Redirects(),
              urllib.request.HTTPErrorProcessor()):
        opener.add_handler(h)
    return opener


def pull(text: str, out) -> store.Image:
    ref = refs.parse(text)
    store.clean_tmp()
    reg = Registry(ref)
    say = Progress(out)
    index, digest = reg.manifest(ref.reference)  # before any output: a missing tag is one line, as Docker's
    say.line(f"{ref.tag or ref.digest}: Pulling from {ref.repository if ref.domain != refs.DOCKER_HUB else ref.path}")
    if "manifests" in index:
        (_, manifest), = archive.pick_manifest(index, lambda d: reg.manifest(d.digest, d.size)[0], first=True)
    else:
        manifest = index
    cfg, layers = checked.manifest(manifest, f"the manifest of {ref.familiar}")
    for desc in (cfg,) + layers:
        if desc.size < 0:
            raise MiniboxError(f"the manifest of {ref.familiar} gives no size for {desc.digest}")
    config_bytes = reg.blob(cfg)
    diff_ids = checked.diff_ids(checked.parse_json(config_bytes, f"the image config of {ref.familiar}"))
    if len(diff_ids) != len(layers):
        raise MiniboxError(f"{ref.familiar}: its manifest and its config disagree on the number of layers")
    todo = []
    for layer, diff_id in zip(layers, diff_ids):
        if store.has_layer(diff_id) or store.layer_for_blob(layer.digest) == diff_id:
            say.line(f"{layer.digest[7:19]}: Already exists")
        else:
            todo.append((layer, diff_id))
    try:
        jobs = [functools.partial(reg.layer, d, i) for d, i in todo]
        workers.run(jobs, [say.bar(d.digest[7:19]) for d, _ in todo], PARALLEL)
        say.done()
        img = store.add_image(config_bytes, [ref.name] if ref.tag else [], f"{ref.domain}/{ref.path}@{digest}")
    except BaseException:
        store.clean_tmp()  # what a killed worker was unpacking
        store.discard([i for _, i in todo])  # a failed pull keeps nothing it fetched
        raise
    say.line(f"Digest: {digest}")
    say.line(f"Status: Downloaded image for {ref.familiar}")
    return img


class Progress:
    """Docker pull's display: one line per layer, redrawn in place on a terminal; on a
    pipe, one plain line when each layer is done."""

    def __init__(self, out):
        self.out = out
        self.tty = out.isatty()
        self.bars: list[str] = []
        self.state: dict[str, str] = {}

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def bar(self, short: str) -> Callable[[int, int], None]:
        self.bars.append(short)
        self.state[short] = "Waiting"
        if self.tty:
            self.out.write(f"{short}: Waiting\n")

        def update(done: int, total: int) -> None:
            finished = total and done >= total
            if total:
                width = 40
                fill = int(width * done / total)
                text = f"Downloading [{'=' * max(fill - 1, 0)}{'>' if fill else ''}{' ' * (width - fill)}] " \
                       f"{done / 1e6:.1f}MB/{total / 1e6:.1f}MB"
            else:
                text = f"Downloading {done / 1e6:.1f}MB"
            was = self.state.get(short)
            self.state[short] = "Pull complete" if finished else text
            if self.tty:
                up = len(self.bars) - self.bars.index(short)
                self.out.write(f"\033[{up}A\r\033[K{short}: {self.state[short]}\033[{up}B\r")
                self.out.flush()
            elif finished and was != "Pull complete":
                self.line(f"{short}: Pull complete")
        return update

    def done(self) -> None:
        if self.tty:
            return
        for short in self.bars:
            if self.state.get(short) != "Pull complete":
                self.line(f"{short}: Pull complete")
