"""Events and the one bus every component talks through.

An `Event(code, source)` is what jobs react to (docs/behaviour.md §10). The
bus delivers every published event, in one global order, to the handlers
subscribed to its source (or to every event), and calls its listeners
(counters, the event log) synchronously as it is published.

Delivery is inline: the first publisher drains the queue, calling each
handler in turn; events published meanwhile (by a handler, or by another
greenlet while a handler yields) are queued behind and delivered by the
same drain. Handlers therefore see events one at a time and in order, and
must not block. Routing by source keeps the work per event proportional to
the handlers that care about it, not to the number of jobs.

The bus knows nothing of jobs: a subscriber is a callable and a set of
sources.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, FrozenSet, List, Optional, Tuple

import gevent

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
    # A watch's events carry its passing instances (for `atLeast` and the
    # event log); not part of the event's identity.
    count: Optional[int] = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.code}{{{self.source}}}"


GLOBAL_STARTUP = Event(STARTUP, GLOBAL)
GLOBAL_SHUTDOWN = Event(SHUTDOWN, GLOBAL)
GLOBAL_ENTER_MAINTENANCE = Event(ENTER_MAINTENANCE, GLOBAL)
GLOBAL_EXIT_MAINTENANCE = Event(EXIT_MAINTENANCE, GLOBAL)

Handler = Callable[[Event], None]


class Subscription:
    """One handler on the bus; `cancel()` takes it off (idempotent)."""

    def __init__(self, bus: "Bus", handler: Handler, sources: Optional[FrozenSet[str]]):
        self.bus = bus
        self.handler = handler
        self.sources = sources  # None: every event
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self.bus._remove(self)


class Bus:
    """Routes events to subscribed handlers, in one order, without blocking
    the publisher on anyone's work but the handlers' own (which never wait).
    """

    def __init__(self):
        self._everything: List[Subscription] = []
        self._by_source: Dict[str, List[Subscription]] = {}
        self._listeners: List[Handler] = []
        self._queue: Deque[Tuple[Optional[Subscription], Event]] = collections.deque()
        self._draining = False

    # -- who hears what ------------------------------------------------------

    def subscribe(self, handler: Handler, sources=None) -> Subscription:
        """Deliver events from `sources` (any iterable of source names; None
        for every event) to `handler`, one at a time, in publishing order."""
        sub = Subscription(self, handler, None if sources is None else frozenset(sources))
        if sub.sources is None:
            self._everything.append(sub)
        for source in sub.sources or ():
            self._by_source.setdefault(source, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub.sources is None:
            self._everything.remove(sub)
        for source in sub.sources or ():
            subs = self._by_source[source]
            subs.remove(sub)
            if not subs:
                del self._by_source[source]

    def listen(self, fn: Handler) -> None:
        """Call `fn(event)` synchronously for every published event. Listeners
        count or record; they must be quick and must not publish."""
        self._listeners.append(fn)

    def unlisten(self, fn: Handler) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    @property
    def subscribers(self) -> int:
        return len(self._everything) + len({id(s) for subs in self._by_source.values() for s in subs})

    # -- delivery ------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        if log.isEnabledFor(logging.DEBUG):
            # 3.8's spelling first (`event: {StatusHealthy nginx}`), for the
            # greps people already have; then Pilot's (`event: healthy{nginx}`).
            log.debug("event: {%s %s}", METRIC_NAMES.get(event.code, event.code), event.source)
            log.debug("event: %s", event)
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - a broken listener must not stop delivery
                log_bug(log, f"event listener failed on {event}", exc)
        self._queue.append((None, event))
        self._drain()

    def send(self, sub: Subscription, event: Event) -> None:
        """Deliver `event` to one subscriber only (its own timer ticks and
        orders), in the same order as published events; never published."""
        self._queue.append((sub, event))
        self._drain()

    @contextlib.contextmanager
    def holding(self):
        """Queue what is published or sent inside the block, and deliver it
        all on leaving, in order: several orders given together are all
        queued before any handler reacts to the first."""
        if self._draining:
            yield
            return
        self._draining = True
        try:
            yield
        finally:
            self._draining = False
            self._drain()

    def _drain(self) -> None:
        if self._draining:
            return  # the drain in progress (maybe in another greenlet) takes it
        self._draining = True
        try:
            while self._queue:
                target, event = self._queue.popleft()
                if target is not None:
                    self._deliver(target, event)
                    continue
                for sub in self._everything + self._by_source.get(event.source, []):
                    self._deliver(sub, event)
        finally:
            self._draining = False

    @staticmethod
    def _deliver(sub: Subscription, event: Event) -> None:
        if not sub.active:
            return
        try:
            sub.handler(event)
        except Exception as exc:  # noqa: BLE001 - a handler's bug must not stop the others
            log_bug(log, f"internal error handling {event}", exc)


class Timers:
    """Named timers that send ticks to one subscriber through the bus.

    Periodic timers tick on a fixed schedule from their start, whatever the
    owner is doing (as 3.8's tickers); a key names at most one timer. Every
    timer greenlet belongs to this object: `cancel_all()` ends them.
    """

    def __init__(self, bus: Bus, owner: Callable[[], Optional[Subscription]]):
        self._bus = bus
        self._owner = owner
        self._greenlets: Dict[str, gevent.Greenlet] = {}

    def every(self, key: str, period: float, event: Event) -> None:
        self.cancel(key)
        self._greenlets[key] = gevent.spawn(self._tick, period, event)

    def after(self, key: str, delay: float, event: Event) -> None:
        self.cancel(key)
        self._greenlets[key] = gevent.spawn_later(delay, self._fire, key, event)

    def cancel(self, key: str) -> None:
        g = self._greenlets.pop(key, None)
        if g is not None:
            g.kill(block=False)

    def cancel_all(self) -> None:
        for key in list(self._greenlets):
            self.cancel(key)

    def __contains__(self, key: str) -> bool:
        return key in self._greenlets

    def _send(self, event: Event) -> None:
        owner = self._owner()
        if owner is not None:
            self._bus.send(owner, event)

    def _fire(self, key: str, event: Event) -> None:
        self._greenlets.pop(key, None)
        self._send(event)

    def _tick(self, period: float, event: Event) -> None:
        deadline = time.monotonic()
        while True:
            deadline += period
            gevent.sleep(max(0.0, deadline - time.monotonic()))
            self._send(event)
