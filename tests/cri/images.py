"""critest's images, built here from busybox-static and tools.c, and pushed to a registry of the gate's own.

critest pulls from registry.k8s.io and gcr.io; the gate's containerd takes a docker-registry
on 127.0.0.1 as the mirror of both. What each spec looks for in its image (from
cri-tools v1.26.1's pkg/validate) is what each image here holds:

    pause:3.6                       /pause, user 65535 (the sandbox image)
    e2e-test-images/busybox:1.29-2  busybox with its applets as hard links, pgrep and ipcs
    e2e-test-images/nginx:1.14-2    "nginx: master process" on port 80, /var/run/nginx.pid
    e2e-test-images/httpd:2.4.39-4  an HTTP server on port 80, its command line in its log
    e2e-test-images/nonewprivs:1.3  a setuid-root program printing its effective uid
    k8s-staging-cri-tools/hostnet-nginx-amd64          the nginx, on port 12003
    k8s-staging-cri-tools/test-image-predefined-group  uid 1000, in group 50000 by /etc/group
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import oci  # noqa: E402 - the tests' OCI layout writer and registry

E2E = "e2e-test-images"
STAGING = "k8s-staging-cri-tools"


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _busybox(root: Path) -> None:
    """busybox-static with every applet a hard link (as the e2e image has them), pgrep and ipcs."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "proc", "sys", "dev", "tmp", "root",
              "var/run", "var/www"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    _sh("chroot", str(root), "/bin/busybox", "--install")
    for name in ("pgrep", "ipcs"):
        os.link(root / "bin/tools", root / "bin" / name)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")


def build(work: Path, tools: Path) -> dict[str, tuple[Path, dict]]:
    """Each image's root directory and config, by its upstream name."""
    out: dict[str, tuple[Path, dict]] = {}

    def image(name: str, config: dict, extra=None) -> None:
        root = work / name.replace("/", "_").replace(":", "_")
        root.mkdir(parents=True)
        if name != "pause:3.6":
            (root / "bin").mkdir()
            shutil.copy2(tools, root / "bin/tools")
            _busybox(root)
        if extra:
            extra(root)
        out[name] = (root, config)

    def pause(root: Path) -> None:
        shutil.copy2(tools, root / "pause")

    def nginx(root: Path) -> None:
        os.link(root / "bin/tools", root / "usr/sbin/nginx")

    def nnp(root: Path) -> None:
        shutil.copy2(tools, root / "usr/local/bin/nnp")
        os.chmod(root / "usr/local/bin/nnp", 0o4755)

    def www(root: Path) -> None:
        (root / "var/www/index.html").write_text("<html><body><h1>It works!</h1></body></html>\n")
        # Apache's first lines name its command line; the multi-container log spec looks for it.
        script = root / "usr/local/bin/httpd-foreground"
        script.write_text("#!/bin/sh\necho \"[mpm_event:notice] AH00094: Command line: 'httpd -D FOREGROUND'\" >&2\n"
                          "exec httpd -f -v -p 80 -h /var/www\n")
        script.chmod(0o755)

    def group(root: Path) -> None:
        with open(root / "etc/passwd", "a") as f:
            f.write("default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")
        with open(root / "etc/group", "a") as f:
            f.write("default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")

    path_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    image("pause:3.6", {"Entrypoint": ["/pause"], "User": "65535:65535"}, pause)
    image(f"{E2E}/busybox:1.29-2", {"Cmd": ["sh"], "Env": path_env})
    image(f"{E2E}/nginx:1.14-2", {"Cmd": ["nginx", "-g", "daemon off;"], "Env": path_env,
                                  "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM"}, nginx)
    image(f"{E2E}/httpd:2.4.39-4", {"Cmd": ["httpd-foreground"], "Env": path_env,
                                    "ExposedPorts": {"80/tcp": {}}}, www)
    image(f"{E2E}/nonewprivs:1.3", {"Cmd": ["/usr/local/bin/nnp"], "Env": path_env}, nnp)
    image(f"{STAGING}/hostnet-nginx-amd64:latest", {"Cmd": ["nginx", "-g", "daemon off;"],
                                                    "Env": path_env + ["NGINX_PORT=12003"]}, nginx)
    image(f"{STAGING}/test-image-predefined-group:latest", {"Cmd": ["sh"], "Env": path_env, "User": "1000"}, group)
    return out


def push(images: dict[str, tuple[Path, dict]], registry_host: str, work: Path) -> None:
    """Each image into the registry under its upstream path, without the registry's host."""
    for name, (root, config) in images.items():
        lay = work / f"layout-{root.name}"
        lay.mkdir()
        desc = oci.image_manifest(lay, [oci.tar_dir(root)], config)
        oci.write_layout(lay, [desc], "image")
        oci.skopeo("copy", "--dest-tls-verify=false", f"oci:{lay}:image", f"docker://{registry_host}/{name}")
