"""The job state machine, driven by feeding events: no greenlets, no clock.

The fakes stand in for the interfaces `Job` declares (`Process`, `Service`,
`TimerSet`); `test_fakes_and_real_parts_implement_the_job_interfaces` keeps
both the fakes and the production classes true to them.
"""
import signal

import pytest

from pilot import events as ev
from pilot.config.model import UNLIMITED, HealthConfig, JobConfig, When
from pilot.events import Event
from pilot import jobs
from pilot.jobs import TRANSITIONS, Health, IllegalTransition, Job, Phase
from tests.support import assert_implements


class FakeCommand:
    def __init__(self):
        self.starts = 0
        self.signals = []
        self.running = False
        self.output = ""

    def start(self):
        if self.running:  # as the real Command: runs never overlap
            raise RuntimeError("started while running")
        self.starts += 1
        self.running = True

    def signal(self, sig):
        self.signals.append(sig)
        return True

    def terminate(self, sig):
        self.terminated = True
        return self.signal(sig)

    def exited(self):
        self.running = False


class FakeTimers:
    def __init__(self):
        self.every_ = {}
        self.after_ = {}

    def every(self, key, period, event):
        self.every_[key] = (period, event)

    def after(self, key, delay, event):
        self.after_[key] = (delay, event)

    def cancel(self, key):
        self.every_.pop(key, None)
        self.after_.pop(key, None)

    def cancel_all(self):
        self.every_.clear()
        self.after_.clear()


class FakeService:
    def __init__(self, initial_ok=True):
        self.calls = []
        self.initial_ok = initial_ok

    def register_with_initial_status(self):
        self.calls.append("initial")
        return self.initial_ok

    def send_heartbeat(self):
        self.calls.append("heartbeat")

    def send_critical(self, output):
        self.calls.append(f"critical:{output}")

    def deregister(self):
        self.calls.append("deregister")

    def mark_for_reregistration(self):
        self.calls.append("mark")


class Harness:
    """A job plus everything it published, its fake process and timers."""

    def __init__(self, cfg, service=None, dependent=None, clock=None, maintenance=False):
        self.published = []
        self.process = FakeCommand() if cfg.exec else None
        self.check = FakeCommand() if cfg.health and cfg.health.checked else None
        self.timers = FakeTimers()
        kw = {"clock": clock} if clock else {}
        self.job = Job(cfg, publish=self.published.append, timers=self.timers,
                       process=self.process, check=self.check, service=service,
                       dependent=dependent, **kw)
        if maintenance:  # as App does for a job a reload brings in
            self.job.hold_in_maintenance()
        self.job.begin()

    def feed(self, *events):
        for e in events:
            self.job.handle(e)

    def run_to_exit(self, code=ev.EXIT_SUCCESS):
        self.process.exited()
        self.job.handle(Event(code, self.job.name))


def job(name="app", **kw):
    kw.setdefault("exec", ("true",))
    return JobConfig(name=name, **kw)


def startup(h):
    h.feed(ev.GLOBAL_STARTUP)


def test_default_job_runs_once_at_startup_then_completes():
    """No `when`, no restarts: one run, then stopping/stopped and complete."""
    h = Harness(job())
    startup(h)
    assert h.process.starts == 1
    h.run_to_exit()
    assert h.job.complete
    assert h.published == [Event(ev.STOPPING, "app"), Event(ev.STOPPED, "app")]


@pytest.mark.parametrize("restarts,runs", [(0, 1), (1, 2), (2, 3), (5, 6)])
def test_restarts_n_give_n_plus_one_runs(restarts, runs):
    """`restarts: N` allows N+1 runs in total (docs/behaviour.md §9.3)."""
    h = Harness(job(restarts=restarts))
    startup(h)
    for _ in range(10):
        if h.job.complete:
            break
        h.run_to_exit(ev.EXIT_FAILED)
    assert h.process.starts == runs
    assert h.job.complete
    assert h.job.restarts_done == runs - 1


def test_unlimited_restarts_never_complete():
    """`restarts: unlimited` restarts after every exit, success or failure."""
    h = Harness(job(restarts=UNLIMITED))
    startup(h)
    for i in range(50):
        h.run_to_exit(ev.EXIT_FAILED if i % 2 else ev.EXIT_SUCCESS)
    assert h.process.starts == 51
    assert not h.job.complete


def test_once_trigger_runs_on_first_event_only():
    """`once: healthy` from another job starts it once; later ones ignored."""
    h = Harness(job(when=When(source="db", event=ev.HEALTHY)))
    startup(h)
    assert h.process.starts == 0
    h.feed(Event(ev.HEALTHY, "db"))
    h.feed(Event(ev.HEALTHY, "db"))
    assert h.process.starts == 1


def test_each_trigger_runs_per_event_and_never_completes():
    """`each: changed`: one run per event; the job waits after each run."""
    h = Harness(job(when=When(source="watch.db", event=ev.CHANGED, each=True)))
    startup(h)
    for _ in range(3):
        h.feed(Event(ev.CHANGED, "watch.db"))
        h.run_to_exit()
    assert h.process.starts == 3
    assert not h.job.complete
    assert h.job.phase is Phase.WAITING


def test_each_with_restarts_counts_restarts_over_whole_life():
    """`each` + `restarts: 1`: one extra run over the job's whole life."""
    h = Harness(job(when=When(source="watch.db", event=ev.CHANGED, each=True), restarts=1))
    startup(h)
    h.feed(Event(ev.CHANGED, "watch.db"))
    h.run_to_exit()  # restart used here
    h.run_to_exit()
    h.feed(Event(ev.CHANGED, "watch.db"))
    h.run_to_exit()
    assert h.process.starts == 3


def test_other_source_or_code_does_not_trigger():
    """Only the exact `code{source}` pair is a trigger."""
    h = Harness(job(when=When(source="db", event=ev.HEALTHY)))
    h.feed(Event(ev.HEALTHY, "web"), Event(ev.UNHEALTHY, "db"), ev.GLOBAL_STARTUP)
    assert h.process.starts == 0


def test_job_is_not_triggered_by_its_own_exit():
    """Rule 9 wins: `once: exitSuccess` of itself never re-runs it."""
    h = Harness(job(when=When(source="app", event=ev.EXIT_SUCCESS)))
    h.feed(Event(ev.EXIT_SUCCESS, "app"))
    assert h.process.starts == 0


def test_periodic_job_runs_at_startup_and_every_tick():
    """interval, no restarts: runs at startup and on each tick, for ever."""
    h = Harness(job(when=When(interval=0.5), restarts=UNLIMITED))
    assert jobs.TICK_INTERVAL in h.timers.every_
    startup(h)
    for _ in range(5):
        h.run_to_exit()  # ignored for periodic jobs
        h.feed(Event(jobs.TICK_INTERVAL, "app"))
    assert h.process.starts == 6
    assert not h.job.complete


def test_periodic_job_with_restarts_halts_at_next_tick_after_limit():
    """interval + `restarts: 5` gives exactly 6 runs, then completes."""
    h = Harness(job(when=When(interval=0.5), restarts=5))
    startup(h)
    for _ in range(8):
        h.process.exited()
        h.feed(Event(jobs.TICK_INTERVAL, "app"))
    assert h.process.starts == 6
    assert h.job.complete


def test_signal_trigger_runs_on_every_signal():
    """`source: SIGHUP`: each signal event starts a run."""
    h = Harness(job(when=When(source="SIGHUP", event=ev.SIGNAL, each=True)))
    startup(h)
    for _ in range(3):
        h.feed(Event(ev.SIGNAL, "SIGHUP"))
        h.run_to_exit()
    h.feed(Event(ev.SIGNAL, "SIGUSR2"))
    assert h.process.starts == 3


def test_never_matching_trigger_never_starts():
    """`when: {source: S}` alone never starts and never completes."""
    h = Harness(job(when=When(source=None, event=None)))
    h.feed(ev.GLOBAL_STARTUP, Event(ev.HEALTHY, "x"))
    assert h.process.starts == 0 and not h.job.complete


def test_when_timeout_publishes_timer_expired_and_stops():
    """No trigger within when.timeout: timerExpired, stopping, stopped."""
    h = Harness(job(when=When(source="db", event=ev.HEALTHY, timeout=1.0)))
    assert jobs.TICK_WHEN_TIMEOUT in h.timers.after_
    h.feed(Event(jobs.TICK_WHEN_TIMEOUT, "app"))
    assert h.published == [Event(ev.TIMER_EXPIRED, "app"), Event(ev.STOPPING, "app"),
                           Event(ev.STOPPED, "app")]
    h.feed(Event(ev.HEALTHY, "db"))
    assert h.process.starts == 0


def test_start_cancels_when_timeout():
    """Once started, the when.timeout is void."""
    h = Harness(job(when=When(source="db", event=ev.HEALTHY, timeout=1.0)))
    h.feed(Event(ev.HEALTHY, "db"))
    assert jobs.TICK_WHEN_TIMEOUT not in h.timers.after_


def health(exec_=("check",), interval=5, ttl=10):
    return HealthConfig(exec=exec_, interval=interval, ttl=ttl, timeout=None)


def test_heartbeat_skipped_until_first_start():
    """Checks only begin once the job has started (status not idle)."""
    h = Harness(job(when=When(source="db", event=ev.HEALTHY), health=health()))
    h.feed(Event(jobs.TICK_HEARTBEAT, "app"))
    assert h.check.starts == 0
    h.feed(Event(ev.HEALTHY, "db"), Event(jobs.TICK_HEARTBEAT, "app"))
    assert h.check.starts == 1


def test_check_never_overlaps_itself():
    """A tick while the check is still running is skipped."""
    h = Harness(job(health=health()))
    startup(h)
    h.feed(Event(jobs.TICK_HEARTBEAT, "app"), Event(jobs.TICK_HEARTBEAT, "app"))
    assert h.check.starts == 1


def test_check_results_publish_health_on_every_result():
    """healthy/unhealthy published on every result (3.8's health block);
    passing heartbeats Consul; turning unhealthy marks the check critical at
    once (3.8 waited for the TTL to run out)."""
    svc = FakeService()
    h = Harness(job(port=80, health=health()), service=svc)
    startup(h)
    h.feed(Event(ev.EXIT_SUCCESS, "check.app"), Event(ev.EXIT_SUCCESS, "check.app"),
           Event(ev.EXIT_FAILED, "check.app"))
    assert h.published == [Event(ev.HEALTHY, "app")] * 2 + [Event(ev.UNHEALTHY, "app")]
    assert svc.calls == ["heartbeat", "heartbeat", "critical:"]
    assert h.job.status == "unhealthy"


def test_checkless_advertised_job_heartbeats_on_tick():
    """health without exec: each tick sends a passing heartbeat, no events."""
    svc = FakeService()
    h = Harness(job(port=80, health=health(exec_=None)), service=svc)
    startup(h)
    h.feed(Event(jobs.TICK_HEARTBEAT, "app"))
    assert svc.calls == ["heartbeat"] and h.published == []


def test_maintenance_suspends_checks_and_deregisters():
    """enterMaintenance: status maintenance, deregister, checks ignored."""
    svc = FakeService()
    h = Harness(job(port=80, health=health()), service=svc)
    startup(h)
    h.feed(ev.GLOBAL_ENTER_MAINTENANCE, Event(jobs.TICK_HEARTBEAT, "app"),
           Event(ev.EXIT_SUCCESS, "check.app"))
    assert h.job.status == "maintenance"
    assert h.check.starts == 0
    assert svc.calls == ["deregister", "mark"]
    assert h.published == []
    h.feed(ev.GLOBAL_EXIT_MAINTENANCE)
    assert h.job.status == "unknown"
    h.feed(Event(jobs.TICK_HEARTBEAT, "app"))
    assert h.check.starts == 1


def test_maintenance_triggered_job_runs():
    """A job with `once: enterMaintenance` from global runs on it."""
    h = Harness(job(when=When(source="global", event=ev.ENTER_MAINTENANCE)))
    h.feed(ev.GLOBAL_ENTER_MAINTENANCE)
    assert h.process.starts == 1


def test_shutdown_halts_running_job_with_its_stop_signal():
    """shutdown: stopping, stop signal to the group, stopped."""
    h = Harness(job(restarts=UNLIMITED, stop_signal=signal.SIGQUIT))
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.process.signals == [signal.SIGQUIT]
    assert not h.job.complete, "stopped only once the exec has exited"
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.complete
    assert h.published == [Event(ev.STOPPING, "app"), Event(ev.STOPPED, "app")]


def test_exec_ignoring_stop_signal_is_killed_after_kill_timeout():
    """No exit after the stop signal: SIGKILL at the kill timeout, stopped."""
    h = Harness(job(restarts=UNLIMITED))
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert jobs.TICK_KILL in h.timers.after_
    h.feed(Event(jobs.TICK_KILL, "app"))
    assert h.process.signals == [signal.SIGTERM, signal.SIGKILL]
    assert h.job.complete and h.published[-1] == Event(ev.STOPPED, "app")


def test_shutdown_keeps_prestop_hook_alive_until_it_ran():
    """A `stopping`-triggered job survives shutdown to run once."""
    h = Harness(job("pre", when=When(source="app", event=ev.STOPPING, each=True)))
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert not h.job.complete
    h.feed(Event(ev.STOPPING, "app"))
    assert h.process.starts == 1
    h.run_to_exit()
    assert h.job.complete


def test_shutdown_halts_a_hook_whose_job_already_stopped():
    """A post-stop hook (`each: stopped`) of a job that completed before the
    shutdown would wait for ever for an event that cannot come again (3.8
    hangs): it halts at shutdown instead."""
    h = Harness(job("post", when=When(source="task", event=ev.STOPPED, each=True)))
    startup(h)
    h.feed(Event(ev.STOPPING, "task"), Event(ev.STOPPED, "task"))
    assert h.process.starts == 1
    h.run_to_exit()
    assert not h.job.complete
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.job.complete


def test_halting_waits_for_dependent_stopped():
    """A job with a pre-stop dependent waits for its `stopped` to finish."""
    h = Harness(job(restarts=UNLIMITED), dependent="pre")
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.published == [Event(ev.STOPPING, "app")]
    assert h.process.signals == []
    h.feed(Event(ev.STOPPED, "other"))
    assert not h.job.complete
    h.feed(Event(ev.STOPPED, "pre"))
    assert h.process.signals == [signal.SIGTERM]
    h.run_to_exit()
    assert h.job.complete


def test_stop_timeout_bounds_the_wait_for_the_dependent():
    """Per-job stopTimeout fires (docs/behaviour.md §0), unlike 3.8."""
    h = Harness(job(restarts=UNLIMITED, stop_timeout=2.0), dependent="pre")
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.timers.after_[jobs.TICK_STOP_TIMEOUT][0] == 2.0
    h.feed(Event(jobs.TICK_STOP_TIMEOUT, "app"))
    assert h.process.signals == [signal.SIGTERM]
    h.run_to_exit()
    assert h.job.complete


def test_initial_status_registers_before_start_and_retries():
    """initial_status: registration at begin, retried before each event."""
    svc = FakeService(initial_ok=False)
    h = Harness(job(port=80, health=health(), initial_status="warning"), service=svc)
    assert svc.calls == ["initial"]
    svc.initial_ok = True
    startup(h)
    h.feed(Event(ev.HEALTHY, "x"))
    assert svc.calls == ["initial", "initial"]


def test_halting_deregisters_service():
    """An advertised job deregisters when it halts, whatever the reason."""
    svc = FakeService()
    h = Harness(job(port=80, health=health()), service=svc)
    startup(h)
    h.run_to_exit()
    assert svc.calls == ["deregister"]


def test_restart_backoff_doubles_to_cap_and_resets_after_long_run():
    """restartDelay doubles per quick failure up to restartDelayMax; a run
    longer than restartResetAfter resets it."""
    now = [0.0]
    h = Harness(job(restarts=UNLIMITED, restart_delay=1.0, restart_delay_max=4.0,
                    restart_reset_after=10.0), clock=lambda: now[0])
    startup(h)
    delays = []
    for ran in (1, 1, 1, 1, 20, 1):
        now[0] += ran
        h.run_to_exit(ev.EXIT_FAILED)
        delay, tick = h.timers.after_[jobs.TICK_RESTART]
        delays.append(delay)
        h.feed(tick)
    assert delays == [1.0, 2.0, 4.0, 4.0, 1.0, 2.0]
    assert h.process.starts == 7


def test_restart_pending_is_cancelled_by_shutdown():
    """A restart waiting out its delay does not happen after shutdown."""
    h = Harness(job(restarts=UNLIMITED, restart_delay=5.0))
    startup(h)
    h.run_to_exit(ev.EXIT_FAILED)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert jobs.TICK_RESTART not in h.timers.after_
    assert h.job.complete and h.process.starts == 1


def test_job_without_exec_never_completes_by_itself():
    """No exec: started at startup, keeps Pilot alive until shutdown."""
    h = Harness(JobConfig(name="idle"))
    startup(h)
    assert not h.job.complete
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.job.complete


def test_global_shutdown_trigger_never_runs():
    """`once: shutdown` from global never runs (rule 6 wins)."""
    h = Harness(job(when=When(source="global", event=ev.SHUTDOWN)))
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.process.starts == 0 and h.job.complete


def test_complete_job_ignores_everything():
    """After completion, handle() returns False and nothing happens."""
    h = Harness(job())
    startup(h)
    h.run_to_exit()
    assert h.job.handle(ev.GLOBAL_STARTUP) is False
    assert h.process.starts == 1


def test_shutdown_waits_for_jobs_started_by_this_jobs_events():
    """Dependency order: an agent stops only after the app gated on it."""
    h = Harness(job("agent", restarts=UNLIMITED), )
    h.job.stop_after = frozenset({"web"})
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.published == [] and h.process.signals == []
    h.feed(Event(ev.STOPPED, "other"))
    assert h.published == []
    h.feed(Event(ev.STOPPED, "web"))
    assert h.published == [Event(ev.STOPPING, "agent")]
    assert h.process.signals == [signal.SIGTERM]


@pytest.mark.parametrize("cfg,event", [
    (job("backup", when=When(interval=1.0), restarts=UNLIMITED),
     Event(jobs.TICK_INTERVAL, "backup")),
    (job("backup", when=When(source="watch.db", event=ev.CHANGED, each=True)),
     Event(ev.CHANGED, "watch.db")),
])
def test_nothing_starts_the_exec_while_waiting_for_dependents_at_shutdown(cfg, event):
    """After `shutdown` (docs/behaviour.md §9.2 rule 6: no more starts) a job waiting for
    the jobs its events started to stop never runs again, whatever ticks or
    triggers arrive meanwhile."""
    h = Harness(cfg)
    h.job.stop_after = frozenset({"notify"})
    startup(h)
    h.feed(event)
    h.process.exited()
    starts = h.process.starts
    h.feed(ev.GLOBAL_SHUTDOWN, event, event)
    assert h.process.starts == starts
    h.feed(Event(ev.STOPPED, "notify"))
    assert h.job.complete


def test_dependents_already_stopped_do_not_delay_shutdown():
    """A dependent that stopped before the shutdown is not waited for."""
    h = Harness(job("agent", restarts=UNLIMITED))
    h.job.stop_after = frozenset({"web"})
    startup(h)
    h.feed(Event(ev.STOPPED, "web"), ev.GLOBAL_SHUTDOWN)
    assert h.published == [Event(ev.STOPPING, "agent")]


def test_wait_for_dependents_is_bounded():
    """The drain wait ends at its timer even if a dependent never stops."""
    h = Harness(job("agent", restarts=UNLIMITED))
    h.job.stop_after = frozenset({"web"})
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert jobs.TICK_DRAIN in h.timers.after_
    h.feed(Event(jobs.TICK_DRAIN, "agent"))
    assert h.published == [Event(ev.STOPPING, "agent")]


def test_stop_event_halts_one_job_without_waiting():
    """Reload stops a single job with STOP: no drain, hooks not kept."""
    h = Harness(job("agent", restarts=UNLIMITED))
    h.job.stop_after = frozenset({"web"})
    startup(h)
    h.feed(Event(jobs.STOP, "agent"))
    assert h.published == [Event(ev.STOPPING, "agent")]


def test_stop_hook_keeps_an_armed_hook_for_one_more_run():
    """Reload stops a hook together with its job with STOP_HOOK: like at
    shutdown, the armed hook runs once on its trigger, then completes."""
    h = Harness(job("pre", when=When(source="app", event=ev.STOPPING)))
    startup(h)
    h.feed(Event(jobs.STOP_HOOK, "pre"))
    assert not h.job.complete
    h.feed(Event(ev.STOPPING, "app"))
    assert h.process.starts == 1
    h.run_to_exit()
    assert h.job.complete


# -- properties over random event sequences ----------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

ORDERS = ["order:stop", "order:start", "order:restart"]
MEANINGFUL = [
    ev.GLOBAL_STARTUP, ev.GLOBAL_SHUTDOWN, ev.GLOBAL_ENTER_MAINTENANCE,
    ev.GLOBAL_EXIT_MAINTENANCE, Event(ev.EXIT_SUCCESS, "app"), Event(ev.EXIT_FAILED, "app"),
    Event(ev.EXIT_SUCCESS, "check.app"), Event(ev.EXIT_FAILED, "check.app"),
    Event(ev.HEALTHY, "db"), Event(ev.CHANGED, "watch.db"), Event(ev.STOPPING, "db"),
    Event(ev.STOPPED, "pre"), Event(ev.SIGNAL, "SIGHUP"),
] + [Event(t, "app") for t in (
    jobs.TICK_HEARTBEAT, jobs.TICK_INTERVAL, jobs.TICK_WHEN_TIMEOUT, jobs.TICK_STOP_TIMEOUT,
    jobs.TICK_RESTART, jobs.TICK_KILL, jobs.TICK_DRAIN)]
TRIGGERS = [(e.source, e.code) for e in MEANINGFUL[4:13] if not e.source.startswith("check")]

events_st = st.lists(st.sampled_from(MEANINGFUL + ORDERS), max_size=60)

configs_st = st.builds(
    lambda when, restarts, health: job(when=when, restarts=restarts, health=health),
    st.one_of(
        st.just(When()),
        st.builds(lambda t, each: When(source=t[0], event=t[1], each=each),
                  st.sampled_from(TRIGGERS), st.booleans()),
        st.builds(When, interval=st.just(1.0)),
        st.just(When(source="SIGHUP", event=ev.SIGNAL, each=True)),
    ),
    st.sampled_from([0, 1, 3, UNLIMITED]),
    st.sampled_from([None, health()]),
)


@settings(max_examples=300, deadline=None)
@given(configs_st, events_st)
def test_random_event_sequences_keep_the_job_consistent(cfg, events):
    """Whatever arrives: handle() never raises (no illegal move); the phase
    says whether a process runs; stopping/stopped are
    published at most once each and in that order; a complete job never
    starts again; restarts never exceed the configured limit."""
    h = Harness(cfg)
    starts_when_complete = None
    for e in events:
        if isinstance(e, Event) and e.source == "app" and e.code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED) \
                and h.process:
            h.process.exited()
        if isinstance(e, str):  # an order from the control socket
            h.job.order(e.split(":")[1])
        else:
            h.job.handle(e)  # the door raises IllegalTransition on a move not in the table
        assert_phase_matches_process(h)
        if h.job.complete and starts_when_complete is None:
            starts_when_complete = h.process.starts
    own = [p.code for p in h.published if p.source == "app" and p.code in (ev.STOPPING, ev.STOPPED)]
    # stopping and stopped alternate (orders may stop and start the job again)
    assert own == [ev.STOPPING, ev.STOPPED] * (len(own) // 2) + [ev.STOPPING] * (len(own) % 2)
    if starts_when_complete is not None:
        assert h.process.starts == starts_when_complete
    if cfg.restarts != UNLIMITED and not cfg.periodic:
        assert h.job.restarts_done <= cfg.restarts  # orders never use up restarts


def test_halting_signals_the_process_before_deregistering():
    """docs/behaviour.md §9.8 order: the exec gets its stop signal before the (possibly
    slow) deregistration, so a hung Consul agent cannot keep it running."""
    order = []

    class Service(FakeService):
        def deregister(self):
            order.append(("deregister", list(h.process.signals)))

    h = Harness(job(port=80, health=health()), service=Service())
    startup(h)
    h.job.handle(ev.GLOBAL_SHUTDOWN)
    assert order == [("deregister", [signal.SIGTERM])]


def test_a_job_held_in_maintenance_does_not_register_until_maintenance_ends():
    """A job a reload brings in during maintenance starts in maintenance:
    its process runs, but no initial registration, check or heartbeat
    until exitMaintenance; then a passing check registers it."""
    svc = FakeService()
    h = Harness(job(port=80, health=health(), initial_status="warning"), service=svc,
                maintenance=True)
    startup(h)
    h.feed(Event(jobs.TICK_HEARTBEAT, "app"), Event(ev.EXIT_SUCCESS, "check.app"))
    assert h.process.starts == 1 and h.job.status == "maintenance"
    assert h.check.starts == 0
    assert "initial" not in svc.calls and "heartbeat" not in svc.calls
    h.feed(ev.GLOBAL_EXIT_MAINTENANCE, Event(jobs.TICK_HEARTBEAT, "app"),
           Event(ev.EXIT_SUCCESS, "check.app"))
    assert h.check.starts == 1 and svc.calls[-1] == "heartbeat"


def assert_phase_matches_process(h):
    """What -status shows is true: between runs no process is alive, a
    queued start means one is."""
    alive = h.process is not None and h.process.running
    if h.job.phase in (Phase.WAITING, Phase.BACKING_OFF, Phase.SCHEDULED, Phase.HELD):
        assert not alive, h.job.phase
    if h.job.phase is Phase.QUEUED:
        assert alive and h.job.queued > 0
    if h.job.phase in (Phase.EXITING, Phase.RESTARTING):
        assert alive


# -- the explicit life cycle --------------------------------------------------------


def test_the_door_refuses_a_move_not_in_the_table_and_names_both_phases():
    """An illegal move is a bug: refused, naming the job and both phases."""
    h = Harness(job())
    with pytest.raises(IllegalTransition, match="job app: cannot move from waiting to complete"):
        h.job._move(Phase.COMPLETE)
    assert h.job.phase is Phase.WAITING


def test_every_phase_is_in_the_table_and_only_halting_completes():
    """Each phase has its row; COMPLETE is reached only from the two halting
    phases (or from a job held by order, which has already published its
    `stopped`) and leads nowhere; every halt passes through STOPPING."""
    assert set(TRANSITIONS) == set(Phase)
    into_complete = {p for p, to in TRANSITIONS.items() if Phase.COMPLETE in to}
    assert into_complete == {Phase.STOPPING, Phase.EXITING, Phase.HELD}
    into_held = {p for p, to in TRANSITIONS.items() if Phase.HELD in to}
    assert into_held == {Phase.STOPPING, Phase.EXITING}
    assert TRANSITIONS[Phase.COMPLETE] == frozenset()
    into_exiting = {p for p, to in TRANSITIONS.items() if Phase.EXITING in to}
    assert into_exiting == {Phase.STOPPING}


def test_restart_back_off_is_its_own_phase_without_a_process():
    """During restartDelay the job is backing off, not running."""
    h = Harness(job(restarts=UNLIMITED, restart_delay=5.0))
    startup(h)
    assert h.job.phase is Phase.RUNNING
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.BACKING_OFF and not h.process.running
    h.feed(h.timers.after_[jobs.TICK_RESTART][1])
    assert h.job.phase is Phase.RUNNING and h.process.starts == 2


def test_a_trigger_during_a_run_is_queued_not_blocking():
    """Runs never overlap, and handle() never waits: a trigger while the
    previous run is alive queues a start (phase queued) that happens when
    that run's exit arrives."""
    h = Harness(job(when=When(source="watch.db", event=ev.CHANGED, each=True)))
    startup(h)
    h.feed(Event(ev.CHANGED, "watch.db"))
    h.feed(Event(ev.CHANGED, "watch.db"), Event(ev.CHANGED, "watch.db"))
    assert h.process.starts == 1
    assert h.job.phase is Phase.QUEUED and h.job.queued == 2
    h.run_to_exit()
    assert h.process.starts == 2 and h.job.phase is Phase.QUEUED
    h.run_to_exit()
    assert h.process.starts == 3 and h.job.phase is Phase.RUNNING
    h.run_to_exit()
    assert h.job.phase is Phase.WAITING


def test_an_order_to_stop_drops_the_queued_starts():
    """Shutdown does not wait behind queued triggers: they are dropped and
    the running exec gets its stop signal."""
    h = Harness(job(when=When(source="SIGHUP", event=ev.SIGNAL, each=True)))
    startup(h)
    h.feed(*[Event(ev.SIGNAL, "SIGHUP")] * 50)
    assert h.job.queued == 49
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.job.phase is Phase.EXITING and h.job.queued == 0
    assert h.process.signals == [signal.SIGTERM]
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.complete and h.process.starts == 1


def test_a_periodic_job_between_runs_is_scheduled():
    """After its run a periodic job waits for its next tick: scheduled."""
    h = Harness(job(when=When(interval=2.0), restarts=UNLIMITED))
    startup(h)
    h.run_to_exit()
    assert h.job.phase is Phase.SCHEDULED
    h.feed(Event(jobs.TICK_INTERVAL, "app"))
    assert h.job.phase is Phase.RUNNING


def test_a_tick_during_a_long_periodic_run_queues_the_next_run():
    """A periodic run still alive at the next tick: the next run starts
    when it ends, never beside it."""
    h = Harness(job(when=When(interval=1.0), restarts=UNLIMITED))
    startup(h)
    h.feed(Event(jobs.TICK_INTERVAL, "app"))
    assert h.job.phase is Phase.QUEUED and h.process.starts == 1
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.RUNNING and h.process.starts == 2


def test_draining_and_halting_phases_at_shutdown():
    """An agent whose events started web drains (waits for web) before it
    halts; halting with a live process is `exiting` until the exit."""
    h = Harness(job("agent", restarts=UNLIMITED))
    h.job.stop_after = frozenset({"web"})
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.job.phase is Phase.DRAINING
    h.feed(Event(ev.STOPPED, "web"))
    assert h.job.phase is Phase.EXITING
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.COMPLETE


def test_a_forced_kill_is_remembered():
    """A job SIGKILLed because it ignored its stop signal says so (Pilot's
    exit status reports it)."""
    h = Harness(job(restarts=UNLIMITED))
    startup(h)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert not h.job.forced
    h.feed(Event(jobs.TICK_KILL, "app"))
    assert h.job.forced and h.job.complete


def test_health_is_an_enum_and_the_telemetry_job_is_always_healthy():
    """Health moves idle → unknown → healthy/unhealthy/maintenance; the
    telemetry service's job is healthy whatever happens (3.8 shows it so)."""
    h = Harness(job(health=health()))
    assert h.job.health is Health.IDLE
    startup(h)
    assert h.job.health is Health.UNKNOWN
    h.feed(Event(ev.EXIT_FAILED, "check.app"))
    assert h.job.health is Health.UNHEALTHY and h.job.status == "unhealthy"
    tel = Harness(JobConfig(name="containerpilot", port=9090, always_healthy=True,
                            health=health(exec_=None)), service=FakeService())
    for e in (ev.GLOBAL_STARTUP, ev.GLOBAL_ENTER_MAINTENANCE, ev.GLOBAL_EXIT_MAINTENANCE):
        tel.feed(e)
        assert tel.job.health is Health.ALWAYS_HEALTHY and tel.job.status == "healthy"


def test_since_is_when_the_job_entered_its_phase():
    """`since` moves with the phase, not with every event."""
    now = [100.0]
    h = Harness(job(when=When(source="db", event=ev.HEALTHY)), clock=lambda: now[0])
    assert h.job.since == 100.0
    now[0] = 105.0
    h.feed(Event(ev.HEALTHY, "x"))
    assert h.job.since == 100.0
    h.feed(Event(ev.HEALTHY, "db"))
    assert h.job.since == 105.0 and h.job.phase is Phase.RUNNING


def test_fakes_and_real_parts_implement_the_job_interfaces():
    """The fakes above and the production classes both follow the
    interfaces `Job` declares, so a passing unit test means something."""
    from pilot.commands import Command
    from pilot.discovery import BackgroundService
    from pilot.events import Timers
    for cls in (FakeCommand, Command):
        assert_implements(cls, jobs.Process)
    for cls in (FakeService, BackgroundService):
        assert_implements(cls, jobs.Service)
    for cls in (FakeTimers, Timers):
        assert_implements(cls, jobs.TimerSet)


# -- orders: stop, start, restart, signal ----------------------------------------------


def test_stop_order_halts_as_usual_and_holds_the_job():
    """-stop: stopping, stop signal, stopped once the exec exited; then the
    job stays stopped: no restart, no trigger starts it."""
    h = Harness(job(when=When(source="watch.db", event=ev.CHANGED, each=True), restarts=UNLIMITED,
                    stop_signal=signal.SIGINT))
    startup(h)
    h.feed(Event(ev.CHANGED, "watch.db"))
    assert h.job.order("stop") is None
    assert h.job.phase is Phase.EXITING and h.process.signals == [signal.SIGINT]
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.HELD
    assert h.published == [Event(ev.STOPPING, "app"), Event(ev.STOPPED, "app")]
    h.feed(Event(ev.CHANGED, "watch.db"), Event(ev.EXIT_FAILED, "app"))
    assert h.process.starts == 1 and h.job.phase is Phase.HELD
    assert "pilot -start app" in h.job.detail()


def test_start_order_starts_a_held_job_and_a_never_triggered_one():
    """-start: a held job runs again with its timers; a job still waiting
    for a `once` trigger starts now and the trigger is used up."""
    h = Harness(job(health=health()))
    startup(h)
    h.job.order("stop")
    h.run_to_exit()
    assert h.job.phase is Phase.HELD and h.timers.every_ == {}
    assert h.job.order("start") is None
    assert h.job.phase is Phase.RUNNING and h.process.starts == 2
    assert jobs.TICK_HEARTBEAT in h.timers.every_
    w = Harness(job(when=When(source="db", event=ev.HEALTHY)))
    assert w.job.order("start") is None and w.process.starts == 1
    w.run_to_exit()
    w.feed(Event(ev.HEALTHY, "db"))
    assert w.process.starts == 1


def test_restart_order_does_not_use_up_restarts():
    """-restart: stop signal, and a new run once the exec exited; the
    restart count and limit are untouched; SIGKILL if it will not stop."""
    h = Harness(job(restarts=1))
    startup(h)
    assert h.job.order("restart") is None
    assert h.job.phase is Phase.RESTARTING and h.process.signals == [signal.SIGTERM]
    h.feed(Event(jobs.TICK_KILL, "app"))
    assert h.process.signals == [signal.SIGTERM, signal.SIGKILL]
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.RUNNING and h.process.starts == 2
    assert h.job.restarts_done == 0 and h.published == []
    h.run_to_exit(ev.EXIT_FAILED)  # its one configured restart is still there
    assert h.process.starts == 3 and h.job.restarts_done == 1


def test_orders_that_cannot_be_done_say_why_and_change_nothing():
    """start while running, anything on a complete or stopping job, restart
    of a job without exec, a signal with no process: refused with a reason."""
    h = Harness(job(restarts=UNLIMITED))
    startup(h)
    assert "already running" in h.job.order("start")
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert "is stopping" in h.job.order("restart")
    h.run_to_exit()
    assert "has completed" in h.job.order("start")
    idle = Harness(JobConfig(name="idle"))
    startup(idle)
    assert "no exec to restart" in idle.job.order("restart")
    assert "no process to signal" in idle.job.signal(signal.SIGHUP)
    assert idle.job.phase is Phase.RUNNING


def test_signal_order_reaches_the_process_group():
    """-signal: the signal goes to the exec's group, nothing else changes."""
    h = Harness(job())
    startup(h)
    assert h.job.signal(signal.SIGHUP) is None
    assert h.process.signals == [signal.SIGHUP] and h.job.phase is Phase.RUNNING


def test_a_held_job_completes_quietly_at_shutdown():
    """Its `stopped` was published when it was stopped: shutdown completes
    it without publishing again."""
    h = Harness(job())
    startup(h)
    h.job.order("stop")
    h.run_to_exit()
    count = len(h.published)
    h.feed(ev.GLOBAL_SHUTDOWN)
    assert h.job.complete and len(h.published) == count


# -- several conditions ---------------------------------------------------------------


def test_all_conditions_start_the_job_once_in_any_order():
    """`all`: every condition once, in any order; a condition met before the
    others stays met; the job starts once."""
    from pilot.config.model import Condition
    both = When(source=None, event=None, all=(Condition("db", ev.HEALTHY),
                                              Condition("migrate", ev.EXIT_SUCCESS)))
    for order in ([Event(ev.HEALTHY, "db"), Event(ev.EXIT_SUCCESS, "migrate")],
                  [Event(ev.EXIT_SUCCESS, "migrate"), Event(ev.HEALTHY, "db")]):
        h = Harness(job(when=both))
        startup(h)
        h.feed(order[0])
        assert h.process.starts == 0
        assert h.job.detail() == f"waiting for: {order[1].source} {order[1].code} (1 of 2 met)"
        h.feed(order[1])
        assert h.process.starts == 1
        h.run_to_exit()
        h.feed(*order)
        assert h.process.starts == 1 and h.job.complete


def test_any_condition_starts_the_job_each_time():
    """`any` with `each` items: every occurrence of any of them starts a run."""
    from pilot.config.model import Condition
    either = When(source=None, event=None, any=(Condition("watch.users", ev.CHANGED, each=True),
                                                Condition("watch.orders", ev.CHANGED, each=True)))
    h = Harness(job(when=either))
    startup(h)
    for source in ("watch.users", "watch.orders", "watch.users"):
        h.feed(Event(ev.CHANGED, source))
        h.run_to_exit()
    assert h.process.starts == 3 and h.job.phase is Phase.WAITING


def test_at_least_counts_a_watchs_passing_instances():
    """`atLeast: 2` on watch.backend healthy: one instance is not enough,
    the second starts the job; -status shows the count."""
    from pilot.config.model import Condition
    two = When(source=None, event=None, all=(Condition("watch.backend", ev.HEALTHY, at_least=2),))
    h = Harness(job(when=two))
    startup(h)
    h.feed(Event(ev.CHANGED, "watch.backend", 1), Event(ev.HEALTHY, "watch.backend", 1))
    assert h.process.starts == 0
    assert h.job.detail() == "waiting for: watch.backend 1/2 healthy (0 of 1 met)"
    h.feed(Event(ev.CHANGED, "watch.backend", 2), Event(ev.HEALTHY, "watch.backend", 2))
    assert h.process.starts == 1


def test_detail_says_when_a_periodic_job_runs_next_and_when_a_restart_comes():
    """Between runs: `next run in …`; during a back-off: `restart in …`."""
    now = [0.0]
    h = Harness(job(when=When(interval=5.0), restarts=UNLIMITED), clock=lambda: now[0])
    startup(h)
    now[0] = 1.0
    h.run_to_exit()
    assert h.job.detail() == "next run in 4s"
    b = Harness(job(restarts=UNLIMITED, restart_delay=3.0), clock=lambda: now[0])
    startup(b)
    b.run_to_exit(ev.EXIT_FAILED)
    assert b.job.detail() == "restart in 3s"


# -- health checks users can trust ----------------------------------------------------


def checks(h, *results, output="HTTP 503"):
    for ok in results:
        h.check.output = "HTTP 200" if ok else output
        h.feed(Event(jobs.TICK_HEARTBEAT, "app"))
        h.check.exited()
        h.feed(Event(ev.EXIT_SUCCESS if ok else ev.EXIT_FAILED, "check.app"))


def probe_health(**kw):
    return HealthConfig(exec=None, http="http://127.0.0.1:1/", interval=1, ttl=5, timeout=None, **kw)


def test_failure_threshold_counts_failures_in_a_row_and_publishes_once():
    """failureThreshold 2: a flapping check never turns unhealthy; two
    failures in a row do, published once; healthy again once as well."""
    h = Harness(job(health=probe_health(failure_threshold=2)))
    startup(h)
    checks(h, True, False, True, False, True, False)
    assert h.job.health is Health.HEALTHY
    assert h.published == [Event(ev.HEALTHY, "app")]
    checks(h, False, False, False)
    assert h.job.health is Health.UNHEALTHY and h.job.failures == 4  # the flapping run ended failing
    assert h.published == [Event(ev.HEALTHY, "app"), Event(ev.UNHEALTHY, "app")]
    checks(h, True)
    assert h.published[-1] == Event(ev.HEALTHY, "app") and len(h.published) == 3


def test_a_flapping_check_with_threshold_one_turns_unhealthy():
    """The same flapping check with failureThreshold 1 does turn unhealthy."""
    h = Harness(job(health=probe_health(failure_threshold=1, success_threshold=1)))
    startup(h)
    checks(h, True, False)
    assert h.job.health is Health.UNHEALTHY


def test_success_threshold_needs_passes_in_a_row():
    """successThreshold 3: healthy only after three passes in a row."""
    svc = FakeService()
    h = Harness(job(port=80, health=probe_health(success_threshold=3)), service=svc)
    startup(h)
    checks(h, True, True, False, True, True)
    assert h.job.health is not Health.HEALTHY and "heartbeat" not in svc.calls
    checks(h, True)
    assert h.job.health is Health.HEALTHY and svc.calls == ["critical:HTTP 503", "heartbeat"]


def test_failures_in_the_start_period_change_nothing_and_a_pass_ends_it():
    """startPeriod: failures soon after a start publish nothing, change
    nothing; the first pass ends the period; later failures count."""
    now = [0.0]
    svc = FakeService()
    h = Harness(job(port=80, health=probe_health(start_period=30.0)), service=svc,
                clock=lambda: now[0])
    startup(h)
    checks(h, False, False, False)
    assert h.published == [] and h.job.health is Health.UNKNOWN and svc.calls == []
    checks(h, True)
    checks(h, False)
    assert h.job.health is Health.UNHEALTHY
    assert h.published == [Event(ev.HEALTHY, "app"), Event(ev.UNHEALTHY, "app")]


def test_the_start_period_also_ends_with_time():
    """Failures after the start period count even without a pass."""
    now = [0.0]
    h = Harness(job(health=probe_health(start_period=30.0)), clock=lambda: now[0])
    startup(h)
    checks(h, False)
    now[0] = 31.0
    checks(h, False)
    assert h.job.health is Health.UNHEALTHY


def test_on_unhealthy_restart_replaces_the_process_as_an_exit_would():
    """onUnhealthy restart: stop signal, then a new run once it exited,
    counted in restarts, with the back-off; the start period applies anew;
    the log line says why."""
    now = [0.0]
    h = Harness(job(restarts=UNLIMITED, stop_signal=signal.SIGQUIT, restart_delay=2.0,
                    health=probe_health(failure_threshold=2, on_unhealthy="restart", start_period=5.0)),
                clock=lambda: now[0])
    startup(h)
    now[0] = 10.0
    checks(h, False, False)
    assert h.job.phase is Phase.RESTARTING and h.process.signals == [signal.SIGQUIT]
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.job.phase is Phase.BACKING_OFF and h.job.restarts_done == 1
    h.feed(h.timers.after_[jobs.TICK_RESTART][1])
    assert h.process.starts == 2 and h.job.phase is Phase.RUNNING
    assert h.job.in_start_period and h.job.failures == 0


def test_on_unhealthy_restart_happens_even_without_restarts_left():
    """A liveness restart is not an exit the job chose: with `restarts: 0`
    the job still comes back (counted)."""
    h = Harness(job(health=probe_health(on_unhealthy="restart")))
    startup(h)
    checks(h, False)
    h.run_to_exit(ev.EXIT_FAILED)
    assert h.process.starts == 2 and h.job.restarts_done == 1 and not h.job.complete


def test_no_liveness_restart_in_maintenance_or_while_stopping():
    """Checks are suspended in maintenance; a halting job is never restarted."""
    h = Harness(job(restarts=UNLIMITED, health=probe_health(on_unhealthy="restart")))
    startup(h)
    h.feed(ev.GLOBAL_ENTER_MAINTENANCE, Event(ev.EXIT_FAILED, "check.app"))
    assert h.job.phase is Phase.RUNNING and h.process.signals == []
    h.feed(ev.GLOBAL_EXIT_MAINTENANCE, ev.GLOBAL_SHUTDOWN)
    h.feed(Event(ev.EXIT_FAILED, "check.app"))
    assert h.job.phase is Phase.EXITING and h.process.signals == [signal.SIGTERM]


# -- the runner: stopped once the job has left Consul ----------------------------------


def test_the_runner_publishes_stopped_once_the_job_has_left_consul():
    """A job's `stopped` waits for its deregistration in flight, so a job
    that stops after it (the Consul agent whose health started it) cannot
    cut the deregistration short; it is published as soon as that ends."""
    import gevent
    import gevent.event
    from pilot.events import Bus
    from pilot.jobs import JobRunner
    gate = gevent.event.Event()

    class LeavingService(FakeService):
        leaving = None

        def deregister(self):
            super().deregister()
            self.leaving = gevent.spawn(gate.wait)

    bus = Bus()
    seen = []
    bus.listen(seen.append)
    service = LeavingService()
    runner = JobRunner(job("web", exec=None, port=80), bus=bus, environ={}, service=service)
    runner.job.timers = FakeTimers()
    runner.start()
    bus.publish(ev.GLOBAL_STARTUP)
    bus.publish(ev.GLOBAL_SHUTDOWN)
    assert runner.complete and "deregister" in service.calls
    assert Event(ev.STOPPING, "web") in seen and Event(ev.STOPPED, "web") not in seen
    gate.set()
    gevent.sleep(0.01)
    service.leaving.join(timeout=5)
    gevent.sleep(0)
    assert seen[-1] == Event(ev.STOPPED, "web")
