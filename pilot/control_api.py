"""The control socket's endpoints (SPEC §14.3) as a bottle app.

Imported by `pilot.control` on the first request, so bottle loads only for a
socket somebody calls. Request bodies are validated by pilot.control's
helpers before anything is applied; every refusal is a JSON 4xx.
"""
from __future__ import annotations

import json
import logging

import bottle
import gevent.lock

from pilot.control import RequestError, env_values, parse_object, read_body, signal_of
from pilot.errors import PilotError, UnknownJob
from pilot.httpserver import short

# 3.8's whole error bodies; Pilot's JSON errors start with them, so scripts
# that look for 3.8's text still find it.
log = logging.getLogger("pilot")

GO_ERROR_TEXT = {404: "404 page not found", 405: "Method Not Allowed", 422: "Unprocessable Entity"}


class ControlAPI:
    """Routes over a `Supervisor` and the current `MetricSink`; `reloading`
    serialises concurrent reloads across the server's lifetime."""

    def __init__(self, supervisor, metrics, reloading: gevent.lock.Semaphore):
        self.supervisor = supervisor
        self.metrics = metrics
        self._reloading = reloading
        self.web = self._routes()

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
        web.route("/v3/health", "GET", self._health)
        web.route("/v3/jobs", "GET", self._jobs)
        web.route("/v3/jobs/<name>", "GET", self._job)
        web.route("/v3/jobs/<name>/signal", "POST", self._signal)
        web.route("/v3/jobs/<name>/<action:re:stop|start|restart>", "POST", self._order)
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
            self.supervisor.putenv(values)
        return "\n"

    def _metric(self) -> str:
        doc = self._body()
        telemetry = self.metrics()
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
                error = self.supervisor.reload()
            except PilotError as exc:
                error = str(exc)
        if error:
            raise bottle.HTTPError(400, str(error))
        return "\n"

    def _maintenance(self, enabled: bool) -> str:
        self.supervisor.set_maintenance(enabled)
        return "\n"

    def _status(self) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps(self.supervisor.status(), default=str) + "\n"

    def _health(self) -> str:
        """200 when healthy, 503 otherwise; the same JSON either way."""
        doc = self.supervisor.health()
        bottle.response.status = 200 if doc["healthy"] else 503
        bottle.response.content_type = "application/json"
        return json.dumps(doc, default=str) + "\n"

    # -- one job -------------------------------------------------------------

    def _jobs(self) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps({"jobs": self.supervisor.status()["jobs"]}, default=str) + "\n"

    def _job(self, name: str) -> str:
        try:
            doc = self.supervisor.job_status(name)
        except UnknownJob as exc:
            raise refused(404, str(exc)) from None
        bottle.response.content_type = "application/json"
        return json.dumps(doc, default=str) + "\n"

    def _order(self, name: str, action: str) -> str:
        log.info("control: %s %s", action, name)
        try:
            refusal = self.supervisor.order_job(name, action)
        except UnknownJob as exc:
            raise refused(404, str(exc)) from None
        if refusal:
            raise refused(409, refusal)
        return "\n"

    def _signal(self, name: str) -> str:
        try:
            sig = signal_of(self._body())
        except RequestError as exc:
            raise bottle.HTTPError(exc.status, exc.message) from None
        log.info("control: signal %s %s", name, signal_name(sig))
        try:
            refusal = self.supervisor.signal_job(name, sig)
        except UnknownJob as exc:
            raise refused(404, str(exc)) from None
        if refusal:
            raise refused(409, refusal)
        return "\n"


def signal_name(sig: int) -> str:
    import signal as signals
    try:
        return signals.Signals(sig).name
    except ValueError:
        return str(sig)


def refused(status: int, message: str) -> bottle.HTTPError:
    """A refusal of ours (its message is kept, whatever its status)."""
    err = bottle.HTTPError(status, message)
    err.ours = True
    return err


def json_errors(web: bottle.Bottle) -> None:
    """Every error bottle raises (404, 405, our 4xx) answered as JSON."""
    def handler(err: bottle.HTTPError) -> str:
        bottle.response.content_type = "application/json"
        if getattr(err, "ours", False):
            message = str(err.body)
        elif err.status_code == 404:
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
