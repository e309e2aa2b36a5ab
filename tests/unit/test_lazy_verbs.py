"""What a command pays before its verb runs: one verb converted by the lazy click group (with the same help
and errors as typer's own), one verb module imported, and no cyclic collection until the verb starts."""

import click.testing
import typer

from minibox.cli import load
from minibox.entry import click_command
from minibox.oci.main import app as oci_app

app = load()  # every verb


def converted(group) -> set[str]:
    return {name for name in group.commands if isinstance(dict.__getitem__(group.commands, name), click.Command)}


def test_a_verb_converts_only_itself():
    group = click_command(app)
    assert converted(group) == set()
    result = click.testing.CliRunner().invoke(group, ["network", "ls", "--help"])
    assert result.exit_code == 0, result.output
    assert converted(group) == {"network"}
    assert converted(group.commands["network"]) == {"ls"}


def test_help_and_usage_errors_read_as_typer_s_own():
    runner = click.testing.CliRunner()
    for cli in (app, oci_app):
        for args in (["--help"], ["network", "--help"], ["image", "ls", "--help"], ["run", "--help"],
                     ["nosuch"], ["network", "lss"], ["run", "--bogus"], ["create", "--help"]):
            lazy = runner.invoke(click_command(cli), args)
            eager = runner.invoke(typer.main.get_command(cli), args)
            assert (lazy.exit_code, lazy.output) == (eager.exit_code, eager.output), args


def test_each_verb_is_registered_by_the_module_load_imports_for_it():
    """VERB_MODULES names, for each top-level verb, a module whose import registers it (in
    an interpreter of its own, as `minibox VERB` imports it); every verb is in the table;
    and a verb run alone imports that one verb module."""
    import subprocess
    import sys

    from minibox.cli import MODULES, VERB_MODULES

    every = {c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands}
    assert set(VERB_MODULES) == every
    names = "sorted(c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands)"
    for module in MODULES:
        probe = f"import typer, minibox.cli.{module}; from minibox.cli.app import app; print(*{names})"
        got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
        assert {v for v, m in VERB_MODULES.items() if m == module} <= set(got), module
    probe = ("import sys; from minibox.cli import load; app = load(sys.argv[1:]); "
             "print(sorted(m for m in sys.modules if m.startswith('minibox.cli.') and m not in "
             "('minibox.cli.app',)), sorted(c.name or c.callback.__name__ for c in app.registered_commands))")
    out = subprocess.run([sys.executable, "-c", probe, "--firewall-backend", "iptables", "ps", "-a"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['minibox.cli.listing'] ['ps']", out


def test_the_collector_is_off_until_the_verb_starts_then_on():
    """Each entry turns the cyclic collector off while its modules load and its verb is built,
    and on (what exists frozen) in the app's callback, before the verb: a verb that loops for
    hours must be collected. A process that never turned it off (a test) is left as it is."""
    import subprocess
    import sys

    probe = ("import gc, sys; from minibox import entry; entry.collector_off() if sys.argv[1] == 'off' else None; "
             "off = gc.isenabled(); from {mod} import main; main(sys.argv[2:]); "
             "print(off, gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)")
    for mod, verb in (("minibox.__main__", "version"), ("minibox.oci.main", "--version")):
        for how, want in (("off", "False True True"), ("on", "True True False")):
            res = subprocess.run([sys.executable, "-c", probe.replace("{mod}", mod), how, verb],
                                 capture_output=True, text=True)
            assert res.stderr.strip().splitlines()[-1] == want, (mod, how, res.stderr)


def test_a_paused_block_runs_without_the_collector_and_leaves_what_it_made_frozen():
    """`ps` runs in collector_paused(): what it made is frozen as the block ends, so the
    first collection after it does not walk every row again; the collector is back as it was."""
    import subprocess
    import sys

    probe = ("import gc; from minibox import entry; gc.enable(); before = gc.get_freeze_count()\n"
             "with entry.collector_paused():\n"
             "    during = gc.isenabled(); made = [[i] for i in range(5000)]\n"
             "print(during, gc.isenabled(), gc.get_freeze_count() - before >= 5000)\n"
             "gc.disable()\n"
             "with entry.collector_paused():\n"
             "    pass\n"
             "print(gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "False"], out


def test_ps_path_imports_no_json():
    """`ps` reads its memo (a text line, then marshal) and, while the memo holds, no record:
    json, whose import compiles regular expressions (~2 ms), stays unloaded. Its modules and
    a memo round trip are run in a fresh interpreter."""
    import subprocess
    import sys

    probe = ("import sys; from minibox.cli import listing as cli; from minibox.engine import listing\n"
             "assert listing.decode(listing.encode({'x': (1, 2)})) == {'x': (1, 2)}\n"
             "print('json' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"], out
