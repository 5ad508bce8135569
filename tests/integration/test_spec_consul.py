"""Black-box checks of docs/behaviour.md §6, §12, §13 and §14 kept from the conformance
audit: Pilot run as users run it (`python pilot.py -config FILE`, PID 1 of
its own namespace) against a real Consul agent, observed only from outside
(Consul's HTTP API, the telemetry port, the control socket).
"""
import json
import os
import socket

import pytest

from tests.consul_agent import agent_get, registered
from tests.integration.pilot_proc import control_request
from tests.support import DEADLINE, free_port, http_request, taken_port, wait_for

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]
HOSTNAME = socket.gethostname()
APP = ('{name: "app", exec: "sleep 1000", port: 8080, interfaces: ["static:127.0.0.1"], '
       'health: {exec: "true", interval: 1, ttl: 5}}')


def tele(port, method, path):
    """(status, headers, body text) of one request to the telemetry server,
    or None while it is not listening yet."""
    return http_request(f"http://127.0.0.1:{port}{path}", method)


# -- §6: the address may carry its scheme -------------------------------------

@pytest.mark.parametrize("consul, env", [
    ('{address: "http://ADDR"}', {}),
    ('{}', {"CONSUL_HTTP_ADDR": "http://ADDR"}),
], ids=["object-address", "CONSUL_HTTP_ADDR"])
def test_address_with_http_scheme_prefix_reaches_the_agent(pilot, consul_agent, consul, env):
    """`http://host:port` as the object form's address or in CONSUL_HTTP_ADDR
    (how Consul's docs write it) is read as Consul's Go client reads it:
    scheme http, address host:port. Pilot used to try to resolve the host
    `http://127.0.0.1` and never registered."""
    consul = consul.replace("ADDR", consul_agent.http_addr)
    env = {k: v.replace("ADDR", consul_agent.http_addr) for k, v in env.items()}
    env.setdefault("CONSUL_HTTP_ADDR", "")
    pilot(f"{{consul: {consul}, jobs: [{APP}]}}", env=env)
    svc = wait_for(lambda: registered(consul_agent, f"app-{HOSTNAME}"), what="app registered")
    assert (svc["Service"], svc["Port"], svc["Address"]) == ("app", 8080, "127.0.0.1")


# -- §13.2: the telemetry server answers as 3.8's net/http did -------------------

@pytest.fixture
def telemetry(pilot, consul_agent):
    """A Pilot with telemetry on 127.0.0.1 and one advertised job; its port
    once /status answers."""
    port = free_port()
    pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{APP}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"]}}}}""")
    wait_for(lambda: tele(port, "GET", "/status"), what="telemetry to listen")
    return port


def test_status_is_compact_json_as_go_encodes_it(telemetry):
    """GET /status is Go's json.Encoder output: no spaces after `:` and `,`,
    so `grep '"Status":"healthy"'` in users' scripts matches."""
    def healthy_body():
        code, headers, body = tele(telemetry, "GET", "/status")
        return body if '"Name":"app","Address":"127.0.0.1","Port":8080,"Status":"healthy"' in body else None
    body = wait_for(healthy_body, what="app healthy in /status")
    assert body.endswith("}\n") and ": " not in body and ", " not in body
    assert json.loads(body)["Jobs"] is None


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "DELETE"])
def test_status_refuses_other_methods_with_3_8s_plain_text(telemetry, method):
    """Any method but GET on /status is 405 with `Method Not Allowed\\n`
    (HEAD included: 3.8 compares the method with GET)."""
    code, headers, body = tele(telemetry, method, "/status")
    assert code == 405
    if method != "HEAD":
        assert body == "Method Not Allowed\n"
        assert headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_metrics_answers_any_method(telemetry, method):
    """/metrics is Prometheus' handler in 3.8, which serves every method."""
    code, headers, body = tele(telemetry, method, "/metrics")
    assert code == 200 and "# TYPE containerpilot_events counter" in body


def test_unknown_telemetry_path_is_go_404(telemetry):
    """An unknown path is net/http's `404 page not found\\n`."""
    code, headers, body = tele(telemetry, "GET", "/nothing")
    assert (code, body) == (404, "404 page not found\n")


# -- §12: what a 3.8 user sees in Consul ------------------------------------------

def test_registration_as_3_8_sends_it_and_deregistration_at_shutdown(pilot, consul_agent):
    """Service `NAME-HOSTNAME` with tags, port, address and
    enableTagOverride; check `service:ID` with 3.8's notes; initial_status
    is the check's first status; SIGTERM deregisters everything."""
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [
      {{name: "web", exec: "sleep 1000", port: 8000, tags: ["a", "b"],
        interfaces: ["static:127.0.0.1"], health: {{exec: "true", interval: 1, ttl: 5}},
        consul: {{enableTagOverride: true, deregisterCriticalServiceAfter: "10m"}}}},
      {{name: "slow", exec: "sleep 1000", port: 8001, initial_status: "warning",
        interfaces: ["static:127.0.0.1"], health: {{exec: "false", interval: 60, ttl: 60}}}}]}}""")
    # (slow's first check is a minute away: a failing check now sets the TTL
    # check critical at once, which would race with reading `warning`)
    web = wait_for(lambda: registered(consul_agent, f"web-{HOSTNAME}"), what="web registered")
    assert (web["Service"], web["Tags"], web["Port"], web["Address"], web["EnableTagOverride"]) == \
        ("web", ["a", "b"], 8000, "127.0.0.1", True)
    checks = wait_for(lambda: (lambda c: c if f"service:slow-{HOSTNAME}" in c else None)(
        agent_get(consul_agent, "/v1/agent/checks")), what="slow's check")
    assert checks[f"service:slow-{HOSTNAME}"]["Status"] == "warning"
    check = checks[f"service:web-{HOSTNAME}"]
    assert (check["ServiceID"], check["Type"], check["Notes"]) == \
        (f"web-{HOSTNAME}", "ttl", "TTL for web set by containerpilot")
    wait_for(lambda: agent_get(consul_agent, "/v1/agent/checks")[f"service:web-{HOSTNAME}"]["Status"]
             == "passing", what="web's check passing")
    p.signal(15)
    assert p.wait() == 0
    assert agent_get(consul_agent, "/v1/agent/services") == {}


# -- §14.3: the control endpoints' success answers -------------------------------

def test_control_endpoints_answer_200_with_a_newline(pilot, consul_agent):
    """Every control endpoint answers 200 with the body `\\n` (3.8), ping on
    any method; maintenance takes the service out of Consul and brings it back."""
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{APP}]}}""")
    wait_for(lambda: registered(consul_agent, f"app-{HOSTNAME}"), what="app registered")
    for method, url, body in [("GET", "/v3/ping", None), ("POST", "/v3/ping", None),
                              ("POST", "/v3/environ", b'{"A": "1", "B": null}'),
                              ("POST", "/v3/maintenance/enable", None)]:
        assert control_request(p.socket, method, url, body) == (200, b"\n"), url
    wait_for(lambda: not registered(consul_agent, f"app-{HOSTNAME}"), what="app out of Consul")
    assert control_request(p.socket, "POST", "/v3/maintenance/disable") == (200, b"\n")
    wait_for(lambda: registered(consul_agent, f"app-{HOSTNAME}"), what="app back in Consul")
    assert control_request(p.socket, "POST", "/v3/reload") == (200, b"\n")


def test_telemetry_port_taken_exits_1_and_leaves_no_socket(pilot, tmp_path):
    """§13.2/§14.2: when telemetry cannot bind, Pilot exits 1 with one line,
    and the control socket it had already opened is removed (no stale file)."""
    with taken_port() as port:
        p = pilot(f"""{{consul: "127.0.0.1:{free_port()}", jobs: [{APP}],
          telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"]}}}}""")
        assert p.wait(timeout=2 * DEADLINE) == 1  # after ten binding attempts, 1 s apart
    assert "Traceback" not in p.log
    assert str(port) in p.log
    assert not p.socket.exists()
