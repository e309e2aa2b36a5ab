"""Docker's exit codes, decided from the verb and the error's kind: pure, no root."""

from minibox.entry import exit_code
from minibox.errors import Conflict, InvalidSpec, NotFound, NotRunning


def test_run_says_125_for_what_other_verbs_say_1_for():
    for err in (NotFound, Conflict, NotRunning):
        assert err.code == 1
        assert exit_code(["rm", "x"], err.code) == 1
        assert exit_code(["run", "--name", "x", "busybox"], err.code) == 125
        assert exit_code(["--firewall-backend", "iptables", "run", "busybox"], err.code) == 125
        assert exit_code(["create", "busybox"], err.code) == exit_code(["pull", "nosuch"], err.code) == 125
    assert exit_code(["exec", "x", "true"], InvalidSpec.code) == 125  # a refused command stays 125
    assert exit_code(["run", "busybox", "nosuch"], 127) == 127  # the command's own codes pass through
