"""`minibox gc`: find what a crash left behind, by name prefix and owner tag, and remove it.

A kill -9 of minibox, or a reboot, can leave objects whose owner no longer exists, or a
container stuck half-way. Every object carries its owner's id, so none needs minibox's
state to be found. One sweep per kind, each guarded: a sweep that fails is reported and
the others still run.

  stuck containers   records whose creation was interrupted, or whose removal was: finished
  orphan containers  directories without a record: torn down by id (processes, endpoint, cgroups)
  shims              minibox-shim processes of containers that no longer exist
  firewall           elements and rules tagged with an unknown owner
  cgroups, veths     named after an unknown id
  networks           bridges and firewall elements of a network without a record
  addresses          free only on evidence their holder is gone (not from what the file says)
  names, ports       files naming an unknown id; a name file a record needs is written again
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket

from minibox import config, files, store
from minibox.engine import lifecycle, removal
from minibox.errors import Damaged
from minibox.model import CREATED, CREATING, EXITED, REMOVING, RUNNING
from minibox.plan.steps import Kill, Logged, RemovePath, Step

TAG = re.compile(r"minibox ctr ([0-9a-f]{12})")
ID = re.compile(r"[0-9a-f]{64}")


def _known() -> set[str]:
    """Short ids of containers with a record, readable or damaged: theirs is theirs to keep."""
    cni = config.paths().cni
    attachments = [p.stem for p in cni.glob("*.json")] if cni.is_dir() else []
    return {cid[:12] for cid in store.container_ids() + attachments}


def sweep_stuck() -> tuple[list[Step], list[str]]:
    """Creations a killed `run` or `create` left (refresh marks them exited), and interrupted
    removals: removed, as `rm -f` would. A container being started again is not a creation:
    a `start` that died leaves it exited, never removed."""
    c = lifecycle.Collector()
    for cid, rec in store.entries().items():
        if isinstance(rec, Damaged):
            continue
        try:
            before = store.load_state(cid)
            state = lifecycle.refresh(cid)
        except Exception as e:  # noqa: BLE001
            c.errors.append(f"{cid[:12]}: {e}")
            continue
        crashed = before.status in (CREATING, CREATED) and state.status == EXITED and not before.again
        if crashed or state.status == REMOVING:
            c.attempt(f"removing {rec.name}", removal.teardown, cid, rec, state)
    return c.result


def sweep_orphan_dirs() -> tuple[list[Step], list[str]]:
    c = lifecycle.Collector()
    d = config.paths().containers
    for entry in (d.iterdir() if d.is_dir() else ()):
        if ID.fullmatch(entry.name) and not (entry / "config.json").exists():
            c.attempt(f"container directory {entry.name[:12]}", removal.teardown, entry.name)
        elif not ID.fullmatch(entry.name) and entry.is_dir():
            import shutil

            shutil.rmtree(entry, ignore_errors=True)
            c.steps.append(RemovePath(str(entry), "tree", why="not a container's directory"))
    return c.result


def sweep_shims() -> tuple[list[Step], list[str]]:
    from minibox.runtime import procs

    steps: list[Step] = []
    root = str(config.paths().containers) + "/"
    for pid, cdir in procs.all_shims().items():
        if cdir.startswith(root) and not os.path.exists(os.path.join(cdir, "config.json")):
            try:
                os.kill(pid, signal.SIGKILL)  # its PID 1 follows (parent-death signal)
                steps.append(Kill(str(pid), why="the shim of a container that no longer exists"))
            except ProcessLookupError:
                pass
    return steps, []


def sweep_proxies() -> tuple[list[Step], list[str]]:
    """Userland proxies (net.proxy) of containers that no longer exist or no longer run:
    a `run` killed before its undo, or a release that failed, left them holding ports."""
    from minibox.runtime import procs

    steps: list[Step] = []
    root = str(config.paths().containers) + "/"
    for cdir, pids in procs.helpers().proxies.items():
        cdir = cdir.decode(errors="replace")
        if not cdir.startswith(root):
            continue  # another state root's
        try:
            running = lifecycle.refresh(os.path.basename(cdir)).status == RUNNING
        except Exception:  # noqa: BLE001 - gone or damaged: its proxies go
            running = False
        for pid in pids if not running else ():
            try:
                os.kill(pid, signal.SIGKILL)
                steps.append(Kill(str(pid), why="the userland proxy of a container that no longer runs"))
            except ProcessLookupError:
                pass
    return steps, []


def sweep_firewall() -> tuple[list[Step], list[str]]:
    from minibox.net import firewall
    from minibox.plan import firewall as fwplan

    c = lifecycle.Collector()
    known = _known()
    for fw in firewall.BACKENDS:
        listing = firewall.backend(fw).listing()
        gone = {short for short in TAG.findall(listing)} - known
        for short in sorted(gone):
            keys = tuple(firewall.backend(fw).owned_elements(f"minibox ctr {short}"))
            # The desired state (the port index) already leaves out owners that are gone.
            c.attempt(f"{fw} rules of {short}", lambda k=keys, f=fw: (firewall.change(
                f, lambda ff: fwplan.remove_elements(ff, k, owner="")), []))
    return c.result


def sweep_cgroups() -> tuple[list[Step], list[str]]:
    from minibox.runtime import cgroups

    c = lifecycle.Collector()
    known = _known()
    parent = config.cgroup_parent()
    for root in cgroups.all_roots():
        top = f"{root}/{parent}"
        for name in (os.listdir(top) if os.path.isdir(top) else ()):
            if ID.fullmatch(name) and name[:12] not in known:
                d = f"{top}/{name}"
                for pid in cgroups.procs([d]):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                c.attempt(f"cgroup {d}", cgroups.remove, [d], config.cgroup_parent())
    return c.result


def sweep_links() -> tuple[list[Step], list[str]]:
    from minibox.net import links

    c = lifecycle.Collector()
    known = _known()
    for _index, name in socket.if_nameindex():  # this network namespace's links (sysfs may show another's)
        if re.fullmatch(r"mbx[0-9a-f]{12}", name) and name[3:] not in known:
            c.attempt(f"link {name}", links.remove_link, name, "a veth whose container no longer exists")
    return c.result


NET_TAG = re.compile(r"minibox net ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def sweep_networks() -> tuple[list[Step], list[str]]:
    """Bridges and firewall elements of networks whose record is gone: a `network create`
    killed after it made the bridge (named after the network's id) and before it saved the
    record. Under the network lock, so a create in progress is never mistaken for one."""
    from minibox.net import firewall, links
    from minibox.plan import firewall as fwplan

    c = lifecycle.Collector()
    with store.network_lock():
        nets = store.all_networks()
        bridges, names = {n.bridge for n in nets}, {n.name for n in nets}
        for _index, name in socket.if_nameindex():
            if (re.fullmatch(r"mbx-[0-9a-f]{11}", name) or name == config.DEFAULT_BRIDGE) and name not in bridges:
                c.attempt(f"bridge {name}", links.remove_link, name, "the bridge of a network whose record is gone")
        for fw in firewall.BACKENDS:
            if not set(NET_TAG.findall(firewall.backend(fw).listing())) - names:
                continue
            if any(n.firewall == fw for n in nets) or fw == "nftables":  # rewritten from the records
                c.attempt(f"{fw} rules of removed networks", lambda f=fw: (firewall.change(
                    f, fwplan.reassert, force_full=True, networks_change=True), []))
            else:  # no iptables network is left: minibox's chains go, as `network rm` of the last does
                from minibox.net.firewall import iptables

                c.attempt("iptables chains of removed networks", lambda: ([], iptables.teardown() +
                                                                           iptables.teardown(v6=True)))
    return c.result


def sweep_addresses() -> tuple[list[Step], list[str]]:
    from minibox.net import ipam_store

    steps: list[Step] = []
    root = config.paths().ipam
    for d in (root.iterdir() if root.is_dir() else ()):
        if d.is_dir():
            for ip in ipam_store.drop_stale(d.name):
                steps.append(RemovePath(str(d / ip), why="an address no container holds (no record names it, "
                                                        "and its holder's directory is gone)"))
    for net in store.all_networks():  # and the files the records need, written again
        files.make_dirs(root / net.name)
        with store.locked(root / net.name / ".lock"):
            for ip, cid in ipam_store.restore(net.name):
                steps.append(Logged(f"echo {cid} > {root / net.name / ip}",
                                    why=f"{ip} is held by {cid[:12]}, whose record names it: its file again"))
    return steps, []


def sweep_index_files() -> tuple[list[Step], list[str]]:
    """Name and port files whose holder is gone: no record owns the name, or the port."""
    steps: list[Step] = []
    records = store.all_records()
    names = {r.name: r.id for r in records}
    for sub, what in (("names", "a name"), ("ports", "a host port")):
        d = config.paths().root / sub
        for f in (d.iterdir() if d.is_dir() else ()):
            if f.name.startswith("."):
                continue
            try:
                owner = f.read_bytes().decode(errors="replace").split()[0] if f.stat().st_size else ""
            except (OSError, IndexError):
                owner = ""
            alive = ID.fullmatch(owner) and config.paths().container(owner).exists()
            claimed = (sub == "names" and f.name in names) or alive
            if not claimed:
                f.unlink(missing_ok=True)
                steps.append(RemovePath(str(f), why=f"{what} held by a container that no longer exists"))
    # names/ is an index of the records: a name file missing, emptied or garbled is written
    # again from the record that has the name
    for name, cid in names.items():
        if store.owner_of_name(name) != cid:
            store.named_by_record(name)
            steps.append(Logged(f"echo {cid} > {config.paths().root}/names/{name}",
                                why=f"the name {name} is {cid[:12]}'s (its record says so): its index file again"))
    return steps, []


def sweep_unfinished_writes() -> tuple[list[Step], list[str]]:
    """What a killed command left half written: layers a pull, load or import was unpacking
    (and an image file's new copy, see images.clean_tmp), and the new copy of any state file
    whose writer died before renaming it into place (see minibox.files)."""
    from minibox.image import store as images

    steps: list[Step] = [RemovePath(x, "tree", why="a layer an interrupted pull or load was unpacking")
                         for x in images.clean_tmp()]
    p = config.paths()
    where = [p.root, p.networks, p.root / "names", p.root / "ports", p.cni, p.root / "cache", p.libexec]
    for parent in (p.containers, p.volumes):  # each one's own directory, not what it holds (upper, _data)
        where += sorted(parent.iterdir()) if parent.is_dir() else []
    errors = []
    for half in (x for d in where for x in files.leftovers(d)):
        try:
            half.unlink(missing_ok=True)
            steps.append(RemovePath(str(half), why="a file's new copy, half written by a command that was killed"))
        except OSError as e:
            errors.append(f"removing {half}: {e.strerror}")
    return steps, errors


def sweep_build_cache() -> tuple[list[Step], list[str]]:
    from minibox.engine import building

    return [RemovePath(p, why="a build step's cache entry for an image that is gone") for p in building.forget_gone()], []


def sweep_dns() -> tuple[list[Step], list[str]]:
    """DNS lines of containers that hold no address any more, and a DNS server serving nothing."""
    from minibox.net import dns

    if not dns.directory().is_dir():
        return [], []
    live = set()
    for rec in store.all_records():
        with contextlib.suppress(Exception):
            if lifecycle.refresh(rec.id).status in (RUNNING, CREATED):
                live.add(rec.id)
    had = dns.server_pid()
    done = dns.gc(live)
    steps = [Logged(line, why="a container gone without its DNS line going") for line in done]
    if had and not dns.server_pid():
        steps.append(Kill(had, "TERM", why="aardvark-dns, serving no network any more"))
    return steps, []


SWEEPS = (("stuck containers", sweep_stuck), ("orphan containers", sweep_orphan_dirs), ("shims", sweep_shims),
          ("userland proxies", sweep_proxies),
          ("firewall", sweep_firewall), ("cgroups", sweep_cgroups), ("veths", sweep_links), ("networks", sweep_networks),
          ("addresses", sweep_addresses), ("names and ports", sweep_index_files), ("unfinished writes", sweep_unfinished_writes),
          ("build cache", sweep_build_cache), ("dns", sweep_dns))


def restart_orphans() -> tuple[list[Step], list[str]]:
    """`gc --restart`: start again the containers whose restart policy would have, had their
    supervisor (the shim) not died with them. What a systemd timer or cron calls to keep
    `--restart always` containers up without a daemon."""
    from minibox.engine import start
    from minibox.plan import restart as policy

    c = lifecycle.Collector()
    for cid, rec in store.entries().items():
        if isinstance(rec, Damaged):
            continue
        try:
            state = lifecycle.refresh(cid)
        except Exception:  # noqa: BLE001 - one container's trouble must not stop the others
            continue
        pol = policy.parse(rec.spec.restart or "no")
        if state.status == EXITED and state.supervisor_died and \
                policy.should_restart(pol, state.exit_code, state.restart_count, state.stopped_by_user):
            c.attempt(f"restarting {rec.name}", lambda i=cid, n=state.restart_count: (
                [Logged(f"minibox start {i[:12]}", why=f"{rec.name}'s restart policy ({rec.spec.restart}), which "
                                                       "its dead supervisor could not carry out")]
                if start.run_again(i, n + 1).status == RUNNING else [], []))
    return c.result


def run() -> tuple[list[Step], list[str]]:
    c = lifecycle.Collector()
    with store.global_lock():
        pass  # wait for a removal in progress to finish its name bookkeeping
    for what, sweep in SWEEPS:
        c.attempt(what, sweep)
    return c.result
