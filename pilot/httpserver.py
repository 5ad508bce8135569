"""HTTP serving shared by the control socket and telemetry (docs/behaviour.md §13.2, §14.2):
bind with 3.8's retries, serve a WSGI app on gevent, answer any failure as
one JSON error, stop without killing the request that asked for the stop.

The HTTP stack is loaded when the first connection arrives, not at start:
gevent.pywsgi brings http.client, ssl and email (~5 MB of memory, ~20 ms) and
bottle ~2 MB more, which a container that never calls its socket need not
pay. The socket listens from `start()`, so no request is refused meanwhile:
the first one waits in the backlog while the stack loads.

Limits, so that a hung helper or a hostile client cannot lock others out
(the telemetry port needs no credentials): at most MAX_CONNECTIONS are
served at once and the rest wait in a backlog as long as the system allows;
a request must arrive whole within REQUEST_TIMEOUT; when every slot is taken,
the oldest connection that has sent nothing for IDLE_GRACE is closed to make
room. How one connection is read, answered and logged is in
`pilot.httphandler`.
"""
from __future__ import annotations

import array
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import time
from typing import Callable, Dict, Optional, Tuple

import gevent
import gevent.pool
from gevent.server import StreamServer

from pilot.errors import PilotError
from pilot.httpcommon import CONNECTION, MAX_BODY, error_body, json_headers, one_line  # noqa: F401 - re-exported
from pilot.log import log_bug

log = logging.getLogger("pilot")

MAX_CONNECTIONS = 64  # connections served at once per server; more wait in the backlog
REQUEST_TIMEOUT = 5.0  # seconds for a request (line, headers and body) to arrive whole
IDLE_GRACE = 1.0  # seconds a connection may send nothing before it can be closed for room
SEND_TIMEOUT = 10.0  # seconds an answer may wait for a client that does not read it
ACCEPT_RETRY = 0.5  # seconds before accepting again after accept() failed (no fds left)
BIND_ATTEMPTS = 10
BIND_DELAY = 1.0  # seconds between bind attempts
STOP_TIMEOUT = 1.0  # seconds a stopping server waits for running requests


def short(text: str, limit: int = 80) -> str:
    """User-supplied text quoted in an error, cut so replies stay small."""
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "...'"


class PathRefused(Exception):
    """What is at a socket path must not be removed or taken over: binding
    stops at once (retrying cannot help), with this one-line reason."""


_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _connect_error(path: str) -> int:
    """errno of connecting to the socket at `path` (0: someone listens). A
    non-blocking connect() on a unix socket never waits, so the C socket is
    used directly, in a gevent process too."""
    import _socket
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        return probe.connect_ex(path)
    finally:
        probe.close()


def remove_stale(path: str) -> None:
    """Make room for a socket at `path`. Only a stale socket (one nobody
    listens on) is removed: 3.8 deleted whatever was there, so a typo
    (`socket: "/etc/containerpilot.json5"`) destroyed the file it named.
    Anything else raises PathRefused, and so does another user's live socket
    (whoever bound the path first must not receive what clients send). A live
    socket of our own raises EADDRINUSE, which is retried: it may be a Pilot
    that is stopping."""
    try:
        st = os.lstat(path)
    except OSError:
        return  # nothing there, or nothing we may see: bind() says which
    if not stat.S_ISSOCK(st.st_mode):
        raise PathRefused(f"{_kind(st.st_mode)} is there, not a socket (only a stale "
                          "socket is replaced; nothing was deleted)")
    me, err = os.geteuid(), _connect_error(path)
    if err in (errno.ECONNREFUSED, errno.ENOENT):  # stale, or just gone
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PathRefused(f"a stale socket owned by uid {st.st_uid} is there and "
                              f"cannot be removed: {exc.strerror}") from None
        return
    live = err in (0, errno.EAGAIN)  # EAGAIN: listening, its backlog full
    if st.st_uid != me:
        raise PathRefused(f"a socket owned by uid {st.st_uid} is there"
                          f"{' and in use' if live else ''}; Pilot (uid {me}) does not "
                          "take over another user's socket")
    if live:
        raise OSError(errno.EADDRINUSE, "another process is listening on it")
    raise PathRefused(f"a socket Pilot cannot connect to is there ({os.strerror(err)}); "
                      "it was left untouched")


def bind_unix(path: str) -> socket.socket:
    """A listening unix socket at `path`, mode 0600 from the moment it exists.

    The umask is process-wide, but nothing yields between setting and
    restoring it, so no other greenlet can create a file under it.
    """
    remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_retrying(bind: Callable[[], socket.socket], where: str,
                    attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY) -> socket.socket:
    """Bind, retrying `attempts` times `delay` seconds apart (3.8's 10 x 1 s by
    default); a PathRefused is final at once."""
    error: Optional[OSError] = None
    for attempt in range(max(1, attempts)):
        if attempt:
            gevent.sleep(delay)
        try:
            return bind()
        except PathRefused as exc:
            raise PilotError(f"error listening to socket at {where}: {exc}") from None
        except OSError as exc:
            error = exc
            log.debug("listening at %s failed (attempt %d): %s", where, attempt + 1, exc)
    reason = error.strerror or str(error) if error is not None else "unknown error"
    raise PilotError(f"error listening to socket at {where}: {reason}")


def listen_backlog() -> int:
    """The longest accept queue the system allows (net.core.somaxconn): a
    burst of clients waits there for a free slot instead of being refused."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(int(f.read()), 1)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def _nothing_to_read(sock) -> bool:
    """No bytes wait on the socket: its client sent nothing more (or hung up)."""
    count = array.array("i", [0])
    try:
        import termios  # FIONREAD; loaded with the first connection
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except OSError:
        return True
    return count[0] == 0


class Connections(gevent.pool.Pool):
    """The connections a server is serving, at most `size`.

    A connection is *waiting* from its accept until its request has arrived
    whole. When all slots are taken, `full()` (asked by the server before each
    accept) closes the oldest waiting connection that has been quiet for
    IDLE_GRACE, so idle clients cannot keep working ones out. The grace spares
    a client that connected and is about to send: on a busy machine a burst of
    clients can be descheduled between connect() and send().
    """

    def __init__(self, size: int, name: str):
        super().__init__(size)
        self.name = name
        self.waiting: Dict[gevent.Greenlet, Tuple[object, float]] = {}  # oldest first
        self.wake: Callable[[], None] = lambda: None  # the server: try accepting again
        self._wake_pending = False

    def full(self) -> bool:
        if super().full():
            self._make_room()
        return super().full()

    def begin(self, conn) -> None:
        self.waiting[gevent.getcurrent()] = (conn, time.monotonic())

    def arrived(self) -> None:
        """The current connection's request is in: it is no longer idle."""
        self.waiting.pop(gevent.getcurrent(), None)

    def _make_room(self) -> None:
        now = time.monotonic()
        wait = IDLE_GRACE  # for connections accepted but not started yet
        for glet, (conn, since) in list(self.waiting.items()):
            if now - since < IDLE_GRACE:
                wait = since + IDLE_GRACE - now
                break  # the rest are younger
            if _nothing_to_read(conn):
                del self.waiting[glet]
                glet.kill(block=False)  # its handler closes the socket as it unwinds
                log.debug("%s: all %d connections in use: closed one that sent no request "
                          "for %.1fs", self.name, self.size, now - since)
                return
        self._wake_in(wait)

    def _wake_in(self, delay: float) -> None:
        """Accept again once the oldest waiting connection's grace is over."""
        if self._wake_pending:
            return
        self._wake_pending = True

        def wake():
            self._wake_pending = False
            self.wake()
        gevent.spawn_later(delay + 0.01, wake)


class Listener(StreamServer):
    """gevent's StreamServer, but a failing accept() (no file descriptors
    left) is one log line and a short pause, never a traceback on stderr."""

    def __init__(self, sock, handle, pool: Connections):
        super().__init__(sock, handle, spawn=pool)
        self._last_complaint = 0.0
        pool.wake = lambda: self.started and self.start_accepting()

    def do_read(self):
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno == errno.EBADF or not self.started:
                return None
            now = time.monotonic()
            if now - self._last_complaint > 60:
                self._last_complaint = now
                log.warning("%s: cannot accept connections: %s", self.pool.name,
                            (exc.strerror or str(exc)).lower())
            self.stop_accepting()
            gevent.spawn_later(ACCEPT_RETRY, self.pool.wake)
            return None


def _close_connections(start_response):
    """Keep-alive disabled (docs/behaviour.md §14.2): one request per connection."""
    def start(status, headers, exc_info=None):
        headers = [h for h in headers if h[0].lower() != "connection"]
        headers.append(("Connection", "close"))
        return start_response(status, headers, exc_info)
    return start


class HTTPServer:
    """A WSGI app served by gevent on a socket bound with retries.

    `wsgi` is a factory called on the first connection (see the module
    docstring). `start()` and `stop()` are idempotent; `stop()` may be called
    from a request this server is handling (a reload) without killing that
    request.
    """

    def __init__(self, name: str, wsgi: Callable[[], Callable], bind: Callable[[], socket.socket],
                 where: str, attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY):
        self.name = name
        self.where = where
        self._wsgi = wsgi
        self._bind = bind
        self._attempts = attempts
        self._delay = delay
        self._server: Optional[StreamServer] = None
        self._pool: Optional[Connections] = None
        self._http = None  # gevent.pywsgi.WSGIServer, once a request came
        self._listener: Optional[socket.socket] = None
        self.address = None  # what the socket is bound to, once started

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        sock = listen_retrying(self._bind, self.where, self._attempts, self._delay)
        sock.listen(listen_backlog())  # Linux lets listen() raise the backlog of a bound socket
        self.address = sock.getsockname()
        self._pool = Connections(MAX_CONNECTIONS, self.name)
        server = Listener(sock, self._handle, self._pool)
        server.start()
        self._server, self._listener, self._http = server, sock, None
        log.info("%s: serving at %s", self.name, self.where)

    def _handle(self, client: socket.socket, address) -> None:
        """One connection, handed to Pilot's pywsgi handler (built on first
        use). Nothing escapes as a traceback: the hub would print it."""
        server, pool = self._server, self._pool
        if server is None:
            return
        pool.begin(client)
        try:
            client.settimeout(SEND_TIMEOUT)
            from pilot import httphandler
            if self._http is None:
                self._http = httphandler.wsgi_server(self._listener, self._wsgi(), self.name)
            httphandler.Handler(client, address, self._http, self.name, pool.arrived,
                                REQUEST_TIMEOUT).handle()
        except OSError as exc:
            log.debug("%s: connection dropped: %s", self.name, one_line(exc))
        except Exception as exc:  # noqa: BLE001 - one line instead of the hub's traceback
            log.error("%s: internal error on a connection: %s: %s", self.name,
                      type(exc).__name__, one_line(exc))
        finally:
            pool.waiting.pop(gevent.getcurrent(), None)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if gevent.getcurrent() in server.pool:
            gevent.spawn(server.stop, STOP_TIMEOUT)
        else:
            server.stop(STOP_TIMEOUT)


def guarded(name: str, wsgi, on_response: Callable[[int, str], None]):
    """Wrap a WSGI app: any exception becomes a 500 JSON answer (logged in
    one line), keep-alive is off, and each response is reported."""
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        seen = []

        def start(status, headers, exc_info=None):
            seen.append(int(status[:3]))
            return start_response(status, headers, exc_info)
        start_response_ = _close_connections(start)
        try:
            body = wsgi(environ, start_response_)
        except Exception as exc:  # noqa: BLE001 - a bug costs one request, not the server
            log_bug(log, f"{name}: internal error on {environ.get('REQUEST_METHOD')} {short(path)}", exc)
            body = [error_body("internal error")]
            seen.clear()
            start_response_("500 Internal Server Error", json_headers(body[0]))
        try:
            on_response(seen[-1] if seen else 500, path)
        except Exception:
            log.debug("counting a response failed", exc_info=True)
        return body
    return app
