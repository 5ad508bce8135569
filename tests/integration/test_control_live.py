"""The control server and telemetry serving for real, inside the test process
under gevent: requests go over the unix socket (through `pilot.client` and as
raw HTTP) and to the telemetry port on 127.0.0.1."""
import json
import os
import socket
import stat
import string
import urllib.parse

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot import client
from pilot.app import App
from pilot.config.model import (Config, ControlConfig, JobConfig, MetricConfig,
                                TelemetryConfig, When)
from pilot.control import ControlServer
from pilot.errors import ControlError
from pilot.events import Bus
from pilot.telemetry import Telemetry
from tests.support import DEADLINE, FakeSupervisor, http_request, sample, wait_for

pytestmark = pytest.mark.timeout(120)

METRICS = (
    MetricConfig("hits", "requests seen", "counter"),
    MetricConfig("temp", "temperature", "gauge", namespace="room"),
    MetricConfig("latency", "latency", "histogram", namespace="app"),
    MetricConfig("size", "sizes", "summary"),
)


@pytest.fixture
def socket_path(tmp_path):
    return str(tmp_path / "pilot.socket")


@pytest.fixture
def app():
    return FakeSupervisor()


@pytest.fixture
def server(app, socket_path):
    srv = ControlServer(app, socket_path, metrics=lambda: app.telemetry, attempts=2, delay=0.05)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def telemetry(app, bus):
    tel = Telemetry(TelemetryConfig(port=0, ip="127.0.0.1", metrics=METRICS), bus=bus, jobs=lambda: [],
                    attempts=2, delay=0.05)
    app.telemetry = tel
    tel.start()
    yield tel
    tel.stop()


def raw(path, request: bytes, timeout=DEADLINE):
    """Send raw bytes over the socket; (status or None, headers, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (BrokenPipeError, ConnectionResetError):
        data = data if "data" in locals() else b""
    finally:
        s.close()
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def http(path, method, url, body=b""):
    req = (f"{method} {url} HTTP/1.1\r\nHost: control\r\nContent-Length: {len(body)}\r\n"
           "\r\n").encode() + body
    return raw(path, req)


def tel_get(tel, url, method="GET"):
    """(status, headers, body text) of a request to the telemetry server `tel`."""
    host, port = tel.server.address[:2]
    return http_request(f"http://{host}:{port}{url}", method)


# --- the socket ---------------------------------------------------------------------


def test_socket_is_private_replaces_a_stale_file_and_is_removed_on_stop(app, socket_path):
    """A stale socket is replaced, the socket is mode 0600, stop removes it (twice is fine)."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(socket_path)
    stale.close()
    srv = ControlServer(app, socket_path, metrics=lambda: app.telemetry, attempts=2, delay=0.05)
    srv.start()
    st_ = os.lstat(socket_path)
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
    client.ping(socket_path)
    srv.stop()
    assert not os.path.exists(socket_path)
    srv.stop()
    with pytest.raises(ControlError):
        client.ping(socket_path)


def test_an_unusable_socket_path_is_fatal_with_3_8s_message(app, tmp_path):
    """Binding fails after the retries: `error listening to socket at PATH: <err>`."""
    path = str(tmp_path / "missing-dir" / "pilot.socket")
    srv = ControlServer(app, path, metrics=lambda: app.telemetry, attempts=2, delay=0.01)
    with pytest.raises(Exception) as info:
        srv.start()
    assert str(info.value).startswith(f"error listening to socket at {path}: ")


# --- endpoints through pilot.client -----------------------------------------------------


def test_client_calls_reach_the_app(server, app, socket_path):
    """ping, putenv, maintenance, reload and status through the CLI's client."""
    client.ping(socket_path)
    client.putenv(socket_path, {"GREETING": "hello", "EMPTY": ""})
    client.maintenance(socket_path, True)
    client.maintenance(socket_path, False)
    client.reload(socket_path)
    assert app.env == {"GREETING": "hello", "EMPTY": ""}
    assert app.maintenance == [True, False]
    assert app.reloads == 1
    assert client.status(socket_path) == app.status()


def test_reload_error_reaches_the_client(server, app, socket_path):
    """An invalid config on reload: the client's error carries the reason."""
    app.reload_error = "config.json5: unknown field 'jbos'"
    with pytest.raises(ControlError) as info:
        client.reload(socket_path)
    assert "400" in str(info.value) and "unknown field 'jbos'" in str(info.value)


def test_reload_that_stops_the_server_still_gets_its_answer(app, socket_path):
    """A reload that moves the socket stops this server from inside the request."""
    srv = ControlServer(app, socket_path, metrics=lambda: app.telemetry, attempts=2, delay=0.05)

    def reload():
        srv.stop()
        return None
    app.reload = reload
    srv.start()
    status, _, body = http(socket_path, "POST", "/v3/reload")
    assert (status, body) == (200, b"\n")
    wait_for(lambda: not os.path.exists(socket_path), what="socket removed")


# --- bad requests ------------------------------------------------------------------------

BAD = [
    ("POST", "/v3/environ", b"not json", 422),
    ("POST", "/v3/environ", b"[1, 2]", 422),
    ("POST", "/v3/environ", b"\xff\xfe\x00", 422),
    ("POST", "/v3/environ", b"", 422),
    ("POST", "/v3/environ", b'{"OK": "1", "BAD NAME": "x"}', 400),
    ("POST", "/v3/env", b'{"OK": "1", "N": 5}', 400),
    ("POST", "/v3/environ", b'{"OK": "1", "N": "a\\u0000b"}', 400),
    ("POST", "/v3/metric", b'{"hits": 1, "nope": 1}', 400),
    ("POST", "/v3/metric", b'{"hits": 1, "room_temp": "warm"}', 400),
    ("POST", "/v3/metric", b'{"room_temp": 3, "hits": -1}', 400),
    ("POST", "/v3/metric", b"{", 422),
    ("GET", "/v3/environ", b"", 405),
    ("PUT", "/v3/reload", b"", 405),
    ("GET", "/v3/maintenance/enable", b"", 405),
    ("POST", "/v3/status", b"", 405),
    ("GET", "/v3/nothing", b"", 404),
    ("POST", "/", b"", 404),
]


@pytest.mark.parametrize("method,url,body,code", BAD)
def test_bad_requests_get_4xx_json_and_change_nothing(server, telemetry, app, socket_path,
                                                      method, url, body, code):
    """Every bad-request class → its 4xx, a JSON error, nothing applied; server still answers."""
    before_state = app.state()
    before_metrics = [v for _, v in telemetry.user.values()]
    before_text = "".join(list(telemetry.families())[4:])
    status, headers, resp = http(socket_path, method, url, body)
    assert status == code
    assert headers["Content-Type"] == "application/json"
    assert json.loads(resp)["error"]
    if code == 405:
        assert headers["Allow"]
    assert app.state() == before_state
    assert [v for _, v in telemetry.user.values()] == before_metrics
    assert "".join(list(telemetry.families())[4:]) == before_text
    client.ping(socket_path)


def test_oversized_bodies_get_413(server, app, socket_path):
    """A body over 1 MiB (declared, or sent chunked) → 413, nothing applied."""
    big = b'{"A": "' + b"x" * (1 << 20) + b'"}'
    assert http(socket_path, "POST", "/v3/environ", big)[0] == 413
    chunked = (b"POST /v3/environ HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    assert raw(socket_path, chunked)[0] == 413
    assert app.env == {}
    client.ping(socket_path)


# --- metrics ----------------------------------------------------------------------------


def test_putmetric_shows_in_metrics(server, telemetry, socket_path):
    """Counters add, gauges set, histograms and summaries observe; /metrics shows them."""
    client.putmetric(socket_path, {"hits": "2", "room_temp": "21.5", "app_latency": "0.2"})
    client.putmetric(socket_path, {"hits": "3", "room_temp": "19", "size": "10"})
    status, _, body = http(socket_path, "POST", "/v3/metric", b'{"__hits": 1.0, "app_latency": 4}')
    assert status == 200
    code, headers, text = tel_get(telemetry, "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sample(text, "hits") == "6"
    assert sample(text, "room_temp") == "19"
    assert sample(text, 'app_latency_bucket{le="0.25"}') == "1"
    assert sample(text, 'app_latency_bucket{le="5"}') == "2"
    assert sample(text, "app_latency_count") == "2"
    assert sample(text, 'size{quantile="0.99"}') == "10"
    assert sample(text, 'containerpilot_control_http_requests{code="200",path="/v3/metric"}') == "3"
    assert "process_resident_memory_bytes" in text


def test_metrics_count_events_and_watch_instances(telemetry, bus):
    """containerpilot_events counts bus events; watch instances are a gauge."""
    from pilot import events as ev
    bus.publish(ev.GLOBAL_STARTUP)
    telemetry.set_watch_instances("db", 3)
    text = tel_get(telemetry, "/metrics")[2]
    assert sample(text, 'containerpilot_events{code="Startup",source="global"}') == "1"
    assert sample(text, 'containerpilot_watch_instances{service="db"}') == "3"


def test_telemetry_status_is_3_8s_document(telemetry, app):
    """GET /status: JSON, ends with a newline; other methods → 405."""
    code, headers, body = tel_get(telemetry, "/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert body.endswith("\n")
    assert json.loads(body) == {"Version": telemetry.status_doc()["Version"], "Jobs": None,
                                "Services": None, "Watches": None}
    code, headers, _ = tel_get(telemetry, "/status", method="POST")
    assert code == 405 and "GET" in headers["Allow"]


def test_telemetry_logs_where_it_serves_and_stops(bus, caplog):
    """INFO `telemetry: serving at IP:PORT`; after stop nothing listens there."""
    caplog.set_level("INFO", logger="pilot")
    tel = Telemetry(TelemetryConfig(port=0, ip="127.0.0.1"), bus=bus, jobs=lambda: [], attempts=1, delay=0)
    tel.start()
    port = tel.server.address[1]
    assert "telemetry: serving at 127.0.0.1:0" in caplog.text
    tel.stop()
    tel.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


# --- fuzzing --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
bodies = st.one_of(st.binary(max_size=200),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(st.sampled_from(["hits", "room_temp", "A", "size", "x y"]),
                                   json_values, max_size=4).map(lambda v: json.dumps(v).encode()))
paths = st.one_of(st.sampled_from(["/v3/environ", "/v3/env", "/v3/metric", "/v3/ping",
                                   "/v3/status", "/v3/maintenance/enable", "/v3/reload", "/"]),
                  st.text(max_size=30).map(lambda t: "/" + urllib.parse.quote(t, safe="/")))
methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]),
                    st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8))


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    app = FakeSupervisor()
    path = str(tmp_path_factory.mktemp("fuzz") / "pilot.socket")
    tel = Telemetry(TelemetryConfig(port=0, ip="127.0.0.1", metrics=METRICS), bus=Bus(), jobs=lambda: [], attempts=1)
    app.telemetry = tel
    srv = ControlServer(app, path, metrics=lambda: app.telemetry, attempts=1)
    srv.start()
    yield path
    srv.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, url=paths, body=bodies)
def test_fuzzed_requests_never_get_a_5xx(fuzz_target, method, url, body):
    """Random methods, paths and bodies: always an answer below 500; the server keeps answering."""
    status, _, _ = http(fuzz_target, method, url, body)
    assert status is not None and status < 500
    client.ping(fuzz_target)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=300))
def test_garbage_on_the_socket_never_gets_a_5xx(fuzz_target, garbage):
    """Bytes that are not HTTP at all: no 5xx, and the server keeps answering."""
    status, _, _ = raw(fuzz_target, garbage + b"\r\n\r\n")
    assert status is None or status < 500
    client.ping(fuzz_target)


# --- with the real App -----------------------------------------------------------------


def test_the_real_app_behind_the_socket(tmp_path):
    """App + ControlServer: env, maintenance, status, and a refused reload keep running."""
    sock = str(tmp_path / "pilot.socket")
    conf = tmp_path / "pilot.json5"
    conf.write_text("{ jobs: [ { name: 'sleeper', exec: 'sleep 30' } ] }")
    cfg = Config(path=str(conf), control=ControlConfig(socket=sock), stop_timeout=0,
                 jobs=(JobConfig(name="sleeper", exec=("sleep", "30"), when=When()),))
    app = App(cfg, environ={})
    runner = gevent.spawn(app.run)
    try:
        wait_for(lambda: os.path.exists(sock), what="control socket")
        client.putenv(sock, {"COLOR": "blue"})
        assert app.environ["COLOR"] == "blue"
        client.maintenance(sock, True)
        assert app.maintenance is True
        wait_for(lambda: client.status(sock)["jobs"][0]["status"] == "maintenance", what="maintenance")
        conf.write_text("{ jobs: [ { name: 'sleeper', exec: 5 } ] }")
        with pytest.raises(ControlError) as info:
            client.reload(sock)
        assert "400" in str(info.value)
        assert client.status(sock)["jobs"][0]["name"] == "sleeper"
    finally:
        app.shutdown()
        runner.join(timeout=DEADLINE)
    assert runner.dead
    assert not os.path.exists(sock)
