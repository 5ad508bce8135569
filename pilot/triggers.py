"""What starts a job: its `when`, as a small state of its own.

3.8's single trigger (`source` + `once`|`each`, a signal, or a periodic
job's `startup`) is one condition; Pilot's `when.all` is several conditions
that must each happen once, in any order, before the job starts once;
`when.any` is several conditions any of which starts it (a `once` condition
at most once, an `each` condition every time). A condition with `atLeast`
looks at a watch's instance count, carried by the watch's `changed` event.

Pure: the job asks `fires(event)` and starts its exec when it says so.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from pilot import events as ev
from pilot.config.model import UNLIMITED, Condition, When
from pilot.events import Event

HOOK_EVENTS = (ev.STOPPING, ev.STOPPED)


def conditions_of(when: When) -> Tuple[Condition, ...]:
    """A periodic job starts once on `startup`; otherwise `when`'s conditions."""
    if when.interval is not None:
        return (Condition(ev.GLOBAL, ev.STARTUP),)
    return when.conditions


class Trigger:
    def __init__(self, when: When):
        self.conditions = conditions_of(when)
        self.every = bool(when.all)  # all conditions, else any
        self._left: List[int] = [UNLIMITED if c.each else 1 for c in self.conditions]
        self._met: List[bool] = [False] * len(self.conditions)
        self.counts: Dict[str, int] = {}  # watch source -> passing instances last seen

    # -- what the job asks ---------------------------------------------------

    @property
    def armed(self) -> bool:
        """Whether anything can still start the job (3.8: starts left ≠ 0)."""
        return any(left != 0 for left in self._left)

    @property
    def unlimited(self) -> bool:
        return any(left == UNLIMITED for left in self._left)

    @property
    def hook_source(self) -> Optional[str]:
        """The job whose `stopping`/`stopped` this job hooks (a single
        condition on one of those events), else None."""
        if len(self.conditions) == 1 and self.conditions[0].event in HOOK_EVENTS:
            return self.conditions[0].source
        return None

    def concerns(self, event: Event) -> bool:
        """Whether `event` is one this trigger listens for (met or not)."""
        return any(_matches(c, event, ignore_count=True) for c in self.conditions)

    def fires(self, event: Event) -> bool:
        """Take `event`; True when it starts the job now (a start is used up)."""
        self._note_count(event)
        hits = [i for i, c in enumerate(self.conditions)
                if self._left[i] != 0 and _matches(c, event)]
        if not hits:
            return False
        if self.every:
            for i in hits:
                self._met[i] = True
            if not all(self._met):
                return False
            self._left = [0] * len(self._left)  # all met: one start, then restarts govern
            return True
        i = hits[0]
        if self._left[i] != UNLIMITED:
            self._left[i] -= 1
        return True

    def consume_once(self) -> None:
        """The job was started by order: `once` conditions not met yet are
        used up (an `each` stays), so the job does not run a second time."""
        if self.every:
            self._left = [0] * len(self._left)
        else:
            self._left = [left if left == UNLIMITED else 0 for left in self._left]

    def one_more(self) -> None:
        """At shutdown an armed stop hook may run once more, not for ever."""
        self._left = [1 if left == UNLIMITED else left for left in self._left]

    # -- what -status shows ------------------------------------------------------

    def describe(self) -> str:
        """What the job waits for, in the user's words (empty: nothing)."""
        if not self.armed:
            return ""
        if self.every:
            pending = [self._describe(c) for c, met in zip(self.conditions, self._met) if not met]
            done = sum(self._met)
            return f"{', '.join(pending)} ({done} of {len(self.conditions)} met)"
        waiting = [self._describe(c) for c, left in zip(self.conditions, self._left) if left != 0]
        if len(waiting) == 1:
            return waiting[0]
        return "any of " + ", ".join(waiting)

    def _describe(self, c: Condition) -> str:
        if c.event == ev.SIGNAL:
            return c.source
        if c.at_least is not None:
            seen = self.counts.get(c.source, 0)
            return f"{c.source} {seen}/{c.at_least} {c.event}"
        return f"{c.source} {c.event}"

    def _note_count(self, event: Event) -> None:
        if event.count is not None and event.source.startswith("watch."):
            self.counts[event.source] = event.count


def _matches(c: Condition, event: Event, ignore_count: bool = False) -> bool:
    if event.source != c.source:
        return False
    if c.at_least is None:
        return event.code == c.event
    # A count condition is judged on the watch's `changed` (one per change),
    # which carries the number of passing instances.
    if ignore_count:
        return event.code in (ev.CHANGED, ev.HEALTHY, ev.UNHEALTHY)
    if event.code != ev.CHANGED or event.count is None:
        return False
    if c.event == ev.HEALTHY:
        return event.count >= c.at_least
    return event.count < c.at_least
