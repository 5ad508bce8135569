"""Watches: follow another service's healthy instances in Consul and tell
the jobs when they change (docs/behaviour.md §11).

A `Watch` asks `GET /v1/health/service/NAME?passing=1` as a Consul blocking
query: the agent answers as soon as the service changes, or after
`interval` seconds if nothing did, so a change reaches the jobs at once and
`interval` only bounds how stale a quiet watch may be. On a change it
publishes `changed{watch.NAME}` then `healthy{watch.NAME}` (some passing
instance) or `unhealthy{watch.NAME}` (none).

Each watch keeps its own memory of the last answer, so two watches on one
service with different tags never disturb each other (docs/behaviour.md §0).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, List, Optional, Tuple

import gevent

from pilot import events as ev
from pilot.config.model import WatchConfig
from pilot.consul_reads import KEY, PREFIX, Follow, Query
from pilot.discovery import ConsulError, Instance
from pilot.events import Event
from pilot.log import log_bug

NOT_ADVANCING_PAUSE = 1.0  # seconds; upper bound of the pause after an early, empty answer
RETRY_SOON = 0.1  # seconds; the one quick retry after a first failure
WAITING_RETRY = 1.0  # seconds between queries while Consul has not come up yet


class Watch:
    """One `watches` entry: a greenlet asking Consul, publishing on the bus."""

    def __init__(self, cfg: WatchConfig, consul, bus,
                 report: Optional[Callable[[str, int], None]] = None,
                 log: Optional[logging.Logger] = None):
        self.cfg = cfg
        self.consul = consul
        self.bus = bus
        self.report = report  # (service, passing instances) after every answer
        self.log = log or logging.getLogger("pilot.watches")
        self.instances: List[Instance] = []
        self.index = 0  # the Consul index the next blocking query waits past
        self._failures = 0  # failed queries in a row
        self._failure = ""  # the error already reported for this outage
        self._greenlet: Optional[gevent.Greenlet] = None
        self._stopping = False  # Pilot is shutting down: failures are no news
        self._sub = None

    @property
    def source(self) -> str:
        return self.cfg.source

    # -- life cycle ---------------------------------------------------------

    def start(self) -> None:
        """Begin watching; the first query goes out at once (docs/behaviour.md §0)."""
        if self._greenlet is None:
            self._sub = self.bus.subscribe(self._hear, [ev.GLOBAL])
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop watching, also in the middle of a blocking query. Idempotent."""
        greenlet, self._greenlet = self._greenlet, None
        if self._sub is not None:
            self._sub.cancel()
        if greenlet is not None:
            greenlet.kill(block=True, timeout=2)

    def _hear(self, event: Event) -> None:
        """From `shutdown` on, Consul failing is expected (its agent may be
        one of the jobs stopping): the watch says nothing of it."""
        if event == ev.GLOBAL_SHUTDOWN:
            self._stopping = True

    def status(self) -> dict:
        """What `GET /v3/status` shows for this watch."""
        return {"name": self.cfg.name, "tag": self.cfg.tag, "instances": len(self.instances)}

    def _run(self) -> None:
        while True:
            gevent.sleep(self.poll())

    # -- one query ----------------------------------------------------------

    def poll(self) -> float:
        """Ask Consul once and publish what changed; seconds to wait before the next query."""
        asked = self.index
        began = time.monotonic()
        try:
            index, instances = self.consul.health_service(
                self.cfg.name, tag=self.cfg.tag, dc=self.cfg.dc,
                index=asked or None, wait=self.cfg.interval)
        except ConsulError as err:
            # The agent may have restarted with a lower index; start afresh.
            self.index = 0
            return self._failed(err)
        except Exception as err:  # noqa: BLE001 - a bug must not end the watch
            log_bug(self.log, f"watch {self.cfg.name}: unexpected error", err)
            self.index = 0
            return self.cfg.interval
        self._failures, self._failure = 0, ""
        self.index = next_index(asked, index)
        self.update(instances)
        return self._pause_after(asked, index, time.monotonic() - began)

    def _pause_after(self, asked: int, index: int, elapsed: float) -> float:
        """No pause normally; a short one when a blocking query came back early
        without news, so a misbehaving agent cannot make the watch spin."""
        if asked and index == asked and elapsed < self.cfg.interval / 2:
            return min(self.cfg.interval, NOT_ADVANCING_PAUSE)
        return 0.0

    def _failed(self, err: ConsulError) -> float:
        """Retry a first failure at once, quietly: a blocking query in flight
        when a Consul server goes away fails although the cluster is fine.
        Later failures wait `interval`; one WARN per outage, none when
        another component already reported it (the quiet retry does not
        count as reporting, so someone still warns)."""
        self._failures += 1
        text = str(err)
        if self._failures == 1:
            self.log.debug("failed to query %s: %s (retrying)", self.cfg.name, text)
            return min(self.cfg.interval, RETRY_SOON)
        if getattr(err, "waiting", False) or self._stopping:
            # Consul not up yet (its agent may be a job still starting), or
            # Pilot shutting down (the agent may stop first): no warning.
            if not self._stopping and err.claim_waiting():
                self.log.info("watch %s: waiting for Consul at %s", self.cfg.name, err.address)
            self.log.debug("failed to query %s: %s", self.cfg.name, text)
            return min(self.cfg.interval, WAITING_RETRY)
        if text != self._failure and err.claim_warning():
            self.log.warning("failed to query %s: %s", self.cfg.name, text)
            self._failure = text
        else:
            self.log.debug("failed to query %s: %s", self.cfg.name, text)
        return self.cfg.interval

    # -- change detection ---------------------------------------------------

    def update(self, instances: List[Instance]) -> bool:
        """Take a fresh answer; publish changed + healthy/unhealthy if it differs."""
        instances = sorted(instances, key=lambda i: i.id)
        self._report_count(len(instances))
        if not changed(self.instances, instances):
            return False
        self.instances = instances
        count = len(instances)
        self.bus.publish(Event(ev.CHANGED, self.source, count))
        self.bus.publish(Event(ev.HEALTHY if instances else ev.UNHEALTHY, self.source, count))
        return True

    def _report_count(self, count: int) -> None:
        if self.report is not None:
            self.report(self.cfg.name, count)


def changed(old: List[Instance], new: List[Instance]) -> bool:
    """docs/behaviour.md §11: a different count, or (sorted by ID) a different address or port."""
    if len(old) != len(new):
        return True
    return _places(old) != _places(new)


def _places(instances: List[Instance]) -> List[Tuple[str, int]]:
    return [(i.address, i.port) for i in sorted(instances, key=lambda i: i.id)]


def next_index(asked: int, got: int) -> int:
    """The index for the next blocking query (Consul's rules for clients).

    An index that went backwards means the agent's state was reset: start
    again from 0 (a plain query). An index below 1 is a Consul bug that would
    make every blocking query return at once: use 1.
    """
    if got < asked:
        return 0
    return max(got, 1)


class KeyWatch:
    """A `watches` entry with `key` (beyond 3.8): `changed{watch.NAME}` when
    a key at or under it is added, changed or removed.

    One `Follow` (blocking queries on the KV endpoint, `interval` as their
    wait and as the pause between failed attempts). As for a service
    watch, the state before the first answer is "nothing": keys that
    already exist then are a change."""

    def __init__(self, cfg: WatchConfig, consul, bus, log: Optional[logging.Logger] = None):
        self.cfg = cfg
        self.bus = bus
        kind = PREFIX if cfg.key == "" or cfg.key.endswith("/") else KEY
        self.follow = Follow(consul, Query(kind, cfg.key, dc=cfg.dc), wait=cfg.interval,
                             retry=cfg.interval, log=log or logging.getLogger("pilot.watches"))
        self.follow.listeners.append(self._changed)
        self._seen = False  # the Follow has answered once

    @property
    def source(self) -> str:
        return self.cfg.source

    def start(self) -> None:
        self.follow.start()

    def stop(self) -> None:
        self.follow.stop()

    def _changed(self, follow) -> None:
        """The Follow's data changed (its first answer included)."""
        first, self._seen = not self._seen, True
        if first and follow.data in (None, ()):
            return  # no key there: the same as before the first answer
        self.bus.publish(Event(ev.CHANGED, self.source))
