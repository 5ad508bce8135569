"""One connection to Pilot's HTTP servers: gevent.pywsgi's handler with
Pilot's rules. Imported with pywsgi on the first connection (see
pilot.httpserver, which owns the listening socket and the connection limits).

- A request (request line, headers and body) must arrive whole within
  its `timeout` (pilot.httpserver.REQUEST_TIMEOUT) seconds. The body is read before the app runs, so a slow
  body cannot hold a request half-read inside an endpoint; bodies are read up
  to MAX_BODY + 1 bytes (one more than any endpoint accepts, so the endpoint
  can tell "too large"); a larger declared Content-Length is not read at all.
  What the app left unread is drained after the answer (at most DRAIN_LIMIT
  bytes, within the deadline again), so the client reads the answer rather
  than a connection reset.
- A request that cannot be parsed gets a 4xx with a JSON `{"error": ...}`
  body and one debug log line; a client that sent nothing in time is closed
  with one debug line.
- Nothing is printed to stderr: pywsgi's own `traceback.print_exc()` and the
  hub's tracebacks are replaced by one line through Pilot's logger, so every
  line follows the configured log format.
"""
from __future__ import annotations

import http.client
import io
import logging
import re

import gevent
from gevent import pywsgi

from pilot.httpcommon import CONNECTION, MAX_BODY, error_body, json_headers, one_line

log = logging.getLogger("pilot")

HTTP_VERSION = re.compile(r"HTTP/(\d{1,3})\.(\d{1,3})\Z")
DRAIN_LIMIT = 4 * MAX_BODY  # bytes of an unread body swallowed after answering
REASONS = {"400": "Bad Request", "408": "Request Timeout", "414": "URI Too Long",
           "431": "Request Header Fields Too Large"}


class RequestTimeout(OSError):
    """The request did not arrive whole within REQUEST_TIMEOUT."""


def wsgi_server(listener, app, name: str) -> pywsgi.WSGIServer:
    """The pywsgi server object the handlers need (environ, app); it never
    accepts connections itself (pilot.httpserver does)."""
    server = pywsgi.WSGIServer(listener, app, log=None, error_log=ErrorStream(name))
    server.update_environ()
    return server


class ErrorStream:
    """`wsgi.errors`: what an app or pywsgi writes there becomes one debug
    line (a traceback is cut to its last line, the exception)."""

    def __init__(self, name: str):
        self.name = name

    def write(self, text) -> None:
        lines = [ln for ln in str(text).splitlines() if ln.strip()]
        if lines:
            last = lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)
            log.debug("%s: %s", self.name, one_line(last))

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


def answer(status: str, message: str) -> bytes:
    """A whole HTTP answer with a JSON error body; the connection closes."""
    body = error_body(message)
    head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def client_error(exc: BaseException, timeout: float):
    """(status, one-line reason) for a request pywsgi could not read."""
    if isinstance(exc, RequestTimeout):
        return "408", f"the request did not arrive whole within {timeout:g}s"
    if isinstance(exc, http.client.HTTPException):  # >100 headers, a header line >64 KiB
        return "431", f"request headers too large: {one_line(str(exc) or type(exc).__name__)}"
    reason = getattr(exc, "formatted_message", None) or str(exc) or type(exc).__name__
    return "400", f"invalid request: {one_line(reason)}"


class Handler(pywsgi.WSGIHandler):
    """Reads one request under a deadline, then runs the app (pywsgi)."""

    def __init__(self, sock, address, server, name: str, arrived, timeout: float):
        super().__init__(sock, address, server)
        self.name = name
        self.timeout = timeout  # for the whole request (line, headers and body) to arrive
        self._arrived = arrived  # tells the connection pool this one is not idle
        self._body = b""
        self._wire = None  # the body as it arrives on the socket (pywsgi.Input)
        self._deadline = gevent.Timeout(timeout, RequestTimeout("request timeout"))

    def handle(self):
        self._deadline.start()
        try:
            super().handle()
        finally:
            self._deadline.close()

    def _peer(self) -> str:
        address = self.client_address
        return f" from {address[0]}" if isinstance(address, tuple) and address else ""

    # -- reading ----------------------------------------------------------

    def read_requestline(self):
        try:
            return super().read_requestline()
        except RequestTimeout:
            log.debug("%s: no request within %gs%s: connection closed", self.name,
                      self.timeout, self._peer())
            return ""

    def _check_http_version(self):
        """HTTP/1.x only (pywsgi's own check raises IndexError on `HTTP/9`)."""
        match = HTTP_VERSION.match(self.request_version)
        return match is not None and int(match.group(1)) == 1

    def read_request(self, raw_requestline):
        super().read_request(raw_requestline)
        self._body = self._read_body()
        self._deadline.cancel()  # the request is in: the app may take its time
        self._arrived()
        return True

    def _read_body(self) -> bytes:
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        length = self.content_length
        if not chunked and not length:
            return b""
        expect = self.headers.get("expect", "").lower() == "100-continue"
        self._wire = pywsgi.Input(self.rfile, None if chunked else length,
                                  socket=self.socket if expect else None, chunked_input=chunked)
        if not chunked and length > MAX_BODY:
            return b""  # not read: the app refuses it by its declared length (413)
        return self._wire.read(MAX_BODY + 1)

    def _drain(self) -> None:
        """Swallow what is left of the body (bounded in bytes and time): a
        client still sending when the socket closes would get a reset, not
        the answer."""
        wire, self._wire = self._wire, None
        if wire is None:
            return
        wire.send_100_continue_enabled = False  # refused bodies are not invited
        left = DRAIN_LIMIT
        with gevent.Timeout(self.timeout, False):
            try:
                while left > 0:
                    chunk = wire.read(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
            except (OSError, ValueError):
                pass

    def get_environ(self):
        env = super().get_environ()
        self.wsgi_input = pywsgi.Input(io.BytesIO(self._body), len(self._body))
        env["wsgi.input"] = self.wsgi_input
        env[CONNECTION] = self.socket
        if env.pop("HTTP_TRANSFER_ENCODING", None) is not None:
            env["CONTENT_LENGTH"] = str(len(self._body))  # de-chunked
        return env

    def handle_one_response(self):
        super().handle_one_response()
        self._drain()

    # -- failures: one line each, never stderr ---------------------------------

    def handle_one_request(self):
        result = super().handle_one_request()
        if isinstance(result, tuple) and result[0] == "414":  # pywsgi's answer has no body
            return self._refuse("414", f"request line longer than {pywsgi.MAX_REQUEST_LINE} bytes")
        return result

    def _handle_client_error(self, ex):
        return self._refuse(*client_error(ex, self.timeout))

    def _refuse(self, status: str, reason: str):
        self._deadline.cancel()
        log.debug("%s: bad request%s: %s %s", self.name, self._peer(), status, reason)
        return status, answer(status, reason)

    def log_error(self, msg, *args):
        try:
            message = msg % args if args else msg
        except Exception:  # noqa: BLE001 - a message is never worth a traceback
            message = f"{msg!r} {args!r}"
        log.debug("%s: %s", self.name, one_line(message))

    def handle_error(self, t, v, tb):
        """An error while answering (the app's own errors are caught by
        `guarded`): one line, then a 500 if nothing was sent yet."""
        if isinstance(v, (OSError, gevent.GreenletExit)):  # a client gone; the server stopping
            log.debug("%s: connection ended while answering: %s", self.name,
                      one_line(v) or type(v).__name__)
            self.close_connection = True
            return
        log.error("%s: internal error while answering %s: %s: %s", self.name,
                  one_line(self.path or "", 80), t.__name__, one_line(v))
        if self.response_length or self.headers_sent:
            self.close_connection = True
            return
        body = error_body("internal error")
        try:
            self.start_response("500 Internal Server Error", json_headers(body))
            self.write(body)
        except OSError:
            self.close_connection = True
