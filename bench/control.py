"""Benchmark of the control plane and telemetry; prints a markdown table.

* control requests/s: `GET /v3/ping` over the unix socket, one connection
  per request (keep-alive is off, as 3.8), from a separate client process
  using `pilot.client` (what `pilot -ping` does, minus interpreter start-up);
* putmetric records/s: `POST /v3/metric` with 1 and with 100 pairs per request;
* RSS that importing and starting the control server, its first request
  (which loads bottle and pywsgi), then telemetry, adds
  to a process that already runs gevent and imports `pilot.app`.

The server runs in its own process so client and server do not share a CPU
slice of the hub. Usage: `.venv/bin/python bench/control.py [seconds]`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SERVER = r"""
import gevent.events
from gevent import monkey
gevent.events.notify_and_call_entry_points = gevent.events.notify  # as pilot.py does
monkey.patch_all(ssl=False, subprocess=False)  # as pilot.py does
import sys, os
from types import SimpleNamespace
import gevent
from pilot.config.model import MetricConfig, TelemetryConfig
from pilot.control import ControlServer
from pilot.events import Bus
from pilot.telemetry import Telemetry

class App:
    def __init__(self):
        self.bus = Bus(); self.runners = {}; self.cfg = SimpleNamespace(watches=())
    def putenv(self, values): os.environ.update(values)
    def set_maintenance(self, enabled): pass
    def reload(self): return None
    def status(self): return {"jobs": [], "maintenance": False, "watches": []}

app = App()
metrics = tuple(MetricConfig(f"m{i}", "bench", "counter") for i in range(100))
app.telemetry = Telemetry(app, TelemetryConfig(port=0, ip="127.0.0.1", metrics=metrics))
server = ControlServer(app, sys.argv[1])
server.start()
app.telemetry.start()
print("ready", flush=True)
gevent.get_hub().threadpool.spawn(sys.stdin.read).get()  # until the bench closes stdin
server.stop()
"""

RSS = r"""
import gevent.events
from gevent import monkey
gevent.events.notify_and_call_entry_points = gevent.events.notify  # as pilot.py does
monkey.patch_all(ssl=False, subprocess=False)  # as pilot.py does
import sys, tempfile, os

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

import pilot.app
from pilot.events import Bus
from types import SimpleNamespace
base = rss_kib()
from pilot.control import ControlServer
app = SimpleNamespace(bus=Bus(), runners={}, cfg=SimpleNamespace(watches=()), telemetry=None)
server = ControlServer(app, os.path.join(tempfile.mkdtemp(), "s.sock"))
server.start()
control = rss_kib()
server.wsgi  # what the first request loads: the bottle app and pywsgi
import gevent.pywsgi
control_used = rss_kib()
from pilot.config.model import TelemetryConfig
from pilot.telemetry import Telemetry
tel = Telemetry(app, TelemetryConfig(port=0, ip="127.0.0.1"))
tel.start()
tel.metrics_text()
telemetry = rss_kib()
server.stop(); tel.stop()
print(base, control, control_used, telemetry)
"""


def rate(fn, seconds: float) -> float:
    """Calls of `fn` per second over about `seconds`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def measure_rss() -> tuple:
    out = subprocess.run([sys.executable, "-c", RSS], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    base, control, control_used, telemetry = (int(x) for x in out)
    return base, control - base, control_used - control, telemetry - control_used


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    from pilot import client
    path = os.path.join(tempfile.mkdtemp(), "bench.socket")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, path], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            print("server did not start", file=sys.stderr)
            return 1
        one = {"m0": "1"}
        hundred = {f"m{i}": "1" for i in range(100)}
        ping = rate(lambda: client.ping(path), seconds)
        put1 = rate(lambda: client.putmetric(path, one), seconds)
        put100 = rate(lambda: client.putmetric(path, hundred), seconds) * 100
        status = rate(lambda: client.status(path), seconds)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    base, control, control_used, telemetry = measure_rss()
    rows = [
        ("control requests/s (GET /v3/ping, new connection each)", f"{ping:,.0f}"),
        ("control requests/s (GET /v3/status)", f"{status:,.0f}"),
        ("putmetric records/s (1 pair per request)", f"{put1:,.0f}"),
        ("putmetric records/s (100 pairs per request)", f"{put100:,.0f}"),
        ("RSS of gevent + pilot.app (baseline)", f"{base / 1024:.1f} MiB"),
        ("RSS added by control server (import + start)", f"{control / 1024:.1f} MiB"),
        ("RSS added by its first request (bottle + pywsgi)", f"{control_used / 1024:.1f} MiB"),
        ("RSS added by telemetry (import prometheus_client + start)", f"{telemetry / 1024:.1f} MiB"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(json.dumps({"python": sys.version.split()[0], "seconds_per_rate": seconds}),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
