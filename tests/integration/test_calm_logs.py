"""A healthy run reads calmly: the demo has no alarming line, Pilot's own
stop of a job is not an error, health-check output says whose it is, and
the DEBUG lines people grep in 3.8's words are there."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.integration.pilot_proc import PYTHON, ROOT, wait_for

pytestmark = pytest.mark.timeout(240)
ALARMING = re.compile(r"failed|error|unreachable", re.I)


def test_the_demo_shows_the_graph_then_tells_a_calm_story_that_status_agrees_with():
    """`make demo` as CI runs it (DEMO_SECONDS short): the job graph before
    Pilot starts, no line saying failed/error/unreachable (the watch says
    once that it waits for Consul), `-status` agreeing with the line above
    it, exit status 0."""
    done = subprocess.run([PYTHON, str(ROOT / "examples/demo.py")], cwd=str(ROOT),
                          env=dict(os.environ, DEMO_SECONDS="1", PYTHONUNBUFFERED="1"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=200)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = out.splitlines()
    assert not [ln for ln in lines if ALARMING.search(ln)], out
    starting = next(i for i, ln in enumerate(lines) if ln.startswith("demo: starting Pilot"))
    graph = lines[:starting]
    assert "      setup --exitSuccess--> consul-agent (health-checked)" in graph, out
    assert any(re.fullmatch(r"      consul-agent --healthy--> web \(port \d+, health-checked\)", ln)
               for ln in graph), out
    assert len([ln for ln in lines if re.search(r" watch web: waiting for Consul at ", ln)]) <= 1
    said = next(i for i, ln in enumerate(lines) if ln == "demo: the watch on web saw 1 instance,"
                " so on-web-change ran")
    status = lines[next(i for i, ln in enumerate(lines) if ln.endswith("-status:")) + 1:]
    assert said < len(lines) - len(status), out
    table = status[:status.index(next(ln for ln in status if ln.startswith("demo: ")))]
    rows = {ln.split()[0]: ln.split() for ln in table}
    assert rows["web"][1:2] + rows["web"][4:5] == ["running", "healthy"], out
    assert rows["consul-agent"][4] == "healthy", out
    assert "      watch web: 1 instance(s)" in table, out
    assert lines[-1] == "demo: Pilot exited with status 0"


def test_pilots_own_stop_of_a_job_is_not_an_error(pilot):
    """A job that exits 1 on SIGTERM (a Consul agent does): when Pilot
    stopped it (-restart, shutdown) one INFO line says so; the same exit
    coming by itself is still 3.8's `exited with error`."""
    p = pilot("""{stopTimeout: 10, jobs: [{name: "agent", restarts: "unlimited",
        exec: ["sh", "-c", "trap 'exit 1' TERM; echo up; while :; do sleep 0.05; done"]},
      {name: "crash", exec: ["sh", "-c", "exit 3"]}]}""")
    p.wait_log(r"agent \d+ up")
    from tests.integration.pilot_proc import run_cli
    assert run_cli("-config", str(p.config), "-restart", "agent").returncode == 0
    p.wait_log(r"agent \d+ up", count=2)
    p.signal(signal.SIGTERM)
    assert p.wait(20) == 0
    calm = p.lines(r"agent exited after its stop signal \(SIGTERM\): exit status 1$")
    assert len(calm) == 2, p.log
    assert not p.lines("agent exited with error"), p.log
    assert p.lines("crash exited with error: exit status 3$"), p.log


def test_health_check_output_names_the_check(pilot):
    """Default format: `<time> check.app <pid> <line>` (3.8 printed the pid only)."""
    p = pilot("""{jobs: [{name: "app", exec: ["sleep", "60"],
        health: {exec: ["echo", "all good"], interval: 1, ttl: 5}}]}""")
    p.wait_log(r"^\S+ check\.app \d+ all good$")


def test_debug_lines_people_grep_are_in_38s_words(pilot):
    """At DEBUG: `event: {StatusHealthy app}` (and Pilot's `event:
    healthy{app}`), `timer: {TimerExpired app.heartbeat}`, `timer:
    {TimerExpired tick.run-every}`, `app.Run start`, `check.app.Run start`,
    `tick exited without error`, `tick.Run end`."""
    p = pilot("""{logging: {level: "DEBUG"}, jobs: [
        {name: "app", exec: ["sleep", "60"], health: {exec: "true", interval: 1, ttl: 5}},
        {name: "tick", exec: "true", when: {interval: "1s"}}]}""")
    for pattern in (r"event: \{StatusHealthy app\}$", r"event: healthy\{app\}$",
                    r"event: \{Startup global\}$", r"timer: \{TimerExpired app\.heartbeat\}$",
                    r"timer: \{TimerExpired tick\.run-every\}$", r" app\.Run start$",
                    r" check\.app\.Run start$", r" tick exited without error$", r" tick\.Run end$"):
        p.wait_log(pattern)
