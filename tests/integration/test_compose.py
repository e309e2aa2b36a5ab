"""`minibox compose`: a compose file becomes a running application of ordinary minibox objects, as Docker Compose makes one.

What each test holds minibox to, from Docker Compose v2: containers named PROJECT-SERVICE-1
on a network PROJECT_default, found by the label com.docker.compose.project; services
reach each other by service name; a service built from a Dockerfile; depends_on with
service_healthy waits for the health check; `up` again changes only what the file
changed; `down -v` leaves nothing.
"""

from __future__ import annotations

import json

from conftest import mb, sh, wait_for

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
        assert set(ids) == {"shop-web-1", "shop-api-1"}
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
