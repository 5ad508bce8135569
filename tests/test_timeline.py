"""The event timeline: bus events and job moments in the user's words.

Jobs are real `JobRunner`s on a real bus, with the fake process and timers
of tests/test_jobs.py, so what is tested is what the runner tells the
timeline as the state machine moves, with no process and no clock.
"""
import signal

import gevent
import pytest

from pilot import events as ev
from pilot.commands import ExitStatus
from pilot.config.model import UNLIMITED, HealthConfig, When
from pilot.events import Bus, Event
from pilot.jobs import JobRunner
from pilot.timeline import KEEP, Timeline
from tests.test_jobs import FakeCommand, FakeTimers, job

pytestmark = pytest.mark.timeout(30)


class ExitingCommand(FakeCommand):
    """A fake exec whose runs end as the test says (with a status)."""

    def __init__(self):
        super().__init__()
        self.last_status = None
        self.timed_out = False
        self.pid = 4242

    def start(self):
        super().start()
        self.last_status = None

    def end(self, status: ExitStatus):
        self.exited()
        self.last_status = status


class World:
    """A bus, a timeline listening to it, and jobs wired as the App wires them."""

    def __init__(self, clock=None):
        self.bus = Bus()
        self.timeline = Timeline(clock=clock) if clock else Timeline()
        self.bus.listen(self.timeline.record)
        self.runners = {}

    def add(self, cfg):
        runner = JobRunner(cfg, bus=self.bus, environ={}, moments=self.timeline)
        runner.job.process = ExitingCommand() if cfg.exec else None
        runner.job.timers = FakeTimers()
        runner.start()
        self.runners[cfg.name] = runner
        return runner

    def exit(self, name, code=0, sig=None):
        process = self.runners[name].job.process
        process.end(ExitStatus(code=None if sig else code, signal=sig))
        self.bus.publish(Event(ev.EXIT_SUCCESS if code == 0 and not sig else ev.EXIT_FAILED, name))

    def messages(self):
        return [e.message for e in self.timeline.entries()]


def test_a_start_says_what_triggered_it():
    """`web started (trigger: consul-agent healthy)`: the trigger in the
    words the config uses (source, then event)."""
    w = World()
    w.add(job("web", when=When(source="consul-agent", event=ev.HEALTHY)))
    w.bus.publish(ev.GLOBAL_STARTUP)
    w.bus.publish(Event(ev.HEALTHY, "consul-agent"))
    assert w.messages() == ["pilot started", "consul-agent healthy",
                            "web started (trigger: consul-agent healthy)"]
    started = w.timeline.entries()[-1]
    assert (started.code, started.source) == ("started", "web")


def test_an_exit_says_what_follows_it():
    """`web exited 1, restart 2/5 in 4s`: the exit code, then the restart
    counted against the job's limit and the delay it waits."""
    w = World()
    w.add(job("web", restarts=5, restart_delay=4.0, restart_delay_max=4.0))
    w.bus.publish(ev.GLOBAL_STARTUP)
    w.exit("web", 1)
    w.bus.send(w.runners["web"]._sub, Event("tick.restart", "web"))
    w.exit("web", 1)
    assert w.messages()[1:] == [
        "web started (trigger: startup)",
        "web exited 1, restart 1/5 in 4s",
        "web started (restart 1/5)",
        "web exited 1, restart 2/5 in 4s",
    ]
    exited = w.timeline.entries()[-1]
    assert (exited.code, exited.source) == (ev.EXIT_FAILED, "web")


def test_an_exit_is_told_before_the_stopping_it_leads_to():
    """A one-shot job: its exit line, then `stopping` and `stopped` (the
    order in which they happened), and no duplicate bus line for the exit."""
    w = World()
    w.add(job("setup"))
    w.bus.publish(ev.GLOBAL_STARTUP)
    w.exit("setup", 0)
    assert w.messages()[1:] == ["setup started (trigger: startup)", "setup exited 0, done",
                                "setup stopping", "setup stopped"]


@pytest.mark.parametrize("restarts,words", [
    (UNLIMITED, "web exited 3, restart 1 now"),
    (0, "web exited 3, not restarted (restarts: 0)"),
])
def test_a_restart_at_once_or_none(restarts, words):
    """Unlimited restarts count without a limit; no restarts says so."""
    w = World()
    w.add(job("web", restarts=restarts))
    w.bus.publish(ev.GLOBAL_STARTUP)
    w.exit("web", 3)
    assert words in w.messages()


def test_a_signal_a_shutdown_and_an_order_are_named():
    """A run ended by a signal says which; a stop at shutdown adds nothing
    after it (`stopping`/`stopped` follow); an order names the flag."""
    w = World()
    w.add(job("web", restarts=UNLIMITED))
    w.bus.publish(ev.GLOBAL_STARTUP)
    assert w.runners["web"].order_now("restart") is None
    w.exit("web", sig=signal.SIGTERM)
    w.bus.publish(ev.GLOBAL_SHUTDOWN)
    w.exit("web", sig=signal.SIGTERM)
    assert w.messages()[2:] == [
        "web killed by SIGTERM, restarting (pilot -restart)",
        "web started (pilot -restart)",
        "pilot shutting down",
        "web stopping",
        "web killed by SIGTERM",
        "web stopped",
    ]


def test_a_periodic_run_is_one_line_telling_its_next_one():
    """A periodic job: its first start says why; each run on its interval is
    one line, its exit, with when the next run is (not two lines a run)."""
    w = World()
    w.add(job("sensor", when=When(interval=3.0), restarts=UNLIMITED))
    w.bus.publish(ev.GLOBAL_STARTUP)
    w.exit("sensor", 0)
    w.bus.send(w.runners["sensor"]._sub, Event("tick.interval", "sensor"))
    w.exit("sensor", 2)
    messages = w.messages()
    assert messages[1] == "sensor started (trigger: startup)"
    assert messages[2].startswith("sensor exited 0, next run in ")
    assert messages[3].startswith("sensor exited 2, next run in ")
    assert len(messages) == 4


def test_a_watch_change_shows_the_instances_before_and_after():
    """`watch.backend changed: 3 → 2 healthy`; the watch's own healthy is
    shown when it turns, not again while it stays healthy."""
    w = World()
    for count in (3, 2):
        w.bus.publish(Event(ev.CHANGED, "watch.backend", count))
        w.bus.publish(Event(ev.HEALTHY, "watch.backend", count))
    w.bus.publish(Event(ev.CHANGED, "watch.backend", 0))
    w.bus.publish(Event(ev.UNHEALTHY, "watch.backend", 0))
    assert w.messages() == [
        "watch.backend changed: 0 \u2192 3 healthy",
        "watch.backend healthy",
        "watch.backend changed: 3 \u2192 2 healthy",
        "watch.backend changed: 2 \u2192 0 healthy",
        "watch.backend unhealthy: no passing instance",
    ]


def test_check_results_show_as_health_turns_not_as_exits():
    """A health check's exits are not lines; a job's `healthy` is shown when
    it turns (3.8 publishes one per passing check), and again after a new
    run of the job."""
    w = World()
    w.add(job("web", restarts=UNLIMITED,
              health=HealthConfig(exec=("true",), interval=1, ttl=5, timeout=None)))
    w.runners["web"].job.check = FakeCommand()
    w.bus.publish(ev.GLOBAL_STARTUP)
    for code in (ev.EXIT_SUCCESS, ev.EXIT_SUCCESS, ev.EXIT_FAILED, ev.EXIT_SUCCESS):
        w.bus.publish(Event(code, "check.web"))
        w.bus.publish(Event(ev.ERROR, "check.web: exit status 1"))
    w.exit("web", 1)
    w.bus.publish(Event(ev.EXIT_SUCCESS, "check.web"))
    assert w.messages()[1:] == [
        "web started (trigger: startup)",
        "web healthy", "web unhealthy", "web healthy",
        "web exited 1, restart 1 now", "web started (restart 1)",
        "web healthy",
    ]


def test_other_events_in_words():
    """Signals, maintenance, a when.timeout: each a line of its own."""
    w = World()
    for e in (Event(ev.SIGNAL, "SIGHUP"), ev.GLOBAL_ENTER_MAINTENANCE,
              ev.GLOBAL_EXIT_MAINTENANCE, Event(ev.TIMER_EXPIRED, "db")):
        w.bus.publish(e)
    assert w.messages() == ["SIGHUP received", "maintenance mode on", "maintenance mode off",
                            "db gave up: its when.timeout ran out before its trigger"]


def test_the_last_200_are_kept_and_since_reaches_back_in_time():
    """Older entries go; `since` selects by time, `after` by sequence."""
    now = [1000.0]
    w = World(clock=lambda: now[0])
    for n in range(KEEP + 50):
        now[0] += 1
        w.bus.publish(Event(ev.SIGNAL, f"SIG{n}"))
    kept = w.timeline.entries()
    assert len(kept) == KEEP and kept[0].seq == 51 and kept[-1].seq == KEEP + 50
    assert [e.seq for e in w.timeline.entries(since=now[0] - 2)] == [248, 249, 250]
    assert [e.seq for e in w.timeline.entries(after=248)] == [249, 250]
    assert kept[-1].as_dict() == {"time": now[0], "code": "signal", "source": "SIG249",
                                  "message": "SIG249 received"}


def test_a_reader_waits_for_the_next_entry_or_its_timeout():
    """`wait` returns at once when there is news, wakes when an entry is
    added, and gives up at its timeout; nobody waiting costs nothing."""
    t = Timeline()
    assert t.wait(0, timeout=0.01) is False
    waiter = gevent.spawn(t.wait, 0, 30)
    gevent.sleep(0)
    t.record(Event(ev.SIGNAL, "SIGHUP"))
    assert waiter.get(timeout=10) is True
    assert t.wait(0, timeout=0) is True
    sleeper = gevent.spawn(t.wait, t.last, 30)
    gevent.sleep(0)
    t.wake()
    assert sleeper.get(timeout=10) is False
