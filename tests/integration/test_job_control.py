"""Several conditions per job, per-job control from the CLI and the control
socket, a status that says what a job waits for, and `-graph`: as users run
them, with real processes, Pilot as PID 1, and a real Consul agent."""
import json
import os
import signal
import subprocess

import pytest

from tests.consul_agent import register
from tests.integration.pilot_proc import children, control_request, run_cli
from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")


def one_shot(name, marker):
    return f'{{name: "{name}", exec: ["sh", "-c", "sleep 0.2; echo {marker}"]}}'


@pytest.mark.parametrize("first,second", [("a", "b"), ("b", "a")])
def test_all_starts_once_both_one_shot_jobs_finished_in_either_order(pilot, first, second):
    """`when: {all: [...]}` starts the job once both happened, whichever first."""
    p = pilot(f"""{{jobs: [
      {{name: "{first}", exec: ["sh", "-c", "echo {first}-done"]}},
      {{name: "{second}", exec: ["sh", "-c", "echo {second}-done"],
        when: {{source: "{first}", once: "exitSuccess"}}}},
      {{name: "gate", exec: ["sh", "-c", "echo gate-ran; exec sleep 60"],
        when: {{all: [{{source: "a", once: "exitSuccess"}}, {{source: "b", once: "exitSuccess"}}]}}}}
    ]}}""")
    p.wait_log("gate-ran")
    log = p.log
    assert log.index(f"{first}-done") < log.index(f"{second}-done") < log.index("gate-ran")
    assert len(p.lines("gate-ran")) == 1


def test_any_with_each_runs_on_every_occurrence_of_either(pilot):
    """`when: {any: [...each...]}`: each SIGHUP and each SIGUSR2 runs the job."""
    p = pilot("""{jobs: [
      {name: "idle", exec: "sleep 60"},
      {name: "hook", exec: ["sh", "-c", "echo hook-ran"],
       when: {any: [{source: "SIGHUP"}, {source: "SIGUSR2"}]}}
    ]}""")
    p.wait_log(r"control: serving")
    for n, sig in enumerate((signal.SIGHUP, signal.SIGUSR2, signal.SIGHUP), start=1):
        p.signal(sig)
        p.wait_log("hook-ran", count=n)


def test_status_says_what_a_waiting_job_waits_for(pilot):
    """-status names the conditions still pending and how many are met."""
    p = pilot("""{jobs: [
      {name: "db", exec: ["sh", "-c", "echo db-up; exec sleep 60"]},
      {name: "migrate", exec: "true"},
      {name: "app", exec: "sleep 60",
       when: {all: [{source: "db", once: "healthy"}, {source: "migrate", once: "exitSuccess"}]}}
    ]}""")
    wait_for(lambda: "1 of 2 met" in (p.jobs()["app"]["detail"] or ""), what="migrate's exit to be seen")
    assert p.jobs()["app"]["detail"] == "waiting for: db healthy (1 of 2 met)"
    r = p.cli("-status")
    assert r.returncode == 0, r.stderr
    assert "  waiting for: db healthy (1 of 2 met)" in r.stdout.splitlines()


def test_stop_keeps_a_job_stopped_through_its_trigger_until_start(pilot, tmp_path):
    """-stop: stop signal, stopping/stopped, and no trigger starts it again
    (here a SIGHUP each time), until -start; each order is logged."""
    runs = tmp_path / "runs"
    p = pilot(f"""{{jobs: [
      {{name: "web", exec: ["sh", "-c", "echo run >> {runs}; echo web-up; exec sleep 60"],
        restarts: "unlimited", when: {{source: "SIGHUP"}}}},
      {{name: "post", exec: ["sh", "-c", "echo post-stop-ran"], when: {{source: "web", each: "stopped"}}}}
    ]}}""")
    p.wait_log("control: serving")
    p.signal(signal.SIGHUP)
    p.wait_log("web-up")
    r = p.cli("-stop", "web")
    assert r.returncode == 0, r.stderr
    p.wait_log("post-stop-ran")
    assert p.jobs()["web"]["state"] == "stopped-by-order" and p.jobs()["web"]["pid"] is None
    p.signal(signal.SIGHUP)
    p.signal(signal.SIGHUP)
    assert p.cli("-ping").returncode == 0  # the signals were handled
    assert p.jobs()["web"]["state"] == "stopped-by-order"
    assert runs.read_text().split() == ["run"]
    assert p.cli("-start", "web").returncode == 0
    p.wait_log("web-up", count=2)
    assert p.jobs()["web"]["state"] == "running"
    assert p.lines(r"control: stop web") and p.lines(r"control: start web")


def test_restart_gives_a_new_process_and_does_not_use_up_restarts(pilot):
    """-restart: a new pid, the old one gone; `restarts: 1` still allows its
    one restart afterwards (counted only for exits)."""
    p = pilot("""{stopTimeout: 10, jobs: [
      {name: "app", exec: ["sh", "-c", "echo app-up; exec sleep 60"], restarts: 1}]}""")
    p.wait_log("app-up")
    first = p.jobs()["app"]["pid"]
    assert p.cli("-restart", "app").returncode == 0
    p.wait_log("app-up", count=2)
    second = wait_for(lambda: p.jobs()["app"]["pid"], what="the new pid")
    assert second != first and p.jobs()["app"]["restarts"] == 0
    host_pids = wait_for(lambda: children(p.pid), what="the job's process")  # pids outside the namespace
    os.kill(host_pids[0], signal.SIGKILL)  # its own exit: the one configured restart
    p.wait_log("app-up", count=3)
    assert wait_for(lambda: p.jobs()["app"]["restarts"] == 1, what="the restart to be counted")


def test_signal_reaches_the_jobs_process(pilot):
    """-signal NAME=SIGUSR1 delivers that signal to the job's processes."""
    p = pilot("""{jobs: [{name: "app",
      exec: ["sh", "-c", "trap 'echo got-usr1' USR1; echo app-up; while :; do sleep 0.1; done"]}]}""")
    p.wait_log("app-up")
    assert p.cli("-signal", "app=SIGUSR1").returncode == 0
    p.wait_log("got-usr1")
    code, body = control_request(p.socket, "POST", "/v3/jobs/app/signal", b'{"signal": 10}')
    assert code == 200, body
    p.wait_log("got-usr1", count=2)


def test_order_errors_are_one_line_and_change_nothing(pilot):
    """Unknown job, bad signal, a job with no process, start while running:
    exit 1 with one line (flags), 4xx JSON (endpoints), nothing changed."""
    p = pilot("""{jobs: [{name: "app", exec: ["sh", "-c", "echo app-up; exec sleep 60"]},
                         {name: "never", exec: "true", when: {source: "nothing", once: "healthy"}}]}""")
    p.wait_log("app-up")
    pid = p.jobs()["app"]["pid"]
    for args, text in ((("-restart", "nope"), "no such job: 'nope'"),
                       (("-signal", "app=SIGNOPE"), "bad signal"),
                       (("-signal", "never=SIGHUP"), "has no process to signal"),
                       (("-start", "app"), "is already running")):
        r = p.cli(*args)
        assert r.returncode == 1, (args, r.stdout)
        assert len(r.stderr.splitlines()) == 1 and text in r.stderr, r.stderr
    for method, url, body, code in (("POST", "/v3/jobs/nope/stop", None, 404),
                                    ("POST", "/v3/jobs/app/signal", b'{"sig": "HUP"}', 400),
                                    ("POST", "/v3/jobs/app/signal", b'[1]', 422),
                                    ("POST", "/v3/jobs/app/start", None, 409),
                                    ("GET", "/v3/jobs/nope", None, 404)):
        got, answer = control_request(p.socket, method, url, body)
        assert got == code, (url, answer)
        assert set(json.loads(answer)) == {"error"}
    r = p.cli("-signal", "app")
    assert r.returncode == 2 and "expected NAME=SIGNAL" in r.stderr
    assert p.jobs()["app"]["pid"] == pid and p.jobs()["app"]["state"] == "running"


def test_jobs_endpoints_list_and_show_jobs(pilot):
    """GET /v3/jobs lists every job; GET /v3/jobs/NAME shows one."""
    p = pilot("""{jobs: [{name: "app", exec: ["sh", "-c", "echo app-up; exec sleep 60"]}]}""")
    p.wait_log("app-up")
    code, body = control_request(p.socket, "GET", "/v3/jobs")
    assert code == 200 and [j["name"] for j in json.loads(body)["jobs"]] == ["app"]
    code, body = control_request(p.socket, "GET", "/v3/jobs/app")
    assert code == 200 and json.loads(body)["state"] == "running"


def test_the_first_main_job_to_end_gives_its_exit_code(pilot):
    """Several `main` jobs: the first that ends for good shuts Pilot down
    with its exit code; a -stop of a main job does not."""
    p = pilot("""{jobs: [
      {name: "held", main: true, exec: "sleep 60"},
      {name: "first", main: true, exec: ["sh", "-c", "sleep 1; exit 7"],
       when: {source: "held", once: "stopped"}},
      {name: "second", main: true, exec: ["sh", "-c", "exec sleep 60"]}]}""")
    p.wait_log("control: serving")
    wait_for(lambda: p.jobs()["held"]["pid"], what="held to run")
    assert p.cli("-stop", "held").returncode == 0
    wait_for(lambda: p.jobs()["held"]["state"] == "stopped-by-order", what="held to be stopped")
    assert p.proc.poll() is None  # held is stopped, not ended: `first` runs now
    assert p.wait() == 7


def test_at_least_two_instances_of_a_watched_service(pilot, consul_agent):
    """`atLeast: 2`: one passing instance starts nothing; the second does."""
    def backend(n):
        register(consul_agent, "backend", f"backend-{n}", "127.0.0.1", 8000 + n)
    p = pilot(f"""{{consul: "{consul_agent.http_addr}",
      watches: [{{name: "backend", interval: 5}}],
      jobs: [{{name: "app", exec: ["sh", "-c", "echo app-started; exec sleep 60"],
               when: {{all: [{{source: "watch.backend", once: "healthy", atLeast: 2}}]}}}}]}}""")
    backend(1)
    wait_for(lambda: "1/2" in (p.jobs()["app"]["detail"] or ""), what="the watch to see one instance")
    assert not p.lines("app-started")
    backend(2)
    p.wait_log("app-started")


def test_graph_prints_dot_that_graphviz_parses_with_the_configs_edges(tmp_path):
    """-graph (DOT) parses with Graphviz's `dot`; its edges are the config's;
    -graph mermaid prints the same edges as a flowchart."""
    config = tmp_path / "g.json5"
    config.write_text("""{jobs: [
      {name: "db", exec: "true"},
      {name: "migrate", exec: "true", when: {source: "db", once: "healthy"}},
      {name: "app", exec: "true", when: {all: [{source: "db", once: "healthy"},
                                             {source: "migrate", once: "exitSuccess"}]}},
      {name: "pre", exec: "true", when: {source: "app", once: "stopping"}},
      {name: "hup", exec: "true", when: {source: "SIGHUP"}}]}""")
    r = run_cli("-config", str(config), "-graph")
    assert r.returncode == 0, r.stderr
    svg = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True, text=True, timeout=30)
    assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr
    plain = subprocess.run(["dot", "-Tplain"], input=r.stdout, capture_output=True, text=True, timeout=30)
    drawn = {tuple(line.split()[1:3]) for line in plain.stdout.splitlines() if line.startswith("edge ")}
    assert drawn == {("startup", "db"), ("db", "migrate"), ("db", '"all:app"'),
                     ("migrate", '"all:app"'), ('"all:app"', "app"), ("app", "pre"), ("SIGHUP", "hup")}
    m = run_cli("-config", str(config), "-graph", "mermaid")
    assert m.returncode == 0 and m.stdout.startswith("flowchart LR")
    assert m.stdout.count("-->") + m.stdout.count("-.->") == len(drawn)
