"""Black-box checks of the job runtime against docs/behaviour.md §9, §10, §15, §16 and
§17.3: Pilot run as users run it, real processes and real signals.

Each test counts what the jobs themselves wrote to files, so the counts do
not depend on log formatting.
"""
import os
import signal

import pytest

from tests.support import DEADLINE, count_lines, wait_for

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]


def appender(path, extra=""):
    """An exec that records one run in `path`."""
    return f'["sh", "-c", "echo run >> {path}{extra}"]'


def test_each_and_once_with_restarts_follow_the_matrix(pilot, tmp_path):
    """§9.3: a trigger fired 4 times: `each` runs once per event (4),
    `each` + restarts 2 adds at most 2 restarts over its life (6), `once` +
    restarts 1 runs on the first event only, plus its restart (2)."""
    each, each_r, once_r = tmp_path / "each", tmp_path / "each_r", tmp_path / "once_r"
    p = pilot(f"""{{stopTimeout: 1, jobs: [
      {{name: "trig", exec: ["sh", "-c", "sleep 0.2"], restarts: 3}},
      {{name: "each", exec: {appender(each)}, when: {{source: "trig", each: "exitSuccess"}}}},
      {{name: "eachR", exec: {appender(each_r)}, when: {{source: "trig", each: "exitSuccess"}},
        restarts: 2}},
      {{name: "onceR", exec: {appender(once_r)}, when: {{source: "trig", once: "exitSuccess"}},
        restarts: 1}},
    ]}}""")
    wait_for(lambda: count_lines(each) == 4, what="4 runs of the each job")
    wait_for(lambda: count_lines(each_r) == 6, what="6 runs of the each+restarts job")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert (count_lines(each), count_lines(each_r), count_lines(once_r)) == (4, 6, 2)


def test_interval_without_restarts_runs_until_shutdown(pilot, tmp_path):
    """§9.3: `interval` and no restarts: a run at startup and on every tick,
    for ever (failures do not stop the schedule)."""
    out = tmp_path / "runs"
    # `timeout`: on a busy machine a run may outlast the interval; killed
    # then, it would not write its line.
    p = pilot(f"""{{jobs: [{{name: "tick", when: {{interval: "100ms"}}, timeout: "{DEADLINE:g}s",
                   exec: {appender(out, "; exit 1")}}}]}}""")
    wait_for(lambda: count_lines(out) >= 8, what="8 periodic runs")
    assert p.proc.poll() is None
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_when_timeout_expires_and_others_react(pilot, tmp_path):
    """§9.6: the trigger never fires within `when.timeout`: the job never
    runs, publishes timerExpired then stopping/stopped; jobs on those
    events run; Pilot exits 0 when all are done."""
    ran, expired, stopped = tmp_path / "ran", tmp_path / "expired", tmp_path / "stopped"
    p = pilot(f"""{{stopTimeout: 1, jobs: [
      {{name: "gate", exec: ["sh", "-c", "sleep 2"]}},
      {{name: "waiter", exec: {appender(ran)}, when: {{source: "gate", once: "exitFailed",
        timeout: "300ms"}}}},
      {{name: "onexp", exec: {appender(expired)}, when: {{source: "waiter", once: "timerExpired"}}}},
      {{name: "onstop", exec: {appender(stopped)}, when: {{source: "waiter", once: "stopped"}}}},
    ]}}""")
    assert p.wait() == 0
    assert (count_lines(ran), count_lines(expired), count_lines(stopped)) == (0, 1, 1)


def test_a_hook_whose_job_already_completed_does_not_block_shutdown(pilot, tmp_path):
    """A post-stop hook (`each: stopped`) of a one-shot job that completed
    long before SIGTERM: the event it waits for cannot come again, so it
    halts at shutdown and Pilot exits 0 (3.8 waits for ever)."""
    out = tmp_path / "post"
    p = pilot(f"""{{stopTimeout: 1, jobs: [
      {{name: "task", exec: "true"}},
      {{name: "post", exec: {appender(out)}, when: {{source: "task", each: "stopped"}}}},
      {{name: "app", exec: ["sh", "-c", "echo app-up; exec sleep 1000"]}},
    ]}}""")
    p.wait_log("app-up")
    wait_for(lambda: count_lines(out) == 1, what="the post-stop hook ran once")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert count_lines(out) == 1


@pytest.mark.parametrize("exec_,reason", [
    ('"/nonexistent/program"', "fork/exec /nonexistent/program: no such file or directory"),
    ('"no-such-program-x"', 'exec: "no-such-program-x": executable file not found in $PATH'),
])
def test_spawn_failure_is_logged_and_is_an_exit_failed(pilot, tmp_path, exec_, reason):
    """§9.9: `unable to start NAME: <error>` as Go words it; exitFailed{NAME}
    is published, so a job on it runs."""
    out = tmp_path / "onfail"
    p = pilot(f"""{{jobs: [
      {{name: "broken", exec: {exec_}}},
      {{name: "onfail", exec: {appender(out)}, when: {{source: "broken", once: "exitFailed"}}}},
    ]}}""")
    assert p.wait() == 0
    assert p.lines(f"unable to start broken: {reason}".replace("$", r"\$"))
    assert count_lines(out) == 1


def test_signal_runs_are_queued_not_overlapped(pilot, tmp_path):
    """§9.9 No overlap: SIGHUPs arriving during a run each start one more
    run after it ends; two runs are never alive together. (A run lasts
    until the test lets it end, so the second SIGHUP surely comes during it.)"""
    out, release = tmp_path / "runs", tmp_path / "release"
    script = (f"if [ -e {tmp_path}/busy ]; then echo overlap >> {out}; fi; touch {tmp_path}/busy; "
              f"echo run >> {out}; while [ ! -e {release} ]; do sleep 0.05; done; rm {tmp_path}/busy")
    p = pilot(f"""{{logging: {{level: "DEBUG"}}, jobs: [
      {{name: "keepalive", exec: ["sh", "-c", "echo alive; exec sleep 1000"]}},
      {{name: "onhup", exec: ["sh", "-c", "{script}"], when: {{source: "SIGHUP"}}}},
    ]}}""")
    p.wait_log("alive")
    p.signal(signal.SIGHUP)
    wait_for(lambda: count_lines(out) == 1, what="the first run")
    p.signal(signal.SIGHUP)
    p.wait_log(r"event: signal\{SIGHUP\}", count=2)  # taken while the first run lives
    assert count_lines(out) == 1
    release.touch()
    wait_for(lambda: count_lines(out) == 2, what="the second run")
    assert "overlap" not in out.read_text()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_sigterm_is_not_held_up_by_a_trigger_queued_behind_a_long_run(pilot, tmp_path):
    """A SIGHUP arriving while the SIGHUP job's run is still alive waits for
    that run (§9.9); a SIGTERM then must not wait with it: the job is stopped
    (its running exec gets SIGTERM), no second run starts, Pilot exits 0.
    (The run would last 1000 s: before the fix Pilot hung until then.)"""
    out = tmp_path / "runs"
    p = pilot(f"""{{logging: {{level: "DEBUG"}}, jobs: [
      {{name: "keepalive", exec: ["sh", "-c", "echo alive; exec sleep 1000"]}},
      {{name: "onhup", exec: ["sh", "-c", "echo run >> {out}; exec sleep 1000"],
        when: {{source: "SIGHUP"}}}},
    ]}}""")
    p.wait_log("alive")
    p.signal(signal.SIGHUP)
    wait_for(lambda: count_lines(out) == 1, what="the first run")
    p.signal(signal.SIGHUP)  # queued behind the run that never ends by itself
    p.wait_log(r"event: signal\{SIGHUP\}", count=2)
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert count_lines(out) == 1


def test_control_socket_is_gone_before_the_final_grace_ends(pilot, tmp_path):
    """§16.2: once every job is complete the control server stops (socket
    removed) and only then does the top-level stopTimeout grace run, ending
    with SIGKILL to a job's leftover process group. The leftover process
    itself notes when the socket goes: it can only do so before the SIGKILL."""
    ready, seen = tmp_path / "leftover-ready", tmp_path / "socket-gone"
    sock = tmp_path / "pilot.sock"
    leftover = (f"trap '' TERM; while [ ! -e {sock} ]; do sleep 0.05; done; touch {ready}; "
                f"while [ -e {sock} ]; do sleep 0.05; done; touch {seen}; exec sleep 1000")
    p = pilot(f"""{{stopTimeout: 5, jobs: [{{name: "app",
        exec: ["sh", "-c", "(sh -c \\"{leftover}\\") & sleep 1000"]}}]}}""")
    wait_for(ready.exists, what="the leftover process to ignore SIGTERM and see the socket")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert seen.exists(), f"the socket was still there when the grace ended; log:\n{p.log}"
    assert p.lines('killing processes for job "app"')
