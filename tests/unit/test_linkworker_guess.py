"""Which command lines fork the pyroute2 helper early: a guess for speed, never a parse."""

import pytest

from minibox.model import NetworkMode
from minibox.net import linkworker


@pytest.fixture
def forks(monkeypatch):
    made = []
    monkeypatch.setattr(linkworker, "Worker", lambda: made.append(1) or "worker")
    monkeypatch.setattr(linkworker, "_early", None)

    def guess(*args):
        made.clear()
        linkworker.prefetch(list(args))
        linkworker._early = None
        return bool(made)

    return guess


def test_a_bridged_run_or_create_forks_the_helper(forks):
    assert forks("run", "--rm", "busybox", "true")
    assert forks("run", "-d", "-p", "8080:80", "--name", "web", "busybox", "httpd", "-f", "-p", "80")
    assert forks("create", "--network", "mynet", "busybox")
    assert forks("run", "--net=mynet", "busybox")


def test_none_host_and_other_verbs_do_not(forks):
    assert not forks("run", "--rm", "--network", "none", "busybox", "true")
    assert not forks("run", "--network=host", "busybox")
    assert not forks("create", "--net", "none", "busybox")
    assert not forks("exec", "web", "true")
    assert not forks("ps")
    assert not forks()


def test_take_hands_it_over_once_and_ends_it_for_a_start_without_a_bridge(monkeypatch):
    closed = []

    class Fake:
        def close(self, kill=False):
            closed.append(kill)

    monkeypatch.setattr(linkworker, "_early", Fake())
    assert isinstance(linkworker.take(NetworkMode.parse("bridge")), Fake)
    assert linkworker.take(NetworkMode.parse("bridge")) is None  # handed over once
    monkeypatch.setattr(linkworker, "_early", Fake())
    assert linkworker.take(NetworkMode.parse("none")) is None and closed == [True]
