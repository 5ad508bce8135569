"""The control socket's endpoints (docs/behaviour.md §14.3) as a bottle app,
and the validation of their request bodies.

Imported by `pilot.control` on the first request, so bottle loads only for a
socket somebody calls. Every request body is validated completely before
anything is applied; every refusal is a JSON 4xx.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import select
import time
from typing import Dict, Iterator, Optional
from urllib.parse import parse_qs

import bottle
import gevent.lock
import gevent.monkey

from pilot.errors import PilotError, UnknownJob
from pilot.httpserver import CONNECTION, error_body, json_headers, short

# 3.8's whole error bodies; Pilot's JSON errors start with them, so scripts
# that look for 3.8's text still find it.
log = logging.getLogger("pilot")

MAX_BODY = 1 << 20  # bytes; larger bodies get 413
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

GO_ERROR_TEXT = {404: "404 page not found", 405: "Method Not Allowed", 422: "Unprocessable Entity"}
STREAM_CHECK = 1.0  # seconds: how often an idle event stream looks whether its client left


class ControlAPI:
    """Routes over a `Supervisor` and the current `MetricSink`; `reloading`
    serialises concurrent reloads across the server's lifetime."""

    def __init__(self, supervisor, metrics, reloading: gevent.lock.Semaphore, streams=None):
        self.supervisor = supervisor
        self.metrics = metrics
        self._reloading = reloading
        self.streams = streams
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
        web.route("/v3/events", "GET", lambda: None)  # answered by `wsgi`; bottle says 405 for the rest
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

    def _status(self):
        """The status as JSON, or with `format=text` what `pilot -status` prints."""
        text = _text_format()
        doc = self.supervisor.status()
        if text:
            from pilot.tables import status_text  # for dist/pilot's launcher (see _text_format)
            return _text(status_text(json.loads(json.dumps(doc, default=str))), "replace")
        bottle.response.content_type = "application/json"
        return json.dumps(doc, default=str) + "\n"

    def _health(self):
        """200 when healthy, 503 otherwise; the same JSON either way, or with
        `format=text` what `pilot -health` prints."""
        text = _text_format()
        doc = self.supervisor.health()
        bottle.response.status = 200 if doc["healthy"] else 503
        if text:
            from pilot.tables import health_text
            return _text(health_text(doc["healthy"], json.loads(json.dumps(doc, default=str))),
                         "surrogateescape")
        bottle.response.content_type = "application/json"
        return json.dumps(doc, default=str) + "\n"

    # -- the event timeline --------------------------------------------------------

    def wsgi(self, environ, start_response):
        """The WSGI app: bottle's routes, but `GET /v3/events` answered here,
        so its head goes out at once (bottle would hold it back until the
        first event) and a client knows it is following."""
        if environ.get("PATH_INFO") == "/v3/events" and environ.get("REQUEST_METHOD") == "GET":
            return self._events(environ, start_response)
        return self.web(environ, start_response)

    def _events(self, environ, start_response):
        """The timeline as newline-delimited JSON, one object per event:
        with `since` (seconds, or a duration such as 5m) the kept events of
        that past first; then, unless `follow=0`, each new one as it
        happens, until the client leaves or the server stops."""
        streams = self.streams
        try:
            if streams is None or streams.timeline is None:
                raise RequestError(404, "404 page not found: no event timeline here")
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                                   keep_blank_values=True).items()}
            since = _seconds_back(query.get("since"))
            follow = _flag(query.get("follow", "1"), "follow")
            if follow and not streams.admit(client_left):
                raise RequestError(503, f"too many event streams open ({streams.MAX}); try again later")
        except RequestError as exc:
            body = error_body(exc.message)
            start_response(f"{exc.status} {_REASONS.get(exc.status, 'Error')}", json_headers(body))
            return [body]
        write = start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        if callable(write):
            write(b"")  # the head now: pywsgi sends it with the first write
        return self._stream(streams, since, follow, environ.get(CONNECTION))

    @staticmethod
    def _stream(streams, since: Optional[float], follow: bool, connection) -> Iterator[bytes]:
        timeline = streams.timeline
        key = next(_STREAM_KEYS)
        streams.enter(key, connection)
        try:
            cursor = timeline.last
            if since is not None:
                backlog = timeline.entries(since=time.time() - since)
                if backlog:
                    yield _ndjson(backlog)
            while follow:
                if timeline.wait(cursor, STREAM_CHECK) or streams.closing:
                    new = timeline.entries(after=cursor)
                    cursor = timeline.last
                    if new:
                        yield _ndjson(new)
                    if streams.closing:  # the server stops: what happened last is sent, then the end
                        return
                elif client_left(connection):
                    return
        finally:
            streams.leave(key)

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
        return _done(lambda: self.supervisor.order_job(name, action))

    def _signal(self, name: str) -> str:
        try:
            sig = signal_of(self._body())
        except RequestError as exc:
            raise bottle.HTTPError(exc.status, exc.message) from None
        log.info("control: signal %s %s", name, signal_name(sig))
        return _done(lambda: self.supervisor.signal_job(name, sig))


def _text_format() -> bool:
    """True for `?format=text`: the answer is the text the CLI prints for it,
    made here by the CLI's own code (pilot.tables), so that dist/pilot's
    launcher, which answers `-status` and `-health` without starting Python,
    prints the same bytes. `format=json` (or none) is the JSON; anything else
    is 400."""
    value = bottle.request.query.get("format", "json")
    if value not in ("json", "text"):
        raise bottle.HTTPError(400, f"format must be json or text (got {short(value)})")
    return value == "text"


def _text(text: str, errors: str) -> bytes:
    """UTF-8, with what cannot be encoded (a surrogate from a name that was not
    UTF-8) handled as the client's stdout would: `-status` writes through an
    `errors="replace"` stream, `-health` through the interpreter's own (UTF-8
    mode: surrogateescape)."""
    bottle.response.content_type = "text/plain; charset=utf-8"
    return text.encode("utf-8", errors)


def _ndjson(entries) -> bytes:
    return "".join(json.dumps(e.as_dict(), ensure_ascii=False) + "\n" for e in entries).encode()


def _seconds_back(text: Optional[str]) -> Optional[float]:
    """`since`: seconds (`300`, `2.5`) or a duration (`5m`); 400 otherwise."""
    if text is None or text == "":
        return None
    from pilot.datatypes import Invalid, go_duration
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = go_duration(text)
        except Invalid:
            seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise RequestError(400, f"since must be a number of seconds or a duration such as 5m (got {short(text)})")
    return seconds


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", ""):
        return True
    if value in ("0", "false", "no"):
        return False
    raise RequestError(400, f"{name} must be 1 or 0 (got {short(text)})")


_STREAM_KEYS = itertools.count(1)
_REASONS = {400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


_POLL = gevent.monkey.get_original("select", "poll")  # with timeout 0 it never blocks the hub
_HUNG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def client_left(connection) -> bool:
    """True when the client hung up (its side of the connection is closed).
    Writing to it would also tell, but an idle stream writes nothing."""
    if connection is None:
        return False
    try:
        poller = _POLL()
        poller.register(connection.fileno(), select.POLLIN | select.POLLRDHUP)
        return any(mask & _HUNG_UP for _, mask in poller.poll(0))
    except (OSError, ValueError):
        return True


def _done(order) -> str:
    """Carry out an order for one job: 404 for no such job, 409 with the
    reason when it cannot be done now."""
    try:
        refusal = order()
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


# --- request bodies ---------------------------------------------------------------


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


def signal_of(doc: dict) -> int:
    """The signal of a `/v3/jobs/NAME/signal` body `{"signal": "SIGHUP"}`
    (a name, with or without SIG, or a number). Raises RequestError(400)."""
    from pilot.datatypes import Invalid, signal_number
    if set(doc) != {"signal"}:
        raise RequestError(400, 'body must be {"signal": NAME} (e.g. {"signal": "SIGHUP"}), '
                                f"got keys {sorted(doc)}")
    value = doc["signal"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(400, f"signal must be a name or a number (got {json_type(value)})")
    try:
        return signal_number(value)
    except Invalid as exc:
        raise RequestError(400, f"bad signal: {exc}") from None
