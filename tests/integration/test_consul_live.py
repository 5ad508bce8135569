"""A real Pilot (PID 1 of its own PID namespace) against a real Consul agent:
registration, an agent that comes late or forgets everything, maintenance,
and watches that react to the agent at once (SPEC §11, §12, §0)."""
import json
import signal
import socket

import pytest

from tests.consul_agent import agent_get, agent_put, free_port
from tests.integration.pilot_proc import Pilot, run_cli, wait_for

pytestmark = pytest.mark.timeout(90)
HOSTNAME = socket.gethostname()  # unshare --pid keeps the host's UTS namespace
SERVICE_ID = f"app-{HOSTNAME}"


def config(tmp_path, consul_port, jobs, watches=()):
    """Config text, as users write it, read by the real loader."""
    return json.dumps({
        "consul": f"127.0.0.1:{consul_port}",
        "control": {"socket": str(tmp_path / "pilot.sock")},
        "jobs": list(jobs),
        "watches": list(watches),
    }, indent=2)


def advertised_app(**extra):
    job = {"name": "app", "exec": ["sleep", "1000"], "port": 8080, "tags": ["web", "v1"],
           "interfaces": ["static:127.0.0.1"],
           "health": {"exec": "true", "interval": 1, "ttl": 5}}
    job.update(extra)
    return job


def registered(agent, service_id=SERVICE_ID):
    """The agent's record of the service, or None."""
    try:
        return agent_get(agent, "/v1/agent/services").get(service_id)
    except OSError:
        return None


def check_status(agent, service_id=SERVICE_ID):
    check = agent_get(agent, "/v1/agent/checks").get("service:" + service_id)
    return check and check["Status"]


def lines_of(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def pilots():
    """Start Pilots (`pilots(tmp_path, config_text)`); all stopped afterwards."""
    started = []

    def start(tmp_path, text, **kw):
        pilot = Pilot(tmp_path, text, **kw)
        started.append(pilot)
        return pilot.start()

    yield start
    for pilot in started:
        pilot.stop()


def test_advertised_job_registers_and_deregisters_on_sigterm(tmp_path, consul_agent, pilots):
    """A passing health check registers NAME-HOSTNAME with its tags, port,
    address and a passing TTL check service:ID; SIGTERM deregisters it."""
    pilot = pilots(tmp_path, config(tmp_path, consul_agent.http_port, [advertised_app()]))
    svc = wait_for(lambda: registered(consul_agent), 10, "the service in the agent")
    assert (svc["Service"], svc["Tags"], svc["Port"], svc["Address"]) == (
        "app", ["web", "v1"], 8080, "127.0.0.1")
    wait_for(lambda: check_status(consul_agent) == "passing", 10, "a passing TTL check")
    pilot.signal(signal.SIGTERM)
    pilot.wait(20)
    assert registered(consul_agent) is None
    assert check_status(consul_agent) is None


def test_agent_that_comes_up_after_pilot(tmp_path, consul_agent_factory, pilots):
    """Without an agent (it has never answered: it may be a job still
    starting), jobs run and Pilot says once that it waits for Consul, with
    no `unreachable` warning; when the agent comes up the service registers
    within seconds and one line says Consul is up."""
    port = free_port()
    ran, checks = tmp_path / "ran", tmp_path / "checks"
    jobs = [advertised_app(exec=["sh", "-c", f"touch {ran}; exec sleep 1000"],
                           health={"exec": ["sh", "-c", f"echo >> {checks}"],
                                   "interval": 1, "ttl": 5})]
    pilot = pilots(tmp_path, config(tmp_path, port, jobs, [{"name": "app", "interval": 1}]))
    wait_for(ran.exists, 10, "the job to run without Consul")
    pilot.wait_log(rf"waiting for Consul at 127\.0\.0\.1:{port}$", timeout=10)
    wait_for(lambda: len(lines_of(checks)) >= 3, 10, "three failed heartbeats")
    agent = consul_agent_factory(http_port=port)
    wait_for(lambda: registered(agent), 8, "registration once the agent is up")
    pilot.wait_log(rf"consul: 127\.0\.0\.1:{port} is up$", timeout=5)
    assert len(pilot.lines("waiting for Consul")) == 1, pilot.log
    assert pilot.lines("unreachable") == [] and pilot.lines("recovered") == [], pilot.log


def test_agent_restart_that_forgets_everything(tmp_path, consul_agent_factory, pilots):
    """A new agent on the same port knows nothing: the next heartbeat registers again."""
    first = consul_agent_factory()
    pilots(tmp_path, config(tmp_path, first.http_port, [advertised_app()]))
    wait_for(lambda: registered(first), 10, "the first registration")
    first.stop()
    second = consul_agent_factory(http_port=first.http_port)
    assert registered(second) is None
    wait_for(lambda: registered(second), 8, "registration in the restarted agent")
    wait_for(lambda: check_status(second) == "passing", 5, "a passing check after restart")


def test_maintenance_takes_the_service_out_and_back(tmp_path, consul_agent, pilots):
    """`-maintenance enable` deregisters the service; `disable` brings it back."""
    pilot = pilots(tmp_path, config(tmp_path, consul_agent.http_port, [advertised_app()]))
    wait_for(lambda: registered(consul_agent), 10, "the service in the agent")
    wait_for((tmp_path / "pilot.sock").exists, 5, "the control socket")
    done = run_cli("-config", str(pilot.config), "-maintenance", "enable")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: registered(consul_agent) is None, 5, "the service to leave")
    done = run_cli("-config", str(pilot.config), "-maintenance", "disable")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: registered(consul_agent), 8, "the service to come back")
    wait_for(lambda: check_status(consul_agent) == "passing", 5, "a passing check again")


def test_watch_triggers_a_job_long_before_its_interval(tmp_path, consul_agent, pilots):
    """With `interval: 60`, registering and deregistering `backend` in the
    agent runs the `changed` job each time far sooner than a poll would:
    the watch blocks on Consul instead of polling (the bound is loose on
    purpose: this checks the mechanism, bench/watch_latency.py the speed)."""
    ready, runs = tmp_path / "ready", tmp_path / "runs"
    jobs = [
        {"name": "main", "exec": ["sh", "-c", f"touch {ready}; exec sleep 1000"]},
        {"name": "on-change", "exec": ["sh", "-c", f"date +%s.%N >> {runs}"],
         "when": {"source": "watch.backend", "each": "changed"}},
    ]
    pilots(tmp_path, config(tmp_path, consul_agent.http_port, jobs,
                            [{"name": "backend", "interval": 60}]))
    wait_for(ready.exists, 10, "pilot to start its jobs")
    for count, change in enumerate([
            lambda: agent_put(consul_agent, "/v1/agent/service/register",
                              {"ID": "backend-1", "Name": "backend",
                               "Address": "127.0.0.1", "Port": 9000}),
            lambda: agent_put(consul_agent, "/v1/agent/service/deregister/backend-1"),
            lambda: agent_put(consul_agent, "/v1/agent/service/register",
                              {"ID": "backend-2", "Name": "backend",
                               "Address": "127.0.0.2", "Port": 9001})], start=1):
        change()
        # 30 s: well inside the 60 s a poll would take
        wait_for(lambda: len(lines_of(runs)) >= count, 30, f"run {count} of the changed job")
        assert len(lines_of(runs)) == count
