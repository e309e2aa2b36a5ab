"""`minibox build`: a Dockerfile becomes an image through real containers and the real layer store, as Docker's classic builder makes one.

What each test holds minibox to, from Docker 20.10's `docker build` (DOCKER_BUILDKIT=0):
`Step N/M : INSTRUCTION` per step, ` ---> Running in ID` for a RUN, ` ---> Using cache` for
a step whose image, instruction and sources are unchanged; ARG values reach RUN's
environment; COPY of a directory copies what is in it; .dockerignore keeps files out;
ADD unpacks a local tar; a failing RUN names its command and code and tags nothing; a bad
Dockerfile is one line naming its line, exit 1.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from conftest import ROOT, inspect, mb

pytestmark = pytest.mark.usefixtures("no_unnamed_images")

DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM busybox AS base
ARG WHO=world
ENV GREETING=hi
WORKDIR /app
COPY a.txt ./
COPY sub /app/sub/
ADD bundle.tar /opt/
RUN echo "$GREETING $WHO" > /msg && ls /app/sub > /listing
LABEL version=1
EXPOSE 8080
CMD ["cat", "/msg"]
"""


def _context(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "sub" / "b.txt").write_text("sub\n")
    (ctx / "sub" / "skip.log").write_text("kept out\n")
    (ctx / ".dockerignore").write_text("# logs stay out\nsub/*.log\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    with tarfile.open(ctx / "bundle.tar", "w") as tar:
        data = b"from the tar\n"
        info = tarfile.TarInfo("inner/file.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return ctx


def test_build_runs_copies_caches_and_tags(tmp_path):
    ctx = _context(tmp_path)
    first = mb("build", "-t", "built:1", "--build-arg", "WHO=there", str(ctx), check=True, timeout=180)
    try:
        out = first.stdout
        assert "Step 1/11 : FROM busybox AS base" in out and "Step 11/11 : CMD [\"cat\", \"/msg\"]" in out
        assert " ---> Running in " in out and "Removing intermediate container" in out
        assert "Successfully tagged built:1" in out and "Using cache" not in out
        assert mb("run", "--rm", "built:1", check=True).stdout == "hi there\n"  # ARG in RUN's environment
        files = mb("run", "--rm", "built:1", "sh", "-c", "cat /listing /app/a.txt /opt/inner/file.txt; pwd",
                   check=True).stdout
        assert files == "b.txt\nhello\nfrom the tar\n/app\n"  # .dockerignore kept skip.log out
        cfg = inspect("built:1")["Config"]
        assert cfg["Labels"] == {"version": "1"} and "8080/tcp" in cfg["ExposedPorts"]
        assert "GREETING=hi" in cfg["Env"] and cfg["WorkingDir"] == "/app"
        # unchanged: every step from the cache, nothing run, the same image
        again = mb("build", "-t", "built:1", "--build-arg", "WHO=there", str(ctx), check=True, timeout=60)
        assert again.stdout.count(" ---> Using cache") == 10 and "Running in" not in again.stdout
        assert again.stdout.split("Successfully built ")[1][:12] == first.stdout.split("Successfully built ")[1][:12]
        # a changed source file: its COPY and every step after it run again
        (ctx / "a.txt").write_text("changed\n")  # ARG, ENV and WORKDIR still from the cache
        changed = mb("build", "-t", "built:2", "--build-arg", "WHO=there", str(ctx), check=True, timeout=180).stdout
        assert changed.count(" ---> Using cache") == 3 and "Running in" in changed
        assert mb("run", "--rm", "built:2", "cat", "/app/a.txt", check=True).stdout == "changed\n"
        # --explain says what each step made of the image
        told = mb("build", "--explain", str(ctx), check=True, timeout=60).stdout
        assert " # ENV changed the image config only: no layer" in told
        assert " # RUN made layer 5, sha256:" in told and "the upper directory of the container" in told
        assert " # COPY made layer 2, sha256:" in told and "FROM: the start is 1 layer(s)" in told
        # --no-cache runs everything; intermediate images are listed only with -a
        fresh = mb("build", "--no-cache", "-q", str(ctx), check=True, timeout=180).stdout.strip()
        assert fresh.startswith("sha256:")
        listed = mb("images", check=True).stdout
        # the two untagged results (--explain's and --no-cache's) are listed, as Docker lists
        # dangling images; the steps' images before them only with -a
        untagged = [row for row in listed.splitlines() if row.split()[:2] == ["<none>", "<none>"]]
        assert "built" in listed and len(untagged) == 2, listed
        every = mb("images", "-a", check=True).stdout.splitlines()
        assert sum(row.split()[:2] == ["<none>", "<none>"] for row in every) > 2
    finally:
        mb("rmi", "built:1", "built:2")
    assert mb("ps", "-aq", check=True).stdout == ""  # no step's container is left
    # the cache names each step's image; once those go, so do their entries
    cache = ROOT / "images/build-cache"
    entries = lambda: [p for p in cache.rglob("*") if p.is_file()]  # noqa: E731
    assert len(entries()) > 10
    mb("image", "prune", "-f", check=True)
    for entry in entries():  # what is left names an image still stored
        named = entry.read_text().strip() if entry.parent == cache else "sha256:" + entry.name
        assert mb("image", "inspect", named).returncode == 0, entry
    assert len(entries()) < 3
    stale = cache / ("f" * 64)  # as a step's entry is left when its image is removed by `rmi`
    stale.write_text("sha256:" + "0" * 64 + "\n")
    swept = mb("gc", "--explain", check=True)
    assert str(stale) in swept.stdout + swept.stderr and not stale.exists()


def test_a_failing_run_tags_nothing_and_bad_dockerfiles_are_one_line(tmp_path):
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo before; exit 3\n")
    res = mb("build", "-t", "never:1", str(ctx), timeout=120)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3" in res.stderr
    assert "before" in res.stdout  # the step's own output, as it ran
    assert mb("image", "inspect", "never:1").returncode != 0 and mb("ps", "-aq", check=True).stdout == ""
    os.symlink("/etc/passwd", ctx / "pw")
    for text, message in (("FROM busybox\nFOO bar\n", "Dockerfile line 2: unknown instruction: FOO"),
                          ("RUN true\n", "Dockerfile line 1: RUN before FROM"),
                          ("FROM busybox\nCOPY pw /pw\n", '"pw" is outside the build context'),
                          ("FROM busybox\nCOPY ../x /x\n", '"../x" is outside the build context'),
                          ("FROM busybox\nCOPY nothere /x\n", 'file not found in build context'),
                          ('FROM busybox\nRUN ["nosuch"]\n', '"nosuch": executable file not found'),
                          ("FROM busybox AS a\nFROM busybox\nCOPY --from=a /nothere /x\n", '"/nothere" not found'),
                          ("FROM busybox AS a\nRUN mkdir /a && ln -s /etc /a/link\nFROM busybox\n"
                           "COPY --from=a /a/link/passwd /x\n", "passes through the symlink")):
        (ctx / "Dockerfile").write_text(text)
        res = mb("build", "-t", "never:1", str(ctx), timeout=60)
        assert (res.returncode, res.stderr.count("\n")) == (1, 1) and message in res.stderr, (text, res.stderr)
        assert mb("image", "inspect", "never:1").returncode != 0 and mb("ps", "-aq", check=True).stdout == ""
    res = mb("build", str(tmp_path / "missing"))
    assert res.returncode == 125 and "not found" in res.stderr


def test_multi_stage_copies_what_the_earlier_stage_shows(tmp_path):
    """COPY --from reads the stage's layers as its containers see them: a file deleted by a
    later RUN is not copied, a directory merges every layer, a symlink stays a symlink;
    --chown takes a user name, --chmod a mode."""
    ctx = tmp_path / "ms"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS build\n"
        "RUN mkdir -p /out/d && echo made > /out/d/f && echo gone > /out/g && ln -s f /out/d/link\n"
        "RUN rm /out/g && echo later > /out/d/h && ln -s / /p\n"
        "RUN rm /p && mkdir -p /p/etc && echo mine > /p/etc/f\n"
        "FROM busybox\n"
        "WORKDIR /w\n"
        "COPY --from=build /out /copied\n"
        "COPY --from=0 /out/d/f single\n"
        "COPY --from=build --chown=nobody --chmod=600 /out/d/h owned\n"
        "COPY --from=build /p/etc /e\n")
    mb("build", "-t", "staged:1", str(ctx), check=True, timeout=180)
    try:
        out = mb("run", "--rm", "staged:1", "sh", "-c", "cd /copied && find . | sort; readlink d/link; "
                 "cat /w/single; stat -c %u:%g:%a /w/owned; cd /e && find . | sort", check=True).stdout.split()
        # --chown=nobody: its uid from the image's /etc/passwd, and (no group given) the same gid
        # /p was a symlink to / in a lower layer: never followed on the host (it would lead to the
        # host's /etc), the directory above hides it
        assert out == [".", "./d", "./d/f", "./d/h", "./d/link", "f", "made", "65534:65534:600", ".", "./f"], out
        # --target: the build stops at that stage, whose image it is
        mb("build", "--target", "build", "-t", "staged:build", str(ctx), check=True, timeout=120)
        assert mb("run", "--rm", "staged:build", "cat", "/out/d/f", check=True).stdout == "made\n"
        res = mb("build", "--target", "nope", str(ctx))
        assert res.returncode == 1 and 'target stage "nope" could not be found' in res.stderr
    finally:
        mb("rmi", "staged:1", "staged:build")
    # the usual shape: a final stage from scratch that holds only a binary the first made
    (ctx / "Dockerfile").write_text("FROM busybox AS tools\nRUN cp /bin/busybox /tool\nFROM scratch\n"
                                    "COPY --from=tools /tool /bin/busybox\n"
                                    'ENTRYPOINT ["/bin/busybox"]\nCMD ["echo", "only a binary"]\n')
    mb("build", "-t", "scratchy:1", "--network", "none", str(ctx), check=True, timeout=180)
    try:
        assert mb("run", "--rm", "--network", "none", "scratchy:1", check=True).stdout == "only a binary\n"
        assert len(inspect("scratchy:1")["RootFS"]["Layers"]) == 1  # the binary's layer, nothing of busybox's
    finally:
        mb("rmi", "scratchy:1")
