"""`make demo`: run Pilot on examples/demo.json5 and show what it does.

Pilot supervises a local Consul agent (a job), starts a small web app once
the agent is healthy, registers the app in Consul, watches it, and serves
Prometheus metrics. This script picks free ports, runs Pilot, then prints
where to look and what Consul, the metrics endpoint and `-status` say.

Interactive: runs until Ctrl-C. Not interactive (CI, pipes): shows the tour,
then stops Pilot with SIGTERM after DEMO_SECONDS (default 20) and exits with
Pilot's status. DEMO_SECONDS=0 keeps it running in both cases.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv/bin/python")
PILOT = str(ROOT / "pilot.py")
CONFIG = str(ROOT / "examples/demo.json5")


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def free_ports(count: int) -> list:
    """`count` distinct loopback ports, all held open while choosing so the
    kernel cannot offer the same one twice."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def consul_binary() -> str:
    out = subprocess.run([str(ROOT / "build/consul-path.sh")], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        sys.exit("demo: no consul binary; run `make demo` (it installs one) or build/install-consul.sh")
    return out.stdout.strip()


def get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what: str, fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: gave up waiting for {what}")


def environment(demo_dir: Path) -> dict:
    env = dict(os.environ)
    http, serf, wan, server, web, metrics = free_ports(6)
    env.update(
        DEMO_DIR=str(demo_dir), DEMO_PYTHON=PYTHON, DEMO_PILOT=PILOT, DEMO_CONFIG=CONFIG,
        DEMO_CONSUL_BIN=consul_binary(),
        DEMO_CONSUL_HTTP=str(http), DEMO_CONSUL_SERF=str(serf),
        DEMO_CONSUL_WAN=str(wan), DEMO_CONSUL_SERVER=str(server),
        DEMO_WEB_PORT=str(web), DEMO_METRICS_PORT=str(metrics),
        DEMO_SENSOR_VALUE="42",
    )
    env.pop("CONSUL_HTTP_ADDR", None)
    return env


def tour(env: dict) -> None:
    consul = f"http://127.0.0.1:{env['DEMO_CONSUL_HTTP']}"
    metrics = f"http://127.0.0.1:{env['DEMO_METRICS_PORT']}"
    web = f"http://127.0.0.1:{env['DEMO_WEB_PORT']}"
    services = wait_for("the web app to register in Consul",
                        lambda: json.loads(get(f"{consul}/v1/health/service/web?passing=1")))
    svc = services[0]["Service"]
    say(f"web registered in Consul as {svc['ID']} at {svc['Address']}:{svc['Port']}, tags {svc['Tags']}")
    say(f"the app answers at {web}/ : {get(web + '/').strip()!r}")
    text = wait_for("the sensor's metric", lambda: "demo_files_served 42" in get(metrics + "/metrics")
                    and get(metrics + "/metrics"))
    shown = [ln for ln in text.splitlines()
             if ln.startswith(("demo_files_served", "containerpilot_events{code=\"StatusHealthy\""))]
    say(f"metrics at {metrics}/metrics, e.g.:")
    for ln in shown[:6]:
        print("      " + ln, flush=True)
    status = subprocess.run([PYTHON, PILOT, "-config", CONFIG, "-status"],
                            capture_output=True, text=True, env=env)
    say("python pilot.py -config examples/demo.json5 -status:")
    print(status.stdout or status.stderr, end="", flush=True)
    say(f"Consul UI: {consul}/ui   API: {consul}/v1/health/service/web")
    say(f"Pilot's own status: {metrics}/status")


def main() -> int:
    demo_dir = ROOT / ".cache/demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    env = environment(demo_dir)
    say(f"starting: python pilot.py -config {os.path.relpath(CONFIG)}")
    pilot = subprocess.Popen([PYTHON, PILOT, "-config", CONFIG], env=env)
    seconds = float(os.environ.get("DEMO_SECONDS", "0" if sys.stdin.isatty() else "20"))
    try:
        tour(env)
        if seconds > 0:
            say(f"stopping Pilot with SIGTERM in {seconds:g}s (DEMO_SECONDS=0 keeps it running)")
            try:
                pilot.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pilot.send_signal(signal.SIGTERM)
        else:
            say("Ctrl-C stops Pilot gracefully")
        code = pilot.wait()
    except KeyboardInterrupt:
        pilot.send_signal(signal.SIGTERM)
        code = pilot.wait()
    except SystemExit:
        pilot.send_signal(signal.SIGTERM)
        pilot.wait()
        raise
    say(f"Pilot exited with status {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
