"""pilot.supervisor's view of the process tree (the PID-namespace cases
run as PID 1 in tests/integration/test_pid1.py)."""
import os
import signal
import subprocess

from pilot import supervisor
from tests.integration.pilot_proc import wait_for


def test_descendants_are_the_live_subtree():
    """Below a child: its live children only; a zombie (left for the
    reaper, it cannot be killed) is not reported."""
    # `exec sleep` never reaps: `true` stays a zombie below it.
    kid = subprocess.Popen(["sh", "-c", "true & sleep 1000 & exec sleep 1001"])
    try:
        states = wait_for(lambda: _when_sleeping_and_zombie(_children_states(kid.pid)), 30,
                          "a sleeping and a zombie child")
        live = {pid for pid, state in states.items() if state == "S"}
        assert supervisor.descendants(kid.pid) == live
        assert {kid.pid} | live <= supervisor.descendants(os.getpid())
    finally:
        for pid in supervisor.descendants(kid.pid) | {kid.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kid.wait()


def _children_states(pid):
    """{child pid: state letter} from /proc."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/stat") as s:
                        out[int(child)] = s.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    pass
    return out


def _when_sleeping_and_zombie(states):
    return states if sorted(states.values()) == ["S", "Z"] else None
