"""The control server's request handling, driven through its WSGI app with a
tiny fake App (no socket), plus binding and retry rules."""
import io
import json
import logging
import os
import socket
import stat
from wsgiref.util import setup_testing_defaults

import pytest

from pilot import control_api, httpserver
from pilot.control import ControlServer, MetricSink, Supervisor
from pilot.control_api import RequestError
from pilot.errors import PilotError
from tests.support import FakeSupervisor, assert_bug_logged, assert_implements, open_fds

pytestmark = pytest.mark.timeout(120)


class FakeTelemetry:
    """Telemetry as the control socket uses it (`pilot.control.MetricSink`):
    accepts metric `ok` with numeric values only; counts requests."""

    def __init__(self):
        self.recorded = []
        self.requests = []

    def prepare(self, name, value):
        if name != "ok" or not isinstance(value, (int, float, str)):
            raise ValueError(f"unknown metric {name}")
        return lambda: self.recorded.append((name, value))

    def count_control_request(self, code, path):
        self.requests.append((code, path))


def test_the_fakes_follow_the_interfaces_the_control_server_declares():
    """The stand-ins above take what the real parts take, so a passing test
    here means something for the running Pilot."""
    from pilot.app import App
    from pilot.telemetry import Telemetry
    for cls in (FakeSupervisor, App):
        assert_implements(cls, Supervisor)
    for cls in (FakeTelemetry, Telemetry):
        assert_implements(cls, MetricSink)


def call(server, method, path, body=b"", headers=None):
    """One request through the server's WSGI app: (status, headers, body)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    environ.update(headers or {})
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, hdrs, exc_info=None):
        seen["status"] = int(status[:3])
        seen["headers"] = dict(hdrs)
    out = b"".join(server.wsgi(environ, start_response))
    return seen["status"], seen["headers"], out


@pytest.fixture
def app():
    return FakeSupervisor(telemetry=FakeTelemetry())


@pytest.fixture
def server(app, tmp_path):
    return ControlServer(app, str(tmp_path / "pilot.socket"), metrics=lambda: app.telemetry)


def error_of(body):
    doc = json.loads(body)
    assert set(doc) == {"error"} and doc["error"]
    return doc["error"]


# --- bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'"x"', b"null", b"\xff\xfe", b"NaN",
                                 b'{"a": NaN}', b"[" * 100000])
def test_bodies_that_are_not_json_objects_are_422(raw):
    """Malformed JSON, non-objects, non-UTF-8 bytes, NaN and absurd nesting → 422."""
    with pytest.raises(RequestError) as info:
        control_api.parse_object(raw)
    assert info.value.status == 422


def test_env_values_map_null_to_empty_and_keep_strings():
    """null → "" (3.8), the string "null" is stored literally."""
    assert control_api.env_values({"A": None, "B": "null", "_c1": ""}) == {"A": "", "B": "null", "_c1": ""}


@pytest.mark.parametrize("doc", [{"1A": "x"}, {"A B": "x"}, {"": "x"}, {"A=B": "x"},
                                 {"A": 1}, {"A": True}, {"A": ["x"]}, {"A": {"b": "c"}},
                                 {"A": "a\0b"}, {"A": "\ud800"}])
def test_env_values_refuse_bad_names_and_values_with_400(doc):
    """Names as the shell has them; values strings or null that fit in environ."""
    with pytest.raises(RequestError) as info:
        control_api.env_values(doc)
    assert info.value.status == 400


def test_read_body_refuses_a_declared_length_over_the_cap():
    """A Content-Length over the cap is refused before reading anything."""
    environ = {"CONTENT_LENGTH": str(control_api.MAX_BODY + 1), "wsgi.input": io.BytesIO(b"")}
    with pytest.raises(RequestError) as info:
        control_api.read_body(environ)
    assert info.value.status == 413


def test_read_body_caps_what_it_reads_whatever_the_headers_say():
    """A body longer than the cap is refused even without a Content-Length."""
    environ = {"CONTENT_LENGTH": "", "wsgi.input": io.BytesIO(b"x" * 101)}
    with pytest.raises(RequestError) as info:
        control_api.read_body(environ, limit=100)
    assert info.value.status == 413
    assert control_api.read_body({"wsgi.input": io.BytesIO(b"x" * 100)}, limit=100) == b"x" * 100


# --- endpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v3/environ", "/v3/env"])
def test_environ_sets_every_pair(server, app, path):
    """POST /v3/environ (and its alias) sets each pair; 200 with body `\\n`."""
    status, headers, body = call(server, "POST", path, b'{"A": "1", "B": null}')
    assert (status, body) == (200, b"\n")
    assert app.env == {"A": "1", "B": ""}
    assert headers["Connection"] == "close"


@pytest.mark.parametrize("raw,code", [(b'{"A": "1", "2B": "x"}', 400), (b'{"A": "1", "B": 2}', 400),
                                      (b'{"A": "1"', 422), (b'["A"]', 422)])
def test_environ_applies_nothing_when_any_pair_is_bad(server, app, raw, code):
    """Validation covers every pair before the first is applied."""
    status, headers, body = call(server, "POST", "/v3/environ", raw)
    assert status == code
    assert headers["Content-Type"] == "application/json"
    error_of(body)
    assert app.env == {}


def test_metric_applies_all_or_nothing(server, app):
    """One unknown metric in a request → 400 and no record applied."""
    status, _, body = call(server, "POST", "/v3/metric", b'{"ok": 1, "nope": 2}')
    assert status == 400 and "nope" in error_of(body)
    assert app.telemetry.recorded == []
    status, _, body = call(server, "POST", "/v3/metric", b'{"ok": 1, "ok": "2"}')
    assert (status, body) == (200, b"\n")
    assert app.telemetry.recorded == [("ok", "2")]


def test_metric_without_telemetry_names_the_reason(tmp_path):
    """With telemetry off any metric name is unknown (400); an empty object is fine."""
    app = FakeSupervisor()
    server = ControlServer(app, str(tmp_path / "s"))
    status, _, body = call(server, "POST", "/v3/metric", b'{"x": 1}')
    assert status == 400 and "telemetry is not configured" in error_of(body)
    assert call(server, "POST", "/v3/metric", b"{}")[0] == 200


def test_maintenance_enable_and_disable_call_the_app_each_time(server, app):
    """Each request publishes again (docs/behaviour.md §14.3): not idempotent in effect."""
    for path in ("/v3/maintenance/enable", "/v3/maintenance/enable", "/v3/maintenance/disable"):
        assert call(server, "POST", path)[::2] == (200, b"\n")
    assert app.maintenance == [True, True, False]


def test_reload_returns_the_error_of_an_invalid_config(tmp_path):
    """The caller of -reload sees why the new config was refused (docs/behaviour.md §0)."""
    app = FakeSupervisor(reload_error="config.json5: job[web].port must be a number")
    server = ControlServer(app, str(tmp_path / "s"))
    status, _, body = call(server, "POST", "/v3/reload")
    assert status == 400 and error_of(body) == "config.json5: job[web].port must be a number"
    app.reload_error = PilotError("bad template")
    status, _, body = call(server, "POST", "/v3/reload")
    assert status == 400 and error_of(body) == "bad template"
    app.reload_error = None
    assert call(server, "POST", "/v3/reload")[::2] == (200, b"\n")
    assert app.reloads == 3


def test_status_is_the_apps_status_as_json(server):
    """GET /v3/status → JSON of app.status()."""
    status, headers, body = call(server, "GET", "/v3/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["jobs"][0]["name"] == "app"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_ping_answers_any_method(server, method):
    """3.8 answers /v3/ping whatever the method."""
    assert call(server, method, "/v3/ping")[::2] == (200, b"\n")


def test_wrong_method_is_405_json_with_allow(server, app):
    """GET on a POST endpoint → 405 JSON, Allow: POST; nothing applied."""
    status, headers, body = call(server, "GET", "/v3/maintenance/enable")
    assert status == 405 and headers["Allow"] == "POST"
    error_of(body)
    assert app.maintenance == []


def test_unknown_path_is_404_json(server):
    """Unknown paths → 404 JSON and are counted under one label."""
    status, headers, body = call(server, "GET", "/v3/nothing")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert "/v3/nothing" in error_of(body)


@pytest.mark.parametrize("method, url, body, text", [
    ("GET", "/v3/reload", b"", "Method Not Allowed: "),
    ("POST", "/v3/nothing", b"", "404 page not found: "),
    ("POST", "/v3/environ", b"not json", "Unprocessable Entity: "),
    ("POST", "/v3/metric", b"[1]", "Unprocessable Entity: "),
])
def test_error_messages_begin_with_3_8s_body(server, method, url, body, text):
    """3.8 answered these with net/http's bare status text; Pilot's JSON
    error starts with that text, so scripts looking for it still find it."""
    status, headers, answer = call(server, method, url, body)
    assert error_of(answer).startswith(text)


def test_an_internal_failure_is_a_500_json_and_not_raised(server, app):
    """A bug behind an endpoint answers 500 JSON; the exception never escapes."""
    def broken():
        raise RuntimeError("boom")
    app.status = broken
    status, headers, body = call(server, "GET", "/v3/status")
    assert status == 500 and error_of(body) == "internal error"


def test_an_internal_failure_is_logged_as_a_bug(server, app, caplog):
    """The bug behind a 500 is one ERROR line naming the request, and its
    traceback at DEBUG (pilot.log.log_bug), so it can be found and fixed."""
    def broken():
        raise RuntimeError("boom")
    app.status = broken
    caplog.set_level(logging.DEBUG, "pilot")
    status, _, _ = call(server, "GET", "/v3/status")
    assert status == 500
    assert_bug_logged(caplog, "control: internal error on GET '/v3/status': RuntimeError: boom",
                      RuntimeError)
    assert call(server, "GET", "/v3/ping")[0] == 200


def test_every_response_is_counted_by_code_and_path(server, app):
    """containerpilot_control_http_requests gets (code, path); unknown paths → "other"."""
    call(server, "GET", "/v3/ping")
    call(server, "GET", "/random/path")
    call(server, "GET", "/v3/reload")
    assert app.telemetry.requests == [(200, "/v3/ping"), (404, "other"), (405, "/v3/reload")]


# --- binding ------------------------------------------------------------------------


def test_listen_retrying_gives_up_with_the_3_8_message():
    """After the attempts, one line: error listening to socket at WHERE: <err>."""
    calls = []

    def bind():
        calls.append(1)
        raise OSError(98, "Address already in use")
    with pytest.raises(PilotError) as info:
        httpserver.listen_retrying(bind, "/x.sock", attempts=3, delay=0)
    assert str(info.value) == "error listening to socket at /x.sock: Address already in use"
    assert len(calls) == 3


def test_listen_retrying_succeeds_on_a_later_attempt():
    """A transient failure is retried."""
    results = [OSError(98, "busy"), "sock"]

    def bind():
        r = results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r
    assert httpserver.listen_retrying(bind, "x", attempts=3, delay=0) == "sock"


def test_bind_unix_replaces_a_stale_socket_with_one_of_mode_0600(tmp_path):
    """A socket file nobody listens on (left by a killed Pilot) is replaced;
    the new socket is private to its owner."""
    path = tmp_path / "pilot.socket"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()
    sock = httpserver.bind_unix(str(path))
    try:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(path))  # ours listens there now
        probe.close()
    finally:
        sock.close()


def _no_retries(monkeypatch):
    """The delays listen_retrying waited (each one a retry)."""
    waited = []
    monkeypatch.setattr(httpserver.gevent, "sleep", waited.append)
    return waited


def _occupy(path, what):
    """Put `what` at path; return a check that it is still there, unchanged."""
    if what == "file":
        path.write_text("{jobs: []}")
        return lambda: path.read_text() == "{jobs: []}"
    if what == "dir":
        path.mkdir()
        return path.is_dir
    if what == "symlink":
        path.symlink_to(path.parent / "elsewhere")
        return path.is_symlink
    os.mkfifo(path)
    return lambda: stat.S_ISFIFO(os.lstat(path).st_mode)


@pytest.mark.parametrize("what, kind", [("file", "a regular file"), ("dir", "a directory"),
                                        ("symlink", "a symbolic link"), ("fifo", "a named pipe")])
def test_anything_but_a_socket_at_the_path_is_kept_and_refused_at_once(tmp_path, monkeypatch,
                                                                       what, kind):
    """`socket: "/etc/containerpilot.json5"` (a typo) used to delete that file.
    Now what is there stays untouched and starting fails at once (retrying
    cannot help) with one line naming the path and what is there."""
    path = tmp_path / "pilot.socket"
    unchanged = _occupy(path, what)
    waited = _no_retries(monkeypatch)
    server = ControlServer(FakeSupervisor(), str(path), attempts=10, delay=1)
    with pytest.raises(PilotError) as info:
        server.start()
    assert str(info.value) == (f"error listening to socket at {path}: {kind} is there, not a "
                               "socket (only a stale socket is replaced; nothing was deleted)")
    assert unchanged() and waited == []


def test_a_live_socket_of_another_user_is_refused_at_once_and_kept(tmp_path, monkeypatch):
    """Someone else bound the path first (a squatter in a shared /tmp): Pilot
    does not retry for 10 s and then fail, nor take the path over; it stops
    at once with one line saying whose socket it is."""
    if os.geteuid() != 0:
        pytest.skip("giving the socket to another user needs root")
    path = tmp_path / "pilot.socket"
    squatter = socket.socket(socket.AF_UNIX)
    squatter.bind(str(path))
    squatter.listen(1)
    os.chown(path, 65534, 65534)
    waited = _no_retries(monkeypatch)
    try:
        with pytest.raises(PilotError) as info:
            ControlServer(FakeSupervisor(), str(path), attempts=10, delay=1).start()
        assert str(info.value) == (f"error listening to socket at {path}: a socket owned by uid "
                                   "65534 is there and in use; Pilot (uid 0) does not take "
                                   "over another user's socket")
        assert waited == [] and os.lstat(path).st_uid == 65534
    finally:
        squatter.close()


def test_a_live_socket_of_our_own_is_not_deleted(tmp_path, monkeypatch):
    """Another Pilot of ours serves at the path: it is not cut off (3.8
    deleted its socket); the bind is retried, as 3.8 retries, then fails."""
    path = tmp_path / "pilot.socket"
    running = socket.socket(socket.AF_UNIX)
    running.bind(str(path))
    running.listen(1)
    inode = os.lstat(path).st_ino
    waited = _no_retries(monkeypatch)
    try:
        with pytest.raises(PilotError) as info:
            ControlServer(FakeSupervisor(), str(path), attempts=3, delay=1).start()
        assert str(info.value) == (f"error listening to socket at {path}: another process is "
                                   "listening on it")
        assert waited == [1, 1] and os.lstat(path).st_ino == inode
    finally:
        running.close()


LAZY_SCRIPT = """
import json, sys
import gevent.events
from gevent import monkey
gevent.events.notify_and_call_entry_points = gevent.events.notify  # as pilot.py
monkey.patch_all(ssl=False, subprocess=False)
import gevent
from pilot import client
from pilot.control import ControlServer, MetricSink, Supervisor

class App:
    telemetry = None
    def status(self):
        return {"jobs": []}

heavy = ("bottle", "gevent.pywsgi", "http.client", "ssl", "email")
server = ControlServer(App(), sys.argv[1], attempts=1, delay=0)
server.start()
before = [m for m in heavy if m in sys.modules]
status = gevent.get_hub().threadpool.spawn(client.status, sys.argv[1]).get(timeout=30)
after = [m for m in heavy if m in sys.modules]
server.stop()
print(json.dumps({"before": before, "status": status, "after": after}))
"""


def test_http_stack_loads_on_the_first_request_not_at_start(tmp_path):
    """A started control server imports neither bottle nor pywsgi (and with
    them http.client, ssl, email: ~7 MB) until a request arrives; the first
    request is answered all the same."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", LAZY_SCRIPT, str(tmp_path / "c.sock")],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["before"] == []
    assert result["status"] == {"jobs": []}
    assert "bottle" in result["after"] and "gevent.pywsgi" in result["after"]


# --- the event stream: GET /v3/events ------------------------------------------------


def timeline_with(*sources):
    from pilot.events import Event
    from pilot.timeline import Timeline
    t = Timeline()
    for source in sources:
        t.record(Event("signal", source))
    return t


def test_events_since_is_ndjson_of_the_kept_events(app, tmp_path):
    """`since` (seconds or a duration) returns the kept events of that
    past, one JSON object per line: time, code, source, message;
    `follow=0` ends the answer there."""
    server = ControlServer(app, str(tmp_path / "s"), timeline=timeline_with("SIGHUP", "SIGUSR2"))
    for since in ("300", "5m", "2.5"):
        status, headers, body = call(server, "GET", "/v3/events", headers={
            "QUERY_STRING": f"since={since}&follow=0"})
        assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
        docs = [json.loads(line) for line in body.decode().splitlines()]
        assert [(d["code"], d["source"], d["message"]) for d in docs] == [
            ("signal", "SIGHUP", "SIGHUP received"), ("signal", "SIGUSR2", "SIGUSR2 received")]
        assert all(set(d) == {"time", "code", "source", "message"} for d in docs)
    _, _, body = call(server, "GET", "/v3/events", headers={"QUERY_STRING": "follow=0"})
    assert body == b""  # without since: only what happens from now on


@pytest.mark.parametrize("query,text", [
    ("since=yesterday", "since must be a number of seconds or a duration such as 5m"),
    ("since=-5", "since must be"), ("since=nan", "since must be"), ("follow=maybe", "follow must be 1 or 0"),
])
def test_bad_event_queries_are_400_json(app, tmp_path, query, text):
    server = ControlServer(app, str(tmp_path / "s"), timeline=timeline_with())
    status, _, body = call(server, "GET", "/v3/events", headers={"QUERY_STRING": query})
    assert status == 400 and text in error_of(body)


def test_events_without_a_timeline_are_404(server):
    status, _, body = call(server, "GET", "/v3/events")
    assert status == 404 and "no event timeline" in error_of(body)


def live_greenlets():
    import gc
    from greenlet import greenlet
    gc.collect()
    return [g for g in gc.get_objects() if isinstance(g, greenlet) and not g.dead]


def next_events(stream, timeout=10.0):
    """The next events a stream delivers (its head may come first, alone)."""
    import time as clock
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        got = stream.read(max(deadline - clock.monotonic(), 0.01))
        if got:
            return got
    raise AssertionError("no event came")


def test_a_stream_follows_and_disconnecting_clients_leave_nothing_behind(app, tmp_path):
    """A stream gets each new event as it happens; 100 clients that leave
    mid-stream (idle, or just after an event) leave no stream, greenlet or
    file descriptor behind; the 17th stream at once is refused (503)."""
    import gevent
    from pilot import client
    from pilot.events import Event
    from tests.integration.pilot_proc import wait_for
    timeline = timeline_with()
    path = str(tmp_path / "s")
    server = ControlServer(app, path, timeline=timeline)
    server.start()
    try:
        first = client.EventStream(path)  # warms the HTTP stack up, and follows
        wait_for(lambda: server.streams.open == 1, 10, "the first stream to open")
        timeline.record(Event("signal", "SIGHUP"))
        assert [d["message"] for d in next_events(first)] == ["SIGHUP received"]
        first.close()
        wait_for(lambda: server.streams.open == 0, 10, "the first stream to end")
        gevent.sleep(0.1)
        fds, greenlets = open_fds(os.getpid()), len(live_greenlets())
        for batch in range(10):
            streams = [client.EventStream(path) for _ in range(10)]
            wait_for(lambda: server.streams.open == 10, 10, "ten streams to open")
            timeline.record(Event("signal", f"SIG{batch}"))
            for s in streams[:5]:  # these read an event, the others leave idle
                assert next_events(s)[0]["source"] == f"SIG{batch}"
            for s in streams:
                s.close()
            wait_for(lambda: server.streams.open == 0, 10, "the streams of clients that left to end")
        crowd = [client.EventStream(path) for _ in range(server.streams.MAX)]
        wait_for(lambda: server.streams.open == server.streams.MAX, 10, "a full house")
        late = client.EventStream(path)
        with pytest.raises(client.ControlError, match="503: too many event streams"):
            late.read(10)
        late.close()
        for s in crowd:
            s.close()
        wait_for(lambda: server.streams.open == 0, 10, "the crowd to leave")
        wait_for(lambda: open_fds(os.getpid()) == fds, 10, f"file descriptors back to {fds}")
        wait_for(lambda: len(live_greenlets()) <= greenlets, 10,
                 f"greenlets back to {greenlets}")
    finally:
        server.stop()


def test_stopping_the_server_ends_its_streams_at_once(app, tmp_path):
    """A stream ends when the control server stops (Pilot shutting down):
    what happened just before is still sent, then the client sees the end
    of the stream; the server does not wait for it."""
    import time as clock
    from pilot import client
    from tests.integration.pilot_proc import wait_for
    timeline = timeline_with()
    path = str(tmp_path / "s")
    server = ControlServer(app, path, timeline=timeline)
    server.start()
    stream = client.EventStream(path)
    wait_for(lambda: server.streams.open == 1, 10, "the stream to open")
    from pilot.events import Event
    timeline.record(Event("stopped", "web"))
    began = clock.monotonic()
    server.stop()
    assert clock.monotonic() - began < httpserver.STOP_TIMEOUT
    got = []
    with pytest.raises(client.StreamEnded):
        while True:
            got += stream.read(10)
    stream.close()
    assert [d["message"] for d in got] == ["web stopped"]
