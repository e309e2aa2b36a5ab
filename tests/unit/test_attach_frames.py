"""The attach stream's frames without a tty (Docker's format, as the shim writes it): pure."""

from minibox.runtime.attach import Frames


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_frames_come_apart_into_their_streams_whatever_the_reads_cut():
    wire = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"x" * 70000)
    f = Frames()
    got = []
    for i in range(0, len(wire), 5):  # cut mid-header and mid-payload
        got += f.feed(wire[i:i + 5])
    assert [(s, len(d)) for s, d in got] == [(1, 4), (2, 4), (1, 70000)]
    assert got[0][1] == b"out\n" and got[1][1] == b"err\n" and f.buf == b""
