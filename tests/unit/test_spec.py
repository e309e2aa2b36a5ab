"""Validation of names, -e, -w, --hostname; env, /etc/hosts and resolv.conf contents."""

import random

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import spec


def test_names():
    assert spec.validate_name("web-1.a_b") == "web-1.a_b"
    for bad in ("-web", "we b", "web/1", "", "a" * 129):
        with pytest.raises(InvalidSpec, match="invalid container name"):
            spec.validate_name(bad)


def test_generated_names_avoid_taken():
    rng = random.Random(1)
    taken = set()
    for _ in range(50):
        n = spec.generate_name(taken, rng.randrange)
        assert n not in taken and spec.validate_name(n)
        taken.add(n)
    assert spec.generate_name(lambda n: not n.endswith("7"), rng.randrange).endswith("7")  # a predicate works


def test_env_parsing():
    assert spec.parse_env(["A=1", "B=", "C=x=y"], {}) == ("A=1", "B=", "C=x=y")
    assert spec.parse_env(["HOME"], {"HOME": "/h"}) == ("HOME=/h",)
    assert spec.parse_env(["UNSET"], {}) == ()
    for bad in ("=x", "A B=1", ""):
        with pytest.raises(InvalidSpec, match="invalid environment variable"):
            spec.parse_env([bad], {})


def test_workdir_and_hostname():
    assert spec.validate_workdir("/tmp") == "/tmp"
    with pytest.raises(InvalidSpec, match='"tmp" is not absolute'):
        spec.validate_workdir("tmp")
    assert spec.validate_hostname("my-box") == "my-box"
    with pytest.raises(InvalidSpec, match="invalid hostname"):
        spec.validate_hostname("bad_host!")


def test_container_env_defaults_and_overrides():
    env = dict(e.split("=", 1) for e in spec.container_env(("PATH=/x", "A=1"), "h1", tty=True))
    assert env == {"PATH": "/x", "HOSTNAME": "h1", "TERM": "xterm", "A": "1", "HOME": "/root"}


def test_hosts_file():
    text = spec.hosts_file("web", "10.0.0.2", (("db", "10.0.0.3"),))  # --add-host db:10.0.0.3
    assert "10.0.0.2\tweb\n" in text and "10.0.0.3\tdb\n" in text and text.startswith("127.0.0.1\tlocalhost")
    assert "127.0.0.1\tlocalhost web" in spec.hosts_file("web")


def test_resolv_conf_drops_loopback():
    out = spec.resolv_conf("search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n").splitlines()
    assert "nameserver 192.0.2.53" in out and "search lan" in out
    assert "nameserver 127.0.0.53" not in out and "# dropped loopback nameservers: 127.0.0.53" in out
    only_loopback = spec.resolv_conf("nameserver 127.0.0.1\n")
    assert "nameserver 8.8.8.8" in only_loopback
