"""Templates: files rendered from Consul and the environment, rendered again
whenever what they read changes (the config's `templates`, beyond 3.8).

`Templates` is the App's component. Each `Template` renders in a greenlet
of its own, so a render never runs inside the bus's delivery and a slow
one never holds the supervisor (the engine yields every few thousand
steps). Renders never wait for Consul either: a lookup reads the last
answer of a `Follow` (a blocking query kept in the background, see
`consul_reads`) from the `Store`, which runs one Follow per distinct
lookup for every template that reads it. A lookup with no answer yet
leaves the render unusable; the Follow's first answer triggers the next.

A render that is complete is written atomically (a temporary file in the
destination's directory, then a rename) when it differs from the file on
disk, and publishes `changed{template.NAME}`. The first complete render
of a template publishes it even when the file already held that text, so
jobs waiting for the file start in a container that is restarted.
"""
from __future__ import annotations

import enum
import logging
import os
import tempfile
import time
from typing import Dict, Iterable, List, Mapping, Optional, Set

import gevent
import gevent.event

from pilot import events as ev
from pilot.config.model import TemplateConfig
from pilot.consul_reads import KEY, PREFIX, SERVICE, SERVICES, Follow, Query, read
from pilot.errors import TemplateError
from pilot.events import Event
from pilot.template.files import FileTemplate, cause

MAX_WAIT_FACTOR = 4  # a change is never held back more than 4 × `wait` (as consul-template)
WRITE_RETRY = 5.0  # seconds between attempts at a destination that could not be written



class State(str, enum.Enum):
    """What a template's last render came to (shown by `/v3/status`). Any
    state may follow any other: each render decides afresh."""

    PENDING = "pending"  # a lookup has no answer yet
    WAITING = "waiting"  # a key it requires does not exist
    RENDERED = "rendered"  # the file holds its last output
    FAILED = "failed"  # render error or unwritable file: the last good file stays

    def __str__(self) -> str:
        return self.value


PENDING, WAITING, RENDERED, FAILED = State.PENDING, State.WAITING, State.RENDERED, State.FAILED


class Store:
    """The Consul lookups templates read: one Follow per distinct query,
    shared by every template that reads it, stopped when none does."""

    def __init__(self, consul, log: logging.Logger, follow=Follow):
        self.consul = consul
        self.log = log
        self._follow = follow  # the Follow class (tests give a fake of it)
        self.follows: Dict[Query, Follow] = {}
        self._readers: Dict[Query, Set["Template"]] = {}

    def use(self, query: Query, template: "Template") -> None:
        follow = self.follows.get(query)
        if follow is None:
            follow = self.follows[query] = self._follow(self.consul, query, log=self.log)
            self._readers[query] = set()
            follow.start()
        if template not in self._readers[query]:
            self._readers[query].add(template)
            follow.listeners.append(template.changed)

    def drop(self, query: Query, template: "Template") -> None:
        readers = self._readers.get(query)
        if readers is None or template not in readers:
            return
        readers.discard(template)
        follow = self.follows[query]
        follow.listeners.remove(template.changed)
        if not readers:
            del self.follows[query], self._readers[query]
            follow.stop()

    def stop(self) -> None:
        for follow in list(self.follows.values()):
            follow.stop()
        self.follows.clear()
        self._readers.clear()


class Reading:
    """One render's view of the store (a `Lookups`): the last answer of each
    lookup, and a record of what the render read, what has no answer yet
    and which required keys do not exist."""

    def __init__(self, answer):
        self._answer = answer  # Query -> (known, data)
        self._asked: Dict[Query, bool] = {}  # each query read, in order -> known
        self.missing: List[str] = []

    @property
    def queries(self) -> List[Query]:
        return list(self._asked)

    @property
    def pending(self) -> List[Query]:
        return [query for query, known in self._asked.items() if not known]

    def _get(self, query: Query):
        known, data = self._answer(query)
        self._asked[query] = known
        return data if known else None

    def service(self, name: str, tag: str, dc: str):
        return self._get(Query(SERVICE, name, tag, dc))

    def services(self, dc: str):
        return self._get(Query(SERVICES, dc=dc))

    def key(self, path: str, dc: str, required: bool):
        query = Query(KEY, path, dc=dc)
        value = self._get(query)
        if value is None and required and self._asked[query] and path not in self.missing:
            self.missing.append(path)
        return value

    def prefix(self, path: str, dc: str):
        return self._get(Query(PREFIX, path, dc=dc))


class Template:
    """One `templates` entry: renders, writes and publishes in its own greenlet."""

    def __init__(self, cfg: TemplateConfig, store: Store, bus, environ: Mapping[str, str],
                 log: logging.Logger):
        self.cfg = cfg
        self.name = cfg.name
        self.compiled = FileTemplate(cfg.text)
        self.store = store
        self.bus = bus
        self.environ = environ
        self.log = log
        self.queries: List[Query] = []  # what the last render read
        self.rendered = False  # its first complete render is done (and was published)
        self.state = PENDING
        self.renders = 0
        self.writes = 0
        self.problem = ""  # the last failure logged, so each is told once
        self.waiting_for = ""  # the missing key last logged
        self._retry_in: Optional[float] = None
        self._dirty = gevent.event.Event()
        self._greenlet: Optional[gevent.Greenlet] = None

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        if self._greenlet is None:
            self._dirty.set()  # the first render: at once, without `wait`
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop rendering (also mid-render) and release its lookups. Idempotent."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True, timeout=2)
        self._track([])

    def adopt(self, old: "Template") -> None:
        """Take over an identical template's state (reload): it was
        rendered, so it does not publish `changed` again for the same text."""
        self.rendered, self.state = old.rendered, old.state
        self.renders, self.writes = old.renders, old.writes
        self.problem, self.waiting_for = old.problem, old.waiting_for

    def changed(self, follow: Follow) -> None:
        """A lookup it reads has new data (called by the Follow: must not block)."""
        self._dirty.set()

    def status(self) -> dict:
        return {"name": self.name, "destination": self.cfg.destination, "state": self.state.value,
                "renders": self.renders, "writes": self.writes}

    def _run(self) -> None:
        while True:
            self._dirty.wait(timeout=self._retry_in)
            if self.rendered and self.cfg.wait > 0:
                self._quiet()
            self._dirty.clear()
            try:
                self.render()
            except Exception as exc:  # noqa: BLE001 - a bug must not end the template
                self.state = FAILED
                self._fail(f"template {self.name}: internal error: {exc!r}")

    def _quiet(self) -> None:
        """Wait until no change came for `wait` seconds (at most 4 × wait in all)."""
        deadline = time.monotonic() + MAX_WAIT_FACTOR * self.cfg.wait
        while True:
            self._dirty.clear()
            left = min(self.cfg.wait, deadline - time.monotonic())
            if left <= 0 or not self._dirty.wait(timeout=left):
                return

    # -- one render ---------------------------------------------------------------

    def render(self) -> None:
        """Render from the answers known now; write and publish if complete."""
        reading = Reading(self._answer)
        self.renders += 1
        try:
            text = self.compiled.render(self.environ, reading, pause=gevent.sleep)
        except TemplateError as error:
            self._track(reading.queries)  # a fix in Consul renders again
            if reading.pending:
                self.state = PENDING  # empty stand-ins for answers to come: not the template's fault
                return
            self.state = FAILED
            line = f" at line {error.line}" if error.line else ""
            self._fail(f"template {self.name}: render error{line}: {cause(error)}"
                       f" (keeping the last good {self.cfg.destination})")
            return
        self._track(reading.queries)
        if reading.pending:
            self.state = PENDING
            return  # the Follows' first answers render again
        if reading.missing:
            self.state = WAITING
            if self.waiting_for != reading.missing[0]:
                self.waiting_for = reading.missing[0]
                self.log.info("template %s: waiting for key %s (it does not exist yet)",
                              self.name, self.waiting_for)
            return
        self.waiting_for = ""
        self._publish(text)

    def _answer(self, query: Query):
        follow = self.store.follows.get(query)
        return (True, follow.data) if follow is not None and follow.ready else (False, None)

    def _track(self, queries: List[Query]) -> None:
        """Follow what this render read, and no longer what it stopped reading."""
        for query in queries:
            self.store.use(query, self)
        for query in self.queries:
            if query not in queries:
                self.store.drop(query, self)
        self.queries = list(queries)

    def _publish(self, text: str) -> None:
        try:
            wrote = write_if_changed(self.cfg.destination, _bytes(text), self.cfg.perms)
        except OSError as error:
            self.state = FAILED
            self._retry_in = WRITE_RETRY
            reason = (error.strerror or str(error)).lower()
            self._fail(f"template {self.name}: cannot write {self.cfg.destination}: {reason}"
                       " (the previous file stays)")
            return
        self._retry_in = None
        self.problem = ""
        self.state = RENDERED
        if wrote:
            self.writes += 1
            self.log.info("template %s: rendered %s", self.name, self.cfg.destination)
        if wrote or not self.rendered:
            self.rendered = True
            self.bus.publish(Event(ev.CHANGED, self.cfg.event_source))

    def _fail(self, line: str) -> None:
        if line != self.problem:
            self.problem = line
            self.log.error("%s", line)


class Templates:
    """Every configured template, with the lookups they share (the App's component)."""

    def __init__(self, configs: Iterable[TemplateConfig], consul, bus, environ: Mapping[str, str],
                 previous: Optional["Templates"] = None, log: Optional[logging.Logger] = None,
                 follow=Follow):
        self.log = log or logging.getLogger("pilot.templates")
        self.store = Store(consul, self.log, follow)
        self.templates = [Template(cfg, self.store, bus, environ, self.log) for cfg in configs]
        if previous is not None:
            self._adopt(previous)

    def _adopt(self, previous: "Templates") -> None:
        """A reload: templates whose definition did not change keep their state."""
        old = {t.name: t for t in previous.templates}
        for template in self.templates:
            before = old.get(template.name)
            if before is not None and before.cfg == template.cfg:
                template.adopt(before)

    def start(self) -> None:
        for template in self.templates:
            template.start()

    def stop(self) -> None:
        for template in self.templates:
            template.stop()
        self.store.stop()

    def status(self) -> List[dict]:
        return [t.status() for t in self.templates]

    def rendered_sources(self) -> Set[str]:
        """`template.NAME` of each template whose file is there (its first
        `changed` is behind it): what a job added by a reload is told."""
        return {t.cfg.event_source for t in self.templates if t.rendered}


# -- writing -------------------------------------------------------------------------


def write_if_changed(path: str, data: bytes, perms: int) -> bool:
    """Replace `path` with `data` atomically unless it holds that already.
    True when written. The new file has `perms` and the old file's owner."""
    try:
        with open(path, "rb") as file:
            if file.read() == data:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                     dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), perms)  # exact: fchmod ignores the umask
            _keep_owner(file.fileno(), path)
        # No fsync: the file is rendered again at every start, the rename
        # alone gives readers all of the old file or all of the new one, and
        # an fsync would hold the whole (single-threaded) supervisor.
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return True


def _keep_owner(fd: int, path: str) -> None:
    """A file that was someone else's stays theirs (Pilot is often root)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass  # not root: the file becomes ours, as any rewrite would make it


def _bytes(text: str) -> bytes:
    """The bytes `text` came from: bytes that were not UTF-8 (in the template
    file, a KV value or the environment) are written as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# -- the -render flag ------------------------------------------------------------------


class WaitingForKey(Exception):
    """`-render`: a key the template requires does not exist."""


def render_once(cfg: TemplateConfig, consul, environ: Mapping[str, str]) -> str:
    """One template's output against Consul as it is now (the `-render`
    flag): every lookup read once, no blocking queries, nothing written.
    Raises ConsulError, TemplateError or WaitingForKey."""
    answers: Dict[Query, object] = {}

    def answer(query: Query):
        if query not in answers:
            answers[query] = read(consul, query)[1]
        return True, answers[query]

    reading = Reading(answer)
    text = FileTemplate(cfg.text).render(environ, reading)
    if reading.missing:
        raise WaitingForKey(", ".join(reading.missing))
    return text
