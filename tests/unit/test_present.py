"""Docker-style durations, status lines, tables, log parsing."""

from minibox.cli import present
from minibox.engine import logs
from minibox.model import ContainerRecord, ContainerSpec, ContainerState, PortMapping


def test_durations():
    assert present.human_duration(0.2) == "Less than a second"
    assert present.human_duration(1) == "1 second"
    assert present.human_duration(45) == "45 seconds"
    assert present.human_duration(70) == "About a minute"
    assert present.human_duration(600) == "10 minutes"
    assert present.human_duration(3700) == "About an hour"
    assert present.human_duration(5 * 86400) == "5 days"


def test_status():
    now = 1000.0
    assert present.status_text(ContainerState(status="running", started_at=995), now) == "Up 5 seconds"
    assert present.status_text(ContainerState(status="exited", exit_code=3, finished_at=880), now) == \
        "Exited (3) 2 minutes ago"
    assert present.status_text(ContainerState(status="created"), now) == "Created"
    assert present.status_text(ContainerState(), now) == "Creating"  # a new state starts as creating
    assert present.status_text(ContainerState(status="removing"), now) == "Removal In Progress"


def test_table_aligns():
    out = present.table(["A", "BB"], [["xxx", "y"], ["z", "wwww"]]).splitlines()
    assert out[0].index("BB") == out[1].index("y") == out[2].index("wwww")


def test_ports_text_and_docker_str():
    from minibox.engine import listing

    rec = ContainerRecord(id="a" * 64, name="web", created=0, spec=ContainerSpec("busybox", ("true",)),
                          image_layers=("/i",), hostname="h", env=(), ports=(PortMapping("", 8080, 80),
                                                                        PortMapping("127.0.0.1", 53, 53, "udp")))
    assert listing.PsView.of(rec).ports == "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp"
    assert rec.ports[0].docker_str() == "80/tcp -> 0.0.0.0:8080"


def test_log_records():
    lines = [b"2026-01-01T00:00:00.1Z stdout F hello", b"2026-01-01T00:00:00.2Z stderr P par",
             b"2026-01-01T00:00:00.3Z stderr F tial", b"2026-01-01T00:00:00.4Z stdout F "]
    assert list(logs.parse(iter(lines))) == [("stdout", b"hello\n"), ("stderr", b"par"), ("stderr", b"tial\n"),
                                             ("stdout", b"\n")]


def test_ps_view_round_trips_through_the_memo_and_a_damaged_memo_is_empty():
    from minibox.engine import listing
    from minibox.model import MountSpec

    rec = ContainerRecord(id="b" * 64, name="web", created=12.5, spec=ContainerSpec("busybox", ("httpd", "-f")),
                          image_layers=("/i",), hostname="h", env=(), ports=(PortMapping("", 8080, 80),),
                          labels=("a=b",), mounts=(MountSpec("volume", "data", "/d"), MountSpec("tmpfs", "", "/t")),
                          image_id="sha256:" + "c" * 64, healthcheck={"Test": ["CMD", "true"]})
    view = listing.PsView.of(rec)
    assert view.command == "httpd -f" and view.mounts == ("data", "/t") and view.healthcheck
    assert present.ps_row(view, ContainerState(status="running", started_at=10), now=20)[1:] == \
        ["busybox", '"httpd -f"', "7 seconds ago", "Up 10 seconds", "0.0.0.0:8080->80/tcp", "web"]
    state = ContainerState(status="running", pid=7, pid_start=9, release_log=(("why", "cmd"),))
    entries = {view.id: ((1, 2, 3), view._values(), (4, 5, 6), state._values(),
                         ("/sys/fs/cgroup/freezer/minibox/x/freezer.state", "FROZEN"))}
    raw = listing.encode(entries)
    back = listing.decode(raw)[view.id]
    assert listing.PsView._make(back[1]) == view and back == entries[view.id]
    assert listing._memo_state(back, (4, 5, 6)) == state and listing._memo_state(back, (4, 5, 7)) is None
    assert listing._memo_view(back, (1, 2, 3)) == view and listing._memo_view(back, None) is None
    head, body = raw.split(b"\n", 1)
    # another version's, another Python's, fields in another order, edited by hand
    heads = [head.replace(f"memo {listing.MEMO_VERSION};".encode(), b"memo 0;"),
             head.replace(listing.FORMAT.encode(), b"marshal 3, Python 3.10"),
             head.replace(b"state: status pid ", b"state: pid status "), head + b" ", head.upper()]
    assert head not in heads and len(set(heads)) == len(heads)
    for bad in (b"", b"garbage", head, head + b"\n" + body.replace(b"web", b"bew"), b"[1]\n" + body,
                head + b"\n" + body[:-9], head + b"\n" + body + b"\0", *(h + b"\n" + body for h in heads)):
        assert listing.decode(bad) == {}, bad
