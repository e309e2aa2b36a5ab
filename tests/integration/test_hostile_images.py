"""Images you did not build cannot touch the host: hostile archives, a hostile registry and a hostile container, each attacking.

Every class here was let through before its fix, on this machine kind:
  - a layer id that is a path (`sha256:/etc`): taken as a stored layer, overlaid into the
    container; and a failed pull's cleanup deleting a host `*.json` file it named;
  - a whiteout of `..`, emptying the store's temporary directory under other pulls;
  - a token realm of another scheme (`file:`), read and sent back as a token; stored
    credentials sent to a token service of another site;
  - reads whose size the server chooses (an endless manifest), and a layer longer than
    its descriptor says;
  - `cp` into a running container that swaps what is being copied for a symlink to a
    host file (CVE-2018-15664);
  - `exec` turning a fork of minibox's Python, dumpable, into the container's command:
    /proc/PID/exe was the host's python3 (CVE-2019-5736).
The hostile registry is a small HTTP server in this process, on 127.0.0.1 in the sandbox;
the hostile archives are built here, byte by byte.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import oci
import pytest
from conftest import ROOT, mb, sh
from test_images import images_state

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GOOD_CONFIG = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]}}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def one_line_refusal(res, code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


def layer_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def file_entry(name: str, data: bytes = b"x\n") -> tuple[tarfile.TarInfo, bytes]:
    t = tarfile.TarInfo(name)
    t.size, t.mode = len(data), 0o644
    return t, data


def docker_archive(path: Path, layers: list[bytes], diff_ids: list[str] | None = None) -> None:
    """A `docker save` archive: its config names `diff_ids` (by default the layers' true ones)."""
    ids = diff_ids if diff_ids is not None else [sha(x) for x in layers]
    config = json.dumps({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": ids}}).encode()
    files = [(f"l{i}.tar", x) for i, x in enumerate(layers)] + [("config.json", config)]
    manifest = [{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": [n for n, _ in files[:-1]]}]
    with tarfile.open(path, "w") as out:
        for name, content in files + [("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))


# --- 1. a layer id is never a path ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["sha256:/etc", "sha256:../../../../../../etc", "/etc", "sha256:" + "0" * 63 + "/"])
def test_load_refuses_a_layer_id_that_is_a_path(tmp_path, bad):
    """Before: `sha256:/etc` was found "already stored" (images/layers//etc is /etc), and
    `run` overlaid the host's /etc, /etc/shadow included, into the container."""
    archive = tmp_path / "evil.tar"
    docker_archive(archive, [layer_tar([file_entry("f")])], [bad])
    before = images_state()
    res = mb("load", "-i", str(archive))
    one_line_refusal(res, 1, "in the image config", "is not a digest")
    assert images_state() == before and "evil" not in mb("images").stdout


def test_load_refuses_an_oci_layout_naming_a_blob_outside_it(tmp_path):
    lay = tmp_path / "layout"
    lay.mkdir()
    oci.write_layout(lay, [{"mediaType": MANIFEST, "digest": "sha256:../../../../../etc/passwd", "size": 10}], "1")
    res = mb("load", "-i", str(lay))
    one_line_refusal(res, 1, "is not a digest")


class HostileRegistry:
    """/v2/ answers for one repository, `evil`, from a table: path -> (status, headers, body),
    where body may be a generator (streamed, chunked: it may never end). It records the
    Authorization headers it was sent."""

    def __init__(self):
        self.routes: dict[str, tuple] = {}
        self.seen: list[tuple[str, str]] = []
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                reg.seen.append((path, self.headers.get("Authorization", "")))
                status, headers, body = reg.routes.get(path, (404, {}, b'{"errors":[{"message":"unknown"}]}'))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in body():
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def blob(self, data: bytes) -> dict:
        self.routes[f"/v2/evil/blobs/{sha(data)}"] = (200, {}, data)
        return {"mediaType": "application/octet-stream", "digest": sha(data), "size": len(data)}

    def image(self, config: dict, layers: list[bytes], tag: str = "1", layer_descs: list[dict] | None = None) -> None:
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": self.blob(json.dumps(config).encode()),
                    "layers": layer_descs if layer_descs is not None else [self.blob(x) for x in layers]}
        self.routes[f"/v2/evil/manifests/{tag}"] = (200, {"Content-Type": MANIFEST}, json.dumps(manifest).encode())

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile():
    reg = HostileRegistry()
    reg.routes["/v2/"] = (200, {}, b"{}")
    yield reg
    reg.stop()


def test_pull_refuses_a_layer_id_that_is_a_path(hostile):
    layer = layer_tar([file_entry("f")])
    hostile.image({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": ["sha256:/etc"]}}, [layer])
    before = images_state()
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, '"sha256:/etc"', "is not a digest")
    assert images_state() == before
    assert not any("/blobs/" + sha(layer) in p for p, _ in hostile.seen)  # refused before any fetch


def test_a_failed_pull_deletes_nothing_the_image_names_on_the_host(hostile, tmp_path):
    """Before: the diff id `sha256:/VICTIM/x`, its layer then failing to download, made the
    failed pull's cleanup remove /VICTIM/x and /VICTIM/x.json."""
    victim = tmp_path / "victim"
    (victim / "x").mkdir(parents=True)
    (victim / "x.json").write_text("{}")
    (victim / "x" / "keep").write_text("the host's\n")
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(b"missing"), "size": 7}
    hostile.image({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [f"sha256:{victim}/x"]}}, [],
                  layer_descs=[layer_desc])
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, "is not a digest")
    assert (victim / "x.json").read_text() == "{}" and (victim / "x" / "keep").read_text() == "the host's\n"


@pytest.mark.parametrize("field", ["config", "layer"])
def test_pull_refuses_a_manifest_digest_that_is_a_path(hostile, field):
    layer = layer_tar([file_entry("f")])
    cfg = json.dumps({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    bad = {"mediaType": MANIFEST, "digest": "sha256:../../../v2/_catalog", "size": 10}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": bad if field == "config" else hostile.blob(cfg),
                "layers": [bad if field == "layer" else hostile.blob(layer)]}
    hostile.routes["/v2/evil/manifests/1"] = (200, {"Content-Type": MANIFEST}, json.dumps(manifest).encode())
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, "is not a digest")
    assert [p for p, _ in hostile.seen if "_catalog" in p or "/blobs/" in p] == []  # refused before any fetch


# --- 3. whiteouts stay in their layer ---------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh..", "sub/.wh..", ".wh...", "sub/.wh...", ".wh."])
def test_a_whiteout_of_dot_or_dotdot_is_refused_and_other_pulls_keep_their_work(tmp_path, name):
    """Before: `.wh...` removed the layer's parent directory: the store's tmp/, with every
    other pull's work in it."""
    other = ROOT / "images" / "tmp" / f"layer-{os.getpid()}-0000"  # a pull in progress (its PID lives)
    other.mkdir(parents=True)
    (other / "half").write_text("unpacking\n")
    try:
        archive = tmp_path / "evil.tar"
        docker_archive(archive, [layer_tar([file_entry("sub/f"), file_entry(name, b"")])])
        res = mb("load", "-i", str(archive))
        one_line_refusal(res, 1, "whiteout", "names no entry of its directory")
        assert (other / "half").read_text() == "unpacking\n"
    finally:
        sh(f"rm -rf {other}")


def test_aufs_bookkeeping_whiteouts_are_skipped_as_docker_skips_them(tmp_path):
    archive = tmp_path / "aufs.tar"
    docker_archive(archive, [layer_tar([file_entry("bin/x"), file_entry(".wh..wh.plnk/1.2", b"")])])
    mb("load", "-i", str(archive), check=True)
    mb("image", "rm", "evil:1", check=True)


# --- 4. token realms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("realm", ["file:///etc/hostname", "ftp://127.0.0.1/token", "data:,sometoken"])
def test_a_realm_of_another_scheme_is_refused(hostile, realm):
    """Before: realm="file:///..." made minibox read that local file and send it to the
    registry as its bearer token."""
    hostile.routes["/v2/evil/manifests/1"] = (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'},
                                              b"{}")
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, "only over https")
    assert [a for _, a in hostile.seen if a.startswith("Bearer")] == []


@pytest.mark.parametrize("realm_host, sent", [("localhost", False), ("127.0.0.1", True)])
def test_stored_credentials_go_only_to_a_token_service_of_the_registrys_own_site(hostile, realm_host, sent):
    tokens = HostileRegistry()
    tokens.routes["/token"] = (200, {"Content-Type": "application/json"}, b'{"token": "abc.def"}')
    try:
        port = tokens.host.rsplit(":", 1)[1]
        challenge = {"WWW-Authenticate": f'Bearer realm="http://{realm_host}:{port}/token",service="x"'}
        hostile.routes["/v2/evil/manifests/1"] = (401, challenge, b"{}")
        mb("login", "-u", "alice", "-p", "s3cret", hostile.host, check=True)
        res = mb("pull", f"{hostile.host}/evil:1")
        assert res.returncode == 125 and "Traceback" not in res.stderr, res.stderr
        asked = [a for p, a in tokens.seen if p == "/token"]
        assert asked and all(bool(a.startswith("Basic ")) == sent for a in asked), asked
    finally:
        mb("logout", hostile.host)
        tokens.stop()


# --- 5. reads the server sizes ---------------------------------------------------------------------------


def endless():
    while True:
        yield b"[" * 65536


@pytest.mark.parametrize("where", ["manifest", "token", "error"])
def test_an_endless_answer_is_cut_off(hostile, where):
    """Before: an endless manifest was read until minibox died (991 MiB under a 1 GiB limit)."""
    if where == "manifest":
        hostile.routes["/v2/evil/manifests/1"] = (200, {"Content-Type": MANIFEST}, endless)
    elif where == "token":
        hostile.routes["/token"] = (200, {"Content-Type": "application/json"}, endless)
        hostile.routes["/v2/evil/manifests/1"] = (
            401, {"WWW-Authenticate": f'Bearer realm="http://{hostile.host}/token"'}, b"{}")
    else:
        hostile.routes["/v2/evil/manifests/1"] = (404, {"Content-Type": "application/json"}, endless)
    # 400 MB of address space: more than minibox needs, far less than an endless read takes
    res = subprocess.run(["prlimit", "--as=400000000", sys.executable, "-m", "minibox", "pull",
                          f"{hostile.host}/evil:1"], capture_output=True, text=True, timeout=60)
    expected = {"manifest": "larger than 4194304 bytes", "token": "larger than 1048576 bytes",
                "error": "not found"}[where]
    one_line_refusal(res, 125, expected)


@pytest.mark.parametrize("sent", [b"more", b""])
def test_a_layer_longer_or_shorter_than_its_descriptor_is_refused(hostile, sent):
    layer = layer_tar([file_entry("f")])
    desc = hostile.blob(layer)
    hostile.routes[f"/v2/evil/blobs/{desc['digest']}"] = (200, {}, layer + sent if sent else layer[:-512])
    hostile.image({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}, [], layer_descs=[desc])
    before = images_state()
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, "sent more than the" if sent else "of the")
    assert images_state() == before


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/blob"])
def test_a_redirect_to_another_scheme_is_not_followed(hostile, target):
    layer = layer_tar([file_entry("f")])
    desc = hostile.blob(layer)
    hostile.routes[f"/v2/evil/blobs/{desc['digest']}"] = (302, {"Location": target}, b"")
    hostile.image({**GOOD_CONFIG, "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}, [], layer_descs=[desc])
    res = mb("pull", f"{hostile.host}/evil:1")
    one_line_refusal(res, 125, "follows only http and https")


# --- 2. cp into a running container that swaps a path for a symlink -----------------------------------


@pytest.mark.parametrize("cgroup", ["auto", "none"])
def test_cp_into_a_container_swapping_the_target_for_a_host_symlink_changes_nothing_on_the_host(
        attack_image, tmp_path, cgroup):
    """CVE-2018-15664. As soon as cp has copied a directory's content, the container renames
    the directory and puts a symlink to a host file in its place; cp then set the mode it
    copies (757) on that path: the host file's (600 became 757, 3 of 3 runs). With a freezer
    (auto) nothing in the container runs during the copy; without one (none) every mode is
    set through the fd of what cp made, never its name."""
    victim = tmp_path / "victim"
    victim.write_text("the host's secret\n")
    victim.chmod(0o600)
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i}").mkdir(parents=True)
        for name in ["f"] + [f"g{j}" for j in range(40)]:  # the swap comes while cp copies the g's
            (src / f"d{i}" / name).write_text("x" * 4096)
        (src / f"d{i}").chmod(0o757)
    env = {"MINIBOX_CGROUP": cgroup}
    mb("run", "-d", "--network", "none", "--name", "swapper", attack_image, "sh", "-c",
       f"mkdir -p /dst/src && /attack swap-dirs /dst/src {victim} 600", env=env, check=True)
    try:
        for _ in range(6):
            res = mb("cp", f"{src}/.", "swapper:/dst/src", env=env)
            assert "Traceback" not in res.stderr, res.stderr
            assert stat.S_IMODE(victim.stat().st_mode) == 0o600
            mb("exec", "swapper", "sh", "-c", "rm -rf /dst/src/*", env=env, check=True)
        assert victim.read_text() == "the host's secret\n"
        if cgroup == "auto":
            explained = mb("cp", "--explain", str(src), "swapper:/dst/", env=env).stderr
            assert "echo FROZEN > " in explained and "echo THAWED > " in explained, explained
        stop("swapper", env)
        said = watcher_says("swapper")
        assert said.startswith("swaps ") and int(said.split()[1]) > 0, said  # the attack did run
    finally:
        mb("rm", "-f", "swapper", env=env)


def test_a_killed_cp_leaves_the_container_thawed(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(200):
        (big / f"f{i}").write_bytes(os.urandom(1 << 16))
    mb("run", "-d", "--network", "none", "--name", "frozen", "busybox", "sleep", "1000", check=True)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "minibox", "cp", str(big), "frozen:/big"])
        time.sleep(0.4)
        proc.kill()
        proc.wait()
        for _ in range(100):  # the guard thaws once the copy child is gone too
            if mb("exec", "frozen", "true", timeout=5).returncode == 0:
                break
            time.sleep(0.1)
        assert mb("exec", "frozen", "true", timeout=10).returncode == 0
    finally:
        mb("rm", "-f", "frozen")


# --- 6. exec never hands a container the host's binary ----------------------------------------------------


def host_binaries() -> list[str]:
    out = []
    for p in (os.path.realpath(sys.executable),):
        st = os.stat(p)
        out.append(f"{st.st_dev}:{st.st_ino}")
    return out


def test_a_container_watching_proc_exe_never_opens_the_host_binary_during_exec(attack_image):
    """CVE-2019-5736: the process exec turns into the container's command was minibox's
    Python, dumpable until execve: a container process could open /proc/PID/exe, the host's
    python3, in the moment between dropping its capabilities and execve (the kernel's
    capability check shut it until then; no run here caught it open, as the issue found).
    Now it is non-dumpable before it joins, and execs through a sealed memfd, which is all
    the watcher may reach: it opens, but refuses every write."""
    mb("run", "-d", "--network", "none", "--name", "watcher", attack_image, "/attack", "exe-watch", "600",
       *host_binaries(), check=True)
    try:
        for _ in range(200):
            assert mb("exec", "watcher", "true").returncode == 0
        stop("watcher")
        out = watcher_says("watcher")
    finally:
        mb("rm", "-f", "watcher")
    assert "host-exe-opened 0 " in out and "foreign-exe-writable 0" in out, out


def stop(name: str, env: dict | None = None) -> None:
    """Tell the attack program to end (it watches for /stop). `touch` may itself be killed
    (137) if the program sees the file and ends the container's PID 1 before touch has
    exited: the kernel then kills every process of that PID namespace. Both mean stopped."""
    res = mb("exec", name, "touch", "/stop", env=env)
    assert res.returncode in (0, 137), res.stderr


def watcher_says(name: str) -> str:
    """exe-watch's (or swap-dirs') one line, in the container's log once it has ended."""
    for _ in range(150):
        out = mb("logs", name).stdout
        if "scans" in out or "swaps" in out:
            return out
        time.sleep(0.2)
    raise AssertionError(f"exe-watch said nothing: {out!r}")


def test_a_proc_self_exe_interpreter_runs_only_the_sealed_copy(attack_image, tmp_path):
    """The exploit's other half: the container's program is a script whose interpreter is
    /proc/self/exe, so exec runs whatever the exec'ing process's own binary is, and the
    container holds it open and waits to write it. This kernel refuses to run the host's
    python3 that way (ENOENT: it is on a mount outside the container's namespace), which
    minibox used to report as a missing working directory; the sealed copy it does run
    again, and that copy says what happened and refuses."""
    script = "#!/proc/self/exe\nimport time\ntime.sleep(3)\n"
    mb("run", "-d", "--network", "none", "--name", "selfexe", attack_image, "sh", "-c",
       f"printf '{script}' > /evil && chmod +x /evil && /attack exe-watch 600 {' '.join(host_binaries())}",
       check=True)
    try:
        time.sleep(0.5)
        for _ in range(3):
            res = mb("exec", "selfexe", "/evil")
            assert res.returncode == 125 and "minibox-exec: not started by minibox" in res.stderr, res.stderr
        stop("selfexe")
        out = watcher_says("selfexe")
    finally:
        mb("rm", "-f", "selfexe")
    assert "host-exe-opened 0 " in out and "foreign-exe-writable 0" in out, out


# --- 7. --tmpfs options -------------------------------------------------------------------------------------


def test_tmpfs_takes_dockers_flag_words_and_defaults():
    opts = mb("run", "--rm", "--network", "none", "--tmpfs", "/t:exec,dev,suid,size=1m", "busybox", "sh", "-c",
              "grep ' /t ' /proc/mounts", check=True).stdout.split()[3].split(",")
    assert "noexec" not in opts and "nosuid" not in opts and "nodev" not in opts and "size=1024k" in opts
    opts = mb("run", "--rm", "--network", "none", "--tmpfs", "/t", "busybox", "sh", "-c",
              "grep ' /t ' /proc/mounts", check=True).stdout.split()[3].split(",")
    assert {"noexec", "nosuid", "nodev"} <= set(opts)
