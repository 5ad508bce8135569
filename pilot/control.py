"""The control plane: an HTTP server on a unix socket (SPEC §14).

Child processes and the CLI (`pilot.client`) use it to reload, toggle
maintenance, set environment variables, record metrics and read status.
Every request body is validated completely before anything is applied, and
every answer a client can provoke is a 4xx with a JSON `{"error": ...}` body:
bad input never costs the server its life.

This module holds the socket's life (bind 0600, replace a stale file, remove
our own file on stop) and the validation of request bodies; the endpoints
are in `pilot.control_api`, imported with bottle on the first request. It
never imports prometheus_client: request counts go to the app's Telemetry
when there is one (SPEC §14.2), otherwise they are not kept.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from typing import Dict, Optional, Tuple

import gevent.lock

from pilot.httpserver import BIND_ATTEMPTS, BIND_DELAY, HTTPServer, bind_unix, guarded, short

log = logging.getLogger("pilot")

MAX_BODY = 1 << 20  # bytes; larger bodies get 413
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENDPOINTS = (
    "/v3/environ", "/v3/env", "/v3/reload", "/v3/maintenance/enable",
    "/v3/maintenance/disable", "/v3/metric", "/v3/ping", "/v3/status",
)
OTHER_PATH = "other"  # request-counter label for unknown paths (bounded cardinality)


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- request bodies ---------------------------------------------------------------


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
            from pilot.control_api import ControlAPI
            self._wsgi = guarded("control", ControlAPI(self.app, self._reloading).web, self._count)
        return self._wsgi

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        if not self.server.running:
            return
        self.server.stop()
        self._remove_socket()

    def _bind(self) -> socket.socket:
        sock = bind_unix(self.path)
        st = os.lstat(self.path)
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

    # -- accounting -------------------------------------------------------

    def _count(self, code: int, path: str) -> None:
        telemetry = getattr(self.app, "telemetry", None)
        if telemetry is not None:
            telemetry.count_control_request(code, path if path in ENDPOINTS else OTHER_PATH)
