"""Health checks users can trust, with real processes and Pilot as PID 1:
HTTP and TCP probes, thresholds, start period, liveness restart, Consul
critical at once, and one health answer for the container."""
import json
import os

import pytest

from tests.consul_agent import agent_get
from tests.integration.pilot_proc import children, control_request
from tests.support import DEADLINE, free_port, http_request, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")


def health(p):
    code, body = control_request(p.socket, "GET", "/v3/health")
    return code, json.loads(body)


def web_job(port, www, **health):
    extra = "".join(f", {k}: {json.dumps(v)}" for k, v in health.items())
    return (f'{{name: "web", exec: ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1",'
            f' "--directory", "{www}"], restarts: "unlimited",'
            f' health: {{http: "http://127.0.0.1:{port}/healthz", interval: 1, ttl: 30, timeout: "2s"{extra}}}}}')


def test_http_check_passes_then_fails_on_404_and_says_why(pilot, tmp_path):
    """An HTTP check on a real server: 200 → healthy; the path gone → 404 →
    unhealthy, with `HTTP 404` as the check's output in -status and
    /v3/health, and `-health` exits 1 naming the job."""
    www, port = tmp_path / "www", free_port()
    www.mkdir()
    (www / "healthz").write_text("ok")
    p = pilot(f"{{jobs: [{web_job(port, www)}]}}")
    wait_for(lambda: p.job("web")["status"] == "healthy", what="web healthy")
    code, doc = health(p)
    assert code == 200 and doc["healthy"] is True
    r = p.cli("-health")
    assert (r.returncode, r.stdout) == (0, "healthy\n")
    (www / "healthz").unlink()
    wait_for(lambda: p.job("web")["status"] == "unhealthy", what="web unhealthy")
    assert p.job("web")["check_output"] == "HTTP 404"
    code, doc = health(p)
    assert code == 503 and doc["jobs"]["web"]["output"] == "HTTP 404"
    r = p.cli("-health")
    assert r.returncode == 1 and r.stdout.split() == ["web", "running", "HTTP", "404"]


def test_tcp_check_fails_when_the_listener_goes_away(pilot, tmp_path):
    """A TCP check passes while something listens and fails once it stops."""
    port = free_port()
    p = pilot(f"""{{jobs: [{{name: "keep", exec: "sleep 1000"}},
      {{name: "db", exec: ["python3", "-c", "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(1000)"],
       health: {{tcp: "127.0.0.1:{port}", interval: 1, ttl: 30}}}}]}}""")
    wait_for(lambda: p.job("db")["status"] == "healthy", what="db healthy")
    assert p.cli("-stop", "db").returncode == 0
    assert p.cli("-start", "db").returncode == 0  # a new listener
    wait_for(lambda: p.job("db")["status"] == "healthy", what="db healthy again")
    for pid in children(p.pid):
        if b"socket" in open(f"/proc/{pid}/cmdline", "rb").read():
            os.kill(pid, 9)  # the listener dies; restarts: none, so nothing listens
    wait_for(lambda: p.job("db")["state"] == "complete", what="db gone")
    code, doc = health(p)
    assert code == 503 and "failed for good" in doc["jobs"]["db"]["output"]


@pytest.mark.parametrize("threshold,turns", [(2, False), (1, True)])
def test_a_flapping_check_turns_unhealthy_only_with_threshold_one(pilot, tmp_path, threshold, turns):
    """An exec check that alternates pass and fail never reaches 2 failures
    in a row; with failureThreshold 1 the first failure does. (Its timeout is
    long: on a busy machine a check cut at the 1 s interval would not flip.)"""
    flip, seen = tmp_path / "flip", tmp_path / "unhealthy"
    p = pilot(f"""{{jobs: [
      {{name: "app", exec: "sleep 1000",
        health: {{exec: ["sh", "-c", "if [ -e {flip} ]; then rm {flip}; exit 1; else touch {flip}; echo pass; fi"],
                 interval: 1, ttl: 30, timeout: "{DEADLINE:g}s", failureThreshold: {threshold}}}}},
      {{name: "alarm", exec: ["sh", "-c", "echo x >> {seen}"], when: {{source: "app", each: "unhealthy"}}}}]}}""")
    if turns:
        wait_for(seen.exists, 40, "the unhealthy event")
    else:  # three failures among six checks, never two in a row
        wait_for(lambda: len(p.lines(r"check\.app exited with error")) >= 3, 40, "three failed checks")
        assert not seen.exists() and p.job("app")["status"] != "unhealthy"


def test_a_slow_starter_is_not_unhealthy_during_its_start_period(pilot, tmp_path, consul_agent):
    """startPeriod: an app ready only after a while publishes no `unhealthy`
    and is never critical in Consul meanwhile; then it turns healthy. (The
    check's timeout is long so that a busy machine cannot fail it.)"""
    www, port, seen = tmp_path / "www", free_port(), tmp_path / "unhealthy"
    www.mkdir()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [
      {{name: "web", exec: ["sh", "-c", "sleep 3; exec python3 -m http.server {port} --bind 127.0.0.1 --directory {www}"],
        port: {port}, interfaces: ["static:127.0.0.1"], initial_status: "warning",
        health: {{http: "http://127.0.0.1:{port}/", interval: 1, ttl: 30, timeout: "{DEADLINE:g}s", startPeriod: "60s"}}}},
      {{name: "alarm", exec: ["sh", "-c", "echo x >> {seen}"], when: {{source: "web", each: "unhealthy"}}}}]}}""")
    statuses = set()

    def consul_status():
        checks = agent_get(consul_agent, "/v1/health/checks/web")
        statuses.update(c["Status"] for c in checks)
        return checks and checks[0]["Status"] == "passing"
    wait_for(consul_status, 40, "web passing in Consul")
    assert "critical" not in statuses and not seen.exists()
    assert p.job("web")["status"] == "healthy"


def test_on_unhealthy_restart_replaces_a_hung_process(pilot, tmp_path):
    """A process that stops answering (SIGSTOP: alive but hung) is replaced:
    a new pid, the old one gone, one log line saying why, a restart counted.
    (A start period spares the new process while it starts, however slowly.)"""
    www, port = tmp_path / "www", free_port()
    www.mkdir()
    (www / "healthz").write_text("ok")
    web = web_job(port, www, failureThreshold=2, onUnhealthy="restart", startPeriod=f"{DEADLINE:g}s")
    p = pilot(f"""{{stopTimeout: 2, jobs: [{web}]}}""")
    wait_for(lambda: p.job("web")["status"] == "healthy", what="web healthy")
    old = wait_for(lambda: children(p.pid), what="web's process")[0]
    os.kill(old, 19)  # SIGSTOP: the server hangs
    p.wait_log(r"web restarted: unhealthy after 2 failed checks \(timed out after 2s\)", timeout=40)
    wait_for(lambda: p.job("web")["status"] == "healthy", 40, "the new web healthy")
    assert old not in children(p.pid)
    assert p.job("web")["restarts"] == 1


def test_consul_check_is_critical_at_once_with_the_output_as_note(pilot, tmp_path, consul_agent):
    """A failing check sets the TTL check critical at once (the TTL is 10
    minutes: waiting for it to run out would take that long), with the
    check's output; passing again sends a pass at once."""
    www, port = tmp_path / "www", free_port()
    www.mkdir()
    (www / "healthz").write_text("ok")
    web = web_job(port, www).replace('health:', f'port: {port}, interfaces: ["static:127.0.0.1"], health:')
    web = web.replace("ttl: 30", "ttl: 600")
    p = pilot(f'{{consul: "{consul_agent.http_addr}", jobs: [{web}]}}')

    def check():
        checks = agent_get(consul_agent, "/v1/health/checks/web")
        return checks[0] if checks else None
    wait_for(lambda: (check() or {}).get("Status") == "passing", 40, "passing in Consul")
    (www / "healthz").unlink()
    wait_for(lambda: (check() or {}).get("Status") == "critical", 40, "critical in Consul")
    assert check()["Output"] == "HTTP 404"
    (www / "healthz").write_text("ok")
    wait_for(lambda: (check() or {}).get("Status") == "passing", 40, "passing again")


def test_health_on_the_telemetry_port(pilot, tmp_path, consul_agent):
    """With telemetry, `GET /health` on its port answers as /v3/health does
    (Kubernetes httpGet probes cannot reach a unix socket)."""
    www, port, tport = tmp_path / "www", free_port(), free_port()
    www.mkdir()
    (www / "healthz").write_text("ok")
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{web_job(port, www)}],
      telemetry: {{port: {tport}, interfaces: ["static:127.0.0.1"]}}}}""")
    wait_for(lambda: p.job("web")["status"] == "healthy", what="web healthy")

    def get():
        answer = http_request(f"http://127.0.0.1:{tport}/health")
        return answer and (answer[0], json.loads(answer[2]))
    assert wait_for(get, what="telemetry /health")[0] == 200
    (www / "healthz").unlink()
    wait_for(lambda: get()[0] == 503, what="503 from /health")
    assert get()[1]["jobs"]["web"]["healthy"] is False
