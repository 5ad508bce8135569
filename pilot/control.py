"""The control plane: an HTTP server on a unix socket (SPEC §14).

Child processes and the CLI (`pilot.client`) use it to reload, toggle
maintenance, set environment variables, record metrics and read status.
Every answer a client can provoke is a 4xx with a JSON `{"error": ...}`
body: bad input never costs the server its life.

This module holds the socket's life (bind 0600, replace a stale file, remove
our own file on stop); the endpoints and the validation of request bodies
are in `pilot.control_api`, imported with bottle on the first request. It
never imports prometheus_client: request counts go to the app's Telemetry
when there is one (SPEC §14.2), otherwise they are not kept.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Optional, Tuple

import gevent.lock

from pilot.httpserver import BIND_ATTEMPTS, BIND_DELAY, HTTPServer, bind_unix, guarded

log = logging.getLogger("pilot")

ENDPOINTS = (
    "/v3/environ", "/v3/env", "/v3/reload", "/v3/maintenance/enable",
    "/v3/maintenance/disable", "/v3/metric", "/v3/ping", "/v3/status",
)
OTHER_PATH = "other"  # request-counter label for unknown paths (bounded cardinality)


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
            from pilot.control_api import ControlAPI  # bottle: ~2 MB, for a socket somebody calls
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

    # -- accounting -------------------------------------------------------

    def _count(self, code: int, path: str) -> None:
        telemetry = getattr(self.app, "telemetry", None)
        if telemetry is not None:
            telemetry.count_control_request(code, path if path in ENDPOINTS else OTHER_PATH)
