"""procs.state_of: the one liveness check `ps` makes per running container, against real processes."""

import os
import subprocess
import sys
import time

from minibox.runtime import procs


def test_state_of_tells_a_live_process_from_a_reused_pid_and_a_zombie():
    # A name with spaces and parentheses: the state must be found after the name's last ')'.
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                              "open('/proc/self/comm', 'w').write('a) (b) Z')\n"
                              "print(flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()  # renamed
        start = procs.start_time(child.pid)
        assert start > 0 and procs.stat_fields(child.pid)[1] == "a) (b) Z"
        assert procs.state_of(child.pid, start) in ("S", "R") and procs.state_of(child.pid) in ("S", "R")
        assert procs.state_of(child.pid, start + 1) == ""  # another process that got the same PID
        os.kill(child.pid, 9)
        deadline = time.monotonic() + 10
        while procs.stat_fields(child.pid)[2] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procs.state_of(child.pid, start) == "" and not procs.alive(child.pid, start)  # exited, not reaped
    finally:
        child.kill()
        child.wait()
    assert procs.state_of(child.pid, start) == "" and procs.state_of(0) == "" and procs.state_of(-1) == ""
