"""The image verbs: pull, images, load, tag, login, logout, and image ls|pull|load|import|rm|prune|inspect|tag."""

import sys
from typing import List, Optional

import typer

from minibox import store
from minibox.cli.app import app, for_each, image_app, say
from minibox.errors import EXIT_FAILED, MiniboxError


@app.command()
def pull(
    name: str = typer.Argument(..., help="NAME[:TAG|@DIGEST]; docker.io is the default registry"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print only the full reference"),
) -> None:
    """Fetch an image from a registry (Docker Hub unless the name starts with HOST[:PORT]/)."""
    store.require_root()
    import io

    from minibox.image import ref as refs
    from minibox.image import registry

    refs.parse(name)
    registry.pull(name, out=io.StringIO() if quiet else sys.stdout)
    r = refs.parse(name)
    say(f"{r.domain}/{r.path}" + (f":{r.tag}" if r.tag else "") + (f"@{r.digest}" if r.digest else ""))

@image_app.command(name="pull")
def image_pull(name: str = typer.Argument(..., help="NAME[:TAG|@DIGEST]"),
               quiet: bool = typer.Option(False, "-q", "--quiet", help="print only the full reference")) -> None:
    """Fetch an image from a registry."""
    pull(name, quiet)

@app.command(name="images")
def images_(
    repository: str = typer.Argument("", help="only this repository, or REPOSITORY:TAG (busybox, busybox:latest)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="only image ids"),
    fmt: str = typer.Option("", "--format", help="json, a Go template ('{{.Repository}}:{{.Tag}}'), or 'table ...'"),
    all_: bool = typer.Option(False, "-a", "--all", help="show build's intermediate images too"),
) -> None:
    """List images: REPOSITORY, TAG, IMAGE ID (its config's digest), CREATED and SIZE."""
    store.require_root()
    from minibox.cli import present
    from minibox.image import store as images

    imgs = images.all_images()
    if not all_:  # as Docker's: an untagged image a build step started from is shown with -a
        from minibox.engine.building import intermediate_ids

        hidden = intermediate_ids()
        imgs = [i for i in imgs if i.refs or i.id not in hidden]
    # REPO or REPO:TAG, as Docker's: the rows of the names that match (a ':' after the last
    # '/' is a tag; one before it is a registry's port)
    repo, colon, tag = repository.rpartition(":") if ":" in repository.rsplit("/", 1)[-1] else (repository, "", "")

    def wanted(name: tuple[str, str]) -> bool:
        return name[0] == repo and (not colon or name[1] == tag)
    if repository:
        imgs = [i for i in imgs if any(wanted(n) for n in present.image_names(i))]
    if quiet:
        for img in sorted(imgs, key=lambda i: -present.built(i)):
            say(img.short_id)
        return
    if fmt:
        present.Output(fmt).print([row for img in sorted(imgs, key=lambda i: -present.built(i))
                                   for row in present.image_json_rows(img)
                                   if not repository or wanted((row["Repository"], row["Tag"]))],
                                  {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"})
        return
    rows = [r for r in present.image_rows(imgs) if not repository or wanted((r[0], r[1]))]
    say(present.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))

@image_app.command(name="ls")
def image_ls(
    repository: str = typer.Argument("", help="only this repository"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="only image ids"),
    fmt: str = typer.Option("", "--format", help="json, a Go template, or 'table ...'"),
    all_: bool = typer.Option(False, "-a", "--all", help="show build's intermediate images too"),
) -> None:
    """List images."""
    images_(repository, quiet, fmt, all_)

@app.command()
def load(
    input_: str = typer.Option("", "-i", "--input", help="a `docker save` or OCI archive, or an OCI layout "
                                                         "directory (default: stdin)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print nothing but errors"),
) -> None:
    """Load images from a `docker save` archive, an OCI archive or an OCI layout."""
    store.require_root()
    import os
    import shutil
    import tempfile

    from minibox.image import archive
    from minibox.image import ref as refs

    tmp = ""
    path = input_
    if not path:
        if sys.stdin.isatty():
            raise MiniboxError("requested load from stdin, but stdin is a terminal: use -i FILE or a pipe")
        fd, tmp = tempfile.mkstemp(prefix="minibox-load-")
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        path = tmp
    try:
        loaded = archive.load(path, (lambda _t: None) if quiet else say)
    except MiniboxError as e:
        e.code = EXIT_FAILED  # `docker load` says 1 for any archive it refuses
        raise
    finally:
        if tmp:
            os.unlink(tmp)
    if not quiet:
        for img in loaded:
            names = [refs.parse(n).familiar for n in img.refs]
            say(f"Loaded image: {names[0]}" if names else f"Loaded image ID: {img.id}")

@image_app.command(name="load")
def image_load(
    input_: str = typer.Option("", "-i", "--input", help="archive or OCI layout (default: stdin)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print nothing but errors"),
) -> None:
    """Load images from a `docker save` archive, an OCI archive or an OCI layout."""
    load(input_, quiet)

@app.command()
def save(
    images: List[str] = typer.Argument(..., help="image names or ids"),
    output: str = typer.Option("", "-o", "--output", help="write to this file (default: standard output)"),
) -> None:
    """Save images to one tar archive that `load`, `docker load` and skopeo read (a docker-archive
    and an OCI layout at once, as Docker's)."""
    store.require_root()
    from minibox.cli.app import write_out
    from minibox.engine import saving
    from minibox.image import store as image_store

    for name in images:
        image_store.get(name)  # a name that is no image is said before anything is written
    write_out(output, lambda f: saving.save(images, f))

@image_app.command(name="save")
def image_save(
    images: List[str] = typer.Argument(..., help="image names or ids"),
    output: str = typer.Option("", "-o", "--output", help="write to this file (default: standard output)"),
) -> None:
    """Save images to one tar archive that `load`, `docker load` and skopeo read."""
    save(images, output)

@app.command()
def push(name: str = typer.Argument(..., help="REGISTRY/REPOSITORY:TAG, as `tag` named it")) -> None:
    """Push an image to a registry (`minibox login` first if it asks for credentials)."""
    store.require_root()
    from minibox.engine import pushing

    try:
        pushing.push(name, say)
    except MiniboxError as e:
        e.code = EXIT_FAILED  # as `docker push`
        raise

@image_app.command(name="push")
def image_push(name: str = typer.Argument(..., help="REGISTRY/REPOSITORY:TAG")) -> None:
    """Push an image to a registry."""
    push(name)

@app.command(name="import")  # as docker import: `export | import` round-trips a container's files
@image_app.command(name="import")
def image_import(
    source: str = typer.Argument(..., help="a rootfs directory, a tar archive (`docker export` output), or - for "
                                           "a tar on stdin"),
    name: str = typer.Argument("", help="NAME[:TAG] for the image"),
    change: List[str] = typer.Option([], "-c", "--change", help="a Dockerfile instruction: CMD, ENTRYPOINT, ENV, "
                                                                "WORKDIR, EXPOSE, USER, LABEL, STOPSIGNAL"),
) -> None:
    """Import a root filesystem as a one-layer image."""
    store.require_root()
    from minibox.image import archive

    img = archive.import_rootfs(source, name, list(change), stdin=sys.stdin.buffer)
    say(img.id)
    nodes = archive.device_nodes(img)
    if nodes:
        print(f"minibox: note: {nodes} device node(s) in this image will not open in a container: its root is "
              "mounted nodev, and the device cgroup allows only /dev/null, zero, full, random, urandom, tty, ptmx "
              "and pts", file=sys.stderr)

@app.command()
def build(
    context: str = typer.Argument(..., help="the build context: a directory whose files COPY and ADD may read"),
    tags: List[str] = typer.Option([], "-t", "--tag", help="NAME[:TAG] for the image (repeatable)"),
    file: str = typer.Option("", "-f", "--file", help="the Dockerfile (default: CONTEXT/Dockerfile)"),
    build_args: List[str] = typer.Option([], "--build-arg", help="KEY=VALUE for an ARG (KEY alone: from the environment)"),
    target: str = typer.Option("", "--target", help="build up to this stage (FROM ... AS NAME)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="run every step again, not from the cache"),
    labels: List[str] = typer.Option([], "--label", help="KEY=VALUE, a label on the image (repeatable)"),
    network: str = typer.Option("", "--network", help="RUN steps' network: none, host, or a network (default: the "
                                                      "default one)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print only the image id"),
    explain: bool = typer.Option(False, "--explain", help="say for each step what became a layer, and why"),
) -> None:
    """Build an image from a Dockerfile: each RUN a container whose changes become a layer,
    COPY and ADD a layer of the context's files, the rest changes to the image's config."""
    import os

    store.require_root()
    from minibox.engine import building
    from minibox.errors import InvalidSpec

    pairs = []
    for item in build_args:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidSpec(f'invalid --build-arg "{item}": give KEY=VALUE')
        if eq or key in os.environ:
            pairs.append((key, value if eq else os.environ[key]))
    for label in labels:
        if "=" not in label or label.startswith("="):
            raise InvalidSpec(f'invalid --label "{label}": give KEY=VALUE')
    opts = building.Options(context=context, dockerfile=file, tags=tuple(tags), build_args=tuple(pairs),
                            target=target, no_cache=no_cache, labels=tuple(labels), network=network, quiet=quiet,
                            explain=explain)
    def progress(text: str) -> None:  # flushed: a RUN step's output goes to the same stdout, unbuffered
        if not quiet:
            say(text)
            sys.stdout.flush()

    image_id = building.build(opts, progress)
    if quiet:
        say(image_id)

@image_app.command(name="build")
def image_build(context: str = typer.Argument(...), tags: List[str] = typer.Option([], "-t", "--tag"),
                file: str = typer.Option("", "-f", "--file"), build_args: List[str] = typer.Option([], "--build-arg"),
                target: str = typer.Option("", "--target"), no_cache: bool = typer.Option(False, "--no-cache"),
                labels: List[str] = typer.Option([], "--label"), network: str = typer.Option("", "--network"),
                quiet: bool = typer.Option(False, "-q", "--quiet"),
                explain: bool = typer.Option(False, "--explain")) -> None:
    """Build an image from a Dockerfile."""
    build(context, tags, file, build_args, target, no_cache, labels, network, quiet, explain)

@app.command()
def tag(
    source: str = typer.Argument(..., help="an image: NAME[:TAG] or id"),
    target: str = typer.Argument(..., help="the new NAME[:TAG]"),
) -> None:
    """Give an image another name."""
    store.require_root()
    from minibox.image import ref as refs
    from minibox.image import store as images

    name = refs.normalize(target)
    images.tag(images.get(source).id, name)

@image_app.command(name="tag")
def image_tag(source: str = typer.Argument(...), target: str = typer.Argument(...)) -> None:
    """Give an image another name."""
    tag(source, target)

@image_app.command(name="rm")
def image_rm(
    names: List[str] = typer.Argument(..., help="image names or ids"),
    force: bool = typer.Option(False, "-f", "--force", help="remove every name of an image given by id"),
) -> None:
    """Remove images (a name; the image goes with its last one). Layers other images use stay."""
    store.require_root()
    from minibox.image import remove

    for_each(names, lambda n: remove.remove(n, force))

@app.command()
def rmi(names: List[str] = typer.Argument(..., help="image names or ids"),
        force: bool = typer.Option(False, "-f", "--force", help="remove every name of an image given by id")) -> None:
    """Remove images (as `image rm`)."""
    image_rm(names, force)

@image_app.command(name="prune")
def image_prune(
    all_: bool = typer.Option(False, "-a", "--all", help="every image no container uses, not only unnamed ones"),
    force: bool = typer.Option(False, "-f", "--force", help="do not ask (minibox never asks)"),
) -> None:
    """Remove images without a name (with -a: every image no container uses)."""
    store.require_root()
    from minibox.cli import present
    from minibox.engine import building
    from minibox.image import remove

    lines, freed = remove.prune(all_)
    building.forget_gone()  # the build cache's entries for the images that went
    for line in lines:
        say(line)
    say(f"Total reclaimed space: {present.human_size(freed)}")

@image_app.command(name="inspect")
def image_inspect(names: List[str] = typer.Argument(...),
                  fmt: str = typer.Option("", "-f", "--format", help="a Go template")) -> None:
    """Low-level details of images, as `docker image inspect`."""
    from minibox.cli.containers import inspect

    inspect(names, fmt, "image")

@app.command()
def login(
    server: Optional[str] = typer.Argument(None, help="registry HOST[:PORT] (default: Docker Hub)"),
    username: str = typer.Option("", "-u", "--username"),
    password: str = typer.Option("", "-p", "--password"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
) -> None:
    """Keep credentials for a registry (checked with it first), as `docker login`."""
    store.require_root()
    from minibox.image import ref as refs
    from minibox.image import registry

    host = server or refs.HUB_API
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username or not password:
        raise MiniboxError("login needs -u USER and -p PASSWORD (or --password-stdin)")
    registry.login(host, username, password)
    say("Login Succeeded")

@app.command()
def logout(server: Optional[str] = typer.Argument(None, help="registry HOST[:PORT] (default: Docker Hub)")) -> None:
    """Forget the credentials kept for a registry."""
    store.require_root()
    from minibox.image import ref as refs
    from minibox.image import registry

    host = server or refs.HUB_API
    if registry.forget_credentials(host):
        say(f"Removing login credentials for {host}")
    else:
        say(f"Not logged in to {host}")


@app.command()
def history(image: str = typer.Argument(..., help="image name or id"),
            no_trunc: bool = typer.Option(False, "--no-trunc", help="whole commands"),
            quiet: bool = typer.Option(False, "-q", "--quiet", help="only the image id")) -> None:
    """How an image was made: each step of its config's history, newest first, with the size of the layer it
    added."""
    store.require_root()
    from minibox.cli import present
    from minibox.image import store as images

    img = images.get(image)
    steps = images.history(img)
    if quiet:
        say(img.short_id)
        return
    rows = []
    for i, h in enumerate(steps):
        by = h["created_by"] if no_trunc or len(h["created_by"]) <= 45 else h["created_by"][:44] + "…"
        rows.append([img.short_id if i == 0 else "<missing>", h["created"][:19] or "?", by,
                     present.human_size(h["size"]), h["comment"]])
    say(present.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))


image_app.command(name="history")(history)  # `image history`, as Docker names it too
