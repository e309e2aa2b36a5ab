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
    rec = ContainerRecord(id="a" * 64, name="web", created=0, spec=ContainerSpec("busybox", ("true",)),
                          image_layers=("/i",), hostname="h", env=(), ports=(PortMapping("", 8080, 80),
                                                                        PortMapping("127.0.0.1", 53, 53, "udp")))
    assert present.ports_text(rec) == "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp"
    assert rec.ports[0].docker_str() == "80/tcp -> 0.0.0.0:8080"


def test_log_records():
    lines = [b"2026-01-01T00:00:00.1Z stdout F hello", b"2026-01-01T00:00:00.2Z stderr P par",
             b"2026-01-01T00:00:00.3Z stderr F tial", b"2026-01-01T00:00:00.4Z stdout F "]
    assert list(logs.parse(iter(lines))) == [("stdout", b"hello\n"), ("stderr", b"par"), ("stderr", b"tial\n"),
                                             ("stdout", b"\n")]
