"""The event timeline: what happened, one line per event in the user's
words, for `pilot -events` and `GET /v3/events`.

The timeline hears every event published on the bus (as a listener: called
inline, quick, it never publishes) and, from each job's runner, the moments
the bus does not carry: a start and what caused it, an exit and what
follows it (`pilot.jobs.Moment`). It keeps the last KEEP entries, so a
client that comes late still sees what already happened.

What repeats without news is left out: a health check's own exits (its
result shows as the job's `healthy`/`unhealthy`), a `healthy` or
`unhealthy` that repeats what the source last said (3.8 publishes one per
check), `error{…}` (the exit line says it), and the start of a periodic
job's run on its interval (its exit line says it ran and when it runs next). A job's exits come from its
runner, which knows what follows them.

Cost while nobody watches: one small record per event in a bounded deque;
readers (`wait`) are woken only when there are some.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional

import gevent.event

from pilot import events as ev
from pilot.config.model import UNLIMITED
from pilot.events import Event
from pilot.jobs import ORDER, TICK_INTERVAL, TICK_RESTART, Moment, Phase

KEEP = 200  # entries kept for late readers
STARTED = "started"  # the code of a start: a moment, not an event of the bus

# Bus events never shown: said better by a job's own moment, or pure repetition.
_UNSHOWN = frozenset({ev.EXIT_SUCCESS, ev.EXIT_FAILED, ev.ERROR})


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    seq: int  # 1, 2, 3… in the order things happened
    time: float  # Unix time
    code: str  # the event's code (`started` for a start)
    source: str
    message: str  # the whole line in the user's words, without the time

    def as_dict(self) -> Dict[str, object]:
        return {"time": round(self.time, 3), "code": self.code, "source": self.source,
                "message": self.message}


class Timeline:
    """The last KEEP entries, and a way to wait for the next one."""

    def __init__(self, clock: Callable[[], float] = time.time, keep: int = KEEP):
        self._clock = clock
        self._entries: Deque[Entry] = collections.deque(maxlen=keep)
        self._seq = 0
        self._instances: Dict[str, int] = {}  # watch source -> passing instances last seen
        self._health: Dict[str, str] = {}  # source -> healthy/unhealthy last shown
        self._readers = 0
        self._news = gevent.event.Event()

    # -- what it hears ---------------------------------------------------------

    def record(self, event: Event) -> None:
        """A bus listener: every published event."""
        message = self._describe(event)
        if message is not None:
            self._append(event.code, event.source, message)

    def job_moment(self, m: Moment) -> None:
        """A job's start or exit, from its runner (`pilot.jobs.Moments`)."""
        if m.exit is not None:
            code = ev.EXIT_SUCCESS if getattr(m.exit, "success", False) else ev.EXIT_FAILED
            then = _after_exit(m)
            self._append(code, m.job, f"{m.job} {_how_it_ended(m)}" + (f", {then}" if then else ""))
        if m.started:
            self._health.pop(m.job, None)  # a new run: its first check result is news
            if m.cause.code != TICK_INTERVAL:  # a periodic run's exit line says it ran
                self._append(STARTED, m.job, f"{m.job} started ({_why_started(m)})")

    # -- what readers get ------------------------------------------------------------

    @property
    def last(self) -> int:
        """The sequence number of the newest entry (0: none yet)."""
        return self._seq

    def entries(self, after: int = 0, since: Optional[float] = None) -> List[Entry]:
        """Kept entries newer than sequence number `after` and, with
        `since` (a Unix time), not older than that."""
        return [e for e in self._entries
                if e.seq > after and (since is None or e.time >= since)]

    def wait(self, after: int, timeout: Optional[float]) -> bool:
        """Wait until there is an entry newer than `after` (True), at most
        `timeout` seconds (False), or until `wake()`."""
        if self._seq > after:
            return True
        self._readers += 1
        try:
            self._news.wait(timeout)
        finally:
            self._readers -= 1
        return self._seq > after

    def wake(self) -> None:
        """Wake every reader now (the server is stopping)."""
        news, self._news = self._news, gevent.event.Event()
        news.set()

    def _append(self, code: str, source: str, message: str) -> None:
        self._seq += 1
        self._entries.append(Entry(self._seq, self._clock(), code, source, message))
        if self._readers:
            self.wake()

    # -- words -------------------------------------------------------------------------

    def _describe(self, e: Event) -> Optional[str]:
        """The line for a bus event, or None when it is not shown."""
        if e.code in _UNSHOWN:
            return None
        if e.code == ev.CHANGED:
            return self._changed(e)
        if e.code in (ev.HEALTHY, ev.UNHEALTHY):
            if self._health.get(e.source) == e.code:
                return None
            self._health[e.source] = e.code
            if e.source.startswith("watch.") and e.code == ev.UNHEALTHY:
                return f"{e.source} unhealthy: no passing instance"
            return f"{e.source} {e.code}"
        return _WORDS.get(e.code, _generic)(e)

    def _changed(self, e: Event) -> str:
        if e.count is None:
            return f"{e.source} changed"
        before = self._instances.get(e.source, 0)
        self._instances[e.source] = e.count
        if before == e.count:
            return f"{e.source} changed: {e.count} healthy"
        return f"{e.source} changed: {before} \u2192 {e.count} healthy"


def _generic(e: Event) -> str:
    return f"{e.source} {e.code}"


_WORDS: Dict[str, Callable[[Event], str]] = {
    ev.STARTUP: lambda e: "pilot started",
    ev.SHUTDOWN: lambda e: "pilot shutting down",
    ev.STOPPING: lambda e: f"{e.source} stopping",
    ev.STOPPED: lambda e: f"{e.source} stopped",
    ev.TIMER_EXPIRED: lambda e: f"{e.source} gave up: its when.timeout ran out before its trigger",
    ev.ENTER_MAINTENANCE: lambda e: "maintenance mode on",
    ev.EXIT_MAINTENANCE: lambda e: "maintenance mode off",
    ev.SIGNAL: lambda e: f"{e.source} received",
}


def _how_it_ended(m: Moment) -> str:
    status = m.exit
    if getattr(status, "error", None) is not None:
        return f"could not start: {status.error}"
    if m.timed_out:
        return "timed out and was killed"
    sig = getattr(status, "signal", None)
    if sig is not None:
        return f"killed by {_signal_name(sig)}"
    return f"exited {getattr(status, 'code', '?')}"


def _after_exit(m: Moment) -> str:
    """What follows an exit, e.g. `restart 2/5 in 4s`."""
    if m.before is Phase.EXITING:
        return ""  # it was being stopped: `stopped` follows
    if m.after is Phase.HELD:
        return "stopped by order"
    if m.before is Phase.RESTARTING:
        return "restarting (pilot -restart)" if m.by_order else f"{_restart(m)} (unhealthy)"
    if m.after is Phase.BACKING_OFF and m.restart_in is not None:
        return f"{_restart(m)} in {_short(m.restart_in)}"
    if m.started:
        return "its queued run starts" if m.before is Phase.QUEUED else f"{_restart(m)} now"
    if m.after in (Phase.SCHEDULED, Phase.WAITING):
        return m.detail or "waits for its trigger"
    if m.after in (Phase.STOPPING, Phase.EXITING, Phase.DRAINING, Phase.COMPLETE):
        if m.limit == 0:
            return "done" if getattr(m.exit, "success", False) else "not restarted (restarts: 0)"
        return f"no restarts left ({m.restarts} done)"
    return ""


def _why_started(m: Moment) -> str:
    cause = m.cause
    if cause.code == ORDER:
        return f"pilot -{cause.source}"
    if cause.code == TICK_RESTART:
        return _restart(m)
    if cause.source == m.job and cause.code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
        if m.before is Phase.QUEUED:
            return "queued run"
        if m.before is Phase.RESTARTING:
            return "pilot -restart" if m.by_order else f"{_restart(m)}, unhealthy"
        return _restart(m)
    return f"trigger: {_trigger(cause)}"


def _trigger(e: Event) -> str:
    if e.source == ev.GLOBAL:
        return e.code
    if e.code == ev.SIGNAL:
        return e.source
    return f"{e.source} {e.code}"


def _restart(m: Moment) -> str:
    return f"restart {m.restarts}" if m.limit == UNLIMITED else f"restart {m.restarts}/{m.limit}"


def _short(seconds: float) -> str:
    """4s, 1.5s, 90s, 5m, 1h30m: a duration in few characters."""
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes = int(round(seconds / 60))
    if minutes < 120:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60}m".replace("h0m", "h")


def _signal_name(sig: int) -> str:
    import signal
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
