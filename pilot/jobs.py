"""A job: ContainerPilot's per-job event loop as a state machine.

`Job.handle(event)` is one decision on one whole event (SPEC §9.2's rules,
in order). It never sleeps and never waits on a clock: processes, Consul and
timers are reached through the small objects passed in, so tests drive a
job by feeding events, with fakes for those objects.
"""
from __future__ import annotations

import logging
import signal
import time
from typing import Callable, Optional

from pilot import events as ev
from pilot.config.model import UNLIMITED, JobConfig
from pilot.events import Event

log = logging.getLogger("pilot.jobs")

# Ticks go to the owning job's mailbox only; they are never published.
TICK_HEARTBEAT = "tick.heartbeat"
TICK_INTERVAL = "tick.interval"
TICK_WHEN_TIMEOUT = "tick.whenTimeout"
TICK_STOP_TIMEOUT = "tick.stopTimeout"
TICK_RESTART = "tick.restart"
TICK_KILL = "tick.kill"
TICK_DRAIN = "tick.drain"
STOP = "tick.stop"  # halt this job alone, as at shutdown (reload uses it)
# Halt a hook whose job stops too (reload): like `shutdown`, a pre-/post-stop
# hook still armed runs once more on its trigger first.
STOP_HOOK = "tick.stopHook"

# Phases of a job's life (`status` is the health side).
WAITING = "waiting"  # not running; waiting for its trigger or a restart
RUNNING = "running"  # started at least once and not halting
STOPPING = "stopping"  # halting: waiting for its pre-stop dependent
COMPLETE = "complete"

TELEMETRY_JOB = "containerpilot"


class Job:
    """One job's state and its reaction to events.

    `process` and `check` are `commands.Command`-like (start, signal,
    running); `service` is a `discovery.ServiceDefinition`-like object or
    None; `timers` is an `events.Timers`-like object; `publish` puts an
    event on the bus. `dependent` is the name of the job waited for when
    this one halts (SPEC §9.7).
    """

    def __init__(self, cfg: JobConfig, *, publish: Callable[[Event], None],
                 timers, process=None, check=None, service=None,
                 dependent: Optional[str] = None, kill_timeout: float = 5.0,
                 stop_after: frozenset = frozenset(),
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
        self._stopped_seen: set = set()
        self._draining = False
        self.clock = clock
        self.phase = WAITING
        self.status = "healthy" if cfg.name == TELEMETRY_JOB else "idle"
        self.started = False
        self.restarts_done = 0
        self.runs = 0
        self._trigger: Optional[Event] = _trigger(cfg)
        self._starts_left = _starts(cfg)
        self._restarts_left = cfg.restarts
        self._needs_initial_registration = bool(cfg.initial_status and service)
        self._delay = 0.0
        self._run_started = 0.0
        self._awaiting_exit = False

    # -- life -------------------------------------------------------------

    def begin(self) -> None:
        """Start the job's timers and registration, before `startup`."""
        cfg = self.cfg
        if cfg.periodic:
            self.timers.every(TICK_INTERVAL, cfg.when.interval, self._tick(TICK_INTERVAL))
        elif cfg.when.timeout and cfg.when.timeout > 0:
            self.timers.after(TICK_WHEN_TIMEOUT, cfg.when.timeout, self._tick(TICK_WHEN_TIMEOUT))
        if cfg.health:
            self.timers.every(TICK_HEARTBEAT, cfg.health.interval, self._tick(TICK_HEARTBEAT))
        self._register_initial()

    def hold_in_maintenance(self) -> None:
        """Start life in maintenance (a job a reload brings in while Pilot is
        in maintenance): no registration, no heartbeat, until exitMaintenance.
        Jobs triggered by enterMaintenance are not run again."""
        if self.name != TELEMETRY_JOB:
            self.status = "maintenance"
        self._needs_initial_registration = False
        if self.service is not None:
            self.service.mark_for_reregistration()

    @property
    def complete(self) -> bool:
        return self.phase == COMPLETE

    def handle(self, event: Event) -> bool:
        """Apply the first matching rule; False once the job is complete."""
        if self.phase == COMPLETE:
            return False
        if event.code == ev.STOPPED and (event.source in self.stop_after
                                         or event.source == self.cfg.when.source):
            self._stopped_seen.add(event.source)
        if self.phase == STOPPING:
            self._while_stopping(event)
            return self.phase != COMPLETE
        self._register_initial()
        for rule in self._rules:
            if rule(self, event):
                break
        return self.phase != COMPLETE

    # -- rules (SPEC §9.2), each returns True when it applied --------------

    def _on_heartbeat(self, e: Event) -> bool:
        if e.code != TICK_HEARTBEAT:
            return False
        if self.status in ("idle", "maintenance"):
            return True
        if self.cfg.health and self.cfg.health.exec and self.check is not None:
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
        if e.source != "check." + self.name or e.code not in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            return False
        if self.status == "maintenance":
            return True
        if e.code == ev.EXIT_FAILED:
            self.status = "unhealthy"
            self.publish(Event(ev.UNHEALTHY, self.name))
        else:
            self.status = "healthy"
            self.publish(Event(ev.HEALTHY, self.name))
            if self.service is not None:
                self.service.send_heartbeat()
        return True

    def _on_drained(self, e: Event) -> bool:
        """Shutdown in dependency order: jobs started by this job's events
        stop first (bounded by the kill timeout)."""
        if not self._draining:
            return False
        if e.code == TICK_DRAIN or (e.code == ev.STOPPED and not self._pending_dependents()):
            self._draining = False
            self._halt()
            return True
        # Shutting down already: nothing may start the exec again (rule 6).
        return e.code in (TICK_INTERVAL, TICK_WHEN_TIMEOUT, TICK_RESTART) or e == self._trigger

    def _on_shutdown(self, e: Event) -> bool:
        if e != ev.GLOBAL_SHUTDOWN and e.code not in (STOP, STOP_HOOK):
            return False
        self._restarts_left = 0
        self.timers.cancel(TICK_RESTART)
        hook = self._trigger is not None and self._trigger.code in (ev.STOPPING, ev.STOPPED)
        # A hook whose job has already stopped would wait for ever (3.8 does).
        hook = hook and self._trigger.source not in self._stopped_seen
        if hook and self.cfg.exec and e.code != STOP:
            if self._starts_left == UNLIMITED:
                self._starts_left = 1
        elif e == ev.GLOBAL_SHUTDOWN and self._pending_dependents():
            self._draining = True
            self.timers.after(TICK_DRAIN, max(self.kill_timeout, 0.0), self._tick(TICK_DRAIN))
        else:
            self._halt()
        return True

    def _pending_dependents(self) -> frozenset:
        return self.stop_after - self._stopped_seen

    def _on_maintenance(self, e: Event) -> bool:
        if e == ev.GLOBAL_ENTER_MAINTENANCE:
            if self.name != TELEMETRY_JOB:
                self.status = "maintenance"
            if self.service is not None:
                self.service.deregister()
                self.service.mark_for_reregistration()
        elif e == ev.GLOBAL_EXIT_MAINTENANCE:
            if self.name != TELEMETRY_JOB:
                self.status = "unknown"
        else:
            return False
        if e == self._trigger:
            self._on_trigger(e)
        return True

    def _on_own_exit(self, e: Event) -> bool:
        if e.source != self.name or e.code not in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            return False
        if self.cfg.periodic:
            return True
        if self._take_restart():
            self.restarts_done += 1
            delay = self._next_delay()
            if delay > 0:
                log.info("%s: restarting in %.3gs", self.name, delay)
                self.timers.after(TICK_RESTART, delay, self._tick(TICK_RESTART))
            else:
                self._start()
        elif self._starts_left != 0 and self._trigger is not None:
            self.phase = WAITING
        else:
            if self.name != TELEMETRY_JOB:
                self.status = "unknown"
            self._halt()
        return True

    def _on_trigger(self, e: Event) -> bool:
        if self._trigger is None or e != self._trigger:
            return False
        if self._starts_left == 0:
            self._halt()
            return True
        if self._starts_left != UNLIMITED:
            self._starts_left -= 1
            if self._starts_left == 0 or self._restarts_left == 0:
                self._trigger = None
        self._start()
        return True

    _rules = (
        _on_drained, _on_heartbeat, _on_when_timeout, _on_interval, _on_restart_tick,
        _on_check_result, _on_shutdown, _on_maintenance, _on_own_exit,
        _on_trigger,
    )

    # -- actions ----------------------------------------------------------

    def _tick(self, code: str) -> Event:
        return Event(code, self.name)

    def _take_restart(self) -> bool:
        if self._restarts_left == UNLIMITED:
            return True
        if self._restarts_left > 0:
            self._restarts_left -= 1
            return True
        return False

    def _next_delay(self) -> float:
        """Restart backoff: doubles up to the cap; a long run resets it."""
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
        self.timers.cancel(TICK_WHEN_TIMEOUT)
        self.started = True
        self.phase = RUNNING
        if self.name != TELEMETRY_JOB and self.status != "maintenance":
            self.status = "unknown"
        if self.process is not None:
            self.runs += 1
            self._run_started = self.clock()
            self.process.start()

    def _register_initial(self) -> None:
        if self._needs_initial_registration:
            if self.service.register_with_initial_status():
                self._needs_initial_registration = False

    def _halt(self) -> None:
        """SPEC §9.8: stopping, wait for the dependent, stop, stopped."""
        self.phase = STOPPING
        self._restarts_left = 0
        self.timers.cancel_all()
        self.publish(Event(ev.STOPPING, self.name))
        if self.dependent:
            if self.cfg.stop_timeout > 0:
                self.timers.after(TICK_STOP_TIMEOUT, self.cfg.stop_timeout,
                                  self._tick(TICK_STOP_TIMEOUT))
            return
        self._finish()

    def _while_stopping(self, e: Event) -> None:
        if self._awaiting_exit:
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
            self.check.signal(signal.SIGTERM)
        # Signal first (SPEC §9.8 order): a hung Consul agent makes the
        # deregistration wait for its timeout, and the process must not.
        stopping = self.process is not None and self.process.running
        if stopping:
            self._awaiting_exit = True
            self.process.signal(self.cfg.stop_signal)
            self.timers.after(TICK_KILL, max(self.kill_timeout, 0.0), self._tick(TICK_KILL))
        if self.service is not None:
            self.service.deregister()
        if not stopping:
            self._complete()

    def _kill(self) -> None:
        log.info('killing processes for job "%s"', self.name)
        self.process.signal(signal.SIGKILL)
        self._complete()  # the exit event may never come: done

    def _complete(self) -> None:
        self._awaiting_exit = False
        self.timers.cancel_all()
        self.phase = COMPLETE
        self.publish(Event(ev.STOPPED, self.name))


def _trigger(cfg: JobConfig) -> Optional[Event]:
    w = cfg.when
    if w.interval is not None:
        return ev.GLOBAL_STARTUP
    if w.source is None or w.event is None:
        return None
    return Event(w.event, w.source)


def _starts(cfg: JobConfig) -> int:
    w = cfg.when
    if w.interval is not None:
        return 1
    if w.source is None or w.event is None:
        return 0
    return UNLIMITED if (w.each or w.is_signal) else 1
