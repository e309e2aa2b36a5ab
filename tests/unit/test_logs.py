"""engine.logs: a follower that falls behind the rotation never joins a line across the files it missed."""

import os

from minibox.engine import logs

TS = "2026-12-07T22:00:00.000000000Z"


def record(stream: str, text: str, whole: bool = True) -> bytes:
    return f"{TS} {stream} {'F' if whole else 'P'} {text}\n".encode()


def log_file(path, label: str, *records: bytes):
    path.write_bytes(b"".join(records))
    os.setxattr(path, "user.minibox.seq", label.encode())  # as shim.c's log_label does
    return path


def follow_across(tmp_path, numbers: list[int]) -> list[bytes]:
    """A follower that read file 0 (its last record half a line: "70") and finds, when it
    looks again, the files numbered `numbers` (LOG.1 then LOG): what it emits from them.
    LOG.1 begins with the end of a stdout line, LOG with the end of a stderr one."""
    older = open(log_file(tmp_path / "old", "0", record("stdout", "69999"), record("stdout", "70", False)), "rb")
    joined = logs.Lines()
    assert joined.feed(older.read()) == [(TS, "stdout", b"69999\n")]
    first, last = numbers
    log_file(tmp_path / "container.log.1", f"{first} stdout", record("stdout", "123"), record("stdout", "70124"),
             record("stderr", "err", False))
    newer = open(log_file(tmp_path / "container.log", f"{last} stderr", record("stderr", "or"),
                          record("stdout", "82281")), "rb")
    out: list[bytes] = []
    logs._catch_up(tmp_path, older, newer, joined, logs.Options(follow=True), lambda _s, data: out.append(data))
    out += [data for _ts, _s, data in joined.feed(newer.read())]
    older.close()
    newer.close()
    return out


def test_the_next_file_goes_on_with_the_line_begun_before(tmp_path):
    assert follow_across(tmp_path, [1, 2]) == [b"70123\n", b"70124\n", b"error\n", b"82281\n"]


def test_after_a_missed_file_no_line_is_joined_across_the_gap(tmp_path):
    """Files 1 and 2 were dropped before the follower looked: "70" must not be joined to
    "123" (the end of a line from a missed file), which must not stand alone either. Before
    the files were numbered, the follower printed 70123, a number the container never wrote."""
    assert follow_across(tmp_path, [3, 4]) == [b"70124\n", b"error\n", b"82281\n"]


def test_a_gap_before_the_current_file_is_seen_too(tmp_path):
    """File 2 was missed: "err" is not joined to "or", which finishes a line of file 2; the
    stdout line after the gap began in file 3, and is kept."""
    assert follow_across(tmp_path, [1, 3]) == [b"70123\n", b"70124\n", b"82281\n"]


def test_a_file_without_a_label_joins_as_before(tmp_path):
    """A file system without user xattrs: no gap can be told, lines are joined as they come."""
    older = open(log_file(tmp_path / "old", "0", record("stdout", "70", False)), "rb")
    os.removexattr(older.name, "user.minibox.seq")
    newer = open(log_file(tmp_path / "container.log", "5", record("stdout", "123")), "rb")
    joined = logs.Lines()
    joined.feed(older.read())
    logs._catch_up(tmp_path, older, newer, joined, logs.Options(follow=True), lambda _s, _d: None)
    assert joined.feed(newer.read()) == [(TS, "stdout", b"70123\n")]
    older.close()
    newer.close()


def test_a_file_newer_than_the_one_opened_waits_its_turn(tmp_path):
    """The follower opened container.log (file 2), then the shim rotated twice and dropped
    it: the only kept file is 3, newer than what the follower reads next. Read then, its
    lines came out before file 2's (seen in CI as 90112 before 90023)."""
    older = open(log_file(tmp_path / "old", "0", record("stdout", "1")), "rb")
    newer = open(log_file(tmp_path / "opened", "2", record("stdout", "3")), "rb")
    os.unlink(newer.name)  # dropped by the rotation
    log_file(tmp_path / "container.log.1", "3", record("stdout", "4"))
    joined, out = logs.Lines(), []
    joined.feed(older.read())
    logs._catch_up(tmp_path, older, newer, joined, logs.Options(follow=True), lambda _s, data: out.append(data))
    assert out == [] and joined.feed(newer.read()) == [(TS, "stdout", b"3\n")]  # file 2 begins no line mid-way
    assert logs.files(tmp_path, newer) == []  # nor is file 3 older than the open file 2 for a new reader
    older.close()
    newer.close()
