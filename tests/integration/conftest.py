"""Fixtures that run a real Consul agent (see tests/consul_agent.py).

An agent in -dev mode is ready in a fraction of a second, so each test gets
its own: no state leaks between tests.
"""
import pytest

from tests.consul_agent import ConsulAgent, ConsulUnavailable


@pytest.fixture
def consul_agent():
    """A running, empty Consul agent with a leader; killed after the test."""
    try:
        agent = ConsulAgent().start()
    except ConsulUnavailable as e:
        pytest.fail(str(e))
    yield agent
    agent.stop()


@pytest.fixture
def consul_agent_factory():
    """Start agents on demand (`factory(http_port=None, extra_args=())`).

    All are killed afterwards.

    Stopping one agent and starting another on the same HTTP port emulates an
    agent restart that forgot every service and check.
    """
    agents = []

    def start(http_port=None, extra_args=()):
        agent = ConsulAgent(http_port=http_port, extra_args=extra_args)
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def pilot(tmp_path):
    """Start Pilot on a config (`pilot(text, **kw)`, see pilot_proc.Pilot);
    every instance is stopped at teardown."""
    from tests.integration.pilot_proc import Pilot
    started = []

    def start(config, **kw):
        p = Pilot(tmp_path, config, **kw).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
