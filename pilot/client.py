"""The client side of the control socket, used by `-ping`, `-reload`,
`-maintenance`, `-putenv`, `-putmetric` and `-status`.

Standard library only and no gevent: a job that runs `pilot -putmetric`
every few seconds should pay for little more than the interpreter.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Dict, Optional, Tuple

from pilot.errors import ControlError

TIMEOUT = 10.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = TIMEOUT):
        super().__init__("control", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def request(path: str, method: str, url: str, body: Optional[dict] = None) -> Tuple[int, bytes]:
    """One request over the socket; ControlError on any transport failure."""
    if not os.path.exists(path):
        raise ControlError(f"pilot is not running: no socket at {path}")
    conn = UnixHTTPConnection(path)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, url, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except ConnectionRefusedError:
        raise ControlError(f"pilot is not running: nothing listens on {path}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        conn.close()


def _check(status: int, body: bytes) -> bytes:
    if status >= 400:
        raise ControlError(f"control server answered {status}: {_error_text(body)}")
    return body


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
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
        return json.loads(body)
    except ValueError:
        raise ControlError("control server sent a status that is not JSON") from None


def status_table(doc: dict) -> str:
    """A readable table: job, state, pid, restarts, health, last exit."""
    rows = [("JOB", "STATE", "PID", "RESTARTS", "HEALTH", "LAST EXIT")]
    for j in doc.get("jobs", []):
        rows.append((
            str(j.get("name", "")), str(j.get("state", "")),
            "-" if j.get("pid") is None else str(j["pid"]),
            str(j.get("restarts", 0)), str(j.get("status", "")),
            "-" if j.get("last_exit") is None else str(j["last_exit"]),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if doc.get("maintenance"):
        lines.append("maintenance: enabled")
    for w in doc.get("watches", []) or []:
        lines.append(f"watch {w.get('name')}: {w.get('instances', 0)} instance(s)")
    return "\n".join(lines)
