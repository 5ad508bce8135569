"""Serving HTTP on the control socket and the telemetry port, in-process
under gevent: connection limits, the request deadline, the backlog, and
malformed requests answered with a 4xx and at most one log line, never a
traceback on stderr."""
import json
import logging
import socket

import gevent
import gevent.event
import pytest

from pilot import client, httpserver
from pilot.httpserver import HTTPServer, bind_tcp, bind_unix, guarded
from tests.support import DEADLINE, wait_for

pytestmark = pytest.mark.timeout(120)
IDLE = 200  # idle connections an attacker (or a hung helper) holds open


class App:
    """/ping answers; /echo returns the body it got; /block waits for `release`."""

    def __init__(self):
        self.release = gevent.event.Event()
        self.blocked = 0

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/block":
            self.blocked += 1
            self.release.wait()
        body = environ["wsgi.input"].read() if path == "/echo" else b"ok\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def start_server(kind, tmp_path, app):
    if kind == "unix":
        where = str(tmp_path / "s.sock")
        bind = lambda: bind_unix(where)  # noqa: E731
    else:
        where = "127.0.0.1:0"
        bind = lambda: bind_tcp("127.0.0.1", 0)  # noqa: E731
    server = HTTPServer("control" if kind == "unix" else "telemetry",
                        lambda: guarded("test", app, lambda code, path: None), bind, where,
                        attempts=1, delay=0)
    server.start()
    return server


def serving(server) -> int:
    """Connections the server is handling now (accepted, not yet closed)."""
    return len(server._pool)


def connect(server, blocking=True):
    family = socket.AF_UNIX if isinstance(server.address, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if not blocking:
        s.setblocking(False)
        try:
            s.connect(server.address)
        except BlockingIOError:
            pass
        return s
    s.settimeout(client.TIMEOUT)  # what -ping allows itself
    s.connect(server.address)
    return s


def exchange(server, data: bytes, pace=None):
    """Send `data` (after its first line, byte by byte every `pace` seconds
    if given) and read until the server closes: (status or None, body)."""
    s = connect(server)
    try:
        try:
            if pace is None:
                s.sendall(data)
            else:
                first = data.index(b"\n") + 1
                s.sendall(data[:first])
                for i in range(first, len(data)):
                    s.sendall(data[i:i + 1])
                    gevent.sleep(pace)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    if not out:
        return None, b""
    if out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        out = out[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(params=["unix", "tcp"])
def kind(request):
    return request.param


@pytest.fixture
def app():
    return App()


@pytest.fixture
def server(kind, tmp_path, app):
    srv = start_server(kind, tmp_path, app)
    yield srv
    app.release.set()
    srv.stop()


def test_idle_connections_do_not_lock_out_a_request(server):
    """200 connections that send nothing and stay open: a request still gets
    its answer within the client's normal timeout (-ping's 10 s)."""
    held = [connect(server, blocking=False) for _ in range(IDLE)]
    try:
        wait_for(lambda: serving(server) == httpserver.MAX_CONNECTIONS,
                 what="every slot taken by an idle connection")
        assert exchange(server, b"GET /ping HTTP/1.0\r\n\r\n") == (200, b"ok\n")
    finally:
        for s in held:
            s.close()


def test_idle_connections_are_closed_by_the_server(server, monkeypatch):
    """A connection that never sends a request is closed once the request
    deadline has passed (here shortened), so it frees its slot."""
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT", 0.5)
    s = connect(server)
    s.settimeout(DEADLINE)
    try:
        assert s.recv(1) == b""  # closed by the server (it waits for ever otherwise)
    finally:
        s.close()


@pytest.mark.parametrize("data, pace", [
    (b"GET /ping HTTP/1.1\r\nHost: x\r\n", None),  # headers never end
    (b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", None),  # body never completes
    (b"GET /ping HTTP/1.1\r\n" + b"X-A: b\r\n" * 40, 0.05),  # slowloris: a byte at a time
])
def test_a_request_must_arrive_whole_within_the_deadline(server, monkeypatch, data, pace):
    """The deadline covers the whole request, not each read: a partial or
    trickled request is answered 408 (JSON) and closed."""
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT", 0.5)
    status, body = exchange(server, data, pace)
    assert status == 408
    assert "did not arrive whole within 0.5s" in json.loads(body)["error"]


def test_a_slow_answer_is_not_cut_by_the_deadline(server, app, monkeypatch):
    """The deadline ends when the request is in: an endpoint may take longer."""
    monkeypatch.setattr(httpserver, "REQUEST_TIMEOUT", 0.3)
    job = gevent.spawn(exchange, server, b"GET /block HTTP/1.0\r\n\r\n")
    wait_for(lambda: app.blocked, what="the request in the endpoint")
    gevent.sleep(3 * httpserver.REQUEST_TIMEOUT)  # the deadline passes while the endpoint works
    app.release.set()
    assert job.get(timeout=DEADLINE) == (200, b"ok\n")


@pytest.mark.parametrize("request_bytes", [
    b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
])
def test_bodies_reach_the_app_whole(server, request_bytes):
    """Bodies are read before the app runs: sized, chunked or after 100-continue."""
    status, body = exchange(server, request_bytes)
    assert status == 200 and body.endswith(b"hello")


def test_the_backlog_is_as_long_as_the_system_allows(server, app):
    """With every slot busy, 300 more clients wait in the backlog (128 was the
    old fixed length) instead of being refused."""
    busy = [gevent.spawn(exchange, server, b"GET /block HTTP/1.0\r\n\r\n")
            for _ in range(httpserver.MAX_CONNECTIONS)]
    wait_for(lambda: app.blocked == httpserver.MAX_CONNECTIONS, what="every slot busy")
    refused, waiting = 0, []
    for _ in range(300):
        try:
            waiting.append(connect(server, blocking=False))
        except OSError:
            refused += 1
    for s in waiting:
        s.close()
    app.release.set()
    gevent.joinall(busy, timeout=DEADLINE)
    assert refused == 0
    assert httpserver.listen_backlog() >= 300


MALFORMED = [
    b"GET /ping HTTP/9\r\n\r\n",
    b"GET /ping HTTP/2.0\r\n\r\n",
    b"GET /ping HTTP/1.x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
    b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    b"HEAD /ping HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",  # TLS hello
    b"GET\r\n\r\n",
    b"\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED)
def test_malformed_requests_get_a_4xx_json_and_one_log_line(server, request_bytes, caplog, capfd):
    """A request that cannot be parsed: a 4xx with a JSON error (or a quiet
    close), at most one log line through Pilot's logger, nothing on stderr."""
    caplog.set_level(logging.DEBUG, logger="pilot")
    caplog.clear()
    status, body = exchange(server, request_bytes)
    if status is not None:
        assert 400 <= status < 500, (status, body)
        assert json.loads(body)["error"]
    wait_for(lambda: serving(server) == 0, what="the handler done")  # its last line, if any, comes after the answer
    records = [r for r in caplog.records if r.name == "pilot"]
    assert len(records) <= 1, [r.getMessage() for r in records]
    assert all("\n" not in r.getMessage() for r in records)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and err == "", err
    assert exchange(server, b"GET /ping HTTP/1.0\r\n\r\n") == (200, b"ok\n")  # still serving
