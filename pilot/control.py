"""The control plane: an HTTP server on a unix socket (docs/behaviour.md §14).

Child processes and the CLI (`pilot.client`) use it to reload, toggle
maintenance, set environment variables, record metrics and read status.
Every request body is validated completely before anything is applied, and
every answer a client can provoke is a 4xx with a JSON `{"error": ...}` body:
bad input never costs the server its life.

This module holds the socket's life (bind 0600, replace a stale file, remove
our own file on stop; in dist/pilot, the record of where it is: see
`write_record`) and the two small interfaces the endpoints use:
`Supervisor` (what the socket may ask of the running Pilot) and `MetricSink`
(telemetry, when configured). The endpoints and the validation of request
bodies are in `pilot.control_api`, imported with bottle on the first request. It
never imports prometheus_client: request counts go to the MetricSink when
there is one (docs/behaviour.md §14.2), otherwise they are not kept.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from typing import Callable, Dict, Mapping, Optional, Protocol, Tuple

import gevent.lock

from pilot.config.model import ConfigSource
from pilot.frozen import bundle
from pilot.httpserver import BIND_ATTEMPTS, BIND_DELAY, HTTPServer, bind_unix, guarded

log = logging.getLogger("pilot")

ENDPOINTS = (
    "/v3/environ", "/v3/env", "/v3/reload", "/v3/maintenance/enable",
    "/v3/maintenance/disable", "/v3/metric", "/v3/ping", "/v3/status", "/v3/jobs",
    "/v3/health", "/v3/events",
)
JOB_ACTIONS = ("stop", "start", "restart", "signal")
JOB_PATH = re.compile(r"/v3/jobs/[^/]+(?:/(stop|start|restart|signal))?\Z")
OTHER_PATH = "other"  # request-counter label for unknown paths (bounded cardinality)


def endpoint_label(path: str) -> str:
    """The `path` label of the request counter: job names are left out so
    the number of series stays bounded (`/v3/jobs/{name}/restart`)."""
    if path in ENDPOINTS:
        return path
    m = JOB_PATH.match(path)
    if m:
        return "/v3/jobs/{name}" + (f"/{m.group(1)}" if m.group(1) else "")
    return OTHER_PATH



# --- what the endpoints work with ----------------------------------------------------


class Supervisor(Protocol):
    """What the control socket may ask of the running Pilot."""

    def putenv(self, values: Mapping[str, str]) -> None: ...

    def set_maintenance(self, enabled: bool) -> None: ...

    def reload(self) -> Optional[str]:
        """None once the new config is being applied, else the error."""

    def status(self) -> dict: ...

    def health(self) -> dict:
        """{"healthy": bool, "jobs": {name: {...}}}: the container's health."""

    def job_status(self, name: str) -> dict:
        """One job as in status(); UnknownJob if there is none."""

    def order_job(self, name: str, action: str) -> Optional[str]:
        """stop/start/restart one job: None when done, else why it cannot be."""

    def signal_job(self, name: str, sig: int) -> Optional[str]:
        """Signal one job's process group: None when sent, else why not."""


class EventLog(Protocol):
    """The event timeline as the control socket reads it (`pilot.timeline.Timeline`)."""

    @property
    def last(self) -> int:
        """The sequence number of the newest entry."""

    def entries(self, after: int = 0, since: Optional[float] = None) -> list:
        """Entries (`as_dict()`, `seq`) newer than `after`, not older than `since`."""

    def wait(self, after: int, timeout: Optional[float]) -> bool:
        """Wait for an entry newer than `after` (at most `timeout` s, or until wake)."""

    def wake(self) -> None: ...


class Streams:
    """The event streams open on one control socket: at most MAX of clients
    still there (streams must not take every connection), all ending at
    once when the server stops (`closing`)."""

    MAX = 16

    def __init__(self, timeline: Optional[EventLog]):
        self.timeline = timeline
        self.closing = False
        self._open: Dict[int, object] = {}  # stream key -> its connection

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self, left: Callable[[object], bool]) -> bool:
        """Room for one more? Clients that `left` (their stream has not
        noticed yet: it looks once a second) do not count, so a client that
        reconnects at once is not refused for its own old stream."""
        if len(self._open) < self.MAX:
            return True
        staying = sum(1 for c in self._open.values() if not left(c))
        if staying < len(self._open) and self.timeline is not None:
            self.timeline.wake()  # the streams of departed clients end now
        return staying < self.MAX

    def enter(self, key: int, connection) -> None:
        self._open[key] = connection

    def leave(self, key: int) -> None:
        self._open.pop(key, None)

    def close(self) -> None:
        self.closing = True
        if self.timeline is not None:
            self.timeline.wake()


class MetricSink(Protocol):
    """Telemetry as the control socket uses it (`pilot.telemetry.Telemetry`)."""

    def prepare(self, name: str, value) -> Callable[[], None]:
        """Validate one record (ValueError if bad); the result applies it."""

    def count_control_request(self, code: int, path: str) -> None: ...


# --- the control server ------------------------------------------------------------------


class ControlServer:
    """The control socket (docs/behaviour.md §14) of one running Pilot.

    `metrics` returns the telemetry in use, or None (it changes on reload).
    """

    def __init__(self, supervisor: Supervisor, path: str,
                 metrics: Callable[[], Optional[MetricSink]] = lambda: None,
                 attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY,
                 timeline: Optional[EventLog] = None, source: Optional[ConfigSource] = None,
                 record_in: Optional[str] = None):
        self.supervisor = supervisor
        self.source = source  # the config this socket serves (None: not known)
        self._record_dir = record_in if record_in is not None else bundle()
        self.metrics = metrics
        self.streams = Streams(timeline)
        self.path = path
        self._wsgi = None
        self.server = HTTPServer("control", lambda: self.wsgi, lambda: self._bind(), path,
                                 attempts, delay)
        self._inode: Optional[Tuple[int, int]] = None
        self._reloading = gevent.lock.Semaphore()

    @property
    def wsgi(self):
        """The API as a WSGI app; bottle is imported on first use (see
        pilot.httpserver: a socket nobody calls costs no HTTP stack)."""
        if self._wsgi is None:
            from pilot.control_api import ControlAPI  # bottle: ~2 MB, for a socket somebody calls
            api = ControlAPI(self.supervisor, self.metrics, self._reloading, self.streams)
            self._wsgi = guarded("control", api.wsgi, self._count)
        return self._wsgi

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        if not self.server.running:
            return
        self.streams.close()  # event streams end now, not at the server's stop timeout
        self.server.stop()
        self._remove_socket()
        self._write_record(None)

    def serves(self, source: Optional[ConfigSource]) -> None:
        """A reload kept this socket for a config loaded anew (maybe edited)."""
        self.source = source
        if self._inode is not None and self.server.running:
            self._write_record(source)

    def _bind(self) -> socket.socket:
        sock = bind_unix(self.path)
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._write_record(self.source)
        return sock

    def _write_record(self, source: Optional[ConfigSource]) -> None:
        if self._record_dir is not None and self._inode is not None:
            write_record(self._record_dir, self.path, self._inode, source)

    def _remove_socket(self) -> None:
        """Remove our socket file, not one a newer server bound since."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    # -- accounting -------------------------------------------------------

    def _count(self, code: int, path: str) -> None:
        sink = self.metrics()
        if sink is not None:
            sink.count_control_request(code, endpoint_label(path))


# --- the record dist/pilot's launcher answers client calls from -------------------------

RECORD = ".pilot-control"  # in the unpacked copy, beside the launcher's .pilot-bundle-id
RECORD_MAGIC = "pilot-control-record-1"


def record_bytes(socket_path: str, inode: Tuple[int, int], source: ConfigSource) -> bytes:
    """The record's fields, each ended by NUL: magic, socket path, the
    socket file's device and inode, the config's canonical path, device,
    inode, size, mtime_ns, ctime_ns, the environment digest, the number of
    variables, then each variable's name (build/fastcall.c reads it)."""
    fields = [RECORD_MAGIC, socket_path, *map(str, inode), source.path,
              *map(str, (source.device, source.inode, source.size, source.mtime_ns,
                         source.ctime_ns)),
              source.digest, str(len(source.env or ())), *(source.env or ())]
    return b"".join(os.fsencode(field) + b"\0" for field in fields)


def write_record(directory: str, socket_path: str, inode: Tuple[int, int],
                 source: Optional[ConfigSource]) -> None:
    """Tell dist/pilot's launcher where the control socket is and which config
    it serves, so that `pilot -ping` & co. can be answered without starting
    Python (build/README.md): `$PILOT_BUNDLE/.pilot-control`, mode 0600,
    replaced whole (rename). With no source, or a config whose template may
    read any variable (so a caller's environment could render it otherwise),
    there is no record and every call runs as Python does. Never fatal: a
    record that cannot be written only costs client calls their speed."""
    target = os.path.join(directory, RECORD)
    try:
        if source is None or source.env is None or "\0" in socket_path + source.path:
            os.unlink(target)
            return
        temporary = target + ".new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            data = record_bytes(socket_path, inode, source)
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.rename(temporary, target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("control: no record for client calls in %s: %s", directory, exc)
