"""Pure image code: references, configs and docker run's command rules, --change, manifest lists."""

import pytest

from minibox.errors import InvalidSpec, MiniboxError
from minibox.image import archive
from minibox.image import ref as refs
from minibox.image.config import ImageConfig, apply_changes, command


@pytest.mark.parametrize("text, domain, path, tag, digest", [
    ("busybox", "docker.io", "library/busybox", "latest", ""),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", ""),
    ("team/app", "docker.io", "team/app", "latest", ""),
    ("localhost:5000/app", "localhost:5000", "app", "latest", ""),
    ("127.0.0.1:5000/a/b:v2", "127.0.0.1:5000", "a/b", "v2", ""),
    ("ghcr.io/org/img@sha256:" + "a" * 64, "ghcr.io", "org/img", "", "sha256:" + "a" * 64),
])
def test_references_as_docker_reads_them(text, domain, path, tag, digest):
    r = refs.parse(text)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)


def test_reference_forms():
    assert refs.parse("busybox").familiar == "busybox:latest"
    assert refs.parse("busybox").name == "docker.io/library/busybox:latest"
    assert refs.parse("127.0.0.1:5000/a:1").repository == "127.0.0.1:5000/a"
    assert refs.parse("nginx").api_host == "registry-1.docker.io"
    assert refs.unkey(refs.key("docker.io/library/x:1")) == "docker.io/library/x:1"
    assert "/" not in refs.key("docker.io/library/x:1")


@pytest.mark.parametrize("bad", ["", "Busybox", "../x", "a//b", "a/../b", "x:", "-x", "a" * 256,
                                 "x@sha256:abc", "x@md5:" + "a" * 64])
def test_bad_references_name_themselves(bad):
    with pytest.raises(InvalidSpec) as e:
        refs.parse(bad)
    assert bad[:20] in str(e.value) or "digest" in str(e.value)


def test_the_config_roundtrips_and_tolerates_null():
    doc = {"config": {"Cmd": ["sh"], "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}, "Labels": {"k": "v"},
                      "User": "nobody", "WorkingDir": "/w", "StopSignal": "SIGQUIT", "Entrypoint": None}}
    c = ImageConfig.from_oci(doc)
    assert c.cmd == ("sh",) and c.entrypoint == () and c.exposed == ("80/tcp",) and c.labels == (("k", "v"),)
    assert ImageConfig.from_oci({"config": c.to_oci()}) == c
    assert ImageConfig.from_oci({"config": None}) == ImageConfig()


@pytest.mark.parametrize("entry, cmd, args, override, want", [
    ((), ("sh",), (), None, ("sh",)),  # the image's CMD
    ((), ("sh",), ("echo", "x"), None, ("echo", "x")),  # arguments replace CMD
    (("nginx",), ("-g", "daemon off;"), (), None, ("nginx", "-g", "daemon off;")),  # ENTRYPOINT + CMD
    (("nginx",), ("-g", "x"), ("-v",), None, ("nginx", "-v")),  # ENTRYPOINT + arguments
    (("nginx",), ("-g", "x"), (), ("echo",), ("echo",)),  # --entrypoint drops CMD
    (("nginx",), ("-g", "x"), ("hi",), ("echo",), ("echo", "hi")),
    ((), ("sh",), ("true",), (), ("true",)),  # --entrypoint "": arguments alone
])
def test_docker_runs_rules_for_entrypoint_and_cmd(entry, cmd, args, override, want):
    assert command(ImageConfig(cmd=cmd, entrypoint=entry), args, override) == want


def test_nothing_to_run_is_an_error():
    with pytest.raises(InvalidSpec, match="no command given"):
        command(ImageConfig(), (), None)


def test_change_instructions():
    c = apply_changes(ImageConfig(env=("A=1",)), ['CMD ["httpd", "-f"]', "ENTRYPOINT /bin/sh -c", "ENV A=2 B=x",
                                                   "ENV C three words", "WORKDIR /srv", "EXPOSE 80 53/udp",
                                                   "USER nobody", "LABEL a=b", "STOPSIGNAL SIGINT"])
    assert c.cmd == ("httpd", "-f") and c.entrypoint == ("/bin/sh", "-c", "/bin/sh -c")
    assert c.env == ("A=2", "B=x", "C=three words") and c.workdir == "/srv" and c.user == "nobody"
    assert c.exposed == ("53/udp", "80/tcp") and c.labels == (("a", "b"),) and c.stop_signal == "SIGINT"


@pytest.mark.parametrize("bad, message", [("FROM x", "unknown --change instruction"),
                                          ("CMD [1, 2]", "a JSON array of strings"),
                                          ("WORKDIR rel", "give an absolute path"),
                                          ("EXPOSE 99999", 'invalid EXPOSE "99999"'),
                                          ("ENV =x", "use KEY=VALUE")])
def test_bad_changes(bad, message):
    with pytest.raises(InvalidSpec, match=message):
        apply_changes(ImageConfig(), [bad])


def test_an_index_yields_the_amd64_manifest_and_descends_nested_indexes():
    docs = {"sha256:inner": {"manifests": [
        {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]},
        "sha256:amd": {"layers": [], "config": {"digest": "c"}}, "sha256:arm": {"layers": ["x"]}}
    picked = archive.pick_manifest({"manifests": [{"digest": "sha256:inner"}]}, docs.__getitem__)
    assert [m for _, m in picked] == [docs["sha256:amd"]]
    with pytest.raises(MiniboxError, match="no linux/amd64 variant"):
        archive.pick_manifest({"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux",
                                                                                     "architecture": "arm64"}}]},
                              docs.__getitem__)


def _read_all(reader, sizes) -> bytes:
    out = []
    for n in sizes:
        data = reader.read(n)
        if not data:
            return b"".join(out)
        out.append(data)
    return b"".join(out) + reader.read(-1)


@pytest.mark.parametrize("members, padding", [
    ([b""], 0),
    ([bytes(range(256)) * 5000], 0),  # more than one read's worth
    ([b"first member\n", b"second\n" * 100000, b"third"], 0),  # gzip allows several members
    ([b"padded\n" * 1000], 1000),  # and zeros after the last
])
def test_inflating_reads_what_gzip_wrote(members, padding):
    import gzip
    import io
    import itertools

    from minibox.image.layers import _Inflating

    blob = b"".join(gzip.compress(m) for m in members) + bytes(padding)
    sizes = itertools.islice(itertools.cycle([1, 10240, 65536, 7]), 10000)
    assert _read_all(_Inflating(io.BytesIO(blob)), sizes) == b"".join(members)


def test_inflating_refuses_a_cut_or_altered_stream():
    import gzip
    import io
    import zlib

    from minibox.image.layers import _Inflating

    blob = gzip.compress(b"layer content\n" * 10000)
    with pytest.raises(EOFError):
        _Inflating(io.BytesIO(blob[:-5])).read(-1)
    crc = bytearray(blob)
    crc[-6] ^= 1  # the trailer's CRC-32: zlib checks it
    with pytest.raises(zlib.error):
        _Inflating(io.BytesIO(bytes(crc))).read(-1)
