"""A job: ContainerPilot's per-job event loop as an explicit state machine.

`Job.handle(event)` is one decision on one whole event (the rules of
docs/behaviour.md §9.2, in order). It never sleeps, never waits and never
reads a clock except the one passed in: processes, Consul and timers are
reached through the small interfaces below, so tests drive a job by feeding
events, with fakes for those interfaces.

The job's life is a `Phase`; every move goes through `_move`, which refuses
a move that `TRANSITIONS` does not list (naming the job and both phases).
Its health is a `Health`. `JobRunner` (at the end) gives a job its real
collaborators: commands, timers, its Consul service and its subscription
on the bus.
"""
from __future__ import annotations

import enum
import logging
import signal
import time
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Mapping, Optional, Protocol

import gevent

from pilot import events as ev
from pilot.commands import Command, pid_env_name
from pilot.config.model import UNLIMITED, HealthConfig, JobConfig
from pilot.events import Event, Timers
from pilot.health import Probe
from pilot.log import log_bug
from pilot.triggers import Trigger

log = logging.getLogger("pilot.jobs")

# Ticks and orders go to the owning job only; they are never published.
TICK_HEARTBEAT = "tick.heartbeat"
TICK_INTERVAL = "tick.interval"
TICK_WHEN_TIMEOUT = "tick.whenTimeout"
TICK_STOP_TIMEOUT = "tick.stopTimeout"
TICK_RESTART = "tick.restart"
TICK_KILL = "tick.kill"
TICK_DRAIN = "tick.drain"
STOP = "tick.stop"  # halt this job alone, at once (reload replaces it)
# Halt a hook whose job stops too (reload): like `shutdown`, a pre-/post-stop
# hook still armed runs once more on its trigger first.
STOP_HOOK = "tick.stopHook"


class Phase(str, enum.Enum):
    """Where a job is in its life (what `-status` shows as its state)."""

    WAITING = "waiting"  # for its trigger: never started, or between `each` runs
    RUNNING = "running"  # its exec runs (a job without exec: started, alive)
    QUEUED = "queued"  # running, and more starts wait for this run to end
    BACKING_OFF = "backing-off"  # exited; its restart waits out `restartDelay`
    SCHEDULED = "scheduled"  # periodic, between runs: waiting for its next tick
    RESTARTING = "restarting"  # stop signal sent; it starts again once the exec exited
    DRAINING = "draining"  # shutting down: the jobs it started stop first
    STOPPING = "stopping"  # halting: `stopping` published, its pre-stop hook runs
    EXITING = "exiting"  # halting: stop signal sent, waiting for the exec to exit
    HELD = "stopped-by-order"  # stopped by `-stop`: nothing starts it but `-start`
    COMPLETE = "complete"  # halted for good: `stopped` published

    def __str__(self) -> str:
        return self.value


P = Phase
# Every legal move. A halt always passes through STOPPING (that is where
# `stopping` is published); only a halting job completes.
TRANSITIONS: Mapping[Phase, FrozenSet[Phase]] = {
    P.WAITING: frozenset({P.RUNNING, P.DRAINING, P.STOPPING}),
    P.RUNNING: frozenset({P.RUNNING, P.QUEUED, P.WAITING, P.BACKING_OFF, P.SCHEDULED,
                          P.RESTARTING, P.DRAINING, P.STOPPING}),
    P.QUEUED: frozenset({P.RUNNING, P.QUEUED, P.RESTARTING, P.DRAINING, P.STOPPING}),
    P.BACKING_OFF: frozenset({P.RUNNING, P.WAITING, P.DRAINING, P.STOPPING}),
    P.SCHEDULED: frozenset({P.RUNNING, P.DRAINING, P.STOPPING}),
    P.RESTARTING: frozenset({P.RUNNING, P.DRAINING, P.STOPPING}),
    P.DRAINING: frozenset({P.STOPPING}),
    P.STOPPING: frozenset({P.EXITING, P.HELD, P.COMPLETE}),
    P.EXITING: frozenset({P.HELD, P.COMPLETE}),
    P.HELD: frozenset({P.RUNNING, P.COMPLETE}),
    P.COMPLETE: frozenset(),
}
HALTING = frozenset({P.STOPPING, P.EXITING})
# How check results count for a job without a `health` block (3.8's rules).
THREE_EIGHT_HEALTH = HealthConfig(exec=None, interval=1, ttl=1, timeout=None)


class Health(str, enum.Enum):
    """A job's health as its checks (or maintenance) last said."""

    IDLE = "idle"  # never started
    UNKNOWN = "unknown"  # started, no check result yet
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    MAINTENANCE = "maintenance"
    ALWAYS_HEALTHY = "always-healthy"  # the telemetry service: healthy while it runs

    @property
    def shown(self) -> str:
        """The word 3.8 shows (`/status`, `containerpilot_events`...)."""
        return "healthy" if self is Health.ALWAYS_HEALTHY else self.value

    def __str__(self) -> str:
        return self.shown


class IllegalTransition(RuntimeError):
    """A move the transition table does not allow: a bug in the rules."""


# -- what a job works with ------------------------------------------------------


class Process(Protocol):
    """A job's exec or health check (`pilot.commands.Command`)."""

    running: bool

    def start(self) -> None: ...

    def signal(self, sig: int) -> bool: ...

    def terminate(self, sig: int) -> bool:
        """Send the stop signal: the end of the run that follows is
        expected (logged calmly), not an error."""


class Service(Protocol):
    """An advertised job's Consul registration (`pilot.discovery.BackgroundService`).
    Every call returns at once; the Consul work happens in the background."""

    def register_with_initial_status(self) -> bool: ...

    def send_heartbeat(self) -> None: ...

    def send_critical(self, output: str) -> None:
        """Mark the TTL check critical now, with `output` as its note."""

    def deregister(self) -> None: ...

    def mark_for_reregistration(self) -> None: ...


class TimerSet(Protocol):
    """Named timers that hand their tick back to the job (`pilot.events.Timers`)."""

    def every(self, key: str, period: float, event: Event) -> None: ...

    def after(self, key: str, delay: float, event: Event) -> None: ...

    def cancel(self, key: str) -> None: ...

    def cancel_all(self) -> None: ...


ORDER = "order"  # a Moment's cause for an order of the control socket: Event(ORDER, action)


@dataclass(frozen=True)
class Moment:
    """What one event did to a job that the bus does not say: a run of its
    exec began (and why), or the exec exited (and what follows). `Moments`
    (the timeline) puts it into words."""

    job: str
    cause: Event  # what the job handled: an event, one of its ticks, Event(ORDER, action)
    before: Phase
    after: Phase
    started: bool  # a run of its exec began
    pid: Optional[int]  # the running exec's pid
    exit: Optional[object]  # the exec's ExitStatus, when `cause` was its exit
    timed_out: bool  # that exit was its `timeout` killing it
    restarts: int  # restarts done so far
    limit: int  # its `restarts` (UNLIMITED: no limit)
    restart_in: Optional[float]  # seconds until its restart, while backing off
    by_order: bool  # the restart under way was ordered (else a liveness restart)
    detail: str  # what it waits for or does next, as -status says it


class Moments(Protocol):
    """Where a job's runner tells its moments (`pilot.timeline.Timeline`)."""

    def job_moment(self, moment: Moment) -> None: ...


# 3.8's DEBUG lines for the job timers it shares with Pilot: `timer: {TimerExpired
# web.heartbeat}` for periodic ones, `timeout: {TimerExpired web.wait-timeout}`.
TIMER_LINES = {TICK_HEARTBEAT: ("timer", "heartbeat"), TICK_INTERVAL: ("timer", "run-every"),
               TICK_WHEN_TIMEOUT: ("timeout", "wait-timeout"),
               TICK_STOP_TIMEOUT: ("timeout", "stopping-timeout")}


# -- the state machine --------------------------------------------------------------


class Job:
    """One job's state and its reaction to events.

    `dependent` is the job waited for when this one halts (its pre-stop
    hook, §9.7); `stop_after` the jobs its events started, which stop
    first at shutdown. `kill_timeout` bounds the wait for the exec to exit
    after its stop signal.
    """

    def __init__(self, cfg: JobConfig, *, publish: Callable[[Event], None],
                 timers: TimerSet, process: Optional[Process] = None,
                 check: Optional[Process] = None, service: Optional[Service] = None,
                 dependent: Optional[str] = None, kill_timeout: float = 5.0,
                 stop_after: FrozenSet[str] = frozenset(),
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.name = cfg.name
        self.publish = publish
        self.timers = timers
        self.process = process
        self.check = check
        self.service = service
        self.dependent = dependent
        self.kill_timeout = kill_timeout
        self.stop_after = frozenset(stop_after)
        self.clock = clock
        self.phase = Phase.WAITING
        self.since = clock()  # when the job entered its phase
        self.health = Health.ALWAYS_HEALTHY if cfg.always_healthy else Health.IDLE
        self.started = False
        self.restarts_done = 0
        self.runs = 0
        self.forced = False  # its exec had to be SIGKILLed when it would not stop
        self.queued = 0  # starts waiting for the current run to end
        self._hold = False  # the halt in progress was ordered (-stop): end held, not complete
        self._began = clock()  # when the periodic schedule started
        self._restart_at: Optional[float] = None
        self._by_order = True  # the restart in progress was ordered (else a liveness restart)
        self.failures = 0  # failed checks in a row
        self.passes = 0  # passed checks in a row
        self.check_output = ""  # what the last check said
        self.in_start_period = False
        self._stopped_seen: set = set()
        self.trigger = Trigger(cfg.when)
        self._restarts_left = cfg.restarts
        self._needs_initial_registration = bool(cfg.initial_status and service)
        self._delay = 0.0
        self._run_started = 0.0

    # -- life -----------------------------------------------------------------

    def begin(self) -> None:
        """Start the job's timers and registration, before `startup`."""
        cfg = self.cfg
        self._schedule()
        if not cfg.periodic and cfg.when.timeout and cfg.when.timeout > 0:
            self.timers.after(TICK_WHEN_TIMEOUT, cfg.when.timeout, self._tick(TICK_WHEN_TIMEOUT))
        self._register_initial()

    def _schedule(self) -> None:
        """The periodic timers: the interval of a periodic job, the health tick."""
        cfg = self.cfg
        if cfg.periodic:
            self._began = self.clock()
            self.timers.every(TICK_INTERVAL, cfg.when.interval, self._tick(TICK_INTERVAL))
        if cfg.health:
            self.timers.every(TICK_HEARTBEAT, cfg.health.interval, self._tick(TICK_HEARTBEAT))

    def hold_in_maintenance(self) -> None:
        """Start life in maintenance (a job a reload brings in while Pilot is
        in maintenance): no registration, no heartbeat, until exitMaintenance.
        Jobs triggered by enterMaintenance are not run again."""
        self._set_health(Health.MAINTENANCE)
        self._needs_initial_registration = False
        if self.service is not None:
            self.service.mark_for_reregistration()

    @property
    def complete(self) -> bool:
        return self.phase is Phase.COMPLETE

    @property
    def status(self) -> str:
        """The health as 3.8 words it."""
        return self.health.shown

    def handle(self, event: Event) -> bool:
        """Apply the first matching rule; False once the job is complete."""
        if self.phase is Phase.COMPLETE:
            return False
        if event.code == ev.STOPPED and (event.source in self.stop_after
                                         or event.source == self.trigger.hook_source):
            self._stopped_seen.add(event.source)
        if self.phase in HALTING:
            self._while_halting(event)
        else:
            self._register_initial()
            for rule in self._rules:
                if rule(self, event):
                    break
        return self.phase is not Phase.COMPLETE

    # -- the one door ----------------------------------------------------------

    def _move(self, to: Phase) -> None:
        if to not in TRANSITIONS[self.phase]:
            raise IllegalTransition(
                f"job {self.name}: cannot move from {self.phase.value} to {to.value}")
        if to is not self.phase:
            self.since = self.clock()
        self.phase = to

    def _set_health(self, health: Health) -> None:
        """The telemetry service's job stays healthy whatever happens."""
        if self.health is not Health.ALWAYS_HEALTHY:
            self.health = health

    # -- rules (§9.2), each returns True when it applied ---------------------------

    def _on_draining(self, e: Event) -> bool:
        """Shutdown in dependency order: the jobs this job's events started
        stop first (bounded by the kill timeout). Nothing starts the exec
        meanwhile (rule 6)."""
        if self.phase is not Phase.DRAINING:
            return False
        if e.code == TICK_DRAIN or (e.code == ev.STOPPED and not self._pending_dependents()):
            self._halt()
            return True
        return e.code in (TICK_INTERVAL, TICK_WHEN_TIMEOUT, TICK_RESTART, ev.SHUTDOWN,
                          STOP, STOP_HOOK) or self.trigger.concerns(e)

    def _on_heartbeat(self, e: Event) -> bool:
        if e.code != TICK_HEARTBEAT:
            return False
        if self.health in (Health.IDLE, Health.MAINTENANCE):
            return True
        if self.cfg.health and self.cfg.health.checked and self.check is not None:
            if self.check.running:
                log.debug("%s: health check still running, tick skipped", self.name)
            else:
                self.check.start()
        elif self.service is not None:
            self.service.send_heartbeat()
        return True

    def _on_when_timeout(self, e: Event) -> bool:
        if e.code != TICK_WHEN_TIMEOUT:
            return False
        if not self.started:
            self.publish(Event(ev.TIMER_EXPIRED, self.name))
            self._halt()
        return True

    def _on_interval(self, e: Event) -> bool:
        if e.code != TICK_INTERVAL:
            return False
        if self._take_restart():
            self._start()
        else:
            self._halt()
        return True

    def _on_restart_tick(self, e: Event) -> bool:
        if e.code != TICK_RESTART:
            return False
        self._start()
        return True

    def _on_check_result(self, e: Event) -> bool:
        """Rules 4 and 5 (§9.5), with thresholds and a start period beyond 3.8."""
        if e.source != "check." + self.name or e.code not in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            return False
        if self.health is Health.MAINTENANCE:
            return True
        self.check_output = getattr(self.check, "output", "") or ""
        if e.code == ev.EXIT_FAILED:
            self._check_failed()
        else:
            self._check_passed()
        return True

    def _check_passed(self) -> None:
        h = self.cfg.health or THREE_EIGHT_HEALTH
        self.in_start_period = False  # the first pass ends it (Docker's --start-period)
        self.failures, self.passes = 0, self.passes + 1
        turned = self.passes >= h.success_threshold and self.health is not Health.HEALTHY
        if self.passes >= h.success_threshold:
            self._set_health(Health.HEALTHY)
            if turned or h.every_result:
                self.publish(Event(ev.HEALTHY, self.name))
            if self.service is not None:
                self.service.send_heartbeat()

    def _check_failed(self) -> None:
        h = self.cfg.health or THREE_EIGHT_HEALTH
        if self.in_start_period and self.clock() < self._run_started + h.start_period:
            log.debug("%s: check failed during its start period: %s", self.name, self.check_output)
            return
        self.in_start_period = False
        self.passes, self.failures = 0, self.failures + 1
        if self.failures < h.failure_threshold:
            return
        turned = self.health is not Health.UNHEALTHY
        self._set_health(Health.UNHEALTHY)
        if turned or h.every_result:
            self.publish(Event(ev.UNHEALTHY, self.name))
        if turned and self.service is not None:
            self.service.send_critical(self.check_output)  # at once, not when the TTL runs out
        if turned and h.on_unhealthy == "restart":
            self._liveness_restart()

    def _liveness_restart(self) -> None:
        """`onUnhealthy: restart`: stop the exec like an order to restart,
        and let its exit be handled as any exit (a restart counted, the
        back-off honoured). Never for a job that is not simply running."""
        if self.phase not in (Phase.RUNNING, Phase.QUEUED) or not self._process_alive():
            return
        log.warning("%s restarted: unhealthy after %d failed check%s (%s)", self.name, self.failures,
                    "" if self.failures == 1 else "s", self.check_output)
        self._restart_now(by_order=False)

    def _on_shutdown(self, e: Event) -> bool:
        """Rule 6 (and a reload's orders to stop one job): no more restarts,
        no queued starts; an armed stop hook stays for one more run."""
        if e != ev.GLOBAL_SHUTDOWN and e.code not in (STOP, STOP_HOOK):
            return False
        self._restarts_left = 0
        self.queued = 0
        self.timers.cancel(TICK_RESTART)
        hooked = self.trigger.hook_source
        # A hook whose job has already stopped would wait for ever (3.8 does).
        hook = self.trigger.armed and hooked is not None and hooked not in self._stopped_seen
        if hook and self.cfg.exec and e.code != STOP:
            self.trigger.one_more()
            self._settle()
        elif e == ev.GLOBAL_SHUTDOWN and self._pending_dependents():
            self._move(Phase.DRAINING)
            self.timers.after(TICK_DRAIN, max(self.kill_timeout, 0.0), self._tick(TICK_DRAIN))
        else:
            self._halt()
        return True

    def _on_maintenance(self, e: Event) -> bool:
        if e == ev.GLOBAL_ENTER_MAINTENANCE:
            self._set_health(Health.MAINTENANCE)
            if self.service is not None:
                self.service.deregister()
                self.service.mark_for_reregistration()
        elif e == ev.GLOBAL_EXIT_MAINTENANCE:
            self._set_health(Health.UNKNOWN)
        else:
            return False
        self._on_trigger(e)
        return True

    def _on_own_exit(self, e: Event) -> bool:
        if e.source != self.name or e.code not in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            return False
        if self.queued and self.phase is not Phase.DRAINING:
            self._start_queued()
            if not self.cfg.periodic and self._take_restart():
                self.restarts_done += 1  # 3.8 restarts after the queued run
                self.queued += 1
                self._move(Phase.QUEUED)
        elif self.cfg.periodic:
            if self.phase is Phase.RUNNING and not self._process_alive():
                self._move(Phase.SCHEDULED)
        elif self._take_restart():
            self.restarts_done += 1
            self._restart()
        elif self.trigger.armed:
            self._settle()
        else:
            self._set_health(Health.UNKNOWN)
            self._halt()
        return True

    def _on_trigger(self, e: Event) -> bool:
        if not self.trigger.fires(e):
            return False
        self._start()
        return True

    def _on_held(self, e: Event) -> bool:
        """Stopped by order: only an order to stop for good reaches it (its
        `stopping`/`stopped` were published when it was stopped)."""
        if self.phase is not Phase.HELD:
            return False
        if e == ev.GLOBAL_SHUTDOWN or e.code in (STOP, STOP_HOOK):
            self._move(Phase.COMPLETE)
        return True

    def _on_restarting(self, e: Event) -> bool:
        """Restarting: its exec got its stop signal; the exit starts it again
        (SIGKILL after the kill timeout). Shutdown takes over as a halt."""
        if self.phase is not Phase.RESTARTING:
            return False
        if e.source == self.name and e.code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            self._move(Phase.RUNNING)
            if not self._by_order and not self.cfg.periodic:
                # A liveness restart: counted and delayed as an exit's restart
                # is, and done even when the job's restart limit is used up.
                self._take_restart()
                self.restarts_done += 1
                self._restart()
                return True
            if not self._by_order:
                return self._on_own_exit(e)
            self._fresh_health()
            self._run()
            if self.queued:
                self._move(Phase.QUEUED)
            return True
        if e.code == TICK_KILL:
            log.warning('killing processes for job "%s": it did not stop within %gs of its stop signal',
                        self.name, self.kill_timeout)
            self.process.terminate(signal.SIGKILL)  # its exit event restarts it
            return True
        return False

    _rules = (
        _on_held, _on_restarting, _on_draining, _on_heartbeat, _on_when_timeout, _on_interval, _on_restart_tick,
        _on_check_result, _on_shutdown, _on_maintenance, _on_own_exit, _on_trigger,
    )

    # -- actions ----------------------------------------------------------------------

    def _tick(self, code: str) -> Event:
        return Event(code, self.name)

    def _pending_dependents(self) -> FrozenSet[str]:
        return self.stop_after - self._stopped_seen

    def _take_restart(self) -> bool:
        if self._restarts_left == UNLIMITED:
            return True
        if self._restarts_left > 0:
            self._restarts_left -= 1
            return True
        return False

    def _restart(self) -> None:
        delay = self._next_delay()
        if delay > 0:
            log.info("%s: restarting in %.3gs", self.name, delay)
            self._move(Phase.BACKING_OFF)
            self._restart_at = self.clock() + delay
            self.timers.after(TICK_RESTART, delay, self._tick(TICK_RESTART))
        else:
            self._start()

    def _next_delay(self) -> float:
        """Restart back-off: doubles up to the cap; a long run resets it."""
        cfg = self.cfg
        if cfg.restart_delay <= 0:
            return 0.0
        ran = self.clock() - self._run_started
        if self._delay == 0 or ran >= cfg.restart_reset_after:
            self._delay = cfg.restart_delay
        else:
            cap = max(cfg.restart_delay_max, cfg.restart_delay)
            self._delay = min(self._delay * 2, cap)
        return self._delay

    def _start(self) -> None:
        """Start the exec now, or queue the start behind the run still alive
        (runs never overlap, §9.9): it happens when that run's exit comes."""
        self.timers.cancel(TICK_WHEN_TIMEOUT)
        self.started = True
        if self.phase is Phase.RESTARTING:
            self.queued += 1  # after the restart's own run
            return
        self._fresh_health()
        if self.process is not None and self.process.running:
            self.queued += 1
            self._move(Phase.QUEUED)
            return
        self._move(Phase.RUNNING)
        self._run()

    def _fresh_health(self) -> None:
        """A new run has not been checked yet (maintenance stays)."""
        if self.health is not Health.MAINTENANCE:
            self._set_health(Health.UNKNOWN)

    def _start_queued(self) -> None:
        self.queued -= 1
        self._move(Phase.QUEUED if self.queued else Phase.RUNNING)
        self._run()

    def _run(self) -> None:
        self._run_started = self.clock()
        self.failures = self.passes = 0
        self.in_start_period = bool(self.cfg.health and self.cfg.health.start_period)
        if self.process is not None:
            self.runs += 1
            self.process.start()

    def _settle(self) -> None:
        """Between runs, waiting for the trigger (or still running)."""
        if self.phase is Phase.BACKING_OFF:
            self._move(Phase.WAITING)
        elif self.phase is Phase.QUEUED:
            self._move(Phase.RUNNING)
        elif self.phase is Phase.RUNNING and not self._process_alive():
            self._move(Phase.WAITING)

    def _process_alive(self) -> bool:
        return self.process is not None and self.process.running

    def _register_initial(self) -> None:
        if self._needs_initial_registration:
            if self.service.register_with_initial_status():
                self._needs_initial_registration = False

    # -- halting (§9.8) -----------------------------------------------------------------

    def _halt(self, hold: bool = False) -> None:
        """`stopping`, wait for the pre-stop hook, stop, `stopped`. With
        `hold` (an order to stop) the job ends held, its restarts kept for
        when it is started again."""
        self._move(Phase.STOPPING)
        self._hold = hold
        if not hold:
            self._restarts_left = 0
        self.queued = 0
        self.timers.cancel_all()
        self.publish(Event(ev.STOPPING, self.name))
        if self.dependent:
            if self.cfg.stop_timeout > 0:
                self.timers.after(TICK_STOP_TIMEOUT, self.cfg.stop_timeout,
                                  self._tick(TICK_STOP_TIMEOUT))
            return
        self._finish()

    def _while_halting(self, e: Event) -> None:
        if self.phase is Phase.EXITING:
            if e.source == self.name and e.code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
                self._complete()
            elif e.code == TICK_KILL:
                self._kill()
        elif e == Event(ev.STOPPED, self.dependent or ""):
            self._finish()
        elif e.code == TICK_STOP_TIMEOUT:
            log.warning("%s: stopTimeout expired waiting for %s", self.name, self.dependent)
            self._finish()

    def _finish(self) -> None:
        """Stop the processes and deregister; `stopped` once the exec has
        really exited, so post-stop hooks run after it (SIGKILL after the
        kill timeout)."""
        self.timers.cancel_all()
        if self.check is not None and self.check.running:
            self.check.terminate(signal.SIGTERM)
        # Signal first (§9.8 order): a hung Consul agent must not keep the
        # process running while its deregistration waits.
        exiting = self._process_alive()
        if exiting:
            self._move(Phase.EXITING)
            self.process.terminate(self.cfg.stop_signal)
            self.timers.after(TICK_KILL, max(self.kill_timeout, 0.0), self._tick(TICK_KILL))
        if self.service is not None:
            self.service.deregister()
        if not exiting:
            self._complete()

    def _kill(self) -> None:
        log.warning('killing processes for job "%s": it did not stop within %gs of its stop signal',
                    self.name, self.kill_timeout)
        self.process.terminate(signal.SIGKILL)
        if self._hold:
            return  # stopped by order: held once it has exited, so -start never overlaps it
        self.forced = True
        self._complete()  # shutting down: the exit event may never come, done

    def _complete(self) -> None:
        self.timers.cancel_all()
        self._move(Phase.HELD if self._hold else Phase.COMPLETE)
        self._hold = False
        self.publish(Event(ev.STOPPED, self.name))

    # -- orders from the control socket ------------------------------------------------

    def order(self, action: str) -> Optional[str]:
        """`stop`, `start` or `restart` this job now; None when done (or
        under way), else why it cannot be done (nothing changes then)."""
        refusal = self._refusal(action)
        if refusal:
            return refusal
        if action == "stop":
            if self.phase is not Phase.HELD:
                self._halt(hold=True)
        elif action == "restart" and self._process_alive():
            self._restart_now()
        else:
            self._start_by_order()
        return None

    def _refusal(self, action: str) -> Optional[str]:
        if self.phase is Phase.COMPLETE:
            return f"job {self.name} has completed (it runs again only if a reload changes it)"
        if self.phase in (Phase.DRAINING, Phase.STOPPING, Phase.EXITING):
            return f"job {self.name} is stopping"
        if action == "start" and self.phase in (Phase.RUNNING, Phase.QUEUED, Phase.RESTARTING):
            pid = getattr(self.process, "pid", None) if self._process_alive() else None
            return f"job {self.name} is already running" + (f" (pid {pid})" if pid else "")
        if action == "restart" and self.phase is Phase.RESTARTING:
            return f"job {self.name} is already restarting"
        if action == "restart" and self.process is None and self.phase is Phase.RUNNING:
            return f"job {self.name} has no exec to restart"
        return None

    def _start_by_order(self) -> None:
        """Start now whatever it waited for; a `once` trigger still pending
        is used up (the job would otherwise run again when it comes)."""
        if self.phase is Phase.HELD:
            self._schedule()  # its timers ended when it stopped
            self._move(Phase.RUNNING)
            self._fresh_health()
            self._run()
            return
        self.timers.cancel(TICK_RESTART)
        self.trigger.consume_once()
        self._start()

    def _restart_now(self, by_order: bool = True) -> None:
        """Stop the exec (its stop signal, SIGKILL after the kill timeout)
        and start it again when it has exited: at once and without using up
        a restart when ordered; as its exit would be otherwise."""
        self.queued = 0
        self._by_order = by_order
        self._move(Phase.RESTARTING)
        self.process.terminate(self.cfg.stop_signal)
        self.timers.after(TICK_KILL, max(self.kill_timeout, 0.0), self._tick(TICK_KILL))

    def signal(self, sig: int) -> Optional[str]:
        """Send `sig` to the exec's process group; why not, if it has none."""
        if not self._process_alive():
            return f"job {self.name} has no process to signal"
        self.process.signal(sig)
        return None

    # -- what -status shows --------------------------------------------------------------

    def detail(self) -> str:
        """What the job waits for or will do next, in the user's words."""
        now = self.clock()
        if self.phase is Phase.WAITING:
            waiting = self.trigger.describe()
            return f"waiting for: {waiting}" if waiting else ""
        if self.phase is Phase.SCHEDULED and self.cfg.when.interval:
            period = self.cfg.when.interval
            return f"next run in {_seconds(period - ((now - self._began) % period))}"
        if self.phase is Phase.BACKING_OFF and self._restart_at is not None:
            return f"restart in {_seconds(max(self._restart_at - now, 0.0))}"
        if self.phase is Phase.QUEUED:
            return f"{self.queued} more run(s) queued"
        if self.phase is Phase.DRAINING:
            return "waiting for " + ", ".join(sorted(self._pending_dependents())) + " to stop"
        if self.phase is Phase.STOPPING and self.dependent:
            return f"waiting for {self.dependent} to stop"
        if self.phase is Phase.HELD:
            return f"stopped by order; pilot -start {self.name} starts it"
        if self.health is Health.UNHEALTHY and self.check_output:
            return (f"check failing: {self.check_output.splitlines()[0]}"
                    f" ({self.failures} in a row)")
        if self.in_start_period:
            return "in its health check's start period"
        return ""


def _seconds(x: float) -> str:
    return f"{x:.0f}s" if x >= 10 else f"{x:.1f}s".replace(".0s", "s")


def sources_of(cfg: JobConfig, dependent: Optional[str], stop_after: FrozenSet[str]) -> FrozenSet[str]:
    """Every event source the rules above look at for this job: the bus
    delivers it nothing else (ticks and orders come straight to it)."""
    found = {ev.GLOBAL, cfg.name, "check." + cfg.name} | set(stop_after) | set(cfg.when.sources)
    if dependent:
        found.add(dependent)
    return frozenset(found)


# -- a job with its real collaborators -----------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    """One job as `-status`, `/v3/status` and telemetry's `/status` show it."""

    name: str
    phase: Phase
    health: Health
    since: float  # monotonic time it entered `phase`
    since_wall: float  # the same moment as a Unix time, for people
    detail: str  # what it waits for or does next, in the user's words
    health_checked: bool  # it has a health check (else -status shows `-`)
    failures: int  # failed checks in a row
    check_output: str  # what its last check said
    in_start_period: bool  # started recently: failures do not count yet
    failed: bool  # complete after a failed run: it will not run again
    pid: Optional[int]
    restarts: int
    runs: int
    last_exit: Optional[object]  # exit code, or the reason it ended otherwise
    advertised: bool
    address: str
    port: int

    @property
    def status(self) -> str:
        return self.health.shown

    def problem(self) -> Optional[str]:
        """Why this job makes the container unhealthy, or None: a health
        check that does not pass (in its start period or not yet checked
        counts as not passing), or a run that failed for good. A job stopped
        by order is not a problem."""
        if self.failed:
            return f"failed for good (last exit: {self.last_exit})"
        if not self.health_checked or self.phase in (Phase.HELD, Phase.COMPLETE):
            return None
        if self.health in (Health.HEALTHY, Health.ALWAYS_HEALTHY):
            return None
        if self.in_start_period:
            return "in its start period"
        if self.health is Health.UNHEALTHY:
            return self.check_output or "unhealthy"
        return f"not healthy yet ({self.health.shown})"

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.name, "state": self.phase.value, "status": self.health.shown,
                "pid": self.pid, "restarts": self.restarts, "runs": self.runs,
                "last_exit": self.last_exit, "advertised": self.advertised,
                "detail": self.detail, "since": self.since_wall,
                "health_checked": self.health_checked, "failures": self.failures,
                "check_output": self.check_output}


class JobRunner:
    """A Job wired to the bus: its exec and health check as commands, its
    timers, its Consul service, and its subscription (only the sources its
    rules look at). The job's work runs inside the bus's delivery; the
    runner owns no greenlet of its own besides its timers and commands."""

    def __init__(self, cfg: JobConfig, *, bus, environ: dict, service: Optional[Service] = None,
                 dependent: Optional[str] = None, stop_after: FrozenSet[str] = frozenset(),
                 kill_timeout: float = 5.0,
                 on_complete: Callable[["JobRunner"], None] = lambda runner: None,
                 moments: Optional[Moments] = None):
        self.cfg = cfg
        self._bus = bus
        self._sub = None
        self._moments = moments
        self._pending: Optional[tuple] = None  # the event being handled, for `_witness`
        self._on_complete = on_complete
        self.timers = Timers(bus, lambda: self._sub)
        process = check = None
        if cfg.exec:
            process = Command(cfg.name, cfg.exec, timeout=cfg.exec_timeout, raw=cfg.raw_logging,
                              environ=environ, publish=bus.publish, launch=cfg.launch)
        if cfg.health and (cfg.health.http or cfg.health.tcp):
            h = cfg.health
            check = Probe(f"check.{cfg.name}", timeout=h.interval if h.timeout is None else h.timeout,
                          http=h.http, tcp=h.tcp, publish=bus.publish)
        elif cfg.health and cfg.health.exec:
            h = cfg.health
            timeout = h.interval if h.timeout is None else h.timeout
            # The check runs as the job runs: same user, directory, environment.
            check = Command(f"check.{cfg.name}", h.exec, timeout=timeout, raw=h.raw_logging,
                            field="check", environ=environ, publish=bus.publish, launch=cfg.launch,
                            env_names=(pid_env_name("check"), pid_env_name(f"check_{cfg.name}")))
        self._service = service
        self._kill_timeout = kill_timeout
        self._stopped_later: Optional[gevent.Greenlet] = None  # `stopped`, once it left Consul
        self.job = Job(cfg, publish=self._publish, timers=self.timers, process=process,
                       check=check, service=service, dependent=dependent,
                       kill_timeout=kill_timeout, stop_after=stop_after)
        self.sources = sources_of(cfg, dependent, stop_after)

    @property
    def name(self) -> str:
        return self.cfg.name

    def _publish(self, event: Event) -> None:
        """The job's events, `stopped` once it has also left Consul: a job
        that stops after it (the Consul agent whose health started it) must
        not cut its deregistration short. The wait is bounded by the kill
        timeout (a hung agent holds nothing up for longer)."""
        self._witness()
        leaving = getattr(self._service, "leaving", None)
        if event.code == ev.STOPPED and event.source == self.name and leaving is not None \
                and not leaving.dead:
            self._stopped_later = gevent.spawn(self._publish_when_left, leaving, event)
            return
        self._bus.publish(event)

    def _publish_when_left(self, leaving, event: Event) -> None:
        leaving.join(timeout=max(self._kill_timeout, 1.0))
        self._bus.publish(event)

    @property
    def complete(self) -> bool:
        return self.job.complete

    def start(self) -> None:
        """Subscribe, then start timers and registration (before `startup`)."""
        self._sub = self._bus.subscribe(self.handle, self.sources)
        self.job.begin()

    def handle(self, event: Event) -> None:
        """One event. A bug met while handling it is logged and the job goes
        on with the next event: the supervisor never dies of it."""
        if event.code in TIMER_LINES and log.isEnabledFor(logging.DEBUG):
            self._log_timer(event.code)
        self._pending = (event, self._before(event))
        try:
            alive = self.job.handle(event)
        except Exception as exc:  # noqa: BLE001 - keep supervising
            log_bug(log, f"job {self.name}: internal error on {event}", exc)
            alive = not self.job.complete
        self._witness()
        if not alive:
            self._close()

    def _log_timer(self, code: str) -> None:
        kind, suffix = TIMER_LINES[code]
        if not (self.cfg.always_healthy and code == TICK_HEARTBEAT):  # 3.8 keeps its own quiet
            log.debug("%s: {TimerExpired %s.%s}", kind, self.name, suffix)

    # -- moments: what the timeline hears of this job --------------------------------

    def _before(self, cause: Event) -> tuple:
        """What `_witness` compares with: the phase, the runs, and how the
        exec's run ended when `cause` is its exit (a restart resets it)."""
        job = self.job
        process = job.process
        if cause.source == self.name and cause.code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED) \
                and process is not None:
            return job.phase, job.runs, process.last_status, getattr(process, "timed_out", False)
        return job.phase, job.runs, None, False

    def _witness(self) -> None:
        """Tell the moments a start or an exit of the event being handled
        (the bus carries neither the cause of a start nor what follows an
        exit). Called before the first event the job publishes meanwhile,
        so an exit is told before the `stopping` it leads to."""
        if self._pending is None:
            return
        cause, (phase, runs, exit_status, timed_out) = self._pending
        self._pending = None
        job = self.job
        process = job.process
        started = job.runs != runs and process is not None and process.running
        if self._moments is None or not (started or exit_status is not None):
            return
        cfg = self.cfg
        try:
            self._moments.job_moment(Moment(
                job=self.name, cause=cause, before=phase, after=job.phase, started=started,
                pid=getattr(process, "pid", None) if started else None,
                exit=exit_status, timed_out=timed_out, restarts=job.restarts_done,
                limit=cfg.restarts, by_order=job._by_order,
                restart_in=(max(job._restart_at - job.clock(), 0.0)
                            if job.phase is Phase.BACKING_OFF and job._restart_at else None),
                detail=job.detail()))
        except Exception as exc:  # noqa: BLE001 - the timeline must not cost the job
            log_bug(log, f"job {self.name}: timeline failed on {cause}", exc)

    def tell(self, event: Event) -> None:
        """Deliver `event` to this job alone, in bus order (a reload's
        `startup` for a new job, its orders to stop one)."""
        if self._sub is not None and self._sub.active:
            self._bus.send(self._sub, event)

    def order(self, code: str) -> None:
        """An order for this job alone (STOP / STOP_HOOK)."""
        self.tell(Event(code, self.name))

    def order_now(self, action: str) -> Optional[str]:
        """A control-socket order (stop, start, restart): done at once, like
        an event (the job never waits), or refused with the reason."""
        cause = Event(ORDER, action)
        self._pending = (cause, self._before(cause))
        try:
            refusal = self.job.order(action)
        except Exception as exc:  # noqa: BLE001 - keep supervising
            log_bug(log, f"job {self.name}: internal error on order {action}", exc)
            return f"internal error: {exc!r}"
        finally:
            self._witness()
        if self.job.complete:
            self._close()
        return refusal

    def _close(self) -> None:
        """A complete job leaves the bus and keeps no timer."""
        self.timers.cancel_all()
        if self._sub is not None:
            self._sub.cancel()
        self._on_complete(self)

    def commands(self):
        return [c for c in (self.job.process, self.job.check) if c is not None]

    def status(self) -> JobStatus:
        job, cfg = self.job, self.cfg
        process = job.process
        last = process.last_status if process is not None else None
        if last is None:
            last_exit = None
        elif last.signal is None and last.error is None:
            last_exit = last.code
        else:
            last_exit = last.reason
        return JobStatus(
            name=cfg.name, phase=job.phase, health=job.health, since=job.since,
            since_wall=round(time.time() - (time.monotonic() - job.since), 3), detail=job.detail(),
            pid=process.pid if process is not None and process.running else None,
            restarts=job.restarts_done, runs=job.runs, last_exit=last_exit,
            advertised=cfg.advertised, address=cfg.ip or "", port=cfg.port,
            health_checked=bool(cfg.health and cfg.health.checked),
            failures=job.failures, check_output=job.check_output,
            in_start_period=job.in_start_period,
            failed=job.complete and last is not None and not last.success)
