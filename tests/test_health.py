"""HTTP and TCP probes against real sockets on loopback: what passes, what
fails and the reason given as the check's output."""
import contextlib
import socket

import gevent
import gevent.server
import pytest

from pilot import events as ev
from pilot.events import Event
from pilot.health import Probe
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)


def answer_with(status_line):
    def handle(sock, address):
        sock.recv(4096)
        sock.sendall(status_line.encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        sock.close()
    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


def run(probe, seen):
    probe.start()
    wait_for(lambda: seen, what="the probe's result")
    return seen[0]


@pytest.mark.parametrize("status,code,output", [
    ("HTTP/1.1 200 OK", ev.EXIT_SUCCESS, "HTTP 200"),
    ("HTTP/1.1 302 Found", ev.EXIT_SUCCESS, "HTTP 302"),
    ("HTTP/1.0 404 Not Found", ev.EXIT_FAILED, "HTTP 404"),
    ("HTTP/1.1 503 Service Unavailable", ev.EXIT_FAILED, "HTTP 503"),
])
def test_http_passes_on_2xx_and_3xx_and_fails_with_the_status(status, code, output):
    server = answer_with(status)
    try:
        seen = []
        probe = Probe("check.web", timeout=5, http=f"http://127.0.0.1:{server.server_port}/healthz",
                      publish=seen.append)
        assert run(probe, seen) == Event(code, "check.web")
        assert probe.output == output and not probe.running
    finally:
        server.stop()


def test_http_refused_and_tcp_refused_say_so():
    """Nothing listening: `connection refused` for both kinds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for kw in ({"http": f"http://127.0.0.1:{port}/"}, {"tcp": f"127.0.0.1:{port}"}):
        seen = []
        probe = Probe("check.db", timeout=5, publish=seen.append, **kw)
        assert run(probe, seen) == Event(ev.EXIT_FAILED, "check.db")
        assert probe.output == "connection refused"


def test_tcp_passes_when_the_connect_completes():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        seen = []
        probe = Probe("check.db", timeout=5, tcp=f"127.0.0.1:{listener.getsockname()[1]}",
                      publish=seen.append)
        assert run(probe, seen) == Event(ev.EXIT_SUCCESS, "check.db")


@contextlib.contextmanager
def hung_server():
    """A server that accepts and never answers; yields (its port, the
    addresses of the connections it holds)."""
    held = []

    def hang(sock, address):
        held.append(address)
        gevent.sleep(60)
    server = gevent.server.StreamServer(("127.0.0.1", 0), hang)
    server.start()
    try:
        yield server.server_port, held
    finally:
        server.stop()


def test_a_server_that_never_answers_fails_at_the_timeout():
    """A hung endpoint: the check fails `timed out after 200ms`."""
    with hung_server() as (port, _):
        seen = []
        probe = Probe("check.web", timeout=0.2, http=f"http://127.0.0.1:{port}/", publish=seen.append)
        assert run(probe, seen) == Event(ev.EXIT_FAILED, "check.web")
        assert probe.output == "timed out after 200ms"


def test_stopping_a_probe_publishes_nothing():
    """A check abandoned because its job stops reports no result."""
    with hung_server() as (port, held):
        seen = []
        probe = Probe("check.web", timeout=20, http=f"http://127.0.0.1:{port}/", publish=seen.append)
        probe.start()
        wait_for(lambda: held, what="the probe's request at the server")
        assert probe.running and probe.signal(15)
        gevent.idle()  # the abandoned probe unwinds now
        assert seen == [] and not probe.running
