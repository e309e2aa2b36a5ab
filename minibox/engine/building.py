"""`minibox build`: a Dockerfile's steps applied one by one, each a layer (RUN, COPY, ADD) or a change of the image config, through the one engine, cached as Docker's classic builder caches.

What a layer is, shown by making them: a RUN step is a container of the image so far
running the command (`minibox run`, as any other), and its overlay's upper directory
becomes the next layer (as `commit` makes one); COPY and ADD write a layer tar of the
files themselves. Every step ends in an image of its own (an intermediate one, untagged),
whose id the next step starts from; that is also the cache. A step's key is the image it
starts from and the instruction as substituted (for COPY and ADD the sources' contents and
modes; for RUN the build arguments in its environment), so an unchanged rebuild runs
nothing and prints `Using cache` for each step, as Docker's classic builder does.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shlex
import tempfile
import time

from minibox import config, files, store
from minibox.errors import BuildFailed, InvalidSpec, MiniboxError
from minibox.image import buildcontext
from minibox.image import store as images
from minibox.plan import dockerfile as df
from minibox.value import Value

CONFIG_ONLY = ("ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "STOPSIGNAL", "VOLUME", "CMD", "ENTRYPOINT", "SHELL",
               "ARG", "MAINTAINER", "HEALTHCHECK")


class Options(Value):
    context: str
    dockerfile: str = ""  # -f; "" for CONTEXT/Dockerfile
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str = ""
    no_cache: bool = False
    labels: tuple[str, ...] = ()
    network: str = ""
    quiet: bool = False
    explain: bool = False  # say, per step, what became a layer and why


class Stage(Value):
    """The image so far: its config document (an image config, as stored) and its id."""

    doc: dict
    image_id: str = ""  # "" before the first layer of FROM scratch
    shell: tuple[str, ...] = ("/bin/sh", "-c")
    args: tuple[tuple[str, str], ...] = ()  # the ARGs in scope: RUN's environment


def build(opts: Options, say) -> str:
    """Build; the final image's id (tagged as -t asks). `say(text)` prints progress."""
    from minibox.image import ref as refs

    context = os.path.realpath(opts.context)
    if not os.path.isdir(context):
        raise InvalidSpec(f'unable to prepare context: path "{opts.context}" not found (give a directory)')
    path = opts.dockerfile or os.path.join(context, "Dockerfile")
    try:
        with open(path) as f:
            text = f.read(1 << 20)
    except OSError as e:
        raise InvalidSpec(f"cannot read the Dockerfile {path}: {e.strerror}") from None
    tags = [refs.normalize(t) for t in opts.tags]  # bad names refused before anything runs
    try:
        plan = df.parse(text, dict(opts.build_args))
        last = plan.stage(opts.target)
    except InvalidSpec as e:
        raise BuildFailed(str(e)) from None  # Docker's build exits 1 for a Dockerfile it cannot read
    ignore = buildcontext.dockerignore(context)
    for note in plan.notes:
        say(note)
    total = sum(len(s.steps) for s in plan.stages[:last + 1]) + (1 if opts.labels else 0)
    done: dict[int, Stage] = {}
    named: dict[str, Stage] = {}  # what COPY --from may name: an earlier stage's name or index
    n = 0
    for stage in plan.stages[:last + 1]:
        cur, ours = None, False  # ours: the image so far was made by this build (not a user's)
        for ins in stage.steps:
            n += 1
            say(f"Step {n}/{total} : {ins.source}")
            before = cur
            try:
                if ins.kind == "FROM":
                    cur = _from(ins, plan, done, say)
                    ours = ins.args.split()[0].lower() == "scratch" or \
                        cur.image_id in (s.image_id for s in done.values())
                else:
                    if ours:
                        _intermediate(cur.image_id)
                    cur, ours = _step(cur, ins, context, ignore, opts, say, named), True
            except BuildFailed:
                raise
            except MiniboxError as e:  # a base image not found, a full disk: the step named, exit 1 as Docker's
                raise BuildFailed(f"Dockerfile line {ins.line}: {ins.kind}: {e}") from None
            if opts.explain:
                say(explain(ins, before, cur))
            say(f" ---> {cur.image_id.removeprefix('sha256:')[:12]}")
        done[stage.index] = named[str(stage.index)] = cur
        if stage.name:
            named[stage.name] = cur
    final = done[last]
    if opts.labels:
        _intermediate(final.image_id)
        n += 1
        change = "LABEL " + " ".join(shlex.quote(x) for x in opts.labels)
        say(f"Step {n}/{total} : {change}")
        final = _step(final, df.Instruction(0, "LABEL", " ".join(shlex.quote(x) for x in opts.labels), (), change),
                      context, ignore, opts, say)
    for t in tags:
        images.tag(final.image_id, t)
    say(f"Successfully built {final.image_id.removeprefix('sha256:')[:12]}")
    for t in opts.tags:
        say(f"Successfully tagged {refs.parse(t).familiar}")
    return final.image_id


def explain(ins: df.Instruction, before: Stage | None, after: Stage) -> str:
    """--explain: what the step made of the image, for the lesson on layers."""
    layers = (after.doc.get("rootfs") or {}).get("diff_ids") or []
    had = len((before.doc.get("rootfs") or {}).get("diff_ids") or []) if before else 0
    if ins.kind == "FROM":
        return (f" # {ins.kind}: the start is {len(layers)} layer(s), shared, never copied: a container's root is an "
                "overlay of their directories" if layers else " # FROM scratch: no layer at all, an empty root")
    if len(layers) == had:
        return f" # {ins.kind} changed the image config only: no layer (its history entry says empty_layer)"
    size = images.layer_size(layers[-1])
    what = ("the upper directory of the container that ran it: every file it added or changed, and a whiteout "
            "for each it deleted" if ins.kind == "RUN" else "the files it names, written as a tar")
    return f" # {ins.kind} made layer {len(layers)}, {layers[-1][:19]}… ({size} bytes): {what}"


def _from(ins: df.Instruction, plan: df.Dockerfile, done: dict[int, Stage], say) -> Stage:
    from minibox.engine import facts

    base = ins.args.split()[0]
    earlier = next((s.index for s in plan.stages if s.index in done and (s.name == base.lower() or
                                                                         str(s.index) == base)), None)
    if earlier is not None:
        return done[earlier]
    if base.lower() == "scratch":
        doc = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
               "history": []}
        return Stage(doc, _save(doc))
    img = facts.image_for(base)
    return Stage(images.config_doc(img.id), img.id)


def _lowerdirs(name: str, named: dict) -> tuple[str, ...]:
    """COPY --from=NAME: an earlier stage (by name or index), or else an image."""
    from minibox.engine import facts

    stage = named.get(name.lower())
    return images.lowerdirs(images.get(stage.image_id) if stage else facts.image_for(name))


def _step(cur: Stage, ins: df.Instruction, context: str, ignore: list, opts: Options, say,
          named: dict | None = None) -> Stage:
    extra = ""
    files: list[tuple[str, str]] = []
    if ins.kind in ("COPY", "ADD"):
        files = buildcontext.image_sources(ins, _lowerdirs(ins.flag("from"), named or {})) if ins.flag("from") else \
            buildcontext.sources(ins, context, ignore)
        extra = buildcontext.digest(files)
    elif ins.kind == "RUN":
        extra = json.dumps(cur.args)
    key = hashlib.sha256(json.dumps([cur.image_id, ins.kind, ins.args, ins.flags, list(cur.shell), extra])
                         .encode()).hexdigest()
    cached = None if opts.no_cache else _cached(key)
    if ins.kind == "ARG":
        name, eq, value = ins.args.partition("=")
        cur = cur._replace(args=tuple((k, v) for k, v in cur.args if k != name) + (((name, value),) if eq else ()))
    if ins.kind == "SHELL":
        form = ins.exec_form()
        if not form:
            raise BuildFailed(f'Dockerfile line {ins.line}: SHELL needs the JSON form, e.g. ["/bin/bash", "-c"]')
        cur = cur._replace(shell=form)
    if cached:
        say(" ---> Using cache")
        return cur._replace(doc=images.config_doc(cached), image_id=cached)
    if ins.kind in CONFIG_ONLY:
        doc = _configured(cur, ins)
        doc["history"] = doc.get("history", []) + [_history(f"/bin/sh -c #(nop) {ins.source}", empty=True)]
        doc["created"] = doc["history"][-1]["created"]
    elif ins.kind == "RUN":
        doc = _run(cur, ins, opts, say)
    else:
        diff_id = buildcontext.layer(ins, files, (cur.doc.get("config") or {}).get("WorkingDir") or "/",
                                     _chown(cur, ins) if ins.flag("chown") else (0, 0))
        doc = _with_layer(cur.doc, diff_id, f"/bin/sh -c #(nop) {ins.source}")
    new = _save(doc)
    _remember(key, new)
    return cur._replace(doc=doc, image_id=new)


def _chown(cur: Stage, ins: df.Instruction) -> tuple[int, int]:
    """--chown=USER[:GROUP], names looked up in the image's own /etc/passwd and /etc/group;
    without a group the gid is the uid, as Docker's reference says."""
    from minibox.engine import facts
    from minibox.plan import users

    user, _, group = ins.flag("chown").partition(":")
    try:
        if user.isdigit() and (not group or group.isdigit()):
            return int(user), int(group or user)
        img = images.get(cur.image_id)
        passwd, groups = facts.layer_file(img, "/etc/passwd"), facts.layer_file(img, "/etc/group")
        uid = users.resolve(user, (), passwd, groups).uid
        return uid, users.resolve(f"{user}:{group}", (), passwd, groups).gid if group else uid
    except InvalidSpec as e:
        raise BuildFailed(f'Dockerfile line {ins.line}: --chown="{ins.flag("chown")}": {e}') from None


def _configured(cur: Stage, ins: df.Instruction) -> dict:
    """The config after ENV, WORKDIR, CMD and the other instructions that make no layer."""
    from minibox.image.config import ImageConfig, apply_changes

    doc = json.loads(json.dumps(cur.doc))
    cfg = ImageConfig.from_oci(doc)
    kind, args = ins.kind, ins.args
    try:
        if kind in ("CMD", "ENTRYPOINT"):
            argv = ins.exec_form()
            argv = argv if argv is not None else (*cur.shell, args)
            cfg = cfg._replace(**{kind.lower(): tuple(argv)})
        elif kind == "WORKDIR":
            cfg = cfg._replace(workdir=posixpath.normpath(posixpath.join(cfg.workdir or "/", args)))
        elif kind == "MAINTAINER":
            doc["author"] = args
        elif kind == "HEALTHCHECK":
            cfg = cfg._replace(healthcheck=_healthcheck(ins))
        elif kind not in ("ARG", "SHELL"):
            cfg = apply_changes(cfg, [f"{kind} {args}"])
    except InvalidSpec as e:
        raise BuildFailed(f"Dockerfile line {ins.line}: {e}") from None
    doc["config"] = {**(doc.get("config") or {}), **cfg.to_oci()}
    for key, field in (("Cmd", cfg.cmd), ("Entrypoint", cfg.entrypoint)):
        if not field:
            doc["config"].pop(key, None)
    if kind == "ENTRYPOINT":
        doc["config"].pop("Cmd", None)  # as Docker: a new ENTRYPOINT drops the CMD before it
    return doc


def _healthcheck(ins: df.Instruction) -> dict:
    """HEALTHCHECK NONE, or [--interval= --timeout= --start-period= --retries=] CMD ...: as
    the config's Healthcheck (durations in seconds, as ImageConfig keeps them)."""
    from minibox.plan.procflags import duration

    word, _, rest = ins.args.partition(" ")
    if word.upper() == "NONE":
        return {"Test": ["NONE"]}
    if word.upper() != "CMD" or not rest.strip():
        raise InvalidSpec('HEALTHCHECK: give NONE, or [OPTIONS] CMD command (as "HEALTHCHECK CMD wget -q -O- '
                          'localhost")')
    form = df.Instruction(ins.line, "CMD", rest).exec_form()
    out: dict = {"Test": ["CMD", *form] if form is not None else ["CMD-SHELL", rest.strip()]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod")):
        out[key] = duration(ins.flag(flag), f"--{flag}") if ins.flag(flag) else 0.0
    retries = ins.flag("retries") or "0"
    if not retries.isdigit():
        raise InvalidSpec(f'HEALTHCHECK --retries="{retries}": give a whole number')
    out["Retries"] = int(retries)
    return out


def _run(cur: Stage, ins: df.Instruction, opts: Options, say) -> dict:
    """RUN: a container of the image so far runs the command; its upper directory is the layer."""
    from minibox.engine import committing, launch, removal
    from minibox.model import ContainerSpec

    argv = ins.exec_form()
    argv = argv if argv is not None else (*cur.shell, ins.args)
    # named before it exists, so that a run that fails half-way (a command not found) is found and removed
    name = f"minibox-build-{os.urandom(6).hex()}"
    spec = ContainerSpec(image=cur.image_id, cmd=tuple(argv), entrypoint=(), network=opts.network, name=name,
                         env=tuple(f"{k}={v}" for k, v in cur.args), pull="never")
    result = None
    try:
        try:
            result = launch.run(spec, explain=lambda steps, pid, cid: say(f" ---> Running in {cid[:12]}"))
        except MiniboxError as e:
            try:
                removal.remove(store.resolve_id(name), force=True)
            except MiniboxError:
                pass  # it was never made
            raise BuildFailed(f"Dockerfile line {ins.line}: {ins.source}: {e}") from None
        if result.exit_code:
            raise BuildFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {result.exit_code}")
        upper = config.paths().container(result.record.id) / "upper"
        with tempfile.TemporaryFile(dir=buildcontext.tmpdir()) as layer:
            committing.write_layer(str(upper), layer)
            layer.seek(0)
            diff_id = images.add_layer(layer)
    finally:
        if result is not None:
            removal.remove(result.record.id, force=True)
            say(f"Removing intermediate container {result.record.id[:12]}")
    return _with_layer(cur.doc, diff_id, f"/bin/sh -c {ins.args}" if ins.exec_form() is None else ins.source)


def _with_layer(doc: dict, diff_id: str, created_by: str) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["rootfs"] = {"type": "layers", "diff_ids": [*(doc.get("rootfs") or {}).get("diff_ids", []), diff_id]}
    doc["history"] = doc.get("history", []) + [_history(created_by)]
    doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return doc


def _history(created_by: str, empty: bool = False) -> dict:
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "created_by": created_by,
            **({"empty_layer": True} if empty else {})}


# --- the intermediate images, and the cache that names them ---------------------------------


def _save(doc: dict) -> str:
    return images.add_image(json.dumps(doc, sort_keys=True).encode(), []).id


def _cache_dir():
    return config.paths().images / "build-cache"


def _cached(key: str) -> str:
    """The image a step with this key made, if it is still stored."""
    try:
        image_id = (_cache_dir() / key).read_text().strip()
    except OSError:
        return ""
    try:
        return image_id if images.find(image_id) is not None else ""
    except MiniboxError:
        return ""


def _remember(key: str, image_id: str) -> None:
    files.make_dirs(_cache_dir())
    files.replace_file(_cache_dir() / key, image_id + "\n")


def _intermediate(image_id: str) -> None:
    """Mark an image another step started from: `images` lists it only with -a, as Docker's."""
    d = _cache_dir() / "parents"
    files.make_dirs(d)
    (d / image_id.removeprefix("sha256:")).touch()


def forget_gone() -> list[str]:
    """The build cache's entries (a step's key, an intermediate's mark) naming an image no
    longer stored, removed: `image rm` and `prune` leave them, `gc` and `image prune` call
    this. The paths removed."""
    gone = []
    d, marks = _cache_dir(), _cache_dir() / "parents"
    keys = [p for p in d.iterdir() if p.is_file()] if d.is_dir() else []
    for path in keys + (list(marks.iterdir()) if marks.is_dir() else []):
        try:  # a key file holds the image id; a mark is named after it
            if images.find(path.read_text().strip() if path.parent == d else "sha256:" + path.name) is not None:
                continue
        except (OSError, MiniboxError):
            pass  # unreadable, or not an image id: it names nothing
        path.unlink(missing_ok=True)
        gone.append(str(path))
    return gone


def intermediate_ids() -> set[str]:
    d = _cache_dir() / "parents"
    return {"sha256:" + p.name for p in d.iterdir()} if d.is_dir() else set()
