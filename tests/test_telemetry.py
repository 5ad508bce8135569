"""Telemetry without its HTTP server: recording, exposition text with 3.8's
names, `/status` document, and a refused bind."""
import json
import math
import re
import socket
from types import SimpleNamespace

import prometheus_client
import pytest

from pilot import __version__
from pilot import events as ev
from pilot.config.model import MetricConfig, TelemetryConfig, WatchConfig
from pilot.errors import PilotError
from pilot.events import Bus, Event
from pilot.telemetry import Telemetry, UserSummary, metric_number, prom_float
from tests.support import sample

pytestmark = pytest.mark.timeout(120)

METRICS = (
    MetricConfig("hits", "requests seen", "counter"),
    MetricConfig("temp", "temperature", "gauge", namespace="room"),
    MetricConfig("latency", "latency", "histogram", namespace="app", subsystem="http"),
    MetricConfig("size", "sizes", "summary"),
)


def runner(name, status="idle", port=0, ip=None, restarts=0):
    """A job as telemetry sees it (`pilot.telemetry.JobView`)."""
    return SimpleNamespace(name=name, status=status, restarts=restarts, advertised=port != 0,
                           address=ip or "", port=port)


def make(cfg, runners=(), watches=(), bus=None, **kw):
    """A Telemetry over fixed jobs and watches."""
    return Telemetry(cfg, bus=bus or Bus(), jobs=lambda: list(runners),
                     watches=lambda: [w.name for w in watches], **kw)


@pytest.fixture
def tel():
    return make(TelemetryConfig(port=0, ip="127.0.0.1", metrics=METRICS))


@pytest.mark.parametrize("x,text", [(1, "1"), (0, "0"), (-1, "-1"), (2.5, "2.5"), (10, "10"),
                                    (1e6, "1e+06"), (123456, "123456"), (1e-5, "1e-05"),
                                    (0.005, "0.005"), (math.inf, "+Inf"), (math.nan, "NaN")])
def test_prom_float_writes_values_as_3_8_did(x, text):
    """Numbers as Go's FormatFloat 'g' -1 (what dashboards saw from 3.8)."""
    assert prom_float(x) == text


@pytest.mark.parametrize("value,number", [("42", 42.0), (" 1.5\n", 1.5), (3, 3.0), (1.25, 1.25),
                                          ("-2", -2.0), ("1e3", 1000.0)])
def test_metric_number_parses_numbers_and_numeric_strings(value, number):
    """JSON numbers and numeric strings (trimmed) are values (docs/behaviour.md §13.4)."""
    assert metric_number(value) == number


@pytest.mark.parametrize("value", ["abc", "", "1_000", True, None, [1], {"a": 1}, 10 ** 400])
def test_metric_number_refuses_what_is_not_a_number(value):
    """Booleans, null, containers, junk strings and overflow are not numbers."""
    with pytest.raises(ValueError):
        metric_number(value)


def test_counter_adds_gauge_sets_histogram_and_summary_observe(tel):
    """counter → add, gauge → set, histogram/summary → observe."""
    for name, value in [("hits", 2), ("hits", "3"), ("room_temp", 20), ("room_temp", "18.5"),
                        ("app_http_latency", 0.3), ("app_http_latency", 7), ("size", 4)]:
        tel.record(name, value)
    text = tel.metrics_text().decode()
    assert sample(text, "hits") == "5"
    assert sample(text, "room_temp") == "18.5"
    assert sample(text, 'app_http_latency_bucket{le="0.25"}') == "0"
    assert sample(text, 'app_http_latency_bucket{le="0.5"}') == "1"
    assert sample(text, 'app_http_latency_bucket{le="10"}') == "2"
    assert sample(text, 'app_http_latency_bucket{le="+Inf"}') == "2"
    assert sample(text, "app_http_latency_sum") == "7.3"
    assert sample(text, "app_http_latency_count") == "2"
    assert sample(text, 'size{quantile="0.5"}') == "4"
    assert sample(text, "size_count") == "1"


def test_exposition_uses_3_8_names_without_total_or_created(tel):
    """Counters keep their configured names: no `_total`, no `_created` series."""
    tel.record("hits", 1)
    tel.count_event(Event(ev.EXIT_SUCCESS, "app"))
    text = tel.metrics_text().decode()
    assert "# TYPE hits counter" in text and "# TYPE containerpilot_events counter" in text
    assert not re.search(r"^(hits|containerpilot_\w+)_(total|created)", text, re.M)
    assert "process_resident_memory_bytes" in text


def test_metrics_match_the_exposed_name_and_3_8s_key(tel):
    """`hits` and 3.8's `__hits` both reach the same metric (docs/behaviour.md §0)."""
    tel.record("hits", 1)
    tel.record("__hits", 1)
    tel.record("room__temp", 3)
    text = tel.metrics_text().decode()
    assert sample(text, "hits") == "2"
    assert sample(text, "room_temp") == "3"


@pytest.mark.parametrize("name,value", [("nope", 1), ("hits", -1), ("hits", "abc"),
                                        ("hits", math.inf), ("app_http_latency", math.nan),
                                        ("size", True)])
def test_bad_records_raise_value_error_and_apply_nothing(tel, name, value):
    """Unknown names, non-numbers, negative counter increments: refused, no change."""
    before = tel.metrics_text().decode()
    with pytest.raises(ValueError) as info:
        tel.record(name, value)
    assert str(info.value)
    after = tel.metrics_text().decode()
    strip = lambda t: [line for line in t.splitlines() if not line.startswith(("process_", "python_"))]
    assert strip(before) == strip(after)


def test_a_gauge_takes_negative_values(tel):
    """Only counters refuse negative values."""
    tel.record("room_temp", -4)
    assert sample(tel.metrics_text().decode(), "room_temp") == "-4"


def test_summary_quantiles_cover_a_sliding_window():
    """Observations older than the 10-minute window leave the quantiles."""
    now = [0.0]
    s = UserSummary(clock=lambda: now[0])
    for x in range(1, 101):
        s.apply(float(x))
    assert s.quantiles() == {0.5: 50.0, 0.9: 90.0, 0.99: 99.0}
    now[0] = 601.0
    s.apply(7.0)
    assert s.quantiles() == {0.5: 7.0, 0.9: 7.0, 0.99: 7.0}
    assert s.count == 101
    now[0] = 2000.0
    assert all(math.isnan(v) for v in s.quantiles().values())


def test_events_are_counted_with_3_8_code_names():
    """Every published event counts in containerpilot_events{code,source}."""
    bus = Bus()
    tel = make(TelemetryConfig(port=0, ip="127.0.0.1"), bus=bus)
    bus.listen(tel.count_event)
    for e in (Event(ev.HEALTHY, "web"), Event(ev.HEALTHY, "web"), ev.GLOBAL_STARTUP):
        bus.publish(e)
    text = tel.metrics_text().decode()
    assert sample(text, 'containerpilot_events{code="StatusHealthy",source="web"}') == "2"
    assert sample(text, 'containerpilot_events{code="Startup",source="global"}') == "1"


def test_internal_series_watch_instances_requests_and_restarts():
    """Watch instance gauges, control request counts and job restarts are exposed."""
    tel = make(TelemetryConfig(port=0, ip="127.0.0.1"), [runner("web", restarts=3)])
    tel.set_watch_instances("db", 2)
    tel.set_watch_instances("db", 1)
    tel.count_control_request(200, "/v3/ping")
    text = tel.metrics_text().decode()
    assert sample(text, 'containerpilot_watch_instances{service="db"}') == "1"
    assert sample(text, 'containerpilot_control_http_requests{code="200",path="/v3/ping"}') == "1"
    assert sample(text, 'containerpilot_job_restarts{job="web"}') == "3"


def test_internal_metrics_have_3_8s_help_and_type_lines():
    """HELP and TYPE of Pilot's own families are 3.8's, word for word
    (dashboards and metric linters compare them)."""
    text = make(TelemetryConfig(port=0, ip="127.0.0.1")).metrics_text().decode()
    assert ("# HELP containerpilot_control_http_requests count of requests to control socket,"
            " partitioned by path and HTTP code\n"
            "# TYPE containerpilot_control_http_requests counter\n") in text
    assert ("# HELP containerpilot_events count of ContainerPilot events,"
            " partitioned by type and source\n# TYPE containerpilot_events counter\n") in text
    assert "# TYPE containerpilot_watch_instances gauge\n" in text


def test_status_json_is_written_as_go_encodes_it():
    """`/status` is compact like Go's json.Encoder, HTML characters escaped."""
    from pilot.telemetry import go_json
    assert go_json({"Name": "a<b>&c", "Jobs": None, "Port": 1}) == \
        '{"Name":"a\\u003cb\\u003e\\u0026c","Jobs":null,"Port":1}\n'


def test_adopt_keeps_internal_counts_and_resets_user_metrics(tel):
    """After a reload Pilot's own counters continue; user metrics start afresh."""
    tel.record("hits", 5)
    tel.count_event(ev.GLOBAL_STARTUP)
    fresh = make(TelemetryConfig(port=0, ip="127.0.0.1", metrics=METRICS))
    fresh.adopt(tel)
    fresh.count_event(ev.GLOBAL_STARTUP)
    text = fresh.metrics_text().decode()
    assert sample(text, 'containerpilot_events{code="Startup",source="global"}') == "2"
    assert sample(text, "hits") == "0"


def test_each_telemetry_has_its_own_registry(tel):
    """Never the global registry: a second instance registers without conflict."""
    other = make(TelemetryConfig(port=0, ip="127.0.0.1", metrics=METRICS))
    assert tel.registry is not other.registry
    assert tel.registry is not prometheus_client.REGISTRY


def test_status_document_is_3_8s_shape():
    """Capitalised keys, Jobs vs Services by advertisement, idle → unknown, config order."""
    doc = make(TelemetryConfig(port=0, ip="127.0.0.1"),
               [runner("setup"), runner("app", "healthy", 8000, "10.0.0.2"),
                runner("pre", "maintenance"), runner("containerpilot", "healthy", 9090, "10.0.0.2")],
               [WatchConfig("backend", 5), WatchConfig("db", 5)]).status_doc()
    assert list(doc) == ["Version", "Jobs", "Services", "Watches"]
    assert doc["Version"] == __version__
    assert doc["Jobs"] == [{"Name": "setup", "Status": "unknown"},
                           {"Name": "pre", "Status": "maintenance"}]
    assert doc["Services"] == [
        {"Name": "app", "Address": "10.0.0.2", "Port": 8000, "Status": "healthy"},
        {"Name": "containerpilot", "Address": "10.0.0.2", "Port": 9090, "Status": "healthy"}]
    assert doc["Watches"] == ["backend", "db"]


def test_status_document_empty_lists_are_null():
    """Empty lists are JSON null, as 3.8."""
    doc = make(TelemetryConfig(port=0, ip="127.0.0.1")).status_doc()
    assert json.dumps(doc) == f'{{"Version": "{__version__}", "Jobs": null, "Services": null, "Watches": null}}'


def test_a_taken_port_is_fatal_after_the_retries():
    """Listening fails with `error listening to socket at IP:PORT: <err>`."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        tel = make(TelemetryConfig(port=port, ip="127.0.0.1"), attempts=2, delay=0)
        with pytest.raises(PilotError) as info:
            tel.start()
        assert str(info.value).startswith(f"error listening to socket at 127.0.0.1:{port}: ")
    finally:
        taken.close()
