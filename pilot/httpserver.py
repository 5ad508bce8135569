"""HTTP serving shared by the control socket and telemetry (SPEC §13.2, §14.2):
bind with 3.8's retries, serve a WSGI app on gevent, answer any failure as
one JSON error, stop without killing the request that asked for the stop.

The HTTP stack is loaded when the first connection arrives, not at start:
gevent.pywsgi brings http.client, ssl and email (~5 MB of memory, ~20 ms) and
bottle ~2 MB more, which a container that never calls its socket need not
pay. The socket listens from `start()`, so no request is refused meanwhile:
the first one waits in the backlog while the stack loads.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from typing import Callable, Optional

import gevent
import gevent.pool
from gevent.server import StreamServer

from pilot.errors import PilotError
from pilot.log import log_bug

log = logging.getLogger("pilot")

MAX_CONNECTIONS = 64  # concurrent requests per server; more wait to be accepted
BIND_ATTEMPTS = 10
BIND_DELAY = 1.0  # seconds between bind attempts
STOP_TIMEOUT = 1.0  # seconds a stopping server waits for running requests


def short(text: str, limit: int = 80) -> str:
    """User-supplied text quoted in an error, cut so replies stay small."""
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "...'"


def remove_stale(path: str) -> None:
    """Delete whatever is at the socket path (SPEC §14.2); an empty directory
    too. Failures are left for bind() to report."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


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
    """Bind, retrying `attempts` times `delay` seconds apart (SPEC §13.2, §14.2)."""
    error: Optional[OSError] = None
    for attempt in range(max(1, attempts)):
        if attempt:
            gevent.sleep(delay)
        try:
            return bind()
        except OSError as exc:
            error = exc
            log.debug("listening at %s failed (attempt %d): %s", where, attempt + 1, exc)
    reason = error.strerror or str(error) if error is not None else "unknown error"
    raise PilotError(f"error listening to socket at {where}: {reason}")


def _close_connections(start_response):
    """Keep-alive disabled (SPEC §14.2): one request per connection."""
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
        self.address = sock.getsockname()
        server = StreamServer(sock, self._handle, spawn=gevent.pool.Pool(MAX_CONNECTIONS))
        server.start()
        self._server, self._listener, self._http = server, sock, None
        log.info("%s: serving at %s", self.name, self.where)

    def _handle(self, client: socket.socket, address) -> None:
        """One connection, handed to pywsgi's handler (built on first use)."""
        server = self._server
        if server is None:
            return
        if self._http is None:
            from gevent.pywsgi import LoggingLogAdapter, WSGIServer
            http = WSGIServer(self._listener, self._wsgi(), log=None,
                              error_log=LoggingLogAdapter(log, logging.DEBUG),
                              handler_class=_connection_handler())
            http.update_environ()
            self._http = http
        self._http.handle(client, address)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if gevent.getcurrent() in server.pool:
            gevent.spawn(server.stop, STOP_TIMEOUT)
        else:
            server.stop(STOP_TIMEOUT)


CONNECTION = "pilot.connection"  # environ key: the request's socket


def _connection_handler():
    """pywsgi's handler, also putting the connection's socket into the
    environ (CONNECTION): a streaming answer watches it to notice a client
    that went away while nothing was being written."""
    from gevent.pywsgi import WSGIHandler

    class ConnectionHandler(WSGIHandler):
        def get_environ(self):
            environ = super().get_environ()
            environ[CONNECTION] = self.socket
            return environ
    return ConnectionHandler


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


def error_body(message: str) -> bytes:
    """A JSON error document, one line."""
    return (json.dumps({"error": message}) + "\n").encode()


def json_headers(body: bytes) -> list:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
