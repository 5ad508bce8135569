"""Templates at scale: 100 templates over 20 services, 1,000 instance
changes. How much work does one Consul change cost, and how soon is it in
the files? Side by side with today's way to react to a change: a watch per
service and a job on its `changed` (consul-template itself has no Debian
package, so it cannot be installed here to compare with).

One Consul agent (-dev) runs 20 services `svc-00`…`svc-19`, each with a
fixed instance and a "moving" one. Template i reads `svc-(i mod 20)` and
`svc-((i+10) mod 20)`, so each service is read by 10 templates. A change
re-registers one service's moving instance on a new port (round robin over
the services); the bench measures from just before that request until:

* templates: the first, and the last, of the 10 files that read the
  service holds the new port (files polled every millisecond);
* watches: the `changed` job of that service's watch has run (it appends
  `date +%s.%N`).

It also reads Pilot's own CPU time over the changes (utime+stime; the
watches variant's jobs are separate processes, shown apart), and for the
templates the renders and writes per change (`GET /v3/status`).

    .venv/bin/python bench/templates.py [--changes 1000] [--templates 100] [--services 20]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

TEMPLATE = """# {name}
{{{{range service "{a}"}}}}server {{{{.Address}}}}:{{{{.Port}}}}; # {{{{.ID}}}} on {{{{.Node}}}}
{{{{end}}}}{{{{range service "{b}"}}}}backup {{{{.Address}}}}:{{{{.Port}}}};
{{{{end}}}}"""


def service(n: int) -> str:
    return f"svc-{n:02d}"


def register(agent, name: str, suffix: str, port: int) -> None:
    from tests.consul_agent import agent_put
    agent_put(agent, "/v1/agent/service/register",
              {"ID": f"{name}-{suffix}", "Name": name, "Address": "127.0.0.1", "Port": port})


def readers(templates: int, services: int):
    """service index -> the template indexes that read it."""
    found = {s: [] for s in range(services)}
    for i in range(templates):
        for s in {i % services, (i + services // 2) % services}:
            found[s].append(i)
    return found


def templates_config(tmp: Path, agent, templates: int, services: int) -> str:
    entries = []
    for i in range(templates):
        source = tmp / f"t{i:03d}.tmpl"
        source.write_text(TEMPLATE.format(name=i, a=service(i % services),
                                          b=service((i + services // 2) % services)))
        entries.append({"name": f"t{i:03d}", "source": str(source), "destination": str(tmp / f"t{i:03d}.conf")})
    return json.dumps({"consul": agent.http_addr, "control": {"socket": str(tmp / "pilot.sock")},
                       "logging": {"level": "WARN"}, "templates": entries})


def watches_config(tmp: Path, agent, services: int) -> str:
    return json.dumps({
        "consul": agent.http_addr, "control": {"socket": str(tmp / "pilot.sock")},
        "logging": {"level": "WARN"},
        "watches": [{"name": service(s), "interval": 60} for s in range(services)],
        "jobs": [{"name": f"on-{service(s)}", "exec": ["sh", "-c", f"date +%s.%N >> {tmp}/runs-{s:02d}"],
                  "when": {"source": f"watch.{service(s)}", "each": "changed"}} for s in range(services)]})


def status(tmp: Path) -> dict:
    from tests.integration.pilot_proc import control_request
    code, body = control_request(tmp / "pilot.sock", "GET", "/v3/status")
    return json.loads(body)


def lines(path: Path) -> list:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def run(variant: str, changes: int, templates: int, services: int) -> dict:
    from tests.consul_agent import ConsulAgent

    with tempfile.TemporaryDirectory(prefix="pilot-bench-") as name, ConsulAgent() as agent:
        tmp = Path(name)
        for s in range(services):
            register(agent, service(s), "fixed", 9000 + s)
            register(agent, service(s), "moving", 20000)
        config = tmp / "pilot.json5"
        config.write_text(templates_config(tmp, agent, templates, services) if variant == "templates"
                          else watches_config(tmp, agent, services))
        with open(tmp / "pilot.log", "wb") as log:
            proc = subprocess.Popen([common.PYTHON, common.PILOT, "-config", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=name)
        try:
            return measure(variant, tmp, agent, proc, changes, templates, services)
        finally:
            common.stop(proc)


def measure(variant, tmp, agent, proc, changes, templates, services) -> dict:
    files = [tmp / f"t{i:03d}.conf" for i in range(templates)]
    if variant == "templates":
        common.wait_for(lambda: all(f.exists() for f in files), 60, "the first renders")
        common.wait_for(lambda: (tmp / "pilot.sock").exists(), 10, "the control socket")
        before = status(tmp)["templates"]
    else:
        common.wait_for(lambda: (tmp / "pilot.sock").exists(), 20, "pilot to start")
        time.sleep(2)  # the watches' first answers (and their first job runs) settle
    read_by = readers(templates, services)
    runs_before = {s: len(lines(tmp / f"runs-{s:02d}")) for s in range(services)}
    cpu0, child0 = common.cpu_seconds(proc.pid), common.reaped_children_cpu_seconds(proc.pid)
    first, last = [], []
    for k in range(changes):
        s = k % services
        port = 20001 + k
        began = time.time()
        register(agent, service(s), "moving", port)
        if variant == "templates":
            needle = f":{port};".encode()
            waiting = {files[i] for i in read_by[s]}
            seen_first = None
            deadline = time.monotonic() + 30
            while waiting:
                for f in list(waiting):
                    with open(f, "rb") as fh:
                        if needle in fh.read():
                            waiting.discard(f)
                            seen_first = seen_first or time.time()
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: change {k} did not reach {len(waiting)} files")
                if waiting:
                    time.sleep(0.001)
            first.append(seen_first - began)
            last.append(time.time() - began)
        else:
            runs = tmp / f"runs-{s:02d}"
            want = runs_before[s] + 1
            common.wait_for(lambda: len(lines(runs)) >= want, 30, f"the job for change {k}", interval=0.001)
            runs_before[s] = want
            first.append(float(lines(runs)[want - 1]) - began)
    cpu = common.cpu_seconds(proc.pid) - cpu0
    result = {"latency": first, "last": last, "cpu": cpu,
              "children_cpu": common.reaped_children_cpu_seconds(proc.pid) - child0}
    if variant == "templates":
        after = status(tmp)["templates"]
        result["renders"] = sum(t["renders"] for t in after) - sum(t["renders"] for t in before)
        result["writes"] = sum(t["writes"] for t in after) - sum(t["writes"] for t in before)
    return result


def ms(values, p):
    return f"{common.percentile(values, p) * 1000:.1f}"


def report(results: dict, changes: int, templates: int, services: int) -> str:
    t, w = results["templates"], results["watches"]
    rows = [
        ("Pilot templates: change → first file", ms(t["latency"], 50), ms(t["latency"], 99),
         f"{t['renders'] / changes:.1f}", f"{t['writes'] / changes:.1f}", f"{t['cpu'] * 1000 / changes:.2f}", "—"),
        (f"Pilot templates: change → all {templates * 2 // services} files", ms(t["last"], 50),
         ms(t["last"], 99), "", "", "", ""),
        ("watch + job per service (today): change → job exec", ms(w["latency"], 50), ms(w["latency"], 99),
         "—", "—", f"{w['cpu'] * 1000 / changes:.2f}", f"{w['children_cpu'] * 1000 / changes:.2f}"),
    ]
    title = (f"Templates: {templates} templates over {services} services, {changes} instance changes "
             f"(each service read by {templates * 2 // services} templates)\n\n")
    return title + common.table(
        ["variant", "p50 (ms)", "p99 (ms)", "renders/change", "writes/change",
         "Pilot CPU/change (ms)", "jobs' CPU/change (ms)"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=100)
    parser.add_argument("--services", type=int, default=20)
    args = parser.parse_args(argv)
    results = {variant: run(variant, args.changes, args.templates, args.services)
               for variant in ("templates", "watches")}
    print(report(results, args.changes, args.templates, args.services))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
