"""One exec: real processes, process groups, timeouts, output lines."""
import logging
import os
import signal

import gevent
import pytest

from pilot.commands import Command, ExitStatus, pid_env_name, signal_description
from tests.support import DEADLINE, alive, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("name,expected", [
    ("testCase", "CONTAINERPILOT_TESTCASE_PID"),
    ("test-case", "CONTAINERPILOT_TEST_CASE_PID"),
    ("/bin/to/test-Case--now.sh", "CONTAINERPILOT_TEST_CASE_NOW_PID"),
    ("check.app", "CONTAINERPILOT_CHECK_PID"),
])
def test_pid_env_name_as_38(name, expected):
    """X in CONTAINERPILOT_<X>_PID is derived as docs/behaviour.md §15 says."""
    assert pid_env_name(name) == expected


def test_exit_reasons_use_gos_wording():
    """`exit status N`, `signal: killed`; shell codes are N or 128+signal."""
    assert ExitStatus(code=3).reason == "exit status 3"
    assert ExitStatus(signal=signal.SIGKILL).reason == "signal: killed"
    assert ExitStatus(signal=signal.SIGTERM).shell_code == 143
    assert signal_description(signal.SIGTERM) == "terminated"


def run(cmd):
    cmd.start()
    return cmd.wait(timeout=DEADLINE)


def test_exit_code_and_output_lines(caplog):
    """stdout and stderr become INFO records with the job and pid fields."""
    caplog.set_level(logging.INFO, logger="pilot.job")
    cmd = Command("app", ["sh", "-c", "echo out; echo err >&2; printf tail; exit 4"], environ={})
    st = run(cmd)
    assert st == ExitStatus(code=4)
    lines = [(r.getMessage(), r.job, r.pid) for r in caplog.records if r.name == "pilot.job"]
    assert sorted(m for m, _, _ in lines) == ["err", "out", "tail"]
    assert {(j, p) for _, j, p in lines} == {("app", cmd.pid)}


def test_spawn_failure_is_an_exit_with_a_reason():
    """A program not in PATH fails like Go's exec.LookPath."""
    seen = []
    st = run(Command("app", ["no-such-program-x"], environ={"PATH": "/bin"}, on_exit=seen.append))
    assert st.error == 'exec: "no-such-program-x": executable file not found in $PATH'
    assert seen == [st] and not st.success


@pytest.mark.parametrize("path,reason", [
    ("/nonexistent/program", "no such file or directory"),
    ("/etc/passwd", "permission denied"),
])
def test_spawn_failure_of_a_path_says_why_as_go(path, reason, caplog):
    """A path that cannot be executed fails with Go's `fork/exec PATH: reason`
    (logged as `unable to start NAME: ...`), not an internal error."""
    caplog.set_level(logging.ERROR, logger="pilot.commands")
    st = run(Command("app", [path], environ={}))
    assert st.error == f"fork/exec {path}: {reason}"
    assert f"unable to start app: fork/exec {path}: {reason}" in caplog.text


def test_stdout_and_stderr_are_split_into_lines_separately(caplog):
    """stdout and stderr are two streams (3.8 gives each its own log writer):
    an unterminated stdout line never merges with a stderr line."""
    caplog.set_level(logging.INFO, logger="pilot.job")
    cmd = Command("app", ["sh", "-c", "printf part; sleep 0.2; echo err >&2; sleep 0.2; echo more"],
                  environ={})
    assert run(cmd).success
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "pilot.job")
    assert lines == ["err", "partmore"]


def test_timeout_kills_the_group_with_sigkill(tmp_path):
    """After `timeout` the whole group gets SIGKILL, background children too."""
    pidfile = tmp_path / "bg"
    # The timeout leaves the shell ample time to start its background child
    # and tell its pid, even on a busy machine.
    cmd = Command("slow", ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"],
                  timeout=2.0, environ={})
    st = run(cmd)
    assert st.signal == signal.SIGKILL and cmd.timed_out
    bg = int(pidfile.read_text())
    wait_for(lambda: not alive(bg), what="the background child to die with its group")


def test_pid_variable_lives_while_the_run_lives():
    """CONTAINERPILOT_<X>_PID is set at spawn and removed at exit."""
    env = {"PATH": os.environ["PATH"]}
    cmd = Command("my-job", ["sleep", "0.2"], environ=env)
    cmd.start()
    assert env["CONTAINERPILOT_MY_JOB_PID"] == str(cmd.pid)
    cmd.wait(timeout=DEADLINE)
    assert "CONTAINERPILOT_MY_JOB_PID" not in env


def test_runs_never_overlap():
    """start() while a run is alive waits for it to end first."""
    cmd = Command("one", ["sleep", "0.2"], environ={"PATH": os.environ["PATH"]})
    cmd.start()
    first = cmd.pid
    cmd.start()  # blocks until the first run has exited
    assert cmd.pid != first
    assert not alive(first)
    assert cmd.wait(timeout=5).success


def test_waiting_for_the_previous_run_ends_when_interrupted():
    """A start waiting for a long run gives up (spawns nothing, returns False)
    once `interrupt` is set: an order to stop the job must not wait behind a
    run that may never end."""
    import gevent.event
    interrupt = gevent.event.Event()
    cmd = Command("long", ["sleep", "60"], environ={"PATH": os.environ["PATH"]},
                  interrupt=interrupt)
    assert cmd.start()
    first = cmd.pid
    try:
        second = gevent.spawn(cmd.start)
        gevent.sleep(0)  # one switch: it runs until it blocks on the first run
        assert not second.ready()
        interrupt.set()
        assert second.get(timeout=5) is False
        assert cmd.pid == first and cmd.running
    finally:
        cmd.signal(signal.SIGKILL)
    assert cmd.wait(timeout=5) is not None


def test_signal_reaches_the_process_group():
    """signal() goes to the run's group; the run ends by that signal."""
    cmd = Command("app", ["sleep", "30"], environ={"PATH": os.environ["PATH"]})
    cmd.start()
    assert cmd.signal(signal.SIGQUIT)
    assert cmd.wait(timeout=5).signal == signal.SIGQUIT
