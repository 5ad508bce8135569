"""pilot.discovery against a real Consul agent (tests/consul_agent.py)."""
import logging
import os
import time

import gevent
import pytest

from pilot.config.model import ConsulConfig
from pilot.discovery import Consul, ConsulError, Instance, ServiceDefinition
from tests.consul_agent import check_status
from tests.support import DEADLINE, advertised_job, wait_for

pytestmark = pytest.mark.timeout(120)
LOGGER = "pilot.discovery.itest"


def consul_for(address):
    return Consul(ConsulConfig(address=address), log=logging.getLogger(LOGGER))


def service(agent, hostname="host1", consul=None, **kw):
    consul = consul or consul_for(agent.http_addr)
    return ServiceDefinition(advertised_job(**kw), consul, hostname=hostname)


def test_heartbeat_registers_service_with_ttl_check(consul_agent):
    """The first heartbeat registers NAME-HOSTNAME with check service:ID, passing."""
    svc = service(consul_agent)
    svc.send_heartbeat()
    _, nodes = consul_agent.client().catalog.service("app")
    assert [n["ServiceID"] for n in nodes] == ["app-host1"]
    check = consul_agent.client().agent.checks()["service:app-host1"]
    assert (check["Type"], check["Status"], check["ServiceID"]) == ("ttl", "passing", "app-host1")
    assert check["Notes"] == "TTL for app set by containerpilot"


def test_initial_status_is_the_checks_first_status(consul_agent):
    """Registering with initial_status leaves the check in that status until a heartbeat."""
    svc = service(consul_agent, initial_status="warning")
    assert svc.register_with_initial_status()
    assert check_status(consul_agent, "service:app-host1") == "warning"
    svc.send_heartbeat()
    assert check_status(consul_agent, "service:app-host1") == "passing"


def test_job_fields_reach_the_agent(consul_agent):
    """Tags, port, address and EnableTagOverride are what the agent stores."""
    service(consul_agent, tags=("a", "b"), port=9000, ip="10.0.0.5",
            enable_tag_override=True, deregister_critical_service_after="10m").send_heartbeat()
    stored = consul_agent.client().agent.services()["app-host1"]
    assert (stored["Service"], stored["Tags"], stored["Port"], stored["Address"],
            stored["EnableTagOverride"]) == ("app", ["a", "b"], 9000, "10.0.0.5", True)


def test_deregister_critical_service_after_is_sent_to_the_agent(consul_agent):
    """Consul 1.8 does not echo DeregisterCriticalServiceAfter back, but it parses it:
    a malformed value is refused by the agent, a valid one accepted."""
    good = service(consul_agent, deregister_critical_service_after="10m")
    assert good.register_with_initial_status()
    bad = service(consul_agent, hostname="host2", deregister_critical_service_after="soon")
    with pytest.raises(ConsulError, match="400"):
        bad.consul.register(bad)


def test_deregister_removes_service_and_check(consul_agent):
    """After deregister the agent knows neither the service nor its check."""
    svc = service(consul_agent)
    svc.send_heartbeat()
    svc.deregister()
    assert consul_agent.client().agent.services() == {}
    assert "service:app-host1" not in consul_agent.client().agent.checks()


def test_agent_restart_is_survived(consul_agent_factory, caplog):
    """Agent down: one warning; a new empty agent on the port: the next heartbeat
    logs the recovery and registers the service again, passing."""
    first = consul_agent_factory()
    svc = service(first)
    svc.send_heartbeat()
    first.stop()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        svc.send_heartbeat()
        svc.send_heartbeat()
        second = consul_agent_factory(http_port=first.http_port)
        assert second.client().agent.services() == {}
        svc.send_heartbeat()
    assert check_status(second, "service:app-host1") == "passing"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("service update TTL failed: consul at ")
    assert f"consul: {first.http_addr} recovered" in caplog.messages
    assert caplog.messages[-1] == "Service registered: app"


def test_blocking_query_returns_promptly_without_blocking_other_greenlets(consul_agent):
    """A blocking health query is woken by a change (not by its 120 s wait);
    other greenlets keep running meanwhile."""
    consul = consul_for(consul_agent.http_addr)
    index, found = consul.health_service("web")
    assert found == []
    ticks = []

    def until_found(index):
        # A fresh agent syncs its own node a moment after start, which moves
        # every query's index: re-block, as a watch does, until "web" shows.
        while True:
            index, found = consul.health_service("web", index=index, wait=4 * DEADLINE)
            if found:
                return index, found

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    other = gevent.spawn(ticker)
    query = gevent.spawn(until_found, index)
    try:
        # The ticker runs while the query is parked inside Consul.
        wait_for(lambda: len(ticks) >= 10, what="ticks while the query blocks")
        assert not query.ready()
        service(consul_agent, name="web", consul=consul).send_heartbeat()
        new_index, found = query.get(timeout=DEADLINE)  # woken by the change, not by the 120 s wait
        assert new_index > index
        assert [i.id for i in found] == ["web-host1"]
    finally:
        gevent.killall([other, query])


def test_health_service_filters_by_tag_and_passing(consul_agent):
    """Only passing instances are returned, and only those with the tag when one is given."""
    consul = consul_for(consul_agent.http_addr)
    blue = service(consul_agent, hostname="a", consul=consul, name="web", tags=("blue",))
    green = service(consul_agent, hostname="b", consul=consul, name="web", tags=("green",),
                    initial_status="critical")
    blue.send_heartbeat()
    assert green.register_with_initial_status()
    assert [i.id for i in consul.health_service("web")[1]] == ["web-a"]
    assert consul.health_service("web", tag="green")[1] == []
    assert consul.health_service("web", tag="blue")[1] == [
        Instance("web-a", "127.0.0.1", 8000, ("blue",))]
    green.send_heartbeat()
    assert [i.id for i in consul.health_service("web")[1]] == ["web-a", "web-b"]
    assert [i.id for i in consul.health_service("web", tag="green")[1]] == ["web-b"]


def test_unix_socket_address(consul_agent_factory, tmp_path):
    """An address unix:///path talks HTTP over the agent's unix socket."""
    sock = os.path.join(str(tmp_path), "consul.sock")
    agent = consul_agent_factory(extra_args=[
        "-hcl", 'addresses { http = "127.0.0.1 unix://%s" }' % sock])
    consul = consul_for("unix://" + sock)
    service(agent, consul=consul).send_heartbeat()
    assert check_status(agent, "service:app-host1") == "passing"
    assert [i.id for i in consul.health_service("app")[1]] == ["app-host1"]
