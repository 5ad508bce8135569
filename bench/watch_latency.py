"""How soon does a Consul change reach a job? Pilot's blocking watches vs
3.8's interval polling, side by side.

For each variant a fresh Consul agent (-dev) and a Pilot process run a job
`when: {source: "watch.backend", each: "changed"}` that appends a timestamp.
The bench registers and deregisters a `backend` instance over HTTP, ~20
times, and measures from just before each request to the job's timestamp.
A random pause between changes samples every phase of the polling cycle.

The polling variant is Pilot's `Watch` made to poll (`polling_watch_class`:
plain queries every `interval`, the first one `interval` after start: 3.8's
loop). It exists only here: this script re-runs itself as that Pilot
(`--polling-pilot CONFIG`), swapping the class in before the app is built.

    .venv/bin/python bench/watch_latency.py [--changes 20] [--interval 1]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import wait_for  # noqa: E402
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv/bin/python").exists() else sys.executable


def polling_watch_class():
    """Pilot's Watch, polling as 3.8 does: a plain query (never a blocking
    one) every `interval`, the first one `interval` after start. Built on
    call: pilot.watches may be imported only after gevent's patching."""
    import gevent

    from pilot.watches import Watch

    class PollingWatch(Watch):
        def _run(self):
            gevent.sleep(self.cfg.interval)  # 3.8: first poll one interval after start
            super()._run()

        def poll(self):
            self.index = 0  # never wait on an index: a plain query
            super().poll()
            return self.cfg.interval

    return PollingWatch


def run_polling_pilot(config_path):
    """Be Pilot, with every watch polling as 3.8 does."""
    from gevent import monkey

    monkey.patch_all()
    import pilot.watches
    from pilot.cli import main

    pilot.watches.Watch = polling_watch_class()  # the app imports it at build time
    return main(["-config", config_path])


# -- one variant ----------------------------------------------------------------

def put(agent, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    req = urllib.request.Request(agent.url + path, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def stamps(path):
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def pilot_config(tmp, agent, interval):
    return json.dumps({
        "consul": agent.http_addr,
        "control": {"socket": str(tmp / "pilot.sock")},
        "jobs": [
            {"name": "main", "exec": ["sh", "-c", f"touch {tmp / 'ready'}; exec sleep 100000"]},
            {"name": "on-change", "exec": ["sh", "-c", f"date +%s.%N >> {tmp / 'runs'}"],
             "when": {"source": "watch.backend", "each": "changed"}},
        ],
        "watches": [{"name": "backend", "interval": interval}],
    })


def measure(polling, changes, interval):
    """Latencies in seconds of `changes` registrations/deregistrations."""
    from tests.consul_agent import ConsulAgent

    with tempfile.TemporaryDirectory(prefix="pilot-bench-") as tmp_name, ConsulAgent() as agent:
        tmp = Path(tmp_name)
        config = tmp / "pilot.json5"
        config.write_text(pilot_config(tmp, agent, interval))
        cmd = [PYTHON, str(ROOT / "pilot.py"), "-config", str(config)]
        if polling:
            cmd = [PYTHON, __file__, "--polling-pilot", str(config)]
        with open(tmp / "pilot.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=tmp_name)
        try:
            wait_for((tmp / "ready").exists, 20, "pilot to start")
            runs = tmp / "runs"
            latencies = []
            for n in range(changes + 1):  # change 0 warms up (3.8's first poll is late)
                began = time.time()
                if n % 2 == 0:
                    put(agent, "/v1/agent/service/register",
                        {"ID": "backend-1", "Name": "backend", "Address": "127.0.0.1", "Port": 9000})
                else:
                    put(agent, "/v1/agent/service/deregister/backend-1")
                wait_for(lambda: len(stamps(runs)) > n, 3 * interval + 5, f"job run {n}")
                if n:
                    latencies.append(stamps(runs)[n] - began)
                time.sleep(random.uniform(0, interval))
            return latencies
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- report ---------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def table(results, interval):
    lines = [f"Watch latency: Consul change -> job exec, interval {interval} s, "
             f"{len(next(iter(results.values())))} changes each",
             "",
             "| watch | p50 (ms) | p99 (ms) | min (ms) | max (ms) |",
             "|---|---:|---:|---:|---:|"]
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        lines.append(f"| {name} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} "
                     f"| {min(ms):.1f} | {max(ms):.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--interval", type=int, default=1, help="the watch interval, seconds")
    parser.add_argument("--polling-pilot", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.polling_pilot:
        return run_polling_pilot(args.polling_pilot)
    results = {
        "Pilot (blocking queries)": measure(False, args.changes, args.interval),
        "3.8-style polling (same Watch, polling)": measure(True, args.changes, args.interval),
    }
    print(table(results, args.interval))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
