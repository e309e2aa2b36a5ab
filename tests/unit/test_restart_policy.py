"""Docker's restart policies: parsing, the decision after an exit, and the backoff. Pure."""

import re

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import restart as policy
from minibox.plan.restart import Policy


def test_parse_spells_docker_s_policies():
    assert policy.parse("no") == Policy("no", 0) and policy.parse("") == Policy("no", 0)
    assert policy.parse("on-failure") == Policy("on-failure", 0)
    assert policy.parse("on-failure:3") == Policy("on-failure", 3) and str(policy.parse("on-failure:3")) == "on-failure:3"
    assert policy.parse("always").name == "always" and policy.parse("unless-stopped").name == "unless-stopped"


@pytest.mark.parametrize("text, message", [
    ("sometimes", 'invalid --restart "sometimes": use no, on-failure[:N], always or unless-stopped'),
    ("always:3", "only on-failure takes a count"),
    ("on-failure:0", "the count must be a positive number"),
    ("on-failure:x", "the count must be a positive number"),
])
def test_parse_refuses_what_docker_refuses(text, message):
    with pytest.raises(InvalidSpec, match=re.escape(message)):
        policy.parse(text)


def test_check_refuses_rm_but_takes_the_foreground_as_docker():
    assert policy.check("always", remove=False, detach=True) == "always"
    with pytest.raises(InvalidSpec, match="conflicting options: --restart always and --rm"):
        policy.check("always", remove=True, detach=True)
    assert policy.check("on-failure", remove=False, detach=False) == "on-failure"
    assert policy.check("no", remove=True, detach=False) == "no"


def test_should_restart():
    on3 = Policy("on-failure", 3)
    assert policy.should_restart(on3, 1, 0, False) and policy.should_restart(on3, 1, 2, False)
    assert not policy.should_restart(on3, 1, 3, False)  # three restarts done
    assert not policy.should_restart(on3, 0, 0, False)  # success is not a failure
    assert policy.should_restart(Policy("on-failure"), 1, 99, False)  # no count: no limit
    for name in ("always", "unless-stopped"):
        assert policy.should_restart(Policy(name), 0, 50, False)
        assert not policy.should_restart(Policy(name), 137, 0, True)  # the user stopped it
    assert not policy.should_restart(Policy("no"), 1, 0, False)


def test_backoff_doubles_and_a_long_run_resets_it():
    quick, waits = 0, []
    for _ in range(4):
        quick, wait = policy.backoff(quick, ran_for=0.5)
        waits.append(wait)
    assert waits == [0.1, 0.2, 0.4, 0.8] and quick == 4
    assert policy.backoff(quick, ran_for=30.0) == (1, 0.1)
    assert policy.backoff(20, ran_for=0.1)[1] == policy.MAX_DELAY
