"""`make demo`: run Pilot on examples/demo.json5 and tell what it does.

First the job graph (what starts what), then Pilot runs: it supervises a
local Consul agent (a job), starts a small web app once the agent is
healthy, registers the app in Consul, watches it, records a metric from a
periodic sensor job and serves Prometheus metrics. The script follows along,
says what happened, and ends with `pilot -status`, which agrees with it.

Interactive: runs until Ctrl-C. Not interactive (CI, pipes): stops Pilot
with SIGTERM after DEMO_SECONDS (default 20) and exits with Pilot's status.
DEMO_SECONDS=0 keeps it running in both cases.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv/bin/python")
PILOT = str(ROOT / "pilot.py")
CONFIG = str(ROOT / "examples/demo.json5")
SHOWN_CONFIG = "examples/demo.json5"


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        print("      " + line, flush=True)


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


class ControlSocket(http.client.HTTPConnection):
    """Pilot's control socket, as `curl --unix-socket` speaks to it."""

    def __init__(self, path: str):
        super().__init__("control", timeout=5)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path_)


def pilot_status(path: str) -> dict:
    conn = ControlSocket(path)
    try:
        conn.request("GET", "/v3/status")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait_for(what: str, fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: gave up waiting for {what}")


def environment(demo_dir: Path) -> dict:
    env = dict(os.environ)
    http_port, serf, wan, server, web, metrics = free_ports(6)
    env.update(
        DEMO_DIR=str(demo_dir), DEMO_PYTHON=PYTHON, DEMO_PILOT=PILOT, DEMO_CONFIG=CONFIG,
        DEMO_CONSUL_BIN=consul_binary(), DEMO_WEB_APP=str(ROOT / "examples/web.py"),
        DEMO_CONSUL_HTTP=str(http_port), DEMO_CONSUL_SERF=str(serf),
        DEMO_CONSUL_WAN=str(wan), DEMO_CONSUL_SERVER=str(server),
        DEMO_WEB_PORT=str(web), DEMO_METRICS_PORT=str(metrics),
        DEMO_SENSOR_VALUE="42",
    )
    env.pop("CONSUL_HTTP_ADDR", None)
    return env


def pilot_flag(env: dict, *flags: str) -> str:
    done = subprocess.run([PYTHON, PILOT, "-config", CONFIG, *flags], capture_output=True,
                          text=True, env=env)
    return done.stdout or done.stderr


def graph(env: dict) -> None:
    say(f"what starts what (python pilot.py -config {SHOWN_CONFIG} -graph text; "
        "drawn in docs/demo-graph.svg):")
    show(pilot_flag(env, "-graph", "text"))


def job(status: dict, name: str) -> dict:
    return next(j for j in status["jobs"] if j["name"] == name)


def tour(env: dict) -> None:
    consul = f"http://127.0.0.1:{env['DEMO_CONSUL_HTTP']}"
    metrics = f"http://127.0.0.1:{env['DEMO_METRICS_PORT']}"
    web = f"http://127.0.0.1:{env['DEMO_WEB_PORT']}"
    sock = os.path.join(env["DEMO_DIR"], "pilot.sock")
    services = wait_for("the web app to register in Consul",
                        lambda: json.loads(get(f"{consul}/v1/health/service/web?passing=1")))
    svc = services[0]["Service"]
    say(f"the Consul agent (a job) is healthy, so web started; it passed its health check and"
        f" is registered in Consul as {svc['ID']} at {svc['Address']}:{svc['Port']}")
    say(f"the app answers at {web}/ : {get(web + '/').strip()!r}")
    # What -status says below must agree with this: the watch has seen the
    # service and the job it triggers has run.
    wait_for("the watch to see web", lambda: any(
        w["name"] == "web" and w["instances"] == 1 for w in pilot_status(sock)["watches"])
        and job(pilot_status(sock), "on-web-change")["runs"] >= 1)
    say("the watch on web saw 1 instance, so on-web-change ran")
    text = wait_for("the sensor's metric", lambda: "demo_files_served 42" in get(metrics + "/metrics")
                    and get(metrics + "/metrics"))
    value = next(ln for ln in text.splitlines() if ln.startswith("demo_files_served "))
    say(f"the sensor job (every 3s) recorded a metric: {value}  ({metrics}/metrics)")
    wait_for("web and the agent to be healthy", lambda: all(
        job(pilot_status(sock), name)["status"] == "healthy" for name in ("web", "consul-agent")))
    say(f"python pilot.py -config {SHOWN_CONFIG} -status:")
    show(pilot_flag(env, "-status"))
    say(f"follow it live: python pilot.py -config {SHOWN_CONFIG} -events   (or -status -follow)")
    say(f"Consul UI: {consul}/ui   the agent's log: {env['DEMO_DIR']}/consul.log")


def main() -> int:
    demo_dir = Path(tempfile.mkdtemp(prefix="pilot-demo-"))
    try:
        return run(demo_dir)
    finally:
        shutil.rmtree(demo_dir, ignore_errors=True)


def run(demo_dir: Path) -> int:
    env = environment(demo_dir)
    graph(env)
    say(f"starting Pilot: python pilot.py -config {SHOWN_CONFIG}")
    pilot = subprocess.Popen([PYTHON, PILOT, "-config", CONFIG], env=env)
    seconds = float(os.environ.get("DEMO_SECONDS", "0" if sys.stdin.isatty() else "20"))
    try:
        tour(env)
        if seconds > 0:
            say(f"stopping Pilot with SIGTERM in {seconds:g}s (DEMO_SECONDS=0 keeps it running)")
            try:
                pilot.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                say("stopping Pilot (SIGTERM): jobs stop in dependency order, web leaves Consul first")
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
