"""The verbs about minibox and this host rather than one object: version and info."""

import os
import platform


from minibox import config, store
from minibox.cli.app import app, say, version_text
from minibox.engine import lifecycle


@app.command()
def version() -> None:
    """minibox's version, and what it runs on: Python, the kernel, the OCI runtime spec it speaks."""
    say(version_text())
    say(f" Python:          {platform.python_version()}")
    say(f" Kernel:          {os.uname().release}")
    say(" OCI runtime spec: 1.0.2 (minibox-oci speaks runc's command line)")


@app.command()
def info() -> None:
    """This host as minibox sees it: containers by state, images, networks, storage, cgroups, firewall, DNS."""
    lifecycle.require_root()
    from minibox.image import store as images
    from minibox.model import CREATED, EXITED, RUNNING
    from minibox.net import dns
    from minibox.runtime import cgroups

    counts = {RUNNING: 0, "paused": 0, EXITED: 0, CREATED: 0}
    for rec in store.all_records():
        try:
            st = lifecycle.refresh(rec.id)
        except Exception:  # noqa: BLE001 - a damaged container is still counted, as stopped
            counts[EXITED] += 1
            continue
        if st.status == RUNNING and cgroups.frozen(cgroups.existing_dirs(config.cgroup_parent(), rec.id)):
            counts["paused"] += 1
        else:
            counts[st.status if st.status in counts else EXITED] += 1
    total = sum(counts.values())
    lay = cgroups.layout()
    server = dns.server_pid()
    lines = [
        f"Containers: {total}",
        f" Running: {counts[RUNNING]}",
        f" Paused: {counts['paused']}",
        f" Stopped: {counts[EXITED] + counts[CREATED]}",
        f"Images: {len(images.all_images())}",
        f"Networks: {len(store.all_networks())} (default: {config.default_network()})",
        f"Server Version: {version_text().split()[-1]}",
        "Storage Driver: overlay2 (one overlay per container, layers stored once each)",
        f"Cgroup Version: {lay.version[1:] if lay.version.startswith('v') else lay.version}",
        f"Firewall Backend: {config.firewall_backend()}",
        f"Embedded DNS: aardvark-dns{f' (PID {server})' if server else ' (not running: no user network has containers)'}",
        "Runtimes: minibox-oci (runc's command line)",
        "Init Binary: tini-static (--init)",
        f"Kernel Version: {os.uname().release}",
        f"CPUs: {os.cpu_count()}",
        f"Minibox Root Dir: {config.paths().root}",
    ]
    say("\n".join(lines))
