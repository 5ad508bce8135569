"""Templates, KV watches and the drain against a real Consul agent, with a
real Pilot as PID 1 of its own PID namespace; and pilot.consul_reads' reads
made in this process against the agent."""
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from pilot.config.model import ConsulConfig
from pilot.consul_reads import KEY, PREFIX, SERVICE, SERVICES, Follow, Query, read
from pilot.discovery import Consul
from tests.consul_agent import agent_get, agent_put, kv_delete, kv_put, register
from tests.integration.pilot_proc import run_cli
from tests.support import count_lines, wait_for

pytestmark = pytest.mark.timeout(120)
HOSTNAME = socket.gethostname()


def config(tmp_path, agent, **sections):
    doc = {"consul": agent.http_addr, "control": {"socket": str(tmp_path / "pilot.sock")}}
    doc.update(sections)
    return json.dumps(doc, indent=2)


def recorder(name, source, path):
    """A job that appends a line to `path` each time `source` says changed."""
    return {"name": name, "exec": ["sh", "-c", f"echo run >> {path}"],
            "when": {"source": source, "each": "changed"}}


def text_of(path):
    return path.read_text() if path.exists() else None


def renders(p, name):
    """How many times Pilot `p` has rendered template `name` (GET /v3/status)."""
    return next(t["renders"] for t in p.status()["templates"] if t["name"] == name)


# --- KV watches -------------------------------------------------------------------------


def test_kv_watch_fires_on_put_and_delete_under_its_prefix_only(tmp_path, consul_agent, pilot):
    """`watches: [{name, key: "config/app/", interval: 60}]`: adding, changing
    and removing a key under the prefix each run the `changed` job, long
    before the interval; a key outside the prefix does not."""
    runs = tmp_path / "runs"
    p = pilot(config(tmp_path, consul_agent,
                     watches=[{"name": "app-config", "key": "config/app/", "interval": 60}],
                     jobs=[recorder("on-change", "watch.app-config", runs)]))
    p.wait_log("control: serving at")
    steps = [lambda: kv_put(consul_agent, "config/app/a", "1"),
             lambda: kv_put(consul_agent, "config/app/a", "2"),
             lambda: kv_put(consul_agent, "config/app/sub/b", "x"),
             lambda: kv_delete(consul_agent, "config/app/a")]
    for n, step in enumerate(steps, start=1):
        kv_put(consul_agent, "config/application", str(n))  # beside the prefix: nothing
        kv_put(consul_agent, "other/key", str(n))
        step()
        wait_for(lambda: count_lines(runs) >= n, what=f"run {n} of the changed job")
    kv_put(consul_agent, "other/key", "last")
    kv_put(consul_agent, "config/app/sub/b", "y")  # a real change, to see that nothing came before it
    wait_for(lambda: count_lines(runs) >= 5, what="the last run")
    assert count_lines(runs) == 5


# --- templates ------------------------------------------------------------------------------

UPSTREAM = ('upstream web {\n{{range service "web"}}  server {{.Address}}:{{.Port}};\n{{end}}}\n'
            'max_conns {{key "config/max"}};\n')


def test_template_renders_a_service_and_a_key_and_follows_them(tmp_path, consul_agent, pilot):
    """The file holds the passing instances and the key; it is rewritten when
    either changes, and the `changed` job runs once per actual change of the
    file (a change Consul makes that does not change the output runs
    nothing). Blocking queries: the re-render comes long before any poll would."""
    kv_put(consul_agent, "config/max", "10")
    (tmp_path / "nginx.tmpl").write_text(UPSTREAM)
    out, runs = tmp_path / "nginx.conf", tmp_path / "runs"
    p = pilot(config(tmp_path, consul_agent,
                     templates=[{"name": "nginx", "source": str(tmp_path / "nginx.tmpl"),
                                 "destination": str(out), "perms": "0640"}],
                     jobs=[recorder("reload", "template.nginx", runs)]))
    wait_for(lambda: count_lines(runs) == 1, what="the first render's changed")
    assert out.read_text() == "upstream web {\n}\nmax_conns 10;\n"
    assert oct(os.stat(out).st_mode & 0o777) == "0o640"
    register(consul_agent, "web", "web-1", "10.0.0.1", 8080)
    wait_for(lambda: "10.0.0.1:8080" in out.read_text(), what="the instance in the file")
    wait_for(lambda: count_lines(runs) == 2, what="the second run")
    register(consul_agent, "web", "web-1", "10.0.0.1", 8080, tags=["new"])  # not rendered
    kv_put(consul_agent, "config/other", "1")
    kv_put(consul_agent, "config/max", "20")
    wait_for(lambda: "max_conns 20;" in out.read_text(), what="the new key value")
    wait_for(lambda: count_lines(runs) >= 3, what="the third run")
    agent_put(consul_agent, "/v1/agent/service/deregister/web-1")
    wait_for(lambda: "10.0.0.1" not in out.read_text(), what="the instance to leave the file")
    wait_for(lambda: count_lines(runs) >= 4, what="the fourth run")
    assert count_lines(runs) == 4
    assert out.read_text() == "upstream web {\n}\nmax_conns 20;\n"
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["nginx.conf", "nginx.tmpl", "pilot.json5", "pilot.log", "pilot.err", "pilot.sock", "runs"])
    assert len(p.lines("template nginx: rendered")) == 4


def test_a_missing_key_is_waited_for_then_rendered(tmp_path, consul_agent, pilot):
    """A template whose `key` does not exist is not rendered; one line says
    which key it waits for; the key's creation renders it."""
    (tmp_path / "t.tmpl").write_text(UPSTREAM)
    out, runs = tmp_path / "out", tmp_path / "runs"
    p = pilot(config(tmp_path, consul_agent,
                     templates=[{"name": "t", "source": str(tmp_path / "t.tmpl"), "destination": str(out)}],
                     jobs=[recorder("on-t", "template.t", runs)]))
    p.wait_log("template t: waiting for key config/max")
    rendered = renders(p, "t")
    kv_put(consul_agent, "config/unrelated", "x")
    register(consul_agent, "web", "web-1", "10.0.0.1", 8080)  # renders again, still without the key
    wait_for(lambda: renders(p, "t") > rendered, what="the render after the new instance")
    assert not out.exists() and count_lines(runs) == 0
    kv_put(consul_agent, "config/max", "7")
    wait_for(out.exists, what="the file once the key exists")
    assert out.read_text() == "upstream web {\n  server 10.0.0.1:8080;\n}\nmax_conns 7;\n"
    wait_for(lambda: count_lines(runs) == 1, what="the changed job")
    assert len(p.lines("waiting for key")) == 1


def test_a_template_that_does_not_parse_is_a_config_error(tmp_path, consul_agent, pilot):
    """Pilot refuses the config at load: one line naming the template and the line, exit 1."""
    (tmp_path / "bad.tmpl").write_text('ok\n{{range servce "web"}}{{end}}\nmore\n')
    p = pilot(config(tmp_path, consul_agent, templates=[
        {"name": "nginx", "source": str(tmp_path / "bad.tmpl"), "destination": str(tmp_path / "out")}]))
    assert p.wait() == 1
    assert p.err_path.read_text() == (
        f"pilot: {p.config}: template[nginx]: parse error in {tmp_path}/bad.tmpl at line 2: function \"servce\" not defined\n")


def test_an_unwritable_destination_is_one_line_and_retried(tmp_path, consul_agent, pilot):
    """A destination whose directory is a file: one error line, the other
    template and the jobs go on; once it can be written, it is."""
    blocker = tmp_path / "conf.d"
    blocker.write_text("a file where a directory should be")
    good, runs = tmp_path / "good", tmp_path / "runs"
    p = pilot(config(tmp_path, consul_agent, templates=[
        {"name": "bad", "text": "bad", "destination": str(blocker / "bad.conf")},
        {"name": "good", "text": "good", "destination": str(good)}],
        jobs=[recorder("on-bad", "template.bad", runs)]))
    line = p.wait_log("template bad: cannot write")[0]
    assert line.endswith(f"template bad: cannot write {blocker}/bad.conf: not a directory (the previous file stays)")
    wait_for(good.exists, what="the other template")
    blocker.unlink()
    blocker.mkdir()
    wait_for(lambda: text_of(blocker / "bad.conf") == "bad", what="the retried write")
    wait_for(lambda: count_lines(runs) == 1, what="its changed job")
    assert len(p.lines("template bad: cannot write")) == 1


def test_reload_keeps_an_unchanged_template_quiet(tmp_path, consul_agent, pilot):
    """`-reload` with the template unchanged: the file is not rewritten and
    `changed` does not fire again; a job the reload adds that waits for it
    starts all the same; the next real change still fires. (The job on
    `changed` copies the file it sees, so a re-fire would show as a line.)"""
    kv_put(consul_agent, "config/max", "1")
    (tmp_path / "t.tmpl").write_text('max {{key "config/max"}}\n')
    out, runs, other = tmp_path / "out", tmp_path / "runs", tmp_path / "other"
    template = {"name": "t", "source": str(tmp_path / "t.tmpl"), "destination": str(out)}
    reader = {"name": "on-t", "exec": ["sh", "-c", f"cat {out} >> {runs}"],
              "when": {"source": "template.t", "each": "changed"}}
    p = pilot(config(tmp_path, consul_agent, templates=[template], jobs=[reader]))
    wait_for(lambda: count_lines(runs) == 1, what="the first render")
    inode = os.stat(out).st_ino
    rendered = renders(p, "t")
    p.config.write_text(config(tmp_path, consul_agent, templates=[template], jobs=[
        reader,
        {"name": "added", "exec": ["touch", str(other)],
         "when": {"source": "template.t", "once": "changed"}}]))
    done = p.cli("-reload")
    assert done.returncode == 0, done.stderr
    # The added job waits for the template's changed, which stays quiet:
    # it is told at once, since the file is there.
    wait_for(other.exists, what="the job the reload added")
    wait_for(lambda: renders(p, "t") > rendered, what="the kept template's render after the reload")
    assert count_lines(runs) == 1 and os.stat(out).st_ino == inode
    kv_put(consul_agent, "config/max", "2")
    wait_for(lambda: count_lines(runs) == 2, what="the run for the next change")
    assert out.read_text() == "max 2\n"
    wait_for(lambda: "max 2" in text_of(runs), what="the run that read the new file")
    assert runs.read_text() == "max 1\nmax 2\n"  # no run between the two


def test_render_flag_prints_a_template_against_consul(tmp_path, consul_agent):
    """`-render NAME` prints the current output; a missing key is one line, exit 1."""
    (tmp_path / "t.tmpl").write_text(UPSTREAM)
    cfg = tmp_path / "p.json5"
    cfg.write_text(config(tmp_path, consul_agent, templates=[
        {"name": "t", "source": str(tmp_path / "t.tmpl"), "destination": str(tmp_path / "out")}]))
    done = run_cli("-config", str(cfg), "-render", "t")
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "pilot: -render t: key config/max does not exist (the template waits for it)\n")
    register(consul_agent, "web", "web-1", "10.0.0.1", 8080)
    kv_put(consul_agent, "config/max", "3")
    done = run_cli("-config", str(cfg), "-render", "t")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "upstream web {\n  server 10.0.0.1:8080;\n}\nmax_conns 3;\n", "")
    assert not (tmp_path / "out").exists()


# --- drain -------------------------------------------------------------------------------------


def test_drain_deregisters_before_the_job_gets_its_signal(tmp_path, consul_agent, pilot):
    """`consul: {drain: "10s"}`: at SIGTERM the advertised job leaves Consul
    first; its process gets its stop signal only after the drain; the log
    says when the drain starts and ends. The job itself asks Consul when
    its signal comes; the test sees the service gone while the job still
    runs unsignalled (the 10 s drain is the time it has to look)."""
    ready, term = tmp_path / "ready", tmp_path / "term"
    service_id = f"app-{HOSTNAME}"
    ask = tmp_path / "ask.py"
    ask.write_text("import json, time, urllib.request\n"
                   "print(repr(time.time()))\n"
                   f"with urllib.request.urlopen('{consul_agent.url}/v1/agent/services', timeout=30) as r:\n"
                   f"    print('registered' if '{service_id}' in json.load(r) else 'gone')\n")
    job = {"name": "app", "port": 8080, "interfaces": ["static:127.0.0.1"],
           "health": {"exec": "true", "interval": 1, "ttl": 10},
           "exec": ["sh", "-c", f'trap "python3 {ask} > {term}.tmp; mv {term}.tmp {term}; exit 0" TERM;'
                                f" touch {ready}; while :; do sleep 0.05; done"]}
    doc = json.loads(config(tmp_path, consul_agent, jobs=[job]))
    doc["consul"] = {"address": consul_agent.http_addr, "drain": "10s"}
    doc["stopTimeout"] = 20
    p = pilot(json.dumps(doc))
    wait_for(lambda: service_id in agent_get(consul_agent, "/v1/agent/services"), what="registration")
    wait_for(ready.exists, what="the job")
    p.signal(signal.SIGTERM)
    wait_for(lambda: service_id not in agent_get(consul_agent, "/v1/agent/services"),
             what="the service to leave Consul", interval=0.01)
    gone = time.time()
    assert not p.lines("consul: drain done"), "the service left Consul only when the drain ended"
    assert not term.exists(), "the job got its signal before the service left Consul"
    stamp, seen = wait_for(lambda: text_of(term), what="the job's stop signal").split()
    assert seen == "gone", "the job got its signal while the service was still in Consul"
    assert float(stamp) > gone
    assert p.wait() == 0
    assert p.lines(r"consul: draining for 10s before stopping jobs \(deregistered app\)")
    assert p.lines(r"consul: drain done after \d+\.\ds, stopping jobs")


# --- consul_reads against the agent --------------------------------------------------------


def test_reads_of_each_kind(consul_agent):
    """read(): passing instances with their node, the catalog, a key (None
    when absent), every pair under a prefix."""
    consul = Consul(ConsulConfig(address=consul_agent.http_addr))
    register(consul_agent, "web", "web-2", "10.0.0.2", 81, tags=["b"])
    register(consul_agent, "web", "web-1", "", 80, tags=["a"])
    kv_put(consul_agent, "cfg/a", "1")
    kv_put(consul_agent, "cfg/sub/b", "caf\u00e9")
    _, web = read(consul, Query(SERVICE, "web"))
    assert [(e.id, e.address, e.port, e.tags, e.node) for e in web] == [
        ("web-1", "127.0.0.1", 80, ("a",), "pilot-test"), ("web-2", "10.0.0.2", 81, ("b",), "pilot-test")]
    assert [e.id for e in read(consul, Query(SERVICE, "web", tag="b"))[1]] == ["web-2"]
    assert dict(read(consul, Query(SERVICES))[1])["web"] == ("a", "b")
    assert read(consul, Query(KEY, "cfg/a"))[1] == "1"
    assert read(consul, Query(KEY, "cfg/none"))[1] is None
    assert read(consul, Query(PREFIX, "cfg/"))[1] == (("cfg/a", "1"), ("cfg/sub/b", "caf\u00e9"))
    assert read(consul, Query(PREFIX, "none/"))[1] == ()


def test_follow_answers_a_change_without_waiting_out_its_wait(consul_agent):
    """A Follow with a 60 s wait hears a KV change at once (blocking query)."""
    consul = Consul(ConsulConfig(address=consul_agent.http_addr))
    follow = Follow(consul, Query(PREFIX, "cfg/"), wait=60)
    heard = []
    follow.listeners.append(lambda f: heard.append(f.data))
    follow.start()
    try:
        wait_for(lambda: heard, what="the first answer")
        assert heard == [()]
        kv_put(consul_agent, "cfg/x", "1")
        # DEADLINE is well short of the 60 s wait: an answer by then came from the change
        wait_for(lambda: len(heard) >= 2, what="the change, before the query's 60 s wait ran out")
        assert heard == [(), (("cfg/x", "1"),)]
    finally:
        follow.stop()


def test_the_readme_nginx_example_renders(tmp_path, consul_agent):
    """README "Templates": its config loads as written and its nginx template
    renders the passing instances of `app` (or the placeholder without any)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Templates\n", 1)[1]
    example = section.split("```json5\n", 1)[1].split("```", 1)[0]
    template = section.split("`/etc/nginx/nginx.conf.tmpl`:\n\n```\n", 1)[1].split("```", 1)[0]
    (tmp_path / "nginx.conf.tmpl").write_text(template)
    cfg = tmp_path / "p.json5"
    cfg.write_text(example.replace('"localhost:8500"', f'"{consul_agent.http_addr}"')
                   .replace("/etc/nginx/nginx.conf.tmpl", str(tmp_path / "nginx.conf.tmpl")))
    done = run_cli("-config", str(cfg), "-render", "nginx")
    assert done.returncode == 0, done.stderr
    assert "    server 127.0.0.1:65535;  # no instance passing yet\n" in done.stdout
    register(consul_agent, "app", "app-1", "10.0.0.1", 8080)
    kv_put(consul_agent, "config/nginx/max-body", "8m")
    done = run_cli("-config", str(cfg), "-render", "nginx")
    assert done.returncode == 0, done.stderr
    assert "    server 10.0.0.1:8080;  # app-1 on pilot-test\n  }\n" in done.stdout
    assert "client_max_body_size 8m;" in done.stdout


def test_a_job_waiting_for_an_environment_template_starts(tmp_path, pilot):
    """A template that reads only the environment (no Consul section at all)
    renders at start-up, and the job waiting for its `changed` runs: the
    first render comes after the jobs are listening."""
    out, runs = tmp_path / "motd", tmp_path / "runs"
    (tmp_path / "motd.tmpl").write_text('hello {{ env "GREETED" }}\n')
    p = pilot(json.dumps({"control": {"socket": str(tmp_path / "pilot.sock")},
                          "templates": [{"name": "motd", "source": str(tmp_path / "motd.tmpl"),
                                         "destination": str(out)}],
                          "jobs": [{"name": "show", "exec": ["sh", "-c", f"cat {out} >> {runs}"],
                                    "when": {"source": "template.motd", "once": "changed"}}]}),
              env={"GREETED": "world"})
    wait_for(lambda: text_of(runs) == "hello world\n", what="the job to read the rendered file")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def drain_config(tmp_path, agent, drain, advertised=True):
    job = {"name": "app", "exec": ["sh", "-c", f"touch {tmp_path}/ready; exec sleep 1000"]}
    if advertised:
        job.update({"port": 8080, "interfaces": ["static:127.0.0.1"],
                    "health": {"exec": "true", "interval": 1, "ttl": 10}})
    doc = json.loads(config(tmp_path, agent, jobs=[job]))
    doc["consul"] = {"address": agent.http_addr, "drain": drain}
    doc["stopTimeout"] = 20
    return json.dumps(doc)


def test_a_second_sigterm_during_the_drain_kills_at_once(tmp_path, consul_agent, pilot):
    """The drain is part of the shutdown: a second SIGTERM (over a second
    after the first) ends it and kills every process, exit 128+15."""
    p = pilot(drain_config(tmp_path, consul_agent, "60s"))
    wait_for(lambda: f"app-{HOSTNAME}" in agent_get(consul_agent, "/v1/agent/services"), what="registration")
    p.signal(signal.SIGTERM)
    p.wait_log("consul: draining for 20s before stopping jobs")  # cut to stopTimeout
    time.sleep(1.2)  # a repeat within 1 s is the same request delivered twice
    p.signal(signal.SIGTERM)
    assert p.wait() == 128 + signal.SIGTERM  # a drain run to its end would exit 0
    assert not p.lines("drain done")


def test_no_drain_without_an_advertised_job(tmp_path, consul_agent, pilot):
    """Nothing registered, nothing to drain: SIGTERM stops the jobs at once."""
    p = pilot(drain_config(tmp_path, consul_agent, "60s", advertised=False))
    wait_for((tmp_path / "ready").exists, what="the job")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert not p.lines("draining")  # a drain, were there one, says so
