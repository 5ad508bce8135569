"""Soak Pilot under sustained activity and look for resource leaks.

Pilot runs in containers for months, so anything it keeps per job run, per
reload, per control request or per Consul change grows for ever. Each
activity below runs one Pilot (`pilot.py -config FILE`, an ordinary process)
for a while and samples, every few seconds, its RSS, open fds, threads and
Python object count (a sampler thread inside the Pilot process writes
len(gc.get_objects()) and the commonest types to a file).

Activities:
  restart   a job `exec: "true"` restarted for ever, plus a 1 s health check
  reload    -reload in a loop, two configs adding/removing/changing a job
  reload-consul   the same with Consul: a registered service, a watch, and
                  the consul address spelled two ways (a new client each time)
  control   -putmetric (telemetry on), -putenv with ever-new values,
            -status and bad requests, in a loop
  watch     a watch on a Consul service whose instances change all the
            time, with a job run on each change
  agent     the Consul agent stopped and started again and again while a
            service is registered

Warm-up is not growth: the verdict compares the samples after the first
third of the run (at least 30 s) with the end; "grows" means RSS, fds,
threads or Python objects still rise steadily after warm-up.

Usage: .venv/bin/python bench/soak.py [--seconds 90] [activity ...]
It stops every process it starts (it is a child subreaper, so orphans come
back to it and are killed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PILOT, PYTHON, become_subreaper, rss_kib, stop, table, wait_for  # noqa: E402
from tests.consul_agent import ConsulAgent, free_port  # noqa: E402
from tests.integration.pilot_proc import control_request  # noqa: E402

SAMPLE_EVERY = 3.0
TOP_TYPES = 8

# Runs inside the Pilot process (soak.py --probe): a native thread, started
# with every signal blocked so Pilot's signals still reach the main thread,
# writes Python-level counts to $SOAK_STATS every few seconds.
def _probe(argv):
    import collections
    import gc
    import signal
    import threading

    out = os.environ["SOAK_STATS"]
    sleep = time.sleep  # the real one: gevent patches the module attribute later

    def sample():
        while True:
            sleep(SAMPLE_EVERY)
            objs = gc.get_objects()
            kinds = collections.Counter(type(o).__name__ for o in objs)
            line = json.dumps({"t": time.monotonic(), "objects": len(objs),
                               "types": dict(kinds.most_common(40))})
            del objs
            with open(out, "a") as f:
                f.write(line + "\n")

    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
    threading.Thread(target=sample, daemon=True, name="soak-probe").start()
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    import runpy
    sys.argv = [PILOT] + argv
    sys.path.insert(0, os.path.dirname(PILOT))
    runpy.run_path(PILOT, run_name="__main__")


# -- sampling ---------------------------------------------------------------------

def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(ln for ln in f if ln.startswith("Threads:")).split()[1])
    except (OSError, StopIteration):
        return 0


def python_objects(stats_file):
    """The newest sample the probe wrote: (object count, {type: count})."""
    try:
        lines = Path(stats_file).read_text().splitlines()
    except OSError:
        return 0, {}
    if not lines:
        return 0, {}
    last = json.loads(lines[-1])
    return last["objects"], last["types"]


class Soak:
    """One Pilot under one activity, sampled every SAMPLE_EVERY seconds."""

    def __init__(self, name, workdir, config_text, agents):
        self.name = name
        self.agents = agents  # Consul agents running: spared by the clean-up
        self.dir = Path(tempfile.mkdtemp(prefix=f"soak-{name}-", dir=workdir))
        self.socket = str(self.dir / "pilot.sock")
        self.config = self.dir / "pilot.json5"
        self.write_config(config_text)
        self.stats = str(self.dir / "stats.jsonl")
        self.samples = []
        self.ops = 0
        self.proc = None

    def write_config(self, text):
        """Write a config, always with this soak's control socket."""
        self.config.write_text(text.replace("{", f'{{control: {{socket: "{self.socket}"}}, ', 1))

    def start(self):
        env = dict(os.environ, SOAK_STATS=self.stats)
        log = open(self.dir / "pilot.log", "wb")
        self.proc = subprocess.Popen(
            [PYTHON, __file__, "--probe", "-config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        try:
            wait_for(lambda: self.ping() or self.proc.poll() is not None, 20,
                     f"{self.name}: pilot control socket")
        except SystemExit:
            raise SystemExit(f"soak {self.name}: no control socket: {self.log_tail()}")
        if self.proc.poll() is not None:
            raise SystemExit(f"soak {self.name}: pilot exited {self.proc.returncode}: {self.log_tail()}")

    def ping(self):
        try:
            return control_request(self.socket, "GET", "/v3/ping")[0] == 200
        except OSError:
            return False

    def sample(self):
        pid = self.proc.pid
        objs, types = python_objects(self.stats)
        self.samples.append((time.monotonic(), self.ops, rss_kib(pid), fds(pid),
                             threads(pid), objs, types))

    def run(self, seconds, step):
        """Call step() (one operation each, returns ops done) until `seconds`."""
        begin = time.monotonic()
        next_sample = begin
        try:
            self.start()
            while time.monotonic() - begin < seconds:
                if time.monotonic() >= next_sample:
                    self.sample()
                    next_sample += SAMPLE_EVERY
                self.ops += step(self) or 0
                if self.proc.poll() is not None:
                    raise SystemExit(f"soak {self.name}: pilot exited {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            time.sleep(SAMPLE_EVERY + 0.5)  # let the probe write one more sample
            self.sample()
        finally:
            # the Consul agents this driver runs are children too and must survive
            stop(self.proc, spare=[a.proc.pid for a in self.agents if a.proc])
        return time.monotonic() - begin

    def log_tail(self, lines=5):
        text = (self.dir / "pilot.log").read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def log_count(self, needle):
        return (self.dir / "pilot.log").read_text(errors="replace").count(needle)

    def verdict(self):
        """Compare the sample at the end of warm-up with the last one."""
        total = self.samples[-1][0] - self.samples[0][0]
        mark = min(max(30.0, total / 3), total / 2)
        warm = next(i for i, s in enumerate(self.samples) if s[0] - self.samples[0][0] >= mark)
        w, e = self.samples[warm], self.samples[-1]
        ops = max(1, e[1] - w[1])
        growth = []
        # fds and threads go up and down with the work in flight (a reload
        # alternates configs with more and fewer jobs): growth is the end's
        # low exceeding the warm-up's high.
        around, tail = self.samples[max(0, warm - 1):warm + 2], self.samples[-3:]
        for column, what in ((3, "fds"), (4, "threads")):
            rise = min(s[column] for s in tail) - max(s[column] for s in around)
            if rise > 0:
                growth.append(f"{what} +{rise}")
        # RSS: steady rise in the second half, beyond allocator noise (~1 MiB)
        rss_rise = e[2] - w[2]
        half = self.samples[warm:]
        rising = sum(1 for a, b in zip(half, half[1:]) if b[2] > a[2])
        if rss_rise > 1024 and rising >= 0.6 * max(1, len(half) - 1):
            growth.append(f"RSS +{rss_rise} KiB ({rss_rise * 1024 // ops} B/op)")
        if w[5] and e[5] > w[5] * 1.02 + 200:
            kinds = {k: e[6].get(k, 0) - w[6].get(k, 0) for k in e[6]}
            top = sorted(kinds.items(), key=lambda kv: -kv[1])[:3]
            growth.append(f"objects +{e[5] - w[5]} ({', '.join(f'{k} +{v}' for k, v in top)})")
        return ("grows: " + "; ".join(growth)) if growth else "steady"

    def type_growth(self):
        """The Python object types that grew most from warm-up to the end."""
        w, e = self.samples[len(self.samples) // 3], self.samples[-1]
        kinds = {k: e[6].get(k, 0) - w[6].get(k, 0) for k in set(e[6]) | set(w[6])}
        top = sorted(kinds.items(), key=lambda kv: -kv[1])[:TOP_TYPES]
        return f"{self.name}: " + ", ".join(f"{k} {v:+d}" for k, v in top)

    def row(self, duration):
        s, e = self.samples[0], self.samples[-1]
        first_objects = next((x[5] for x in self.samples if x[5]), 0)  # the probe's first sample
        return [self.name, f"{duration:.0f}s", self.ops, f"{s[2] / 1024:.1f}→{e[2] / 1024:.1f} MiB",
                f"{s[3]}→{e[3]}", f"{s[4]}→{e[4]}", f"{first_objects}→{e[5]}", self.verdict()]


# -- activities -------------------------------------------------------------------

def consul_block(agent):
    return f'consul: "{agent.http_addr}", ' if agent else ""


def restart_config(agent):
    return ("{" + consul_block(agent) + """jobs: [
      {name: "quick", exec: "true", restarts: "unlimited"},
      {name: "web", exec: "sleep 100000", port: 8000, interfaces: ["static:127.0.0.1"],
       health: {exec: "true", interval: 1, ttl: 5}}]}""")


def restart_step(soak):
    time.sleep(1.0)
    return job_runs(soak, "quick") - soak.ops


def job_runs(soak, name):
    """How many times the named job ran, as GET /v3/status says."""
    code, body = control_request(soak.socket, "GET", "/v3/status")
    return next(j["runs"] for j in json.loads(body)["jobs"] if j["name"] == name)


def reload_configs(agent):
    """Two configs: `extra` comes and goes, `changing` changes, `stay` stays;
    with Consul, `web` is registered and moves from port 8000 to 8001, a
    watch on it changes its interval, and the consul address changes."""
    def web(port):
        if agent is None:
            return ""
        return (f', {{name: "web", exec: "sleep 100003", port: {port}, '
                'interfaces: ["static:127.0.0.1"], health: {exec: "true", interval: 1, ttl: 5}}')
    def watches(interval):
        """With Consul, a watch whose blocking query a reload interrupts."""
        return f', watches: [{{name: "web", interval: {interval}}}]' if agent else ""
    a = ("{" + consul_block(agent) + """jobs: [
      {name: "stay", exec: "sleep 100000"},
      {name: "changing", exec: "sleep 100001"},
      {name: "extra", exec: "sleep 100002"}""" + web(8000) + "]" + watches(2) + "}")
    # b names the same agent as localhost: a changed consul section, which
    # replaces Pilot's Consul client (its old connections once leaked)
    other = f'consul: "localhost:{agent.http_port}", ' if agent else ""
    b = ("{" + other + """jobs: [
      {name: "stay", exec: "sleep 100000"},
      {name: "changing", exec: "sleep 100004"}""" + web(8001) + "]" + watches(3) + "}")
    return a, b


def reload_step_for(agent):
    configs = reload_configs(agent)

    def step(soak):
        soak.write_config(configs[soak.ops % 2])
        code, body = control_request(soak.socket, "POST", "/v3/reload")
        if code != 200:
            raise SystemExit(f"soak {soak.name}: reload answered {code} {body!r}")
        time.sleep(0.05)
        return 1
    return step


def control_config(agent):
    port = free_port()
    return ("{" + consul_block(agent) + f"""telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"],
      metrics: [{{namespace: "soak", subsystem: "s", name: "hits", help: "h", type: "counter"}},
                {{namespace: "soak", subsystem: "s", name: "level", help: "h", type: "gauge"}}]}},
      jobs: [{{name: "stay", exec: "sleep 100000"}}]}}""")


def control_step(soak):
    n = soak.ops
    control_request(soak.socket, "POST", "/v3/metric", json.dumps({"soak_s_hits": 1, "soak_s_level": n}))
    control_request(soak.socket, "POST", "/v3/environ", json.dumps({f"SOAK_{n % 7}": f"value-{n}"}))
    control_request(soak.socket, "GET", "/v3/status")
    control_request(soak.socket, "POST", "/v3/metric", "{not json")
    control_request(soak.socket, "POST", "/v3/metric", json.dumps({"no_such_metric": 1}))
    control_request(soak.socket, "GET", "/v3/nowhere")
    control_request(soak.socket, "POST", "/v3/environ", "[1, 2]")
    return 7


def watch_config(agent):
    return ("{" + consul_block(agent) + """jobs: [
      {name: "onchange", exec: "true", when: {source: "watch.churn", each: "changed"}}],
      watches: [{name: "churn", interval: 1}]}""")


def watch_step_for(agent):
    def step(soak):
        n = soak.ops
        body = json.dumps({"ID": f"churn-{n % 5}", "Name": "churn", "Port": 9000 + n % 5,
                           "Address": "127.0.0.1"}).encode()
        agent_call(agent, "PUT", "/v1/agent/service/register", body)
        time.sleep(0.3)
        agent_call(agent, "PUT", f"/v1/agent/service/deregister/churn-{(n + 2) % 5}")
        time.sleep(0.3)
        return 1
    return step


def agent_call(agent, method, path, body=None):
    req = urllib.request.Request(agent.url + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


def agent_config(agent):
    return ("{" + consul_block(agent) + """jobs: [
      {name: "web", exec: "sleep 100000", port: 8000, interfaces: ["static:127.0.0.1"],
       health: {exec: "true", interval: 1, ttl: 5}}],
      watches: [{name: "web", interval: 1}]}""")


def agent_step_for(agent):
    def step(soak):
        agent.stop()
        time.sleep(1.0)
        agent.start()
        time.sleep(2.0)
        return 1
    return step


# -- driver ---------------------------------------------------------------------

ACTIVITIES = ["restart", "reload", "reload-consul", "control", "watch", "agent"]


def soak_one(name, seconds, workdir, shared, agents):
    if name == "restart":
        soak = Soak(name, workdir, restart_config(shared()), agents)
        step = restart_step
    elif name == "reload":
        soak = Soak(name, workdir, reload_configs(None)[0], agents)
        step = reload_step_for(None)
    elif name == "reload-consul":
        soak = Soak(name, workdir, reload_configs(shared())[0], agents)
        step = reload_step_for(shared())
    elif name == "control":
        soak = Soak(name, workdir, control_config(shared()), agents)
        step = control_step
    elif name == "watch":
        soak = Soak(name, workdir, watch_config(shared()), agents)
        step = watch_step_for(shared())
    elif name == "agent":
        own = ConsulAgent(node="soak-agent")
        agents.append(own)
        try:
            own.start()
            soak = Soak(name, workdir, agent_config(own), agents)
            duration = soak.run(seconds, agent_step_for(own))
        finally:
            own.stop()
            agents.remove(own)
        return soak, duration
    else:
        raise SystemExit(f"soak: no activity {name!r}; choose from {', '.join(ACTIVITIES)}")
    return soak, soak.run(seconds, step)


def main():
    if sys.argv[1:2] == ["--probe"]:
        return _probe(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--types", action="store_true", help="print the object types that grew")
    parser.add_argument("activities", nargs="*", default=ACTIVITIES)
    args = parser.parse_args()
    become_subreaper()
    agents = []

    def shared():
        if not agents:
            agents.append(ConsulAgent(node="soak"))
            agents[0].start()
        return agents[0]

    rows = []
    with tempfile.TemporaryDirectory(prefix="pilot-soak-") as workdir:
        try:
            for name in args.activities:
                try:
                    soak, duration = soak_one(name, args.seconds, workdir, shared, agents)
                except (SystemExit, OSError) as failed:
                    rows.append([name, "-", "-", "-", "-", "-", "-", f"failed: {failed}"])
                    print(f"{name}: failed: {failed}", file=sys.stderr, flush=True)
                    continue
                rows.append(soak.row(duration))
                print(f"{name}: done, {soak.verdict()}", file=sys.stderr, flush=True)
                if args.types:
                    print(soak.type_growth(), file=sys.stderr, flush=True)
        finally:
            for agent in agents:
                agent.stop()
    print(table(["activity", "duration", "operations", "RSS start→end", "fds", "threads",
                 "py objects", "verdict"], rows))


if __name__ == "__main__":
    main()
