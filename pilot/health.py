"""HTTP and TCP health checks that need no program in the image.

A `Probe` looks like a command to the job (`start()`, `signal()`,
`running`, `output`) and reports like one: `exitSuccess{check.JOB}` or
`exitFailed{check.JOB}` on the bus, with the reason as its output
(`HTTP 503`, `connection refused`, `timed out after 2s`). It runs in one
greenlet of its own and starts no process: a `FROM scratch` image can be
checked without curl.
"""
from __future__ import annotations

import socket
from typing import Callable, Optional, Tuple

import gevent

from pilot import events as ev
from pilot.datatypes import format_go_duration
from pilot.events import Event

MAX_HEAD = 16 * 1024  # bytes of an HTTP answer read to find its status line


class ProbeFailed(Exception):
    """The check failed; the message is its output."""


class Probe:
    def __init__(self, name: str, *, timeout: Optional[float], http: Optional[str] = None,
                 tcp: Optional[str] = None, publish: Callable[[Event], None]):
        self.name = name  # check.JOB
        self.timeout = timeout if timeout and timeout > 0 else None
        self.publish = publish
        self.output = ""
        self.pid = None  # no process
        self._check = _http_check(http) if http else _tcp_check(tcp)
        self._greenlet: Optional[gevent.Greenlet] = None

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name}: started while its previous probe runs")
        self._greenlet = gevent.spawn(self._run)

    def signal(self, sig: int) -> bool:
        """Stopping a probe abandons it: no result is published."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None or greenlet.dead:
            return False
        greenlet.kill(block=False)
        return True

    terminate = signal  # a probe has no process: stopping it is abandoning it

    def stop(self) -> None:
        self.signal(0)

    def group_alive(self) -> bool:
        return False  # no process, nothing left behind

    def _run(self) -> None:
        try:
            with gevent.Timeout(self.timeout, ProbeFailed(f"timed out after {_shown(self.timeout)}")):
                self.output = self._check(self.timeout)
            code = ev.EXIT_SUCCESS
        except ProbeFailed as failed:
            self.output, code = str(failed), ev.EXIT_FAILED
        except OSError as exc:
            self.output, code = _os_reason(exc), ev.EXIT_FAILED
        self._greenlet = None
        self.publish(Event(code, self.name))


def _shown(seconds: Optional[float]) -> str:
    return format_go_duration(seconds) if seconds else "ever"


def _os_reason(exc: OSError) -> str:
    """`connection refused`, `no such host` …: the reason in a few words."""
    if isinstance(exc, socket.gaierror):
        return f"no such host ({exc.strerror})" if exc.strerror else "no such host"
    if isinstance(exc, socket.timeout):
        return "timed out"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def _address(host: str, port: int) -> Tuple[str, int]:
    return (host.strip("[]"), port)


def _tcp_check(target: str) -> Callable[[Optional[float]], str]:
    host, _, port = target.rpartition(":")

    def check(timeout: Optional[float]) -> str:
        with socket.create_connection(_address(host, int(port)), timeout=timeout):
            return f"connected to {target}"
    return check


def _http_check(url: str) -> Callable[[Optional[float]], str]:
    """A GET of `url` (no proxy, never redirected): 2xx and 3xx pass."""
    from urllib.parse import urlsplit  # with ipaddress ~0.5 MB: only for an http check
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: pilot-health-check\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1", "replace")

    def check(timeout: Optional[float]) -> str:
        with socket.create_connection(_address(parts.hostname, port), timeout=timeout) as raw:
            conn = _tls(raw, parts.hostname) if https else raw
            conn.sendall(request)
            status = _status_code(_read_head(conn))
        if 200 <= status < 400:
            return f"HTTP {status}"
        raise ProbeFailed(f"HTTP {status}")
    return check


def _tls(sock, hostname: str):
    """HTTPS as Kubernetes' httpGet probes do it: the certificate is not
    verified (ssl is imported only for an https check)."""
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=hostname)


def _read_head(conn) -> bytes:
    data = b""
    while b"\r\n" not in data and len(data) < MAX_HEAD:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _status_code(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ProbeFailed(f"not an HTTP answer: {line[:60]!r}" if line else "connection closed without an answer")
    return int(code)
