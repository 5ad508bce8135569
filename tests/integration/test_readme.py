"""Black-box checks of claims README.md makes, run as the README says:
`python pilot.py -config FILE`, as PID 1 of its own PID namespace.

Each test names the README line it holds Pilot to."""
from __future__ import annotations

import signal

from tests.integration.pilot_proc import run_cli
from tests.support import wait_for


def test_client_flag_failure_is_one_readme_line_on_stderr(tmp_path):
    """README "Flags": a client flag that fails prints one line on stderr,
    `pilot: -ping: failed: pilot is not running: no socket at PATH`, nothing
    on stdout, and exits 1."""
    sock = tmp_path / "none.sock"
    cfg = tmp_path / "c.json5"
    cfg.write_text(f'{{control: {{socket: "{sock}"}}}}')
    r = run_cli("-config", str(cfg), "-ping")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [f"pilot: -ping: failed: pilot is not running: no socket at {sock}"]


def test_status_table_has_the_readme_columns(pilot):
    """README "Flags": `-status` prints a table: job, state, pid, restarts,
    health, last exit, since; a job's row carries its live pid."""
    p = pilot('{jobs: [{name: "app", exec: ["sh", "-c", "echo up; exec sleep 60"]}]}')
    p.wait_log(r"app \d+ up")
    r = p.cli("-status")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == ["JOB", "STATE", "PID", "RESTARTS", "HEALTH", "LAST", "EXIT", "SINCE"]
    cells = row.split()
    assert cells[:2] == ["app", "running"] and cells[2].isdigit() and cells[3] == "0"


def test_stop_signal_is_sent_to_the_job_at_shutdown(pilot):
    """README "Beyond ContainerPilot 3.8": `stopSignal: "SIGQUIT"` is the
    signal the job gets when Pilot stops it (not SIGTERM); Pilot then exits 0."""
    p = pilot("""{stopTimeout: 15, jobs: [{name: "nginx", stopSignal: "SIGQUIT",
        exec: ["sh", "-c", "trap 'echo got-QUIT; exit 0' QUIT; trap 'echo got-TERM' TERM; echo up; while :; do sleep 0.05; done"]}]}""")
    p.wait_log(r"nginx \d+ up")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert p.lines(r"nginx \d+ got-QUIT")
    assert not p.lines("got-TERM")


def test_restart_delay_doubles_up_to_its_cap_then_resets(pilot, tmp_path):
    """README "Beyond ContainerPilot 3.8": `restartDelay` doubles after each
    quick failure up to `restartDelayMax`; a run lasting `restartResetAfter`
    resets it to `restartDelay`. (Quick runs get 3 s to fail, however busy
    the machine: a run counts as long from restartResetAfter on.)"""
    long_run = tmp_path / "long-run"
    p = pilot(f"""{{jobs: [
        {{name: "flaky", restarts: "unlimited", restartDelay: "100ms", restartDelayMax: "400ms",
          restartResetAfter: "3s",
          exec: ["sh", "-c", "if [ -e {long_run} ]; then rm {long_run}; sleep 3.5; fi; exit 1"]}}]}}""")
    p.wait_log(r"flaky: restarting in", count=4)
    long_run.touch()
    wait_for(lambda: not long_run.exists(), what="a run to take the long path")
    count = len(p.lines(r"flaky: restarting in")) + 1
    p.wait_log(r"flaky: restarting in", count=count)
    delays = [ln.rsplit(" ", 1)[1] for ln in p.lines(r"flaky: restarting in")][:count]
    assert delays[:3] == ["0.1s", "0.2s", "0.4s"]
    assert set(delays[3:-1]) == {"0.4s"}, delays
    assert delays[-1] == "0.1s", delays
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
