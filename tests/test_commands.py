"""One exec: real processes, process groups, timeouts, output lines."""
import logging
import os
import signal

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
    """A program not in PATH fails like Go's exec.LookPath; the command
    publishes exitFailed and the bare error at once."""
    from pilot import events as ev
    from pilot.events import Event
    seen = []
    st = run(Command("app", ["no-such-program-x"], environ={"PATH": "/bin"}, publish=seen.append))
    assert st.error == 'exec: "no-such-program-x": executable file not found in $PATH'
    assert not st.success
    assert seen == [Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, st.error)]


def test_a_finished_run_publishes_its_exit_events():
    """Commands publish their own exits: exitFailed and error{NAME: reason}."""
    from pilot import events as ev
    from pilot.events import Event
    seen = []
    run(Command("app", ["sh", "-c", "exit 3"], environ={"PATH": os.environ["PATH"]},
                publish=seen.append))
    assert seen == [Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, "app: exit status 3")]


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
    # and tell its pid, even on a busy machine (two busy loops beside the
    # suite); the run itself lasts 60 s, so only the timeout can end it.
    cmd = Command("slow", ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"],
                  timeout=5.0, environ={})
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


def test_starting_while_a_run_is_alive_is_refused():
    """Runs never overlap and start() never waits: starting while the
    previous run lives is a caller's bug (the job queues instead)."""
    cmd = Command("one", ["sleep", "30"], environ={"PATH": os.environ["PATH"]})
    cmd.start()
    first = cmd.pid
    try:
        with pytest.raises(RuntimeError, match="previous run"):
            cmd.start()
        assert cmd.pid == first and cmd.running
    finally:
        cmd.signal(signal.SIGKILL)
    assert cmd.wait(timeout=DEADLINE) is not None
    cmd.start()  # once it has ended, a new run starts
    assert cmd.pid != first
    cmd.signal(signal.SIGKILL)
    cmd.wait(timeout=DEADLINE)


def test_signal_reaches_the_process_group():
    """signal() goes to the run's group; the run ends by that signal."""
    cmd = Command("app", ["sleep", "30"], environ={"PATH": os.environ["PATH"]})
    cmd.start()
    assert cmd.signal(signal.SIGQUIT)
    assert cmd.wait(timeout=DEADLINE).signal == signal.SIGQUIT


def test_exit_events_as_documented():
    """exitSuccess on 0; exitFailed plus error{NAME: reason} otherwise."""
    from pilot import events as ev
    from pilot.commands import exit_events
    from pilot.events import Event
    assert exit_events("app", ExitStatus(code=0)) == [Event(ev.EXIT_SUCCESS, "app")]
    assert exit_events("app", ExitStatus(signal=9)) == [
        Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, "app: signal: killed")]


def test_spawn_failure_error_event_is_the_bare_error():
    """A run that never started publishes error{<error>} without the name
    prefix, as 3.8."""
    from pilot import events as ev
    from pilot.commands import exit_events
    from pilot.events import Event
    msg = "fork/exec /x: no such file or directory"
    assert exit_events("app", ExitStatus(error=msg)) == [
        Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, msg)]
