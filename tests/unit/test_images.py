"""Pure image code: references, configs and docker run's command rules, --change, manifest lists."""

import hashlib

import pytest

from minibox.errors import InvalidSpec, MiniboxError, shown
from minibox.image import archive, checked
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


def _d(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def test_an_index_yields_the_amd64_manifest_and_descends_nested_indexes():
    docs = {_d("inner"): {"manifests": [
        {"digest": _d("arm"), "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": _d("amd"), "platform": {"os": "linux", "architecture": "amd64"}}]},
        _d("amd"): {"layers": [], "config": {"digest": _d("c")}}, _d("arm"): {"layers": ["x"]}}
    fetch = lambda desc: docs[desc.digest]  # noqa: E731
    picked = archive.pick_manifest({"manifests": [{"digest": _d("inner")}]}, fetch)
    assert [m for _, m in picked] == [docs[_d("amd")]]
    with pytest.raises(MiniboxError, match="no linux/amd64 variant"):
        archive.pick_manifest({"manifests": [{"digest": _d("arm"), "platform": {"os": "linux",
                                                                                "architecture": "arm64"}}]}, fetch)


def test_an_index_nested_without_end_is_refused():
    """A registry can answer every digest with one more index: the depth is capped."""
    endless = lambda desc: {"manifests": [{"digest": _d(desc.digest)}]}  # noqa: E731
    with pytest.raises(InvalidSpec, match="nests more than"):
        archive.pick_manifest({"manifests": [{"digest": _d("top")}]}, endless)


@pytest.mark.parametrize("value", ["sha256:/etc", "sha256:../../../etc", "/etc", "sha256:" + "A" * 64,
                                   "sha256:" + "a" * 63, "sha256:" + "a" * 64 + "/..", "", None, 5, ["x"],
                                   "sha256:" + "a" * 64 + "\n"])
def test_a_digest_that_is_not_one_is_refused_naming_it(value):
    with pytest.raises(InvalidSpec, match="layer id .* is not a digest: use sha256: and 64 lower-case hex"):
        checked.digest(value, "layer id")


def test_another_algorithm_is_refused_as_one_minibox_cannot_verify():
    with pytest.raises(InvalidSpec, match="cannot verify: only sha256"):
        checked.digest("sha512:" + "a" * 128, "layer id")
    assert checked.digest(_d("x"), "layer id") == _d("x")


@pytest.mark.parametrize("doc, message", [
    ({"rootfs": {"diff_ids": ["sha256:/etc"]}}, 'layer id in the image config "sha256:/etc" is not a digest'),
    ({"rootfs": {"diff_ids": "sha256:x"}}, "rootfs.diff_ids is not a list"),
    ({"rootfs": [1]}, "rootfs.diff_ids is not a list"),
    ({"rootfs": {"diff_ids": [_d("x")] * 126}}, "126 layers, more than the 125"),
])
def test_diff_ids_are_checked(doc, message):
    with pytest.raises(InvalidSpec, match=message):
        checked.diff_ids(doc)


@pytest.mark.parametrize("desc, message", [
    ({"digest": _d("x"), "size": -5}, "size .* is not a number of bytes"),
    ({"digest": _d("x"), "size": "12"}, "size .* is not a number of bytes"),
    ({"digest": _d("x"), "size": 5 << 20}, "more than the 4 MiB"),
    ({"digest": "sha256:..", "size": 1}, "digest .* is not a digest"),
    ([], "is not a JSON object"),
])
def test_descriptors_are_checked(desc, message):
    with pytest.raises(InvalidSpec, match=message):
        checked.descriptor(desc, "the entry", checked.MANIFEST_LIMIT)


@pytest.mark.parametrize("config, message", [
    ({"Cmd": "sh"}, "Cmd is not a list of strings"),
    ({"Env": ["A=\0"]}, "Env is not a list of strings"),
    ({"WorkingDir": 5}, "WorkingDir is not a string"),
    ({"ExposedPorts": {"abc/tcp": {}}}, "exposes \"abc/tcp\""),
    ({"ExposedPorts": {"99999/tcp": {}}}, "exposes"),
    ({"Labels": {"a": 1}}, "Labels are not all strings"),
    (["x"], "config is not a JSON object"),
])
def test_an_image_config_of_the_wrong_types_is_refused(config, message):
    with pytest.raises(InvalidSpec, match=message):
        ImageConfig.from_oci({"config": config})


def test_a_message_quotes_outside_text_with_control_characters_escaped():
    assert shown("a\x1b]0;pwned\x07b") == '"a\\x1b]0;pwned\\x07b"'
    assert shown("x" * 100, 10) == '"xxxxxxxxxx..."'


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
