"""pilot.discovery against a fake Consul HTTP layer (the real agent is in
tests/integration/test_discovery_consul.py)."""
import json
import logging

import pytest
import requests

import pilot.discovery as discovery
from pilot.config.model import ConsulConfig, TLSConfig
from pilot.discovery import Consul, ConsulError, Instance, ServiceDefinition, agent as consul_agent, transport
from tests.support import DEADLINE, FakeConsulHTTP, advertised_job, assert_bug_logged, wait_for

TOKEN = "s3cr3t-token"


@pytest.fixture
def log():
    return logging.getLogger("pilot.discovery.test")


def service(agent, log, token="", **kw):
    consul = Consul(ConsulConfig(address="consul:8500", token=token), log=log)
    return ServiceDefinition(advertised_job(**kw), consul, hostname="host1", log=log)


def puts(agent, prefix):
    return [r for r in agent.requests if r[0] == "PUT" and r[1].startswith(prefix)]


def test_registration_has_ids_ttl_check_and_job_fields(agent, log):
    """The service ID is NAME-HOSTNAME, the TTL check carries the job's ttl and extras."""
    svc = service(agent, log, tags=("a", "b"), ip="10.0.0.2", enable_tag_override=True,
                  deregister_critical_service_after="10m")
    assert (svc.id, svc.check_id) == ("app-host1", "service:app-host1")
    svc.send_heartbeat()
    sent = json.loads(puts(agent, "/v1/agent/service/register")[0][3])
    assert sent == {
        "name": "app", "id": "app-host1", "address": "10.0.0.2", "port": 8000,
        "tags": ["a", "b"], "enabletagoverride": True,
        "check": {"TTL": "10s", "Status": "passing",
                  "Notes": "TTL for app set by containerpilot",
                  "DeregisterCriticalServiceAfter": "10m"}}


def test_empty_fields_are_left_out_of_the_registration(agent, log):
    """No tags, no address and no deregisterCriticalServiceAfter are not sent at all."""
    service(agent, log).send_heartbeat()
    sent = json.loads(puts(agent, "/v1/agent/service/register")[0][3])
    assert set(sent) == {"name", "id", "port", "check"}
    assert "DeregisterCriticalServiceAfter" not in sent["check"]


def test_first_heartbeat_registers_then_passes_ttl(agent, log, caplog):
    """A heartbeat registers once, then each heartbeat only updates the TTL check."""
    svc = service(agent, log)
    with caplog.at_level(logging.INFO, logger=log.name):
        svc.send_heartbeat()
        svc.send_heartbeat()
    assert len(puts(agent, "/v1/agent/service/register")) == 1
    updates = puts(agent, "/v1/agent/check/update/service:app-host1")
    assert [json.loads(u[3]) for u in updates] == [{"Status": "passing", "Output": "ok"}] * 2
    assert agent.checks["service:app-host1"] == "passing"
    assert "Service registered: app" in caplog.messages


def test_initial_status_registration(agent, log, caplog):
    """register_with_initial_status sends that status and logs the attempt."""
    svc = service(agent, log, initial_status="warning")
    with caplog.at_level(logging.INFO, logger=log.name):
        assert svc.register_with_initial_status() is True
    assert agent.checks["service:app-host1"] == "warning"
    assert caplog.messages == ["Registering service app with initial status set to warning",
                               "Service registered: app"]
    svc.send_heartbeat()
    assert len(puts(agent, "/v1/agent/service/register")) == 1


def test_initial_status_registration_failure_returns_false(agent, log, caplog):
    """A refused registration returns False and logs the 3.8 warning."""
    agent.status_for["/v1/agent/service/register"] = (400, "Invalid check")
    svc = service(agent, log, initial_status="critical")
    with caplog.at_level(logging.INFO, logger=log.name):
        assert svc.register_with_initial_status() is False
    assert ("service registration failed: Unexpected response code: 400 (Invalid check)"
            in caplog.messages)
    assert not svc.registered


def test_unknown_check_registers_again_and_retries(agent, log):
    """If the agent forgot the check (restart), the heartbeat re-registers at once."""
    svc = service(agent, log)
    svc.send_heartbeat()
    agent.services.clear()
    agent.checks.clear()
    svc.send_heartbeat()
    assert len(puts(agent, "/v1/agent/service/register")) == 2
    assert len(puts(agent, "/v1/agent/check/update/")) == 3
    assert agent.checks["service:app-host1"] == "passing"


def test_other_ttl_failures_warn_without_reregistering(agent, log, caplog):
    """A TTL update refused for another reason (ACL) is a warning, not a re-registration."""
    svc = service(agent, log)
    svc.send_heartbeat()
    agent.status_for["/v1/agent/check/update/"] = (403, "Permission denied")
    with caplog.at_level(logging.WARNING, logger=log.name):
        svc.send_heartbeat()
    assert len(puts(agent, "/v1/agent/service/register")) == 1
    assert caplog.messages == [
        "service update TTL failed: Unexpected response code: 403 (Permission denied)"]


def test_failed_registration_skips_ttl_update(agent, log):
    """No TTL update is sent for a service that could not be registered."""
    agent.status_for["/v1/agent/service/register"] = (500, "No cluster leader")
    service(agent, log).send_heartbeat()
    assert puts(agent, "/v1/agent/check/update/") == []


def answered_once(consul):
    """Consul has answered before (an outage, not an agent still starting)."""
    consul.health_service("anything")


def test_outage_warns_once_and_logs_recovery(agent, log, caplog):
    """Consul unreachable: one warning per outage, one line when it answers again."""
    svc = service(agent, log)
    answered_once(svc.consul)
    agent.down = True
    with caplog.at_level(logging.INFO, logger=log.name):
        for _ in range(3):
            svc.send_heartbeat()
        svc.deregister()
        agent.down = False
        svc.send_heartbeat()
        svc.send_heartbeat()
        agent.down = True
        svc.send_heartbeat()
    assert caplog.messages == [
        "service registration failed: consul at consul:8500 unreachable: Connection refused",
        "consul: consul:8500 recovered",
        "Service registered: app",
        "service update TTL failed: consul at consul:8500 unreachable: Connection refused",
    ]


def test_outage_is_shared_by_all_services_of_one_client(agent, log, caplog):
    """Two services on one Consul client report one outage between them."""
    consul = Consul(ConsulConfig(address="consul:8500"), log=log)
    one = ServiceDefinition(advertised_job(name="one"), consul, hostname="h", log=log)
    two = ServiceDefinition(advertised_job(name="two"), consul, hostname="h", log=log)
    answered_once(consul)
    agent.down = True
    with caplog.at_level(logging.WARNING, logger=log.name):
        one.send_heartbeat()
        two.send_heartbeat()
    assert len(caplog.messages) == 1


def test_mark_for_reregistration(agent, log):
    """After maintenance the next heartbeat registers the service again."""
    svc = service(agent, log)
    svc.send_heartbeat()
    svc.mark_for_reregistration()
    svc.send_heartbeat()
    assert len(puts(agent, "/v1/agent/service/register")) == 2


def test_deregister(agent, log, caplog):
    """Deregistration removes the service; a failure is logged at INFO as 3.8 does."""
    svc = service(agent, log)
    svc.send_heartbeat()
    svc.deregister()
    assert agent.services == {}
    assert puts(agent, "/v1/agent/service/deregister/app-host1")
    agent.status_for["/v1/agent/service/deregister/"] = (403, "Permission denied")
    with caplog.at_level(logging.INFO, logger=log.name):
        svc.deregister()
    assert caplog.records[-1].levelno == logging.INFO
    assert caplog.messages[-1] == \
        "deregistering failed: Unexpected response code: 403 (Permission denied)"


def test_token_sent_on_every_call_and_never_logged(agent, log, caplog):
    """The ACL token goes in X-Consul-Token on every request and never into logs."""
    agent.status_for["/v1/agent/check/update/"] = (403, "Permission denied")
    svc = service(agent, log, token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        svc.send_heartbeat()
        svc.deregister()
        svc.consul.health_service("app")
    assert len(agent.requests) == 4
    assert all(r[4].get("X-Consul-Token") == TOKEN for r in agent.requests)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(svc.consul.cfg)


def test_health_service_query_and_instances(agent, log):
    """Only passing instances are asked for; tag and dc are passed when given."""
    agent.health = [
        {"Node": {"Address": "10.0.0.9"},
         "Service": {"ID": "b-2", "Address": "", "Port": 81, "Tags": ["x"]}},
        {"Node": {"Address": "10.0.0.8"},
         "Service": {"ID": "a-1", "Address": "10.1.1.1", "Port": 80, "Tags": None}},
    ]
    consul = Consul(ConsulConfig(), log=log)
    index, found = consul.health_service("web", tag="x", dc="dc2")
    assert index == 7
    assert found == [Instance("a-1", "10.1.1.1", 80, ()), Instance("b-2", "10.0.0.9", 81, ("x",))]
    method, path, params, _, _, timeout = agent.requests[-1]
    assert (method, path) == ("GET", "/v1/health/service/web")
    assert sorted(params) == [("dc", "dc2"), ("passing", "1"), ("tag", "x")]
    assert timeout == (consul_agent.CALL_TIMEOUT, consul_agent.HUNG_AFTER)
    consul.health_service("web")
    assert agent.requests[-1][2] == [("passing", "1")]


def test_blocking_query_passes_index_and_wait_with_a_longer_timeout(agent, log):
    """With an index the query blocks: index and wait are sent, the timeout outlasts the wait."""
    consul = Consul(ConsulConfig(), log=log)
    consul.health_service("web", index=42, wait=10)
    _, _, params, _, _, timeout = agent.requests[-1]
    assert ("index", 42) in params and ("wait", "10s") in params
    assert timeout > 10 * (1 + 1 / 16)


def test_health_service_errors_are_consul_errors(agent, log):
    """A failed query raises ConsulError with a one-line message."""
    agent.status_for["/v1/health/service/"] = (500, "rpc error:\nNo cluster leader")
    with pytest.raises(ConsulError, match=r"^Unexpected response code: 500 "
                                          r"\(rpc error: No cluster leader\)$"):
        Consul(ConsulConfig(), log=log).health_service("web")


# -- the real HTTP client construction (no fake) --------------------------------

def test_address_forms():
    """host:port, a bare host (scheme's port) and https are turned into base URIs."""
    def uri(address, scheme="http"):
        return transport.http_client(ConsulConfig(address=address, scheme=scheme),
                                      address, 5).base_uri
    assert uri("consul:8500") == "http://consul:8500"
    assert uri("consul", "https") == "https://consul:443"
    assert uri("[::1]:8500") == "http://[::1]:8500"


def test_environment_does_not_override_the_configured_address(monkeypatch):
    """CONSUL_HTTP_ADDR/SSL are the config loader's business, not python-consul2's."""
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "elsewhere:1")
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    consul = Consul(ConsulConfig(address="consul:8500"))
    assert consul._api.http.base_uri == "http://consul:8500"
    assert consul._api.token is None


def test_tls_verification_is_off_unless_asked(tmp_path):
    """verify is off by default even for https; on, it uses the configured CA."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    off = Consul(ConsulConfig(scheme="https"))._api.http
    on = Consul(ConsulConfig(scheme="https", tls=TLSConfig(cafile=str(ca), verify=True)))
    assert off.verify is False
    assert on._api.http.verify == str(ca)


def test_unreadable_tls_material_fails_at_construction(tmp_path):
    """A missing CA file is reported when the client is built, not at the first call."""
    with pytest.raises(ConsulError, match="CA file .*missing.pem cannot be read"):
        Consul(ConsulConfig(tls=TLSConfig(cafile=str(tmp_path / "missing.pem"))))


def test_client_certificate_pair(tmp_path):
    """Client certificate and key are handed to requests as a pair."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    api = Consul(ConsulConfig(tls=TLSConfig(clientcert=str(cert), clientkey=str(key))))._api
    assert api.http.cert == (str(cert), str(key))


def test_unreachable_consul_message_is_one_line():
    """A refused connection becomes 'consul at ADDR unreachable: REASON'."""
    consul = Consul(ConsulConfig(address="127.0.0.1:1"))
    with pytest.raises(ConsulError) as err:
        consul.deregister("x")
    assert str(err.value) == "consul at 127.0.0.1:1 unreachable: Connection refused"
    assert not err.value.repeated


@pytest.mark.parametrize("address, scheme, expected", [
    ("consul:8500", "", ("consul:8500", "http", "")),
    ("consul:8500", "https", ("consul:8500", "https", "")),
    ("http://127.0.0.1:8500", "", ("127.0.0.1:8500", "http", "")),
    ("https://consul:8501", "http", ("consul:8501", "https", "")),
    ("https://consul:8500", "https", ("consul:8500", "https", "")),
    ("unix:///run/consul.sock", "https", ("unix:///run/consul.sock", "http", "/run/consul.sock")),
])
def test_address_prefix_sets_the_scheme_as_consuls_go_client(address, scheme, expected):
    """A scheme written into the address (object form, CONSUL_HTTP_ADDR,
    `https://https://…`) wins, as in Consul's Go client used by 3.8."""
    assert transport.endpoint(address, scheme) == expected


class HangingHTTP(FakeConsulHTTP):
    """A fake agent that does not answer until `release` is set (a stopped
    agent); `held` lists the paths of the calls it is holding or held."""

    release = None
    held = None

    def _do(self, method, callback, path, *args, **kw):
        if self.release is not None:
            self.held.append(path)
            self.release.wait()
        return super()._do(method, callback, path, *args, **kw)


def test_background_heartbeat_returns_while_the_agent_hangs(agent, log, monkeypatch):
    """A job's heartbeat never waits for a hung agent; a deregistration asked
    meanwhile abandons the registration in flight (it would hold up a
    shutdown) and is the only call that reaches the agent afterwards."""
    import gevent
    import gevent.event
    release, held = gevent.event.Event(), []
    monkeypatch.setattr(HangingHTTP, "release", release)
    monkeypatch.setattr(HangingHTTP, "held", held)
    monkeypatch.setattr(transport, "http_client",
                        lambda cfg, address, timeout: HangingHTTP(agent, timeout))
    bg = discovery.BackgroundService(service(agent, log))
    with gevent.Timeout(DEADLINE):  # the agent hangs for ever: only a wait for it could take this long
        bg.send_heartbeat()  # returns at once although the agent hangs
        bg.send_heartbeat()  # one already in flight: skipped
        assert bg.register_with_initial_status() is False
    wait_for(lambda: held == ["/v1/agent/service/register"], what="the registration in flight")
    with gevent.Timeout(DEADLINE):
        bg.deregister()  # returns at once; the deregistration runs in the background
    wait_for(lambda: len(held) == 2, what="the deregistration at the agent (the registration abandoned)")
    assert held[1] == "/v1/agent/service/deregister/app-host1"
    release.set()
    bg.leaving.join(timeout=DEADLINE)
    assert bg.leaving.successful()
    assert [r[1] for r in agent.requests] == ["/v1/agent/service/deregister/app-host1"]
    assert agent.services == {}


def test_background_heartbeat_voided_by_a_deregistration(agent, log):
    """A heartbeat not yet sent when the job deregisters is never sent."""
    import gevent
    bg = discovery.BackgroundService(service(agent, log))
    bg.send_heartbeat()
    bg.deregister()  # runs before the heartbeat's greenlet gets a turn
    bg.leaving.join(timeout=DEADLINE)
    gevent.idle()  # a heartbeat still pending would run now
    assert puts(agent, "/v1/agent/service/register") == []
    assert agent.services == {}


def test_a_deregistration_met_by_an_outage_is_retried_when_consul_answers(agent, log):
    """A job removed while the agent was down is deregistered once Consul
    answers again (it would otherwise stay in the catalog for ever); one
    registered again meanwhile is left alone."""
    import gevent
    gone = service(agent, log)
    consul = gone.consul
    back = ServiceDefinition(advertised_job(name="web"), consul, hostname="host1", log=log)
    gone.send_heartbeat(), back.send_heartbeat()
    agent.down = True
    gone.deregister(), back.deregister()
    agent.down = False
    back.send_heartbeat()  # answered: the retry of app's deregistration starts
    gevent.idle()
    assert set(agent.services) == {"web-host1"}
    before = len(agent.requests)
    back.send_heartbeat()
    gevent.idle()
    assert len(agent.requests) == before + 1  # nothing more to retry


def test_a_bug_in_a_background_heartbeat_is_logged_and_the_next_one_runs(agent, log, caplog):
    """A bug in a heartbeat is one ERROR line (and its traceback at DEBUG);
    it does not end heartbeats for the job."""
    import gevent
    caplog.set_level(logging.DEBUG, log.name)
    svc = service(agent, log)
    bg = discovery.BackgroundService(svc)
    real = svc.send_heartbeat
    svc.send_heartbeat = lambda: (_ for _ in ()).throw(KeyError("lost"))
    bg.send_heartbeat()
    gevent.wait([bg._busy], timeout=DEADLINE)
    assert_bug_logged(caplog, "consul: unexpected error for app: KeyError: 'lost'", KeyError)
    svc.send_heartbeat = real
    bg.send_heartbeat()
    gevent.wait([bg._busy], timeout=DEADLINE)
    assert puts(agent, "/v1/agent/service/register")


def test_a_service_before_consul_is_up_waits_quietly(agent, log, caplog):
    """Registering before Consul ever answered: `NAME: waiting for Consul at
    ADDR` once (INFO), no warning; registered once it answers."""
    svc = service(agent, log)
    agent.down = True
    with caplog.at_level(logging.INFO, logger=log.name):
        svc.send_heartbeat()
        svc.send_heartbeat()
        agent.down = False
        svc.send_heartbeat()
    assert caplog.messages == ["app: waiting for Consul at consul:8500",
                               "consul: consul:8500 is up", "Service registered: app"]


def test_an_error_other_than_refused_is_never_waiting(agent, log):
    """Only a refused connection (nothing listens yet) is waiting; a DNS
    failure or a timeout is an outage from the first time."""
    consul = Consul(ConsulConfig(address="consul:8500"), log=log)
    outage = consul._outage
    assert outage.waiting(True) and not outage.waiting(False)
    assert consul_agent._refused(requests.ConnectionError(ConnectionRefusedError(111, "refused")))
    assert not consul_agent._refused(requests.ConnectTimeout("timed out"))


class SlowAgent:
    """A real HTTP server on a loopback port that answers every request
    after `delay` seconds (an agent under load, or electing a leader)."""

    def __init__(self, delay):
        from gevent.pywsgi import WSGIServer
        self.delay = delay
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None)
        self.server.start()
        self.address = f"127.0.0.1:{self.server.server_port}"

    def app(self, environ, start_response):
        import gevent
        gevent.sleep(self.delay)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"true"]

    def stop(self):
        self.server.stop()


def test_a_slow_agent_is_slow_and_a_late_registration_counts_when_it_comes(log, caplog, monkeypatch):
    """An agent that answers after 2.5 s (more than the time allowed to
    connect, here 1 s) is `slow` with the time it took, not `unreachable:
    timed out`; the registration it accepted late is logged as registered
    when the answer came, not at the next heartbeat."""
    import time
    monkeypatch.setattr(consul_agent, "CALL_TIMEOUT", 1.0)
    slow = SlowAgent(2.5)
    try:
        consul = Consul(ConsulConfig(address=slow.address), log=log)
        svc = ServiceDefinition(advertised_job(), consul, hostname="h", log=log)
        with caplog.at_level(logging.INFO, logger=log.name):
            began = time.monotonic()
            svc.send_heartbeat()
            took = time.monotonic() - began
        messages = caplog.messages
        assert messages[0].startswith(f"consul: {slow.address} slow: registering app took ")
        assert float(messages[0].rsplit(" ", 1)[1].rstrip("s")) >= 2.5
        assert "Service registered: app" in messages and svc.registered
        assert not any("unreachable" in m or "failed" in m for m in messages), messages
        assert took >= 2.5
    finally:
        slow.stop()


def test_deregistering_is_logged_at_debug_as_38_did(agent, log, caplog):
    """`deregistering: ID` at DEBUG, the line 3.8 users grep for."""
    svc = service(agent, log)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        svc.deregister()
    assert "deregistering: app-host1" in caplog.messages
