"""Resource leaks found by soaking Pilot (bench/soak.py), pinned down by
counts that must not grow with the number of operations.

A reload that changes the `consul` section replaces Pilot's Consul client;
the old client's keep-alive connections to the agent used to stay open, one
socket or more per such reload, for the container's life.
"""
import pytest

from tests.integration.pilot_proc import control_request
from tests.support import open_fds, wait_for

pytestmark = pytest.mark.timeout(300)


def consul_config(address):
    return ("{" + f'consul: "{address}", ' + """jobs: [
      {name: "web", exec: "sleep 100000", port: 8000, interfaces: ["static:127.0.0.1"],
       health: {exec: "true", interval: 1, ttl: 5}}]}""")


def reload_with(p, text):
    """Rewrite the config (keeping the test's control socket) and reload."""
    p.rewrite_config(text)
    code, body = control_request(p.socket, "POST", "/v3/reload")
    assert code == 200, body


def test_reloads_that_change_consul_keep_no_old_connections(pilot, consul_agent):
    """After 20 reloads alternating the consul address between two spellings
    of the same agent, Pilot holds no more file descriptors than after 2."""
    spellings = (consul_agent.http_addr, f"localhost:{consul_agent.http_port}")
    p = pilot(consul_config(spellings[0]), pid1=False)
    # The log, not the agent: a registration the agent has already taken may
    # still be in flight in Pilot when the reload abandons it, and then it is
    # never logged, which would leave the count below one short.
    p.wait_log("Service registered: web")

    def reload_times(n, start):
        for i in range(start, start + n):
            reload_with(p, consul_config(spellings[i % 2]))
            # each reload restarts `web` on the new client, which registers it again
            wait_for(lambda: p.log.count("Service registered: web") >= i + 1,
                     what=lambda: f"registration {i + 1}; log:\n{p.log[-3000:]}")

    reload_times(2, 1)
    after_two = open_fds(p.pid)
    reload_times(20, 3)
    wait_for(lambda: open_fds(p.pid) <= after_two,
             what=lambda: f"fds back to {after_two} (now {open_fds(p.pid)})")
