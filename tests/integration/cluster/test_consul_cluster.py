"""Past one machine: two Pilots, each in its own network namespace with its
own client agent, on a real 3-server Consul cluster (see conftest.py)."""
import json
import time

import pytest

from tests.support import count_lines, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]
# Seconds. Short, so "2 x ttl" of observation stays short, yet 5 s more than
# the 1 s heartbeat interval: a busy machine may delay a heartbeat that long.
TTL = 6
PORT = 8000


def pilot_config(tmp_path, me, other):
    """`me` advertises its eth0 address; a job runs each time the watch of `other` changes."""
    return json.dumps({
        "consul": "127.0.0.1:8500",
        "control": {"socket": str(tmp_path / "pilot.sock")},
        "jobs": [
            {"name": me, "exec": ["sleep", "1000"], "port": PORT, "interfaces": ["eth0"],
             "health": {"exec": "true", "interval": 1, "ttl": TTL}},
            {"name": f"on-{other}", "exec": ["sh", "-c", f"echo run >> {tmp_path / 'runs'}"],
             "when": {"source": f"watch.{other}", "each": "changed"}},
        ],
        "watches": [{"name": other, "interval": 5}],
    })


def runs(tmp_path):
    return count_lines(tmp_path / "runs")


def passing(node, service):
    """(address, port) of each passing instance of `service`, as `node`'s
    agent answers; None when the agent gives no answer (e.g. a 500 while a
    server leaves: that is the test's query failing, not Pilot)."""
    found = node.get(f"/v1/health/service/{service}?passing=1")
    if found is None:
        return None
    return sorted((e["Service"]["Address"], e["Service"]["Port"]) for e in found)


def start_pair(cluster, tmp_path):
    """Pilot `alpha` on c1 watching `beta`, and `beta` on c2 watching `alpha`:
    ((pilot, its dir), (pilot, its dir))."""
    pair = []
    for me, other, node in (("alpha", "beta", "c1"), ("beta", "alpha", "c2")):
        home = tmp_path / me
        home.mkdir()
        pair.append((cluster.pilot(node, home, pilot_config(home, me, other)), home))
    return pair


def test_pilots_see_each_other_and_outlive_a_server(cluster, tmp_path):
    """Each Pilot's watch sees the other's service at the other namespace's IP;
    losing one server changes nothing: services stay registered and passing
    for 2 x ttl, no watch fires again, no Consul warning is logged."""
    c1, c2 = cluster.nodes["c1"], cluster.nodes["c2"]
    (alpha, a_dir), (beta, b_dir) = start_pair(cluster, tmp_path)

    wait_for(lambda: runs(a_dir) >= 1,
             what=lambda: f"alpha's watch of beta to fire; log:\n{alpha.log[-2000:]}")
    wait_for(lambda: runs(b_dir) >= 1,
             what=lambda: f"beta's watch of alpha to fire; log:\n{beta.log[-2000:]}")
    assert passing(c1, "beta") == [(c2.ip, PORT)]
    assert passing(c2, "alpha") == [(c1.ip, PORT)]

    before = (runs(a_dir), runs(b_dir))
    warned = (len(alpha.lines("fail|unreachable")), len(beta.lines("fail|unreachable")))
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes.values() if n.server and n.ip != leader)
    victim.stop_agent()

    deadline = time.monotonic() + 2 * TTL
    answers = 0
    while time.monotonic() < deadline:  # observe for a while: nothing may change
        for node, name, want in ((c1, "beta", [(c2.ip, PORT)]), (c2, "alpha", [(c1.ip, PORT)])):
            seen = passing(node, name)
            if seen is not None:
                answers += 1
                assert seen == want
        time.sleep(0.25)
    assert answers >= 8, "the agents answered too rarely to tell"
    assert cluster.leader(), "the two remaining servers keep a leader"
    assert (runs(a_dir), runs(b_dir)) == before
    after = (len(alpha.lines("fail|unreachable")), len(beta.lines("fail|unreachable")))
    assert after == warned, alpha.lines("fail|unreachable") + beta.lines("fail|unreachable")


def test_watches_carry_on_after_the_leader_is_lost(cluster, tmp_path):
    """Losing the leader: for the seconds an election takes, watch queries may
    fail; then the services are still passing, and a change made after the
    election (beta leaves) reaches alpha's watch. Pilot says at most one
    warning per outage, and no job stops."""
    c1, c2 = cluster.nodes["c1"], cluster.nodes["c2"]
    (alpha, a_dir), (beta, b_dir) = start_pair(cluster, tmp_path)
    wait_for(lambda: runs(a_dir) >= 1,
             what=lambda: f"alpha's watch of beta to fire; log:\n{alpha.log[-2000:]}")
    wait_for(lambda: passing(c1, "beta") == [(c2.ip, PORT)], what="beta passing")

    leader = cluster.leader()
    cluster.server_named_by_ip(leader).stop_agent()
    wait_for(lambda: cluster.leader() not in ("", leader),
             what=lambda: f"a new leader; {cluster.log_tail()}", interval=0.2)
    wait_for(lambda: passing(c1, "beta") == [(c2.ip, PORT)], what="beta still passing")
    wait_for(lambda: passing(c2, "alpha") == [(c1.ip, PORT)], what="alpha still passing")

    seen = runs(a_dir)
    beta.stop()  # SIGTERM: beta deregisters on its way out
    wait_for(lambda: passing(c1, "beta") == [], what="beta to leave the catalog")
    wait_for(lambda: runs(a_dir) > seen,
             what=lambda: f"alpha's watch to see beta leave; log:\n{alpha.log[-2000:]}")
    outages = len(alpha.lines("unreachable|failed to query"))
    assert outages <= 1, alpha.lines("unreachable|failed to query|recovered")
    assert "alpha exited" not in alpha.log
