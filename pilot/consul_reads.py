"""The Consul reads that templates and KV watches make, each kept up to
date with blocking queries.

A `Query` names one read: the passing instances of a service (with their
node), the catalog's services, one KV key, or every KV pair under a prefix.
`read()` makes it once; `Follow` keeps it answered in a greenlet of its own:
it asks again with the index of the last answer, so Consul answers as soon
as something changed (or after `wait` seconds), and it tells its listeners
when the data itself changed. Several templates using one lookup share one
`Follow`.

These calls go through `pilot.discovery.Consul`'s request plumbing (its
per-timeout clients and its one-warning-per-outage error handling), which
they reach by the two private names `_client` and `_call`: this module sits
beside discovery rather than inside it so that its split into a package
merges without conflicts; it belongs in that package once both are in.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Tuple

import gevent

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import consul.base

from pilot.discovery import ConsulError

DEFAULT_WAIT = 60.0  # seconds a blocking query waits when nothing changes (consul-template's)
CALL_TIMEOUT = 5.0  # seconds, for a plain (non-blocking) read
BLOCKING_MARGIN = 5.0  # seconds added to a blocking query's own wait and jitter
RETRY_SOON = 0.1  # seconds; the one quick, quiet retry after a first failure
NOT_ADVANCING_PAUSE = 1.0  # seconds; the most a misbehaving agent can make us spin

SERVICE, SERVICES, KEY, PREFIX = "service", "services", "key", "prefix"


class Query(NamedTuple):
    """One Consul read: `kind` and what it names (service, key or prefix)."""

    kind: str
    name: str = ""
    tag: str = ""
    dc: str = ""

    def __str__(self) -> str:
        what = {SERVICE: "service %s", SERVICES: "services%s", KEY: "key %s",
                PREFIX: "keys under %s"}[self.kind] % (self.name or "")
        tag = " tagged %s" % self.tag if self.tag else ""
        dc = " in %s" % self.dc if self.dc else ""
        return what + tag + dc


@dataclass(frozen=True)
class ServiceEntry:
    """One passing instance of a service, with its node (what templates show)."""

    id: str
    name: str
    address: str
    port: int
    tags: Tuple[str, ...]
    node: str
    node_address: str
    meta: Tuple[Tuple[str, str], ...] = ()


# -- one read ----------------------------------------------------------------------


def read(consul, query: Query, index: Optional[int] = None, wait: Optional[float] = None):
    """(Consul index, data) of `query`; with `index`, a blocking query that
    returns once the answer moved past it or `wait` seconds passed.

    Data: a tuple of ServiceEntry sorted by node then ID (SERVICE); a tuple of
    (name, sorted tags) sorted by name (SERVICES); the value, or None when the
    key does not exist (KEY); a tuple of (key, value) sorted by key (PREFIX).
    Values are text; bytes that are not UTF-8 survive as surrogates.
    """
    api, wait_text = _api_for(consul, index, wait)
    kind = query.kind
    if kind == SERVICE:
        got, entries = consul._call(None, lambda: api.health.service(
            query.name, index=index or None, wait=wait_text, passing=True,
            tag=query.tag or None, dc=query.dc or None))
        return _index(got), _services(entries or ())
    if kind == SERVICES:
        got, found = consul._call(None, lambda: consul_catalog(api).services(
            index=index or None, wait=wait_text, dc=query.dc or None))
        return _index(got), tuple(sorted((name, tuple(sorted(tags or ()))) for name, tags in (found or {}).items()))
    got, pairs = consul._call(None, lambda: consul_kv(api).get(
        query.name, index=index or None, wait=wait_text, recurse=kind == PREFIX, dc=query.dc or None))
    if kind == KEY:
        return _index(got), _text(pairs["Value"]) if pairs else None
    return _index(got), tuple(sorted((p["Key"], _text(p.get("Value"))) for p in pairs or ()))


def consul_kv(api):
    return consul.base.Consul.KV(api)


def consul_catalog(api):
    return consul.base.Consul.Catalog(api)


def _api_for(consul, index, wait):
    """The client whose timeout outlasts the query, and Consul's `wait`."""
    if not index:
        return consul._client(CALL_TIMEOUT), None
    seconds = DEFAULT_WAIT if wait is None else float(wait)
    # Consul adds up to wait/16 of jitter before answering.
    return consul._client(seconds + seconds / 16 + BLOCKING_MARGIN), _go_seconds(seconds)


def _services(entries) -> Tuple[ServiceEntry, ...]:
    found = []
    for entry in entries:
        svc = entry.get("Service") or {}
        node = entry.get("Node") or {}
        found.append(ServiceEntry(
            id=svc.get("ID", ""), name=svc.get("Service", ""),
            address=svc.get("Address") or node.get("Address", ""),
            port=int(svc.get("Port") or 0), tags=tuple(svc.get("Tags") or ()),
            node=node.get("Node", ""), node_address=node.get("Address", ""),
            meta=tuple(sorted((svc.get("Meta") or {}).items()))))
    return tuple(sorted(found, key=lambda e: (e.node, e.id)))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _index(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _go_seconds(seconds: float) -> str:
    if seconds == int(seconds):
        return "%ds" % seconds
    return "%dms" % round(seconds * 1000)


def next_index(asked: int, got: int) -> int:
    """Consul's rules for the next blocking query: an index that went
    backwards means the agent's state was reset (start again from 0); one
    below 1 would make every query return at once (use 1)."""
    if got < asked:
        return 0
    return max(got, 1)


# -- one read kept up to date ---------------------------------------------------------


Listener = Callable[["Follow"], None]


class Follow:
    """`query` answered again and again by blocking queries, in a greenlet
    this object owns. `data` is the last answer once `ready`; each listener
    is called (quickly: it must not block) when the data changes, the first
    answer included. During an outage the last data stays."""

    def __init__(self, consul, query: Query, *, wait: float = DEFAULT_WAIT,
                 retry: float = 2.0, log: Optional[logging.Logger] = None):
        self.consul = consul
        self.query = query
        self.wait = wait  # the blocking query's wait: bounds how stale a quiet answer may be
        self.retry = retry  # pause between failed attempts after the first
        self.log = log or logging.getLogger("pilot.consul")
        self.listeners: List[Listener] = []
        self.ready = False
        self.data = None
        self.index = 0
        self._failures = 0
        self._failure = ""
        self._greenlet: Optional[gevent.Greenlet] = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop following, also in the middle of a blocking query. Idempotent."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True, timeout=2)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.poll())

    def poll(self) -> float:
        """Ask once; tell the listeners about new data. Seconds to pause before the next ask."""
        asked = self.index
        began = time.monotonic()
        try:
            index, data = read(self.consul, self.query, index=asked or None, wait=self.wait)
        except ConsulError as err:
            self.index = 0  # the agent may have restarted with a lower index
            return self._failed(err)
        except Exception as err:  # noqa: BLE001 - a bug must not end the follow nor show a traceback
            self.log.error("failed to query %s: unexpected error: %r", self.query, err)
            self.index = 0
            return self.retry
        self._failures, self._failure = 0, ""
        self.index = next_index(asked, index)
        if not self.ready or data != self.data:
            self.ready, self.data = True, data
            for listener in list(self.listeners):
                listener(self)
        if asked and index == asked and time.monotonic() - began < self.wait / 2:
            return min(self.wait, NOT_ADVANCING_PAUSE)  # came back early without news
        return 0.0

    def _failed(self, err: ConsulError) -> float:
        """The first failure is retried at once, quietly (a blocking query in
        flight when a server goes away fails although the cluster is fine);
        one WARN per outage for the rest, none if another part already told."""
        self._failures += 1
        text = str(err)
        if self._failures == 1:
            self.log.debug("failed to query %s: %s (retrying)", self.query, text)
            return min(self.retry, RETRY_SOON)
        if text != self._failure and err.claim_warning():
            self.log.warning("failed to query %s: %s", self.query, text)
            self._failure = text
        else:
            self.log.debug("failed to query %s: %s", self.query, text)
        return self.retry
