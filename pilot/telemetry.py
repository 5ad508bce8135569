"""Prometheus telemetry (docs/behaviour.md §13): user metrics, Pilot's own counters, and
an HTTP server with `/metrics` and `/status`.

Pilot's metrics are exposed with exactly 3.8's names: the Go client adds no
`_total` suffix and no `_created` series, so they are rendered here rather
than by prometheus_client's Counter (which would rename every counter and
break users' dashboards). prometheus_client supplies the process, platform
and GC collectors, in one `CollectorRegistry` per Telemetry (never the
global one, so a reload can build a fresh one).

Imported only when a config has `telemetry`.
"""
from __future__ import annotations

import collections
import functools
import json
import logging
import math
import time
from typing import Callable, Dict, Iterable, Iterator, List, Protocol, Sequence, Tuple

import bottle
from prometheus_client import (CollectorRegistry, GCCollector, PlatformCollector,
                               ProcessCollector, generate_latest)

from pilot import __version__
from pilot import events as ev
from pilot.config.model import MetricConfig, TelemetryConfig
from pilot.httpserver import BIND_ATTEMPTS, BIND_DELAY, HTTPServer, bind_tcp, guarded, short
from pilot.strconv import format_float

log = logging.getLogger("pilot")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, math.inf)
SUMMARY_QUANTILES = (0.5, 0.9, 0.99)
SUMMARY_WINDOW = 600.0  # seconds of observations behind the quantiles (Go default)
SUMMARY_MAX_SAMPLES = 10_000  # memory bound of that window
JOB_STATUSES = ("healthy", "unhealthy", "maintenance", "unknown")

Sample = Tuple[str, Dict[str, str], float]  # (name suffix, labels, value)


# --- values as 3.8 read them ----------------------------------------------------


def metric_text(value) -> str:
    """A JSON value as 3.8 rendered it in a metric record (`1.0` → `1`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def metric_number(value) -> float:
    """A recorded value as a float, parsed as 3.8 did; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a number: {short(metric_text(value))}")
    if isinstance(value, str):
        text = value.strip()
        if "_" in text:  # Python's float() takes 1_000, Go's ParseFloat does not
            raise ValueError(f"not a number: {short(value)}")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"not a number: {short(value)}") from None
    try:
        return float(value)
    except OverflowError:
        raise ValueError("number out of range") from None


def prom_float(x: float) -> str:
    """A number as the Prometheus text format writes it, which is how 3.8
    exposed values and bucket bounds (`1`, `2.5`, `1e+06`): Go's
    FormatFloat 'g', except that either zero is `0` (client_golang's
    writeFloat)."""
    return "0" if x == 0 else format_float(x, "g")


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


# --- user metrics ---------------------------------------------------------------


class UserCounter:
    kind = "counter"

    def __init__(self):
        self.value = 0.0

    def check(self, x: float) -> None:
        if not finite(x) or x < 0:
            raise ValueError(f"a counter only goes up: increment must be a finite number >= 0 "
                             f"(got {prom_float(x)})")

    def apply(self, x: float) -> None:
        self.value += x

    def samples(self) -> List[Sample]:
        return [("", {}, self.value)]


class UserGauge(UserCounter):
    kind = "gauge"

    def check(self, x: float) -> None:
        pass

    def apply(self, x: float) -> None:
        self.value = x


class UserHistogram:
    kind = "histogram"

    def __init__(self, buckets=DEFAULT_BUCKETS):
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def check(self, x: float) -> None:
        if not finite(x):
            raise ValueError(f"an observation must be a finite number (got {prom_float(x)})")

    def apply(self, x: float) -> None:
        self.sum += x
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if x <= bound:
                self.counts[i] += 1
                break

    def samples(self) -> List[Sample]:
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            out.append(("_bucket", {"le": prom_float(bound)}, float(running)))
        return out + [("_sum", {}, self.sum), ("_count", {}, float(self.count))]


class UserSummary:
    """Quantiles over a sliding window, as the Go client's defaults
    (0.5/0.9/0.99 over 10 minutes); the window keeps at most
    SUMMARY_MAX_SAMPLES observations."""
    kind = "summary"

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.window: collections.deque = collections.deque(maxlen=SUMMARY_MAX_SAMPLES)
        self.sum = 0.0
        self.count = 0

    check = UserHistogram.check

    def apply(self, x: float) -> None:
        self.sum += x
        self.count += 1
        self.window.append((self.clock(), x))

    def quantiles(self) -> Dict[float, float]:
        horizon = self.clock() - SUMMARY_WINDOW
        while self.window and self.window[0][0] < horizon:
            self.window.popleft()
        values = sorted(v for _, v in self.window)
        if not values:
            return {q: math.nan for q in SUMMARY_QUANTILES}
        last = len(values) - 1
        return {q: values[min(last, max(0, math.ceil(q * len(values)) - 1))] for q in SUMMARY_QUANTILES}

    def samples(self) -> List[Sample]:
        out = [("", {"quantile": prom_float(q)}, v) for q, v in self.quantiles().items()]
        return out + [("_sum", {}, self.sum), ("_count", {}, float(self.count))]


KINDS = {"counter": UserCounter, "gauge": UserGauge, "histogram": UserHistogram,
         "summary": UserSummary}


# --- text exposition ------------------------------------------------------------


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def family_text(name: str, help_text: str, kind: str, samples: List[Sample]) -> str:
    """One metric family in Prometheus text format 0.0.4."""
    lines = [f"# HELP {name} {_escape(help_text, False)}", f"# TYPE {name} {kind}"]
    for suffix, labels, value in samples:
        label_text = ",".join(f'{k}="{_escape(str(v), True)}"' for k, v in labels.items())
        label_text = "{" + label_text + "}" if label_text else ""
        lines.append(f"{name}{suffix}{label_text} {prom_float(value)}")
    return "\n".join(lines) + "\n"


def labelled(label_names: Tuple[str, ...], values: Dict[tuple, float]) -> List[Sample]:
    return [("", dict(zip(label_names, key)), v) for key, v in sorted(values.items())]


# --- telemetry -----------------------------------------------------------------------


class JobView(Protocol):
    """One job as telemetry shows it (`pilot.jobs.JobStatus`)."""

    name: str
    status: str  # healthy, unhealthy, maintenance, unknown, idle
    restarts: int
    advertised: bool
    address: str
    port: int


class Telemetry:
    """Metrics and the telemetry HTTP server (docs/behaviour.md §13).

    It counts every event published on `bus`, and reads the jobs (`jobs()`)
    and the names of the configured watches (`watches()`) when asked.
    """

    def __init__(self, cfg: TelemetryConfig, *, bus, jobs: Callable[[], Iterable[JobView]],
                 watches: Callable[[], Sequence[str]] = tuple,
                 health: Callable[[], dict] = lambda: {"healthy": True, "jobs": {}},
                 attempts: int = BIND_ATTEMPTS, delay: float = BIND_DELAY):
        self.bus = bus
        self.jobs = jobs
        self.watches = watches
        self.health = health
        self.cfg = cfg
        self.user: Dict[str, Tuple[MetricConfig, object]] = {}
        self._legacy: Dict[str, str] = {}
        for m in cfg.metrics:
            self.user[m.full_name] = (m, KINDS[m.type]())
            self._legacy.setdefault(m.legacy_key, m.full_name)
        self.events: Dict[Tuple[str, str], float] = {}
        self.control_requests: Dict[Tuple[str, str], float] = {}
        self.watch_instances: Dict[Tuple[str], float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        ip = cfg.ip or "0.0.0.0"
        self.web = self._routes()
        wsgi = guarded("telemetry", self.web, lambda c, p: None)
        self.server = HTTPServer("telemetry", lambda: wsgi,
                                 functools.partial(bind_tcp, ip, cfg.port),
                                 f"{cfg.ip}:{cfg.port}", attempts, delay)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.bus.listen(self.count_event)

    def stop(self) -> None:
        self.bus.unlisten(self.count_event)
        self.server.stop()

    def adopt(self, previous: "Telemetry") -> None:
        """Keep counting Pilot's own metrics across a reload (docs/behaviour.md §13.4);
        user metrics start afresh."""
        self.events.update(previous.events)
        self.control_requests.update(previous.control_requests)
        self.watch_instances.update(previous.watch_instances)

    # -- recording ------------------------------------------------------------

    def metric(self, name: str):
        """The user metric `name` (exposed name, or 3.8's `ns_sub_name` key)."""
        found = self.user.get(name) or self.user.get(self._legacy.get(name, ""))
        if found is None:
            raise ValueError(f"unknown metric {short(name)}: no metric of that name is configured")
        return found

    def prepare(self, name: str, value) -> Callable[[], None]:
        """Validate one record and return what applies it; ValueError, and
        nothing recorded, when the name or value is bad. Lets a request with
        several pairs apply all or nothing."""
        mcfg, metric = self.metric(name)
        try:
            number = metric_number(value)
        except ValueError as exc:
            log.error("metric produced non-numeric value: %s: %s", short(metric_text(value)), exc)
            raise ValueError(f"metric {mcfg.full_name}: {exc}") from None
        try:
            metric.check(number)
        except ValueError as exc:
            raise ValueError(f"metric {mcfg.full_name}: {exc}") from None
        return functools.partial(metric.apply, number)

    def record(self, name: str, value) -> None:
        """Counter → add, gauge → set, histogram/summary → observe (docs/behaviour.md §13.4)."""
        self.prepare(name, value)()

    def count_event(self, event: ev.Event) -> None:
        key = (ev.METRIC_NAMES.get(event.code, event.code), event.source)
        self.events[key] = self.events.get(key, 0) + 1

    def count_control_request(self, code: int, path: str) -> None:
        key = (str(code), path)
        self.control_requests[key] = self.control_requests.get(key, 0) + 1

    def set_watch_instances(self, service: str, n: int) -> None:
        self.watch_instances[(service,)] = float(n)

    # -- reading ----------------------------------------------------------------

    def families(self) -> Iterator[str]:
        yield family_text("containerpilot_control_http_requests",
                          "count of requests to control socket, partitioned by path and HTTP code",
                          "counter", labelled(("code", "path"), self.control_requests))
        yield family_text("containerpilot_events",
                          "count of ContainerPilot events, partitioned by type and source",
                          "counter", labelled(("code", "source"), self.events))
        restarts = {(job.name, ): float(job.restarts) for job in self.jobs()}
        yield family_text("containerpilot_job_restarts",
                          "restarts of each job since the config was loaded",
                          "counter", labelled(("job",), restarts))
        yield family_text("containerpilot_watch_instances",
                          "gauge of instances found for each ContainerPilot watch, partitioned by service",
                          "gauge", labelled(("service",), self.watch_instances))
        for name in sorted(self.user):
            mcfg, metric = self.user[name]
            yield family_text(name, mcfg.help, metric.kind, metric.samples())

    def metrics_text(self) -> bytes:
        return "".join(self.families()).encode() + generate_latest(self.registry)

    def status_doc(self) -> dict:
        """`GET /status` exactly as 3.8 (docs/behaviour.md §13.2), computed now."""
        jobs, services = [], []
        for job in self.jobs():
            status = job.status if job.status in JOB_STATUSES else "unknown"
            if job.advertised:
                services.append({"Name": job.name, "Address": job.address,
                                 "Port": job.port, "Status": status})
            else:
                jobs.append({"Name": job.name, "Status": status})
        watches = list(self.watches())
        return {"Version": __version__, "Jobs": jobs or None,
                "Services": services or None, "Watches": watches or None}

    def _routes(self) -> bottle.Bottle:
        """3.8's routes: Prometheus' handler answers any method, `/status`
        only GET (HEAD included in the refusal), errors as Go's net/http
        writes them (plain text), since scrapers and scripts see them."""
        web = bottle.Bottle()
        web.config["catchall"] = False  # exceptions reach `guarded`
        web.default_error_handler = _go_error
        web.route("/metrics", "ANY", self._metrics)
        web.route("/status", "ANY", self._status)
        web.route("/health", "GET", self._health)
        return web

    def _health(self) -> str:
        """The container's health for Kubernetes `httpGet` probes (they cannot
        reach the control socket): 200 or 503, JSON either way."""
        doc = self.health()
        bottle.response.status = 200 if doc["healthy"] else 503
        bottle.response.content_type = "application/json"
        return json.dumps(doc, default=str) + "\n"

    def _metrics(self) -> bytes:
        bottle.response.content_type = CONTENT_TYPE
        return self.metrics_text()

    def _status(self) -> str:
        if bottle.request.method != "GET":
            raise bottle.HTTPError(405, Allow="GET")
        bottle.response.content_type = "application/json"
        return go_json(self.status_doc())


def go_json(doc) -> str:
    """JSON as Go's json.Encoder writes it: compact, UTF-8, HTML characters
    and line separators escaped, one newline at the end (`grep
    '"Status":"healthy"'` works on 3.8's output and must on ours)."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text + "\n"


_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _go_error(err: bottle.HTTPError) -> str:
    """`http.Error`'s body: the status text and a newline, as plain text."""
    bottle.response.content_type = "text/plain; charset=utf-8"
    bottle.response.set_header("X-Content-Type-Options", "nosniff")
    if err.status_code == 404:
        return "404 page not found\n"
    return bottle.HTTP_CODES.get(err.status_code, "Error") + "\n"
