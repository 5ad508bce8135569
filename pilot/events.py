"""Events and the one bus every component talks through.

An `Event(code, source)` is broadcast to every subscriber's mailbox in the
same call, so all subscribers see one global order; mailboxes are unbounded,
so a slow subscriber never blocks the publisher or the others.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, List

import gevent
import gevent.event
import gevent.queue

from pilot.log import log_bug

log = logging.getLogger("pilot.events")

GLOBAL = "global"

# Event codes as users write them in `when.once` / `when.each`.
STARTUP = "startup"
SHUTDOWN = "shutdown"
EXIT_SUCCESS = "exitSuccess"
EXIT_FAILED = "exitFailed"
STOPPING = "stopping"
STOPPED = "stopped"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
CHANGED = "changed"
ENTER_MAINTENANCE = "enterMaintenance"
EXIT_MAINTENANCE = "exitMaintenance"
TIMER_EXPIRED = "timerExpired"
ERROR = "error"
SIGNAL = "signal"

# 3.8's names in the `containerpilot_events{code=...}` metric.
METRIC_NAMES = {
    STARTUP: "Startup", SHUTDOWN: "Shutdown", EXIT_SUCCESS: "ExitSuccess",
    EXIT_FAILED: "ExitFailed", STOPPING: "Stopping", STOPPED: "Stopped",
    HEALTHY: "StatusHealthy", UNHEALTHY: "StatusUnhealthy",
    CHANGED: "StatusChanged", ENTER_MAINTENANCE: "EnterMaintenance",
    EXIT_MAINTENANCE: "ExitMaintenance", TIMER_EXPIRED: "TimerExpired",
    ERROR: "Error", SIGNAL: "Signal",
}


@dataclass(frozen=True)
class Event:
    code: str
    source: str

    def __str__(self) -> str:
        return f"{self.code}{{{self.source}}}"


GLOBAL_STARTUP = Event(STARTUP, GLOBAL)
GLOBAL_SHUTDOWN = Event(SHUTDOWN, GLOBAL)
GLOBAL_ENTER_MAINTENANCE = Event(ENTER_MAINTENANCE, GLOBAL)
GLOBAL_EXIT_MAINTENANCE = Event(EXIT_MAINTENANCE, GLOBAL)

# Triggers from outside that an order to stop may overtake in a mailbox.
OVERTAKEN = frozenset((SIGNAL, ENTER_MAINTENANCE, EXIT_MAINTENANCE))


class Mailbox:
    """One subscriber's private, unbounded, ordered queue of events.

    Timers owned by the subscriber put their ticks here directly, so ticks
    are seen by their owner only and are never published.
    """

    def __init__(self, name: str):
        self.name = name
        self._queue = gevent.queue.Queue()  # of (event, urgent)
        self._stops = 0  # urgent events queued
        # Set while an order to stop waits here: a job blocked until its
        # previous run ends (SPEC §9.9) wakes up for it (pilot.commands).
        self.stop_ordered = gevent.event.Event()

    def put(self, event: Event, urgent: bool = False) -> None:
        """Queue `event`. `shutdown{global}`, and events put with `urgent`
        (orders to stop one job), are counted while queued: see
        `stop_pending`."""
        urgent = urgent or event == GLOBAL_SHUTDOWN
        if urgent:
            self._stops += 1
            self.stop_ordered.set()
        self._queue.put((event, urgent))

    def get(self, timeout=None) -> Event:
        event, urgent = self._queue.get(timeout=timeout)
        if urgent:
            self._stops -= 1
            if not self._stops:
                self.stop_ordered.clear()
        return event

    @property
    def stop_pending(self) -> bool:
        """True while an order to stop waits in this mailbox: outside
        triggers queued before it are stale (a job runs its exec once per
        queued trigger, one run after another, SPEC §9.9, so a flood of
        SIGHUPs would otherwise keep a SIGTERM waiting for minutes)."""
        return self._stops > 0

    def empty(self) -> bool:
        return self._queue.empty()

    def __len__(self) -> int:
        return self._queue.qsize()


class Bus:
    """Broadcasts events to every mailbox and to synchronous listeners.

    Listeners (e.g. the events counter) run inside `publish` and must not
    block; components with real work subscribe a mailbox instead.
    """

    def __init__(self):
        self._mailboxes: List[Mailbox] = []
        self._listeners: List[Callable[[Event], None]] = []

    def subscribe(self, name: str) -> Mailbox:
        box = Mailbox(name)
        self._mailboxes.append(box)
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        if box in self._mailboxes:
            self._mailboxes.remove(box)

    def listen(self, fn: Callable[[Event], None]) -> None:
        self._listeners.append(fn)

    def unlisten(self, fn: Callable[[Event], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def publish(self, event: Event) -> None:
        log.debug("event: %s", event)
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - a broken listener must not stop delivery
                log_bug(log, f"event listener failed on {event}", exc)
        for box in list(self._mailboxes):
            box.put(event)

    @property
    def subscribers(self) -> int:
        return len(self._mailboxes)


class Timers:
    """Named timers that put ticks into one owner's mailbox.

    Periodic timers tick on a fixed schedule from their start, whatever the
    owner is doing (as 3.8's tickers); a key names at most one timer.
    """

    def __init__(self, box: Mailbox):
        self._box = box
        self._greenlets = {}

    def every(self, key: str, period: float, event: Event) -> None:
        self.cancel(key)
        self._greenlets[key] = gevent.spawn(self._tick, period, event)

    def after(self, key: str, delay: float, event: Event) -> None:
        self.cancel(key)
        self._greenlets[key] = gevent.spawn_later(delay, self._box.put, event)

    def cancel(self, key: str) -> None:
        g = self._greenlets.pop(key, None)
        if g is not None:
            g.kill(block=False)

    def cancel_all(self) -> None:
        for key in list(self._greenlets):
            self.cancel(key)

    def _tick(self, period: float, event: Event) -> None:
        deadline = time.monotonic()
        while True:
            deadline += period
            gevent.sleep(max(0.0, deadline - time.monotonic()))
            self._box.put(event)
