"""The client side of the control socket, used by `-ping`, `-reload`,
`-maintenance`, `-putenv`, `-putmetric` and `-status`.

A job may run `pilot -putmetric` every few seconds, so a call should cost
little more than the interpreter: no gevent, and no `http.client` (it imports
the `email` package and `ssl`, ~13 ms). One HTTP/1.0 request over the unix
socket is a few lines: the server closes the connection after answering, so
the body ends at Content-Length or at end of stream.

A fresh client process uses `_socket` directly: `socket.py` adds selectors
and enum wrappers (~2 ms) that one blocking request does not need. Where
`socket` is already loaded (a gevent process patched it) the call goes through
it, so an in-process request yields to the hub instead of blocking it. `json`
is imported only where a body is sent or read (`-ping` needs none).

Whoever bound the socket path first receives what the client sends (a
`-putenv DB_PASSWORD=...`): a socket is used only when it belongs to the
caller or to root, checked on the file before connecting (for a clear
message) and on the listening process itself after connecting (SO_PEERCRED:
the file may have been swapped in between), before anything is sent.
"""
from __future__ import annotations

import _socket
import os
import sys
import time
from typing import Dict, Optional, Tuple

from pilot.errors import ControlError
from pilot.tables import health_lines  # noqa: F401 - `-health` prints them (pilot.cli)

TIMEOUT = 10.0  # seconds for each socket operation, and to wait for a free slot
MAX_BACKOFF = 0.05  # seconds between connection attempts while the server is full
MAX_ANSWER = 16 << 20  # bytes; a larger answer is not from Pilot's control server


class BadAnswer(Exception):
    """The peer's bytes are not an HTTP answer we can read."""


def request(path: str, method: str, url: str, body: Optional[dict] = None) -> Tuple[int, bytes]:
    """One request over the socket; ControlError on any transport failure."""
    _check_owner(path, _socket_owner(path))
    data = None if body is None else _json().dumps(body).encode()
    sock = _new_socket()
    try:
        sock.settimeout(TIMEOUT)
        _connect(sock, path)
        _check_owner(path, _peer_uid(sock), "served")
        sock.sendall(_request_bytes(method, url, data))
        return _parse_answer(_read_all(sock))
    except ConnectionRefusedError:
        raise ControlError(f"pilot is not running: nothing listens on {path}") from None
    except (OSError, BadAnswer) as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        sock.close()


def _socket_owner(path: str) -> Optional[int]:
    """uid owning the file at `path` (the one connect() reaches, links followed);
    None when it cannot be seen, for connect() to report why."""
    try:
        return os.stat(path).st_uid
    except FileNotFoundError:
        raise ControlError(f"pilot is not running: no socket at {path}") from None
    except OSError:
        return None


def _peer_uid(sock) -> int:
    """uid of the process listening at the other end (struct ucred: pid, uid, gid)."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(cred[4:8], sys.byteorder)


def _check_owner(path: str, uid: Optional[int], how: str = "owned") -> None:
    me = os.geteuid()
    if uid is not None and uid not in (me, 0):
        raise ControlError(f"control socket {path} is {how} by uid {uid}, not by you ({me}) "
                           "or root; refusing to send")


def _connect(sock, path: str) -> None:
    """connect(), waiting for a free slot until TIMEOUT. A unix socket whose
    listen backlog is full does not queue a non-blocking connect (a socket
    with a timeout is one): it fails with EAGAIN at once, which under load
    made calls fail in 0.1 s. So retry, backing off up to MAX_BACKOFF."""
    deadline, pause = time.monotonic() + TIMEOUT, 0.001
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlError(f"control socket {path}: no free connection slot "
                                   f"within {TIMEOUT:g} s (Pilot is busy)") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_BACKOFF)


def _new_socket():
    """A unix stream socket: the loaded (maybe gevent-patched) module's, else the C one."""
    module = sys.modules.get("socket") or _socket
    return module.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)


def _request_bytes(method: str, url: str, data: Optional[bytes]) -> bytes:
    """Request line and headers; the host part is irrelevant on a unix socket."""
    head = f"{method} {url} HTTP/1.0\r\nHost: control\r\n"
    if data is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    elif method == "POST":
        head += "Content-Length: 0\r\n"
    return (head + "\r\n").encode("ascii") + (data or b"")


def _read_all(sock) -> bytes:
    """Everything the server sends before it closes the connection."""
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise BadAnswer(f"answer larger than {MAX_ANSWER} bytes")


def _parse_answer(raw: bytes) -> Tuple[int, bytes]:
    """(status, body) of an HTTP/1.x answer that ends where the stream ends."""
    if not raw:
        raise BadAnswer("Remote end closed connection without response")
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise BadAnswer("answer ended inside its headers")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = _status_code(status_line)
    headers = _headers(header_lines)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, _dechunk(rest)
    length = headers.get("content-length")
    if length is None:
        return status, rest
    if not length.strip().isdigit() or len(rest) < int(length):
        raise BadAnswer(f"answer shorter than its Content-Length {length.strip()}")
    return status, rest[:int(length)]


def _status_code(line: str) -> int:
    """The code of `HTTP/1.1 200 OK`."""
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise BadAnswer(f"bad status line: {line[:80]!r}")
    return int(code)


def _headers(lines) -> Dict[str, str]:
    """Header names lower-cased; a repeated header keeps its last value."""
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked answer (a server may chunk even for HTTP/1.0)."""
    body, pos = [], 0
    while True:
        line_end = data.find(b"\r\n", pos)
        size_text = data[pos:line_end].split(b";", 1)[0].strip() if line_end >= 0 else b""
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer("bad chunk size in answer") from None
        if size == 0:
            return b"".join(body)
        start = line_end + 2
        if len(data) < start + size:
            raise BadAnswer("answer ended inside a chunk")
        body.append(data[start:start + size])
        pos = start + size + 2


def _json():
    import json

    return json


def _check(status: int, body: bytes) -> bytes:
    if status >= 400:
        raise ControlError(f"control server answered {status}: {_error_text(body)}")
    return body


def _error_text(body: bytes) -> str:
    try:
        doc = _json().loads(body)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except ValueError:
        pass
    return body.decode("utf-8", "replace").strip() or "no detail"


def ping(path: str) -> None:
    _check(*request(path, "GET", "/v3/ping"))


def reload(path: str) -> None:
    _check(*request(path, "POST", "/v3/reload"))


def maintenance(path: str, enable: bool) -> None:
    action = "enable" if enable else "disable"
    _check(*request(path, "POST", f"/v3/maintenance/{action}"))


def putenv(path: str, values: Dict[str, str]) -> None:
    _check(*request(path, "POST", "/v3/environ", values))


def putmetric(path: str, values: Dict[str, str]) -> None:
    _check(*request(path, "POST", "/v3/metric", values))


def status(path: str) -> dict:
    body = _check(*request(path, "GET", "/v3/status"))
    try:
        return _json().loads(body)
    except ValueError:
        raise ControlError("control server sent a status that is not JSON") from None


def health(path: str) -> Tuple[bool, dict]:
    """(healthy, the whole answer) of `/v3/health` (200 or 503)."""
    status, body = request(path, "GET", "/v3/health")
    if status not in (200, 503):
        _check(status, body)
    try:
        doc = _json().loads(body)
    except ValueError:
        raise ControlError("control server sent a health answer that is not JSON") from None
    return status == 200, doc


def job(path: str, name: str) -> dict:
    body = _check(*request(path, "GET", f"/v3/jobs/{quote(name)}"))
    try:
        return _json().loads(body)
    except ValueError:
        raise ControlError("control server sent a job status that is not JSON") from None


def order_job(path: str, name: str, action: str) -> None:
    """`stop`, `start` or `restart` one job."""
    _check(*request(path, "POST", f"/v3/jobs/{quote(name)}/{action}"))


def signal_job(path: str, name: str, signal: str) -> None:
    """Send `signal` (a name such as SIGHUP, or a number) to one job."""
    value = int(signal) if signal.strip().isdigit() else signal
    _check(*request(path, "POST", f"/v3/jobs/{quote(name)}/signal", {"signal": value}))


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(name: str) -> str:
    """A job name as one URL path segment (urllib is not worth its import here)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))


# -- the event stream (`-events`, `-status -follow`) --------------------------------------


class StreamEnded(ControlError):
    """The server closed the event stream (Pilot is stopping)."""


class EventStream:
    """`GET /v3/events` read as it comes: one dict per event. `read(timeout)`
    returns what arrived within `timeout` seconds (None: wait for something),
    and raises StreamEnded once the server has closed the stream."""

    def __init__(self, path: str, since: Optional[float] = None):
        if not os.path.exists(path):
            raise ControlError(f"pilot is not running: no socket at {path}")
        self.path = path
        self._sock = _new_socket()  # connected as request() connects
        self._buffer = b""
        self._head_read = False
        url = "/v3/events" if since is None else f"/v3/events?since={since:g}"
        try:
            self._sock.settimeout(TIMEOUT)
            self._sock.connect(path)
            self._sock.sendall(_request_bytes("GET", url, None))
        except ConnectionRefusedError:
            self.close()
            raise ControlError(f"pilot is not running: nothing listens on {path}") from None
        except OSError as exc:
            self.close()
            raise ControlError(f"control socket {path}: {exc}") from None

    def read(self, timeout: Optional[float] = None) -> list:
        try:
            # 0 would make the socket non-blocking: a short wait instead.
            self._sock.settimeout(None if timeout is None else max(timeout, 0.001))
            chunk = self._sock.recv(65536)
        except TimeoutError:
            return []
        except OSError as exc:
            raise StreamEnded(f"control socket {self.path}: {exc}") from None
        if not chunk:
            if not self._head_read:
                self._check_head(self._buffer, final=True)
            raise StreamEnded("the event stream ended: pilot is stopping")
        self._buffer += chunk
        if not self._head_read and not self._check_head(self._buffer):
            return []
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        return [_event(line) for line in lines if line.strip()]

    def _check_head(self, raw: bytes, final: bool = False) -> bool:
        """Past the answer's head: True (the body starts in the buffer); an
        error answer raises ControlError with the server's reason."""
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep and not final:
            return False
        try:
            status, body = _parse_answer(raw)
        except BadAnswer as exc:
            raise ControlError(f"control socket {self.path}: {exc}") from None
        if status >= 400:
            if not final:  # an error answer is short: read it all
                body = _parse_answer(raw + _read_all(self._sock))[1]
            _check(status, body)
        self._head_read, self._buffer = True, rest
        return True

    def close(self) -> None:
        self._sock.close()


def _event(line: bytes) -> dict:
    try:
        doc = _json().loads(line)
    except ValueError:
        raise ControlError("control server sent an event that is not JSON") from None
    return doc if isinstance(doc, dict) else {"message": str(doc)}
