"""App wiring that needs no processes: stop order and pre-stop links."""
from pilot import events as ev
from pilot.app import dependents, exit_events, ip_env_name, stop_order
from pilot.commands import ExitStatus
from pilot.config.model import JobConfig, When
from pilot.events import Event


def job(name, source=None, event=None, **kw):
    when = When(source=source, event=event, **kw) if source else When()
    return JobConfig(name=name, exec=("true",), when=when)


def test_stop_order_lists_jobs_started_by_a_jobs_events():
    """web (gated on agent healthy) stops before agent; hooks are excluded."""
    jobs = [job("agent"), job("web", "agent", ev.HEALTHY),
            job("pre", "web", ev.STOPPING), job("post", "web", ev.STOPPED),
            job("tick", "agent", ev.HEALTHY, interval=1.0)]
    order = stop_order(jobs)
    assert order["agent"] == {"web"}
    assert order["web"] == frozenset()


def test_stop_order_breaks_two_job_cycles():
    """Two jobs started by each other's events wait for neither."""
    order = stop_order([job("a", "b", ev.HEALTHY), job("b", "a", ev.HEALTHY)])
    assert order == {"a": frozenset(), "b": frozenset()}


def test_dependents_pick_the_last_prestop_job():
    """Several jobs on A's stopping: only the last in config is waited for."""
    deps = dependents([job("a"), job("p1", "a", ev.STOPPING), job("p2", "a", ev.STOPPING)])
    assert deps == {"a": "p2"}


def test_exit_events_as_spec():
    """exitSuccess on 0; exitFailed plus error{NAME: reason} otherwise."""
    assert exit_events("app", ExitStatus(code=0)) == [Event(ev.EXIT_SUCCESS, "app")]
    assert exit_events("app", ExitStatus(signal=9)) == [
        Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, "app: signal: killed")]


def test_spawn_failure_error_event_is_the_bare_error():
    """A run that never started publishes error{<error>} without the name
    prefix, as 3.8 (SPEC §9.9)."""
    msg = "fork/exec /x: no such file or directory"
    assert exit_events("app", ExitStatus(error=msg)) == [
        Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, msg)]


def test_ip_env_name():
    """my-app → CONTAINERPILOT_MY_APP_IP."""
    assert ip_env_name("my-app") == "CONTAINERPILOT_MY_APP_IP"


def test_complete_job_leaves_the_bus():
    """Once a job is complete its mailbox is unsubscribed (no growth)."""
    import gevent
    from pilot.app import App
    from pilot.config.model import Config, ControlConfig
    cfg = Config(path="x", control=ControlConfig(socket="/nonexistent/none.sock"),
                 jobs=(JobConfig(name="once", exec=("true",)),), stop_timeout=1)
    app = App(cfg, environ={"PATH": "/usr/bin:/bin"})
    app._control_server = lambda cfg: None  # no socket needed here
    with gevent.Timeout(10):
        assert app.run() == 0
    assert app.bus.subscribers == 0


def test_shutdown_is_not_kept_waiting_by_a_flood_of_signal_triggers():
    """A job runs once per queued SIGHUP, one run after another; with
    hundreds queued, shutdown{global} still stops it at once: the triggers
    queued before it are dropped."""
    import os
    import tempfile
    import gevent
    from pilot.app import App
    from pilot.config.model import Config, ControlConfig
    runs = os.path.join(tempfile.mkdtemp(), "runs")
    hup = JobConfig(name="hup", exec=("sh", "-c", f"echo x >> {runs}; sleep 0.1"),
                    when=When(source="SIGHUP", event=ev.SIGNAL))
    cfg = Config(path="x", control=ControlConfig(socket="/nonexistent/none.sock"),
                 jobs=(hup,), stop_timeout=1)
    app = App(cfg, environ={"PATH": "/usr/bin:/bin"})
    app._control_server = lambda cfg: None
    runner = gevent.spawn(app.run)
    gevent.sleep(0.1)
    for _ in range(300):  # 30 s of runs, were they all made
        app.signal_event("SIGHUP")
    gevent.sleep(0.3)
    app.shutdown()
    runner.join(timeout=20)
    assert runner.ready(), "shutdown waited for the queued SIGHUP runs"
    assert runner.value == 0
    with open(runs) as f:
        assert 1 <= len(f.read().split()) < 300


def test_jobs_environment_is_pilots_own_not_the_process_environment(monkeypatch, tmp_path):
    """Pid variables of each run and -putenv values go to Pilot's own copy of
    the environment, which jobs get; os.environ is never set (glibc keeps
    every value given to setenv: one per run grew memory without bound)."""
    import os
    import gevent
    from pilot.app import App
    from pilot.config.model import Config, ControlConfig
    monkeypatch.setenv("PILOT_TEST_GIVEN", "kept")
    out = tmp_path / "env"
    first = JobConfig(name="first", exec=("sleep", "30"))
    show = JobConfig(name="show", exec=("sh", "-c", f"env > {out}.tmp; mv {out}.tmp {out}"))
    cfg = Config(path="x", control=ControlConfig(socket="/nonexistent/none.sock"),
                 jobs=(first, show), stop_timeout=1)
    app = App(cfg)
    app._control_server = lambda cfg: None
    app.putenv({"PILOT_TEST_PUT": "1"})
    runner = gevent.spawn(app.run)
    try:
        with gevent.Timeout(10):
            while not out.exists():
                gevent.sleep(0.02)
        assert "CONTAINERPILOT_FIRST_PID" in app.environ
        assert "CONTAINERPILOT_FIRST_PID" not in os.environ
        assert "PILOT_TEST_PUT" not in os.environ
    finally:
        app.shutdown()
        runner.join(timeout=10)
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert seen["PILOT_TEST_GIVEN"] == "kept" and seen["PILOT_TEST_PUT"] == "1"
