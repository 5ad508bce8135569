"""The control plane: an HTTP server on a unix socket (SPEC §14).

Child processes and the CLI (`pilot.client`) use it to reload, toggle
maintenance, set environment variables, record metrics and read status.
Every request body is validated completely before anything is applied, and
every answer a client can provoke is a 4xx with a JSON `{"error": ...}` body:
bad input never costs the server its life.

This module never imports prometheus_client; request counts go to the
app's Telemetry when there is one (SPEC §14.2), otherwise they are not kept.
`HTTPServer` (bind with retries, serve a WSGI app with gevent, stop and
clean up) is shared with `pilot.telemetry`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
from typing import Callable, Dict, Optional, Tuple

import bottle
import gevent
import gevent.lock
import gevent.pool
from gevent.pywsgi import LoggingLogAdapter, WSGIServer

from pilot.errors import PilotError

log = logging.getLogger("pilot")

MAX_BODY = 1 << 20  # bytes; larger bodies get 413
MAX_CONNECTIONS = 64  # concurrent requests per server; more wait to be accepted
BIND_ATTEMPTS = 10
BIND_DELAY = 1.0  # seconds between bind attempts
STOP_TIMEOUT = 1.0  # seconds a stopping server waits for running requests
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENDPOINTS = (
    "/v3/environ", "/v3/env", "/v3/reload", "/v3/maintenance/enable",
    "/v3/maintenance/disable", "/v3/metric", "/v3/ping", "/v3/status",
)
OTHER_PATH = "other"  # request-counter label for unknown paths (bounded cardinality)
# 3.8's whole error bodies; Pilot's JSON errors start with them, so scripts
# that look for 3.8's text still find it.
GO_ERROR_TEXT = {404: "404 page not found", 405: "Method Not Allowed", 422: "Unprocessable Entity"}


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- request bodies ---------------------------------------------------------------


def short(text: str, limit: int = 80) -> str:
    """User-supplied text quoted in an error, cut so replies stay small."""
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "...'"


def json_type(value) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def read_body(environ: dict, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (413) past `limit` whatever the headers claim."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.strip().isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body is larger than {limit} bytes")
    stream = environ.get("wsgi.input")
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise RequestError(413, f"request body is larger than {limit} bytes")
    return data


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_object(raw: bytes) -> dict:
    """A body that must be a JSON object; anything else is 422 (as 3.8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(422, "request body is not UTF-8 text") from None
    try:
        doc = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise RequestError(422, f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(422, f"request body must be a JSON object (got {json_type(doc)})")
    return doc


def env_values(doc: dict) -> Dict[str, str]:
    """Validate a `/v3/environ` body: names as the shell has them, values
    strings or null (null → "", as 3.8). Raises RequestError(400)."""
    out = {}
    for name, value in doc.items():
        if not ENV_NAME.match(name):
            raise RequestError(400, f"invalid environment variable name {short(name)}: "
                                    "names are letters, digits and _, not starting with a digit")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise RequestError(400, f"value of {name} must be a string or null (got {json_type(value)})")
        if "\0" in value or not _encodable(value):
            raise RequestError(400, f"value of {name} cannot be stored in the environment "
                                    "(NUL byte or unpaired surrogate)")
        out[name] = value
    return out


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- serving ---------------------------------------------------------------------------


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

    `start()` and `stop()` are idempotent; `stop()` may be called from a
    request this server is handling (a reload) without killing that request.
    """

    def __init__(self, name: str, wsgi, bind: Callable[[], socket.socket], where: str,
                 attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY):
        self.name = name
        self.wsgi = wsgi
        self.where = where
        self._bind = bind
        self._attempts = attempts
        self._delay = delay
        self._server: Optional[WSGIServer] = None
        self.address = None  # what the socket is bound to, once started

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        sock = listen_retrying(self._bind, self.where, self._attempts, self._delay)
        self.address = sock.getsockname()
        server = WSGIServer(sock, self.wsgi, log=None,
                            error_log=LoggingLogAdapter(log, logging.DEBUG),
                            spawn=gevent.pool.Pool(MAX_CONNECTIONS))
        server.start()
        self._server = server
        log.info("%s: serving at %s", self.name, self.where)

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
        except Exception as exc:
            log.error("%s: internal error on %s %s: %s", name, environ.get("REQUEST_METHOD"),
                      short(path), exc or type(exc).__name__)
            log.debug("internal error", exc_info=True)
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
    return (json.dumps({"error": message}) + "\n").encode()


def json_headers(body: bytes) -> list:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]


def json_errors(web: bottle.Bottle) -> None:
    """Every error bottle raises (404, 405, our 4xx) answered as JSON."""
    def handler(err: bottle.HTTPError) -> str:
        bottle.response.content_type = "application/json"
        if err.status_code == 404:
            message = f"no such endpoint: {short(bottle.request.path)}"
        elif err.status_code == 405:
            message = f"method {bottle.request.method} not allowed (allowed: {err.headers.get('Allow', '')})"
        else:
            message = str(err.body)
        if err.status_code in GO_ERROR_TEXT:
            message = f"{GO_ERROR_TEXT[err.status_code]}: {message}"
        return json.dumps({"error": message}) + "\n"
    web.config["catchall"] = False  # exceptions reach `guarded`, which answers JSON
    web.default_error_handler = handler
    web.add_hook("before_request", _plain_text)


def _plain_text() -> None:
    """Success bodies such as `\n` are text, as 3.8 sent them."""
    bottle.response.content_type = "text/plain; charset=utf-8"


# --- the control server ------------------------------------------------------------------


class ControlServer:
    """The control socket (SPEC §14) for one App.

    `app` offers: putenv(dict), set_maintenance(bool), reload() -> error or
    None, status() -> dict, and optionally `telemetry` (prepare/record and
    count_control_request).
    """

    def __init__(self, app, path: str, attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY):
        self.app = app
        self.path = path
        self.web = self._routes()
        self.wsgi = guarded("control", self.web, self._count)
        self.server = HTTPServer("control", self.wsgi, lambda: self._bind(), path, attempts, delay)
        self._inode: Optional[Tuple[int, int]] = None
        self._reloading = gevent.lock.Semaphore()

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        if not self.server.running:
            return
        self.server.stop()
        self._remove_socket()

    def _bind(self) -> socket.socket:
        sock = bind_unix(self.path)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        return sock

    def _remove_socket(self) -> None:
        """Remove our socket file, not one a newer server bound since."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _routes(self) -> bottle.Bottle:
        web = bottle.Bottle()
        json_errors(web)
        web.route("/v3/environ", "POST", self._environ)
        web.route("/v3/env", "POST", self._environ)
        web.route("/v3/reload", "POST", self._reload)
        web.route("/v3/maintenance/enable", "POST", lambda: self._maintenance(True))
        web.route("/v3/maintenance/disable", "POST", lambda: self._maintenance(False))
        web.route("/v3/metric", "POST", self._metric)
        web.route("/v3/ping", "ANY", lambda: "\n")  # 3.8 answers ping on any method
        web.route("/v3/status", "GET", self._status)
        return web

    # -- endpoints --------------------------------------------------------

    @staticmethod
    def _body() -> dict:
        try:
            return parse_object(read_body(bottle.request.environ))
        except RequestError as exc:
            raise bottle.HTTPError(exc.status, exc.message) from None

    def _environ(self) -> str:
        try:
            values = env_values(self._body())
        except RequestError as exc:
            raise bottle.HTTPError(exc.status, exc.message) from None
        if values:
            self.app.putenv(values)
        return "\n"

    def _metric(self) -> str:
        doc = self._body()
        telemetry = getattr(self.app, "telemetry", None)
        if telemetry is None:
            if doc:
                name = next(iter(doc))
                raise bottle.HTTPError(400, f"unknown metric {short(name)}: telemetry is not configured")
            return "\n"
        try:
            updates = [telemetry.prepare(name, value) for name, value in doc.items()]
        except ValueError as exc:
            raise bottle.HTTPError(400, str(exc)) from None
        for update in updates:
            update()
        return "\n"

    def _reload(self) -> str:
        with self._reloading:  # concurrent reload requests run one after another
            try:
                error = self.app.reload()
            except PilotError as exc:
                error = str(exc)
        if error:
            raise bottle.HTTPError(400, str(error))
        return "\n"

    def _maintenance(self, enabled: bool) -> str:
        self.app.set_maintenance(enabled)
        return "\n"

    def _status(self) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps(self.app.status(), default=str) + "\n"

    # -- accounting -------------------------------------------------------

    def _count(self, code: int, path: str) -> None:
        telemetry = getattr(self.app, "telemetry", None)
        if telemetry is not None:
            telemetry.count_control_request(code, path if path in ENDPOINTS else OTHER_PATH)
