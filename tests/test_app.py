"""The App with real processes and no sockets: completion, shutdown, the
environment jobs see."""
from pilot import events as ev
from pilot.app import ip_env_name
from pilot.config.model import JobConfig, When
from tests.support import DEADLINE, count_lines, wait_for


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
    with gevent.Timeout(DEADLINE):
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
    wait_for(lambda: app.bus.subscribers, what="the job listening")
    for _ in range(300):  # 30 s of runs, were they all made
        app.signal_event("SIGHUP")
    wait_for(lambda: count_lines(runs), what="the first run")
    app.shutdown()
    runner.join(timeout=DEADLINE)  # the 300 runs would take longer
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
        wait_for(out.exists, what="the job's environment written")
        assert "CONTAINERPILOT_FIRST_PID" in app.environ
        assert "CONTAINERPILOT_FIRST_PID" not in os.environ
        assert "PILOT_TEST_PUT" not in os.environ
    finally:
        app.shutdown()
        runner.join(timeout=DEADLINE)
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert seen["PILOT_TEST_GIVEN"] == "kept" and seen["PILOT_TEST_PUT"] == "1"
