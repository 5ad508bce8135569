"""A real Pilot (PID 1 of its own PID namespace) against a real Consul agent:
registration, an agent that comes late or forgets everything, maintenance,
and watches that react to the agent at once (docs/behaviour.md §11, §12, §0)."""
import signal
import socket

import pytest

from tests.consul_agent import agent_put, check_status, register, registered
from tests.integration.pilot_proc import config_text
from tests.support import count_lines, free_port, wait_for

pytestmark = pytest.mark.timeout(120)
HOSTNAME = socket.gethostname()  # unshare --pid keeps the host's UTS namespace
SERVICE_ID = f"app-{HOSTNAME}"
CHECK_ID = f"service:{SERVICE_ID}"


def advertised_app(**extra):
    job = {"name": "app", "exec": ["sleep", "1000"], "port": 8080, "tags": ["web", "v1"],
           "interfaces": ["static:127.0.0.1"],
           "health": {"exec": "true", "interval": 1, "ttl": 5}}
    job.update(extra)
    return job


def test_advertised_job_registers_and_deregisters_on_sigterm(consul_agent, pilot):
    """A passing health check registers NAME-HOSTNAME with its tags, port,
    address and a passing TTL check service:ID; SIGTERM deregisters it."""
    p = pilot(config_text([advertised_app()], consul=consul_agent.http_addr))
    svc = wait_for(lambda: registered(consul_agent, SERVICE_ID), what="the service in the agent")
    assert (svc["Service"], svc["Tags"], svc["Port"], svc["Address"]) == (
        "app", ["web", "v1"], 8080, "127.0.0.1")
    wait_for(lambda: check_status(consul_agent, CHECK_ID) == "passing", what="a passing TTL check")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert registered(consul_agent, SERVICE_ID) is None
    assert check_status(consul_agent, CHECK_ID) is None


def test_agent_that_comes_up_after_pilot(tmp_path, consul_agent_factory, pilot):
    """Without an agent (it has never answered: it may be a job still
    starting), jobs run and Pilot says once that it waits for Consul, with
    no `unreachable` warning; when the agent comes up the service registers
    within seconds and one line says Consul is up."""
    port = free_port()
    ran, checks = tmp_path / "ran", tmp_path / "checks"
    jobs = [advertised_app(exec=["sh", "-c", f"touch {ran}; exec sleep 1000"],
                           health={"exec": ["sh", "-c", f"echo >> {checks}"],
                                   "interval": 1, "ttl": 5})]
    p = pilot(config_text(jobs, consul=f"127.0.0.1:{port}", watches=[{"name": "app", "interval": 1}]))
    wait_for(ran.exists, what="the job to run without Consul")
    p.wait_log(rf"waiting for Consul at 127\.0\.0\.1:{port}$")
    wait_for(lambda: count_lines(checks) >= 3, what="three failed heartbeats")
    agent = consul_agent_factory(http_port=port)
    wait_for(lambda: registered(agent, SERVICE_ID), what="registration once the agent is up")
    p.wait_log(rf"consul: 127\.0\.0\.1:{port} is up$")
    assert len(p.lines("waiting for Consul")) == 1, p.log
    assert p.lines("unreachable") == [] and p.lines("recovered") == [], p.log


def test_agent_restart_that_forgets_everything(consul_agent_factory, pilot):
    """A new agent on the same port knows nothing: the next heartbeat registers again."""
    first = consul_agent_factory()
    pilot(config_text([advertised_app()], consul=first.http_addr))
    wait_for(lambda: registered(first, SERVICE_ID), what="the first registration")
    first.stop()
    second = consul_agent_factory(http_port=first.http_port)
    assert registered(second, SERVICE_ID) is None
    wait_for(lambda: registered(second, SERVICE_ID), what="registration in the restarted agent")
    wait_for(lambda: check_status(second, CHECK_ID) == "passing", what="a passing check after restart")


def test_maintenance_takes_the_service_out_and_back(consul_agent, pilot):
    """`-maintenance enable` deregisters the service; `disable` brings it back."""
    p = pilot(config_text([advertised_app()], consul=consul_agent.http_addr))
    wait_for(lambda: registered(consul_agent, SERVICE_ID), what="the service in the agent")
    wait_for(p.socket.exists, what="the control socket")
    done = p.cli("-maintenance", "enable")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: registered(consul_agent, SERVICE_ID) is None, what="the service to leave")
    done = p.cli("-maintenance", "disable")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: registered(consul_agent, SERVICE_ID), what="the service to come back")
    wait_for(lambda: check_status(consul_agent, CHECK_ID) == "passing", what="a passing check again")


def test_watch_triggers_a_job_long_before_its_interval(tmp_path, consul_agent, pilot):
    """With `interval: 300`, registering and deregistering `backend` in the
    agent runs the `changed` job each time far sooner than a poll would:
    the watch blocks on Consul instead of polling (the bound is loose on
    purpose: this checks the mechanism, bench/watch_latency.py the speed)."""
    ready, runs = tmp_path / "ready", tmp_path / "runs"
    jobs = [
        {"name": "main", "exec": ["sh", "-c", f"touch {ready}; exec sleep 1000"]},
        {"name": "on-change", "exec": ["sh", "-c", f"date +%s.%N >> {runs}"],
         "when": {"source": "watch.backend", "each": "changed"}},
    ]
    pilot(config_text(jobs, consul=consul_agent.http_addr,
                      watches=[{"name": "backend", "interval": 300}]))
    wait_for(ready.exists, what="pilot to start its jobs")
    for count, change in enumerate([
            lambda: register(consul_agent, "backend", "backend-1", "127.0.0.1", 9000),
            lambda: agent_put(consul_agent, "/v1/agent/service/deregister/backend-1"),
            lambda: register(consul_agent, "backend", "backend-2", "127.0.0.2", 9001)], start=1):
        change()
        # DEADLINE (30 s): a tenth of the 300 s a poll would take
        wait_for(lambda: count_lines(runs) >= count, what=f"run {count} of the changed job")
        assert count_lines(runs) == count
