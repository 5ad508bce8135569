"""Fault injection from the outside: a real Pilot (PID 1 of its own PID
namespace) against a real Consul agent that is stopped, killed or
restarted, and Pilot itself flooded with signals and reloads. The promise
under test: faults never crash Pilot, never lose a job or a registration,
and Consul being down never stops a job."""
import datetime
import os
import signal
import socket
import time

import pytest

from tests.consul_agent import registered
from tests.integration.pilot_proc import config_text
from tests.support import alive, wait_for

pytestmark = pytest.mark.timeout(120)
HOSTNAME = socket.gethostname()  # unshare --pid keeps the host's UTS namespace


def stamps(path):
    """Wall-clock times (seconds) a job wrote, one per line."""
    if not path.exists():
        return []
    return [float(x) for x in path.read_text().split()]


def log_time(line):
    """The wall-clock time of a Pilot log line (default format, UTC)."""
    text = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(text).replace(
        tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture
def stopped_agent():
    """SIGSTOP/SIGCONT an agent; a stopped agent is resumed after the test."""
    stopped = []

    def stop(agent):
        os.kill(agent.proc.pid, signal.SIGSTOP)
        stopped.append(agent)
    yield stop
    for agent in stopped:
        if agent.proc is not None:
            os.kill(agent.proc.pid, signal.SIGCONT)


def test_hung_agent_does_not_hold_up_job_restarts(tmp_path, consul_agent, pilot, stopped_agent):
    """While the agent is stopped (every Consul call waits for its timeout),
    the advertised job keeps being restarted: its heartbeat does not block
    the job's event loop. Afterwards the service is still registered."""
    runs, checks = tmp_path / "runs", tmp_path / "checks"
    app = {"name": "app", "port": 8000, "restarts": "unlimited",
           "exec": ["sh", "-c", f"date +%s.%N >> {runs}; sleep 0.2"],
           "health": {"exec": ["sh", "-c", f"date +%s.%N >> {checks}"],
                      "interval": 1, "ttl": 10}}
    p = pilot(config_text([app], consul=consul_agent.http_addr))
    p.wait_log("Service registered: app")
    stopped_agent(consul_agent)
    checks_before = len(stamps(checks))
    # The first check after the stop passes and sends a heartbeat that hangs.
    wait_for(lambda: len(stamps(checks)) > checks_before, what="a health check after the stop")
    hung_from = stamps(checks)[checks_before]
    warned = p.wait_log(r"service update TTL failed: .* did not answer within \d+s")[0]
    # Runs started while the heartbeat hung: a job loop blocked by the
    # heartbeat would start none at all.
    during = [t for t in stamps(runs) if hung_from < t < log_time(warned)]
    assert len(during) >= 2, f"job ran {len(during)} times while a heartbeat was hung"
    os.kill(consul_agent.proc.pid, signal.SIGCONT)
    p.wait_log(r"consul: .* recovered")
    wait_for(lambda: registered(consul_agent, f"app-{HOSTNAME}"), what="service still registered")
    assert len(p.lines(r"service update TTL failed")) == 1, p.log
    assert p.cli("-ping").returncode == 0


def test_sigterm_with_a_hung_agent_stops_the_job_before_deregistering(
        tmp_path, consul_agent, pilot, stopped_agent):
    """SIGTERM while the agent is stopped: the job's process gets its signal
    at once, not after the deregistration has waited for its timeout; Pilot
    still exits 0 and, once the agent answers again, nothing is left behind."""
    termed = tmp_path / "termed"
    app = {"name": "app", "port": 8000,
           "exec": ["sh", "-c", f"trap 'date +%s.%N > {termed}; exit 0' TERM; "
                                "while true; do sleep 0.05; done"],
           "health": {"exec": "true", "interval": 1, "ttl": 10}}
    p = pilot(config_text([app], consul=consul_agent.http_addr, logging={"level": "DEBUG"}))
    p.wait_log("Service registered: app")
    stopped_agent(consul_agent)
    p.signal(signal.SIGTERM)
    failed = p.wait_log("deregistering failed")[0]
    wait_for(termed.exists, what="the job to get SIGTERM")
    assert stamps(termed)[0] < log_time(failed), "SIGTERM waited for the deregistration"
    assert p.wait() == 0


def test_sigterm_during_a_reload_leaves_no_job_of_the_new_config_running(tmp_path, pilot):
    """SIGTERM while a reload waits for a changed job to stop: Pilot exits
    and no process of the new config outlives it (under tini or
    `docker --init` Pilot is not PID 1, so an orphan would keep running)."""
    new_pids = tmp_path / "new-pids"

    def text(version):
        # The old job outlives the top-level stopTimeout (5 s): the reload is
        # still waiting for it when SIGTERM comes, however slow the machine.
        slow = {"name": "slow", "exec": [
            "sh", "-c", f"echo $$ >> {tmp_path}/{version}-pids; "
                        "trap 'sleep 60; exit 0' TERM; while true; do sleep 0.1; done"]}
        return config_text([slow])
    p = pilot(text("old"), pid1=False)
    wait_for((tmp_path / "old-pids").exists, what="the first job to run")
    p.rewrite_config(text("new"))
    assert p.cli("-reload").returncode == 0
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    left = [pid for pid in stamps(new_pids) if alive(int(pid))]
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    assert left == [], "a job started by the reload outlived Pilot"


def test_reload_during_maintenance_keeps_a_changed_service_out(tmp_path, consul_agent, pilot):
    """Maintenance, then a reload that changes the service's port: the
    restarted job stays out of Consul while Pilot is in maintenance, and
    comes back on the new port (the old registration gone) when it ends."""
    ticks = tmp_path / "ticks"

    def text(port):
        app = {"name": "app", "port": port, "exec": ["sleep", "1000"],
               "health": {"exec": "true", "interval": 1, "ttl": 10}}
        clock = {"name": "clock", "when": {"interval": "1s"},
                 "exec": ["sh", "-c", f"date +%s.%N >> {ticks}"]}
        return config_text([app, clock], consul=consul_agent.http_addr)
    service_id = f"app-{HOSTNAME}"
    p = pilot(text(8000))
    p.wait_log("Service registered: app")
    assert p.cli("-maintenance", "enable").returncode == 0
    wait_for(lambda: not registered(consul_agent, service_id), what="deregistration")
    p.rewrite_config(text(9000))
    assert p.cli("-reload").returncode == 0
    p.wait_log(r"app exited")  # the old job stopped, the new one starts
    # Three ticks of a 1 s periodic job: the new job's 1 s check would have
    # registered it by then, were it not held in maintenance.
    seen = len(stamps(ticks))
    wait_for(lambda: len(stamps(ticks)) >= seen + 3, what="three more ticks")
    registrations = len(p.lines("Service registered"))
    assert not registered(consul_agent, service_id), p.log[-2000:]
    assert p.cli("-maintenance", "disable").returncode == 0
    wait_for(lambda: (registered(consul_agent, service_id) or {}).get("Port") == 9000,
             what="the service back on its new port")
    p.wait_log("Service registered", count=registrations + 1)



def test_sigterm_after_a_sighup_flood_stops_pilot_promptly(tmp_path, pilot):
    """Hundreds of SIGHUPs (each queues one run of a SIGHUP job, run one
    after another) then SIGTERM: Pilot still stops and exits 0 rather
    than working through the queued runs first."""
    runs = tmp_path / "runs"
    hup = {"name": "hup", "exec": ["sh", "-c", f"echo x >> {runs}; sleep 0.2"],
           "when": {"source": "SIGHUP"}}
    app = {"name": "app", "exec": ["sleep", "1000"]}
    p = pilot(config_text([app, hup]))
    p.wait_log("control: serving")  # signal handlers are in place
    p.signal(signal.SIGHUP)
    wait_for(runs.exists, what="the SIGHUP job to run")
    for _ in range(400):
        p.signal(signal.SIGHUP)
        time.sleep(0.003)  # separate deliveries: the kernel merges pending ones
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert p.cli("-ping").returncode != 0
