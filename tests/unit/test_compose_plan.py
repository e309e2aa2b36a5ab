"""plan.compose: a compose document as services, their `minibox run` flags and their order, checked without running anything."""

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import compose

DOC = {
    "services": {
        "web": {"image": "nginx", "ports": ["8080:80", {"target": 443, "published": 8443, "host_ip": "127.0.0.1"}],
                "depends_on": {"db": {"condition": "service_healthy"}}, "environment": {"MODE": "prod", "EMPTY": None},
                "volumes": ["./site:/usr/share/nginx/html:ro", "data:/data"], "command": "nginx -g 'daemon off;'",
                "networks": {"front": {"aliases": ["www"]}, "default": None}},
        "db": {"build": {"context": "db", "args": {"V": "1"}}, "environment": ["POSTGRES_PASSWORD=x"],
               "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval": "1s", "retries": 5},
               "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "64m"}}}},
        "tool": {"image": "busybox", "profiles": ["debug"]},
    },
    "networks": {"front": {}},
    "volumes": {"data": {}},
}


def test_services_become_run_flags_named_and_labelled_as_compose_names_them():
    p = compose.load(DOC, "shop", "/srv/shop")
    assert [s.name for s in p.services] == ["db", "web"]  # db first: web depends on it; tool's profile is off
    web = p.service("web")
    assert web.container("shop") == "shop-web-1" and web.command == ("nginx", "-g", "daemon off;")
    flags = " ".join(web.flags)
    assert "--network shop_front --network-alias web --network-alias www" in flags
    assert "-p 8080:80 -p 127.0.0.1:8443:443" in flags
    assert "-v /srv/shop/site:/usr/share/nginx/html:ro -v shop_data:/data" in flags
    assert "-e MODE=prod -e EMPTY" in flags and "--label com.docker.compose.project=shop" in flags
    assert web.networks == ("front", "default") and web.depends_on == (("db", "service_healthy"),)
    db = p.service("db")
    assert db.image == "shop-db" and db.build["context"] == "/srv/shop/db"
    assert "--health-cmd pg_isready --health-interval 1s --health-retries 5" in " ".join(db.flags)
    assert "--cpus 0.5 -m 64m" in " ".join(db.flags)
    assert ("front", "shop_front", False) in p.networks and ("data", "shop_data", False) in p.volumes
    assert [s.name for s in compose.load(DOC, "shop", "/srv/shop", ("debug",)).services] == ["db", "tool", "web"]


def test_network_mode_service_is_that_services_container():
    doc = {"services": {"a": {"image": "x"}, "b": {"image": "x", "network_mode": "service:a", "depends_on": ["a"]}}}
    b = compose.load(doc, "p", "/p").service("b")
    assert "--network container:p-a-1" in " ".join(b.flags) and b.networks == ()


def test_a_changed_service_changes_its_hash_and_only_its_own():
    a = compose.load(DOC, "shop", "/srv/shop")
    doc = compose.merge(DOC, {"services": {"web": {"environment": {"MODE": "dev"}}}})
    b = compose.load(doc, "shop", "/srv/shop")
    assert a.service("web").config_hash != b.service("web").config_hash
    assert a.service("db").config_hash == b.service("db").config_hash
    assert b.service("web").flags.count("-e") == 2  # merged key by key: MODE changed, EMPTY kept


def test_interpolation_and_dotenv():
    env = {"TAG": "1.2", "EMPTY": ""}
    got = compose.interpolate({"a": "app:${TAG}", "b": "${NOPE:-dflt}", "c": "${EMPTY-set}", "d": "$$HOME",
                               "e": "${TAG:+yes}", "f": ["$TAG"]}, env)
    assert got == {"a": "app:1.2", "b": "dflt", "c": "", "d": "$HOME", "e": "yes", "f": ["1.2"]}
    with pytest.raises(InvalidSpec, match="required variable NEED is missing a value: set it"):
        compose.interpolate("${NEED:?set it}", env)
    assert compose.dotenv("# c\nA=1\nexport B='two words'\nC=\"q\"\n") == {"A": "1", "B": "two words", "C": "q"}
    assert compose.project_name("", {}, "/home/u/My App") == "myapp"
    assert compose.project_name("", {"name": "named"}, "/x") == "named"


@pytest.mark.parametrize("doc, message", [
    ({"services": {}}, "has no services"),
    ({"services": {"a": {"image": "x", "depends_on": ["b"]}}}, 'depends on undefined service "b"'),
    ({"services": {"a": {"image": "x", "depends_on": ["b"]}, "b": {"image": "x", "depends_on": ["a"]}}},
     "dependency cycle: a -> b -> a"),
    ({"services": {"a": {"image": "x", "bogus": 1}}}, "unsupported key: bogus"),
    ({"services": {"a": {}}}, "neither an image nor a build"),
    ({"services": {"a": {"image": "x", "volumes": ["undeclared:/d"]}}}, 'volume "undeclared"'),
    ({"services": {"a": {"image": "x", "networks": ["nope"]}}}, 'network "nope"'),
    ({"servics": {}}, "unknown top-level key: servics"),
    ({"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "ready"}}}, "b": {"image": "x"}}},
     'condition "ready"'),
])
def test_bad_files_are_one_line(doc, message):
    with pytest.raises(InvalidSpec, match=message):
        compose.load(doc, "p", "/p")
