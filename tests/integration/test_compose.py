"""`minibox compose`: a compose file becomes a running application of ordinary minibox objects, as Docker Compose makes one.

What each test holds minibox to, from Docker Compose v2: containers named PROJECT-SERVICE-1
on a network PROJECT_default, found by the label com.docker.compose.project; services
reach each other by service name; a service built from a Dockerfile; depends_on with
service_healthy waits for the health check (a one-shot job is gated on it); `up` again
changes only what the file changed; a failed `up` takes back what it made; `down -v`
leaves nothing.
"""

from __future__ import annotations

import json

import pytest

from conftest import mb, sh, wait_for

pytestmark = pytest.mark.usefixtures("no_unnamed_images")

COMPOSE = """\
name: shop
services:
  web:
    build: ./web
    ports: ["18080:80"]
    environment:
      GREETING: ${GREETING:-hello}
    depends_on:
      api:
        condition: service_healthy
  api:
    image: busybox
    command: ["sh", "-c", "echo api-ready > /www/index.html && exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1/ >/dev/null"]
      interval: 200ms
      retries: 30
    volumes: ["data:/www"]
  job:
    image: busybox
    command: ["sh", "-c", "wget -q -O- http://api/ > /www/fetched-by-job"]
    volumes: ["data:/www"]
    depends_on:
      api:
        condition: service_healthy
volumes:
  data: {}
"""


def _ids() -> dict[str, str]:
    rows = mb("ps", "-a", "--filter", "label=com.docker.compose.project=shop", "--format", "{{.Names}} {{.ID}}",
              check=True).stdout.split("\n")
    return dict(r.split() for r in rows if r.strip())


def test_compose_up_wires_services_and_down_removes_them(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text('FROM busybox\nRUN mkdir /www && echo from-web > /www/index.html\n'
                                                 'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n')
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    f = str(tmp_path / "compose.yaml")
    try:
        up = mb("compose", "-f", f, "up", "-d", check=True, timeout=300)
        assert "Network shop_default  Created" in up.stdout and "Container shop-api-1  Healthy" in up.stdout
        ids = _ids()
        assert set(ids) == {"shop-web-1", "shop-api-1", "shop-job-1"}
        # the one-shot job ran once api was healthy, found it by name, and wrote to the named volume
        assert wait_for(lambda: mb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "shop-job-1",
                                   check=True).stdout.strip() == "exited 0", timeout=30)
        assert mb("compose", "-f", f, "exec", "-T", "api", "cat", "/www/fetched-by-job", check=True).stdout == \
            "api-ready\n"
        assert sh("curl -s -m 5 http://127.0.0.1:18080/").stdout == "from-web\n"  # the built image, published
        # the services find each other by name, on the project's network
        got = mb("compose", "-f", f, "exec", "-T", "web", "wget", "-q", "-O-", "http://api/", check=True).stdout
        assert got == "api-ready\n"
        assert "shop-api-1" in mb("compose", "-f", f, "ps", check=True).stdout
        assert json.loads(mb("network", "inspect", "shop_default", check=True).stdout)
        # unchanged: nothing recreated; a changed service: only it
        again = mb("compose", "-f", f, "up", "-d", check=True, timeout=120).stdout
        assert "Container shop-web-1  Running" in again and _ids() == ids
        (tmp_path / ".env").write_text("GREETING=changed\n")
        changed = mb("compose", "-f", f, "up", "-d", check=True, timeout=120).stdout
        assert "Container shop-web-1  Recreate" in changed and "Container shop-api-1  Running" in changed
        now = _ids()
        assert now["shop-api-1"] == ids["shop-api-1"] and now["shop-web-1"] != ids["shop-web-1"]
        env = mb("compose", "-f", f, "exec", "-T", "web", "sh", "-c", "echo $GREETING", check=True).stdout
        assert env == "changed\n"
        logs = mb("compose", "-f", f, "logs", "api", check=True).stdout
        assert all(line.startswith("shop-api-1") for line in logs.splitlines())
    finally:
        down = mb("compose", "-f", f, "down", "-v", "--rmi", "local", timeout=120)
    assert down.returncode == 0, down.stderr
    assert _ids() == {} and mb("network", "inspect", "shop_default").returncode != 0
    assert mb("volume", "inspect", "shop_data").returncode != 0 and mb("image", "inspect", "shop-web").returncode != 0
    assert wait_for(lambda: sh("curl -s -m 1 http://127.0.0.1:18080/", check=False).returncode != 0)


def test_a_failed_up_names_the_service_and_leaves_nothing(tmp_path):
    """A port another process holds: Docker's one line, the service named, and what this up
    made (the network, the container before it) taken back."""
    import socket

    (tmp_path / "compose.yaml").write_text("services:\n  first:\n    image: busybox\n    command: sleep 1000\n"
                                           "  second:\n    image: busybox\n    command: sleep 1000\n"
                                           "    ports: [\"18093:80\"]\n    depends_on: [first]\n")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 18093))
        taken.listen(1)
        res = mb("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "fails", "up", "-d", timeout=120)
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
    assert "service second:" in res.stderr and "18093" in res.stderr
    assert "Rolled back" in res.stdout
    assert mb("ps", "-aq", check=True).stdout == "" and mb("network", "inspect", "fails_default").returncode != 0


def test_a_bad_compose_file_is_one_line(tmp_path):
    for text, message in (("services:\n  a:\n    image: busybox\n    depends_on: [b]\n",
                           'service "a" depends on undefined service "b"'),
                          ("services:\n  a: [\n", "is not valid YAML"),
                          ("services:\n  a:\n    image: busybox\n    ports: [\"${PORT:?set PORT}\"]\n",
                           "required variable PORT is missing a value: set PORT")):
        (tmp_path / "compose.yaml").write_text(text)
        res = mb("compose", "-f", str(tmp_path / "compose.yaml"), "up", "-d")
        assert res.returncode != 0 and res.stderr.count("\n") == 1 and message in res.stderr, (text, res.stderr)
        assert mb("ps", "-aq", check=True).stdout == ""


def test_the_readme_build_and_compose_lines_run(tmp_path):
    """The "Using it" block that builds an image and brings up a two-service app, run as
    written (minibox as this checkout's, the paths below a temporary directory)."""
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("An image of your own, and an application", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    script = f'minibox() {{ {sys.executable} -m minibox "$@"; }}\nset -e\ncd {tmp_path}\n' + block
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("hello\n") == 2 and "made layer 2" in res.stdout  # curl's, and probe's by name
    assert "minibox run -d --name app-web-1 --network app_default" in res.stdout
    assert mb("ps", "-aq", check=True).stdout == "" and mb("image", "inspect", "site:1").returncode != 0
