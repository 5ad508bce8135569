"""Reload, black-box (docs/behaviour.md §16.3 as amended by §0 and the reload issue):
`pilot -reload` re-reads and re-renders the config; an invalid new config is
refused with the error returned to the caller and the running config stays;
unchanged jobs keep running untouched (same pid, same registration); added
jobs start, removed jobs stop, changed jobs restart; many reloads in a row
never deadlock.
"""
import json
import os
import signal
import socket
import threading
import urllib.request

import pytest

from tests.integration.pilot_proc import answers_ping, control_request, output_lines, run_cli, sleeper
from tests.support import DEADLINE, alive, wait_for

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]
HOSTNAME = socket.gethostname()


def test_reload_keeps_unchanged_restarts_changed_starts_added_stops_removed(pilot):
    """Unchanged job: same pid. Changed job: new process. Added: started.
    Removed: its process stopped. Pilot keeps running."""
    p = pilot(f"{{jobs: [{sleeper('same')}, {sleeper('changed')}, {sleeper('removed')}]}}")
    before = wait_for(lambda: p.running_pids(["same", "changed", "removed"]), what="three jobs running")
    hosts = {n: p.host_pid(pid) for n, pid in before.items()}
    assert all(hosts.values()), hosts
    p.rewrite_config(f"{{jobs: [{sleeper('same')}, {sleeper('changed', 'v2')}, {sleeper('added')}]}}")
    r = p.cli("-reload")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    after = wait_for(lambda: p.running_pids(["same", "changed", "added"]), what="jobs after reload")
    assert after["same"] == before["same"]
    assert after["changed"] != before["changed"]
    assert not alive(hosts["changed"])
    wait_for(lambda: not alive(hosts["removed"]), what="the removed job's process gone")
    assert "removed" not in p.jobs()
    p.wait_log("changed-v2-up")
    p.wait_log("added-v1-up")
    assert len(p.lines("same-v1-up")) == 1
    assert p.cli("-ping").stdout == "ok\n"


def test_invalid_config_is_refused_and_the_old_jobs_keep_running(pilot):
    """An invalid new config: -reload exits 1 with the error (naming the
    problem) on one line; Pilot keeps the old config and its processes."""
    p = pilot(f"{{jobs: [{sleeper('web')}]}}")
    before = wait_for(lambda: p.running_pids(["web"]), what="web running")
    p.rewrite_config('{jobs: [{name: "web", exec: "true", health: {exec: "true", interval: 0, ttl: 5}}]}')
    r = p.cli("-reload")
    # the CLI validates the file itself first (docs/behaviour.md §2.3): same refusal
    assert r.returncode == 1
    out = output_lines(r)
    assert len(out) == 1 and "job[web].health.interval must be > 0" in out[0], out
    assert p.running_pids(["web"]) == before
    assert p.ping()


def test_invalid_config_refused_by_the_server_is_returned_to_the_caller(pilot):
    """POST /v3/reload when the file became invalid: a 4xx/5xx answer carrying
    the error; the running jobs and the socket stay."""
    p = pilot(f"{{jobs: [{sleeper('web')}]}}")
    before = wait_for(lambda: p.running_pids(["web"]), what="web running")
    p.rewrite_config('{jobs: [{name: "web", exec: "x", restart: "never"}]}')
    code, body = control_request(p.socket, "POST", "/v3/reload")
    assert 400 <= code < 600
    assert "invalid keys: restart" in body.decode()
    assert p.running_pids(["web"]) == before
    assert p.lines("error initializing config: .*invalid keys: restart")
    assert p.proc.poll() is None


def test_a_client_that_sees_a_different_config_still_gets_the_servers_error(pilot, tmp_path):
    """The CLI validates its own copy; the server re-reads the file it was
    started with. If only the server's file is broken, -reload still exits 1
    with the server's error."""
    p = pilot(f"{{jobs: [{sleeper('web')}]}}")
    before = wait_for(lambda: p.running_pids(["web"]), what="web running")
    good = tmp_path / "client.json5"
    good.write_text(f'{{control: {{socket: "{p.socket}"}}}}')
    p.rewrite_config('{jobs: [{name: "web", exec: "x", restart: "never"}]}')
    r = run_cli("-config", str(good), "-reload")
    assert r.returncode == 1
    out = output_lines(r)
    assert len(out) == 1 and "invalid keys: restart" in out[0], out
    assert p.running_pids(["web"]) == before


def test_twenty_reloads_in_a_row_do_not_deadlock(pilot):
    """20 -reload calls back to back, alternating a changed job: afterwards
    -ping answers and every job runs, the unchanged one on its first pid."""
    p = pilot(f"{{jobs: [{sleeper('steady')}, {sleeper('flip', 'a')}]}}")
    first = wait_for(lambda: p.running_pids(["steady", "flip"]), what="jobs running")
    for i in range(20):
        p.rewrite_config(f"{{jobs: [{sleeper('steady')}, {sleeper('flip', 'ab'[i % 2])}]}}")
        r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(p.cli("-reload")),
                     what=f"reload {i} accepted")
        assert r.stderr == ""
    assert wait_for(lambda: p.cli("-ping").stdout == "ok\n", what="-ping after 20 reloads")
    now = wait_for(lambda: p.running_pids(["steady", "flip"]), what="jobs running after 20 reloads")
    assert now["steady"] == first["steady"]
    assert alive(p.host_pid(now["flip"]))


def test_concurrent_reloads_do_not_deadlock(pilot):
    """20 reload requests at once on the control socket: all are answered,
    then Pilot still answers and runs its jobs."""
    p = pilot(f"{{jobs: [{sleeper('steady')}, {sleeper('flip', 'a')}]}}")
    first = wait_for(lambda: p.running_pids(["steady", "flip"]), what="jobs running")
    p.rewrite_config(f"{{jobs: [{sleeper('steady')}, {sleeper('flip', 'b')}]}}")
    codes, errors = [], []

    def hit():
        try:
            codes.append(control_request(p.socket, "POST", "/v3/reload")[0])
        except OSError as exc:  # the socket may be briefly away (3.8 behaviour)
            errors.append(exc)
    threads = [threading.Thread(target=hit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads), "a reload request hung"
    assert codes and all(c == 200 for c in codes), codes
    assert wait_for(lambda: p.cli("-ping").stdout == "ok\n", what="-ping after concurrent reloads")
    now = wait_for(lambda: p.running_pids(["steady", "flip"]), what="jobs after concurrent reloads")
    assert now["steady"] == first["steady"]
    p.wait_log("flip-b-up")


def test_reload_renders_the_template_with_putenv_values(pilot):
    """-putenv then -reload: the template is re-rendered with the new value;
    the job whose rendered exec changed restarts with it."""
    p = pilot("""{jobs: [
      {name: "greeter", exec: ["sh", "-c", 'echo greeting={{ .GREETING | default "none" }}; exec sleep 1000']},
      {name: "steady", exec: ["sh", "-c", "echo steady-up; exec sleep 1000"]}]}""")
    p.wait_log("greeting=none")
    before = wait_for(lambda: p.running_pids(["greeter", "steady"]), what="jobs running")
    assert p.cli("-putenv", "GREETING=hello").returncode == 0
    assert p.cli("-reload").returncode == 0
    p.wait_log("greeting=hello")
    after = wait_for(lambda: p.running_pids(["greeter", "steady"]), what="jobs after reload")
    assert after["steady"] == before["steady"]
    assert after["greeter"] != before["greeter"]


def test_reload_publishes_startup_to_new_jobs_only(pilot, tmp_path):
    """A job added by reload starts on startup{global}; an unchanged one-shot
    job that already completed is not run again."""
    out = tmp_path / "runs"
    once = f'{{name: "setup", exec: ["sh", "-c", "echo x >> {out}"]}}'
    p = pilot(f"{{jobs: [{sleeper('keep')}, {once}]}}")
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 1, what="setup ran")
    p.rewrite_config(f"{{jobs: [{sleeper('keep')}, {once}, {sleeper('new')}]}}")
    assert p.cli("-reload").returncode == 0
    p.wait_log("new-v1-up")
    assert len(out.read_text().splitlines()) == 1


def test_reload_keeps_an_unchanged_service_registered(pilot, consul_agent):
    """An unchanged advertised job keeps its Consul registration across a
    reload (never deregistered: same CreateIndex in the catalog)."""
    app = ('{name: "app", exec: "sleep 1000", port: 8080, interfaces: ["static:127.0.0.1"],'
           ' health: {exec: "true", interval: 1, ttl: 5}}')
    text = f'{{consul: "{consul_agent.http_addr}", jobs: [{app}, SECOND]}}'
    p = pilot(text.replace("SECOND", sleeper("other")))

    def catalog():
        with urllib.request.urlopen(consul_agent.url + "/v1/catalog/service/app", timeout=DEADLINE) as r:
            entries = json.load(r)
        return entries[0] if entries else None
    entry = wait_for(catalog, what="app in the catalog")
    pid = wait_for(lambda: p.running_pids(["app"]), what="app running")["app"]
    seen_gone = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if catalog() is None:
                seen_gone.append(True)
            stop.wait(0.02)
    t = threading.Thread(target=watch)
    t.start()
    try:
        p.rewrite_config(text.replace("SECOND", sleeper("other", "v2")))
        assert p.cli("-reload").returncode == 0
        p.wait_log("other-v2-up")
        wait_for(lambda: p.running_pids(["app", "other"]), what="jobs after reload")
    finally:
        stop.set()
        t.join()
    assert not seen_gone, "the unchanged service was deregistered during the reload"
    assert catalog()["CreateIndex"] == entry["CreateIndex"]
    assert p.running_pids(["app"])["app"] == pid


def test_reload_changed_service_is_reregistered(pilot, consul_agent):
    """A changed advertised job restarts and is registered with its new definition."""
    def text(tag):
        return (f'{{consul: "{consul_agent.http_addr}", jobs: [{{name: "app", exec: "sleep 1000", '
                f'port: 8080, tags: ["{tag}"], interfaces: ["static:127.0.0.1"], '
                f'health: {{exec: "true", interval: 1, ttl: 5}}}}]}}')

    def tags():
        with urllib.request.urlopen(consul_agent.url + "/v1/agent/services", timeout=DEADLINE) as r:
            svc = json.load(r).get(f"app-{HOSTNAME}")
        return svc and svc["Tags"]
    p = pilot(text("old"))
    wait_for(lambda: tags() == ["old"], what="app registered with tag old")
    p.rewrite_config(text("new"))
    assert p.cli("-reload").returncode == 0
    wait_for(lambda: tags() == ["new"], what="app registered with tag new")


def test_sigterm_after_reload_exits_0(pilot):
    """After a reload the usual shutdown still works: SIGTERM → exit 0, no process left."""
    p = pilot(f"{{jobs: [{sleeper('a')}]}}")
    wait_for(lambda: p.running_pids(["a"]), what="a running")
    p.rewrite_config(f"{{jobs: [{sleeper('a', 'v2')}, {sleeper('b')}]}}")
    assert p.cli("-reload").returncode == 0
    pids = wait_for(lambda: p.running_pids(["a", "b"]), what="jobs after reload")
    pids = {n: p.host_pid(x) for n, x in pids.items()}
    assert all(pids.values()), pids
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert not any(alive(x) for x in pids.values())


def test_reload_applies_new_logging_settings(pilot):
    """A reload re-applies `logging`: after switching to json, new lines are JSON."""
    p = pilot(f"{{jobs: [{sleeper('steady')}]}}")
    wait_for(lambda: p.running_pids(["steady"]), what="steady running")
    p.rewrite_config(f'{{logging: {{format: "json"}}, jobs: [{sleeper("steady")}, {sleeper("fresh")}]}}')
    assert p.cli("-reload").returncode == 0
    line = p.wait_log("fresh-v1-up")[0]
    doc = json.loads(line)
    assert doc["msg"] == "fresh-v1-up" and doc["job"] == "fresh"


def test_reload_moves_the_control_socket(pilot, tmp_path):
    """A new `control.socket` in the reloaded config: the server answers on
    the new path and the old socket file is gone."""
    p = pilot(f"{{jobs: [{sleeper('steady')}]}}")
    wait_for(lambda: p.running_pids(["steady"]), what="steady running")
    new_sock = tmp_path / "moved.sock"
    p.config.write_text(f'{{control: {{socket: "{new_sock}"}}, jobs: [{sleeper("steady")}]}}')
    code, _ = control_request(p.socket, "POST", "/v3/reload")
    assert code == 200
    wait_for(lambda: answers_ping(new_sock), what="the new socket answering")
    wait_for(lambda: not p.socket.exists(), what="the old socket removed")
    assert p.cli("-ping").stdout == "ok\n"


def test_reload_reruns_a_changed_one_shot_job(pilot, tmp_path):
    """A completed one-shot job whose definition changed runs again (with the
    new args) after the reload."""
    out = tmp_path / "runs"

    def once(word):
        return f'{{name: "setup", exec: ["sh", "-c", "echo {word} >> {out}"]}}'
    p = pilot(f"{{jobs: [{sleeper('keep')}, {once('first')}]}}")
    wait_for(lambda: out.exists() and out.read_text() == "first\n", what="setup ran once")
    p.rewrite_config(f"{{jobs: [{sleeper('keep')}, {once('second')}]}}")
    assert p.cli("-reload").returncode == 0
    wait_for(lambda: out.read_text() == "first\nsecond\n", what="setup ran again with the new args")


def test_reload_of_an_unreadable_config_is_refused(pilot):
    """The config file vanished: the reload request gets the read error;
    Pilot keeps running."""
    p = pilot(f"{{jobs: [{sleeper('web')}]}}")
    before = wait_for(lambda: p.running_pids(["web"]), what="web running")
    p.config.unlink()
    code, body = control_request(p.socket, "POST", "/v3/reload")
    assert 400 <= code < 600
    assert "could not read config file" in body.decode()
    assert p.running_pids(["web"]) == before and p.ping()


def test_reload_renders_ip_of_the_previous_load(pilot, consul_agent):
    """docs/behaviour.md §4.1: on reload the template sees CONTAINERPILOT_<JOB>_IP of the
    previous load (absent on the first load)."""
    app = ('{name: "app", exec: "sleep 1000", port: 8080, interfaces: ["static:127.0.0.9"],'
           ' health: {exec: "true", interval: 1, ttl: 5}}')
    probe = ('{name: "probe", exec: ["sh", "-c", "echo ip=[{{ .CONTAINERPILOT_APP_IP }}]; exec sleep 1000"]}')
    p = pilot(f'{{consul: "{consul_agent.http_addr}", jobs: [{app}, {probe}]}}')
    p.wait_log(r"ip=\[\]")
    assert p.cli("-reload").returncode == 0
    p.wait_log(r"ip=\[127\.0\.0\.9\]")


def test_hooks_of_a_changed_job_run_on_reload_and_again_at_shutdown(pilot, tmp_path):
    """A changed job's pre-stop and post-stop hooks run when reload stops it
    (as a 3.8 reload, which is a shutdown) and come back armed for the new
    job: SIGTERM afterwards runs them again and Pilot exits 0 — it does not
    wait for ever on a hook that already completed."""
    out = tmp_path / "hooks"

    def text(tag):
        return f"""{{stopTimeout: 1, jobs: [{sleeper('app', tag)},
          {{name: "prestop", exec: ["sh", "-c", "echo pre >> {out}"], when: {{source: "app", once: "stopping"}}}},
          {{name: "poststop", exec: ["sh", "-c", "echo post >> {out}"], when: {{source: "app", once: "stopped"}}}}]}}"""
    p = pilot(text("v1"))
    p.wait_log("app-v1-up")
    p.rewrite_config(text("v2"))
    assert p.cli("-reload").returncode == 0
    p.wait_log("app-v2-up")
    wait_for(lambda: out.exists() and out.read_text() == "pre\npost\n", what="hooks ran on reload")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert out.read_text() == "pre\npost\npre\npost\n"
