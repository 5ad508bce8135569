"""Pilot as PID 1 against clients that connect and never send: 200 idle
connections on the control socket do not stop `pilot -ping`, and 200 idle
TCP connections on the telemetry port do not stop a Prometheus scrape. Both
answer within the client's normal timeout, and the idle connections are
closed by Pilot, not kept forever."""
import os
import socket
import urllib.request

import pytest

from tests.support import DEADLINE, free_port, wait_for

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]
IDLE = 200
CLIENT_TIMEOUT = 10  # seconds: pilot/client.py's TIMEOUT, and a scraper's usual timeout


def start(pilot, consul_agent):
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}",
      jobs: [{{name: "app", exec: ["sleep", "3600"]}}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"],
        metrics: [{{name: "hits", type: "counter", help: "hits"}}]}}}}""")
    wait_for(lambda: p.cli("-ping").returncode == 0, what="the control socket")
    wait_for(lambda: scrape(port), what="the telemetry port")
    return p, port


def scrape(port, timeout=CLIENT_TIMEOUT):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return r.status == 200 and "hits" in r.read().decode()
    except OSError:
        return False


def hold_idle(family, address, count=IDLE):
    """`count` connections that send nothing (non-blocking connects: the ones
    beyond the accepted wait in the backlog)."""
    held = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(address)
        except BlockingIOError:
            pass
        held.append(s)
    return held


def closed_by_peer(s):
    try:
        return s.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_connections_do_not_lock_out_the_control_socket(pilot, consul_agent):
    """`pilot -ping` succeeds (within its own 10 s timeout) while 200
    connections sit idle on the control socket; Pilot then closes them."""
    p, _ = start(pilot, consul_agent)
    held = hold_idle(socket.AF_UNIX, str(p.socket))
    try:
        done = p.cli("-ping", timeout=DEADLINE + CLIENT_TIMEOUT)  # the CLI gives up after its own 10 s
        assert done.returncode == 0, done.stderr
        done = p.cli("-putmetric", "hits=1", timeout=DEADLINE + CLIENT_TIMEOUT)  # the CLI gives up after its own 10 s
        assert done.returncode == 0, done.stderr
        wait_for(lambda: all(closed_by_peer(s) for s in held), 60, "Pilot to close the idle connections")
    finally:
        for s in held:
            s.close()


def test_idle_connections_do_not_stop_scrapes(pilot, consul_agent):
    """A scrape of /metrics over TCP succeeds while 200 idle connections sit
    on the telemetry port; Pilot then closes them."""
    _, port = start(pilot, consul_agent)
    held = hold_idle(socket.AF_INET, ("127.0.0.1", port))
    try:
        assert scrape(port)
        wait_for(lambda: all(closed_by_peer(s) for s in held), 60, "Pilot to close the idle connections")
    finally:
        for s in held:
            s.close()
