"""minibox.files: whole-file writes and the temporary files a killed writer leaves."""

import os
import subprocess

import pytest

from minibox import files
from minibox.errors import WriteFailed


def gone_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_replaced_file_is_whole_and_its_temporary_name_is_gone(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    files.replace_file(target, "new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert files.temporary(target) == tmp_path / f".state.json.{os.getpid()}.tmp"


def test_a_failed_write_leaves_no_temporary_file_and_names_the_path(tmp_path):
    target = tmp_path / "state.json"
    target.mkdir()  # rename over a directory fails
    with pytest.raises(WriteFailed, match="state.json"):
        files.replace_file(target, "new")
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_leftovers_are_the_temporaries_of_writers_that_are_gone(tmp_path):
    dead, live = gone_pid(), os.getpid()
    for name in (f".state.json.{dead}.tmp", f".config.json.{dead}.tmp", f".state.json.{live}.tmp",
                 "state.json", f"state.json.{dead}.tmp", f".{dead}.tmp", f".state.json.{dead}x.tmp",
                 f".state.json.{dead}"):
        (tmp_path / name).write_text("{")
    found = sorted(p.name for p in files.leftovers(tmp_path))
    assert found == [f".config.json.{dead}.tmp", f".state.json.{dead}.tmp"]


def test_leftovers_of_a_directory_that_is_not_there_are_none(tmp_path):
    assert files.leftovers(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    assert files.leftovers(tmp_path / "file") == []
