"""Client calls and idle footprint: Pilot beside ContainerPilot 3.8 (and
supervisord and tini for the footprint), each as PID 1 of its own PID
namespace, Pilot and ContainerPilot on the same config file (bench/peers.py).

1. Idle: every peer runs 10 sleep-like jobs (no health checks); over a
   quiet window of --idle-seconds the bench counts each supervisor's
   context switches (every thread of every supervisor process: dist/pilot's
   launcher and Python, both ContainerPilot processes), i.e. how often it
   wakes up, scaled to a minute; and its CPU.
2. Memory as a container counts it: the supervisor's RSS plus what it put
   in its $TMPDIR (RAM when TMPDIR is a tmpfs, as `--read-only
   --tmpfs /tmp:exec` makes it), before and after the client calls (the
   first request loads Pilot's HTTP stack).
3. Client calls from outside, as a job, `docker exec` or a HEALTHCHECK
   makes them: `-ping`, `-putmetric`, `-putenv`, `-status`, `-health`
   (ContainerPilot has neither `-status` nor `-health`), `python pilot.py` and `dist/pilot` (which reuses the
   running copy: same TMPDIR), --calls times each, interleaved. Wall time
   p50/p99 and peak RSS (the largest process of the call, from wait4).
4. Restart storm: 50 jobs that exit 1 at once, restarted for ever; the
   bench sends --pings `GET /v3/ping` on the control socket (a new
   connection each, as `-ping` does) and reports p50/p99, and how many
   restarts per second the supervisor managed meanwhile.

    .venv/bin/python bench/client.py [--calls 30] [--idle-seconds 30]
        [--pings 200] [--storm-jobs 50] [--full] [--only pilot,containerpilot]

`--full` is --calls 100 --idle-seconds 60 --pings 500. Telemetry (needed for
`-putmetric`) registers with a throwaway Consul agent (tests/consul_agent.py).
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402  (bench/ is not a package)
import peers  # noqa: E402
from peers import Run, Workload  # noqa: E402
from tests.consul_agent import ConsulAgent, free_port  # noqa: E402
from tests.integration.pilot_proc import control_request  # noqa: E402

IDLE_JOBS = 10
METRIC = "bench_client_calls"
CALLS = {  # flag -> its arguments
    "-ping": [],
    "-putmetric": [f"{METRIC}=1"],
    "-putenv": ["BENCH_CLIENT=1"],
    "-status": [],
    "-health": [],
}
CP_CALLS = ("-ping", "-putmetric", "-putenv")


def telemetry() -> dict:
    return {"port": free_port(), "interfaces": ["static:127.0.0.1"],
            "metrics": [{"namespace": "bench", "subsystem": "client", "name": "calls",
                         "help": "calls made by bench/client.py", "type": "gauge"}]}


def control_ready(run: Run) -> bool:
    if not run.alive():
        raise SystemExit(f"bench: {run.peer.name} exited: {run.log_tail()}")
    try:
        return control_request(str(run.files.socket), "GET", "/v3/ping")[0] == 200
    except OSError:
        return False


# -- 1 + 2: idle wake-ups and memory ----------------------------------------------

def footprint(runs: List[Run]) -> Dict[str, dict]:
    out = {}
    for run in runs:
        pids = run.supervisor_pids()
        out[run.peer.name] = {"pids": pids, "rss": peers.rss_kib(pids),
                              "tmpdir": run.files.tmpdir_kib(), "processes": len(pids)}
    return out


def idle(runs: List[Run], seconds: float) -> Dict[str, dict]:
    pids = {r.peer.name: r.supervisor_pids() for r in runs}
    before = {n: (peers.context_switches(p), peers.cpu(p)) for n, p in pids.items()}
    time.sleep(seconds)
    out = {}
    for name, p in pids.items():
        (cs0, cpu0), per_min = before[name], 60 / seconds
        voluntary, involuntary = peers.switches_between(cs0, peers.context_switches(p))
        out[name] = {"voluntary": voluntary * per_min, "involuntary": involuntary * per_min,
                     "cpu_ms": (peers.cpu(p) - cpu0) * 1000 * per_min,
                     "threads": sum(len(os.listdir(f"/proc/{x}/task")) for x in p)}
    return out


def start_all(runs: List[Run], ping: bool) -> None:
    """Start every run and wait for its jobs and control socket; without
    `ping` the socket is only waited for, not called (Pilot loads its HTTP
    stack on the first request)."""
    for run in runs:
        run.start()
        run.wait_jobs(timeout=60)
    for run in runs:
        if run.peer.control:
            ready = (lambda: control_ready(run)) if ping else run.files.socket.exists
            common.wait_for(ready, 30, f"{run.peer.name}'s control socket")
    time.sleep(3)  # start-up work settles (dist/pilot's launcher unpacks, telemetry registers)


def footprint_phase(peer_list, probe, seconds: float):
    """Every peer with 10 idle jobs, no telemetry: wake-ups over a quiet
    window and memory, then memory again after a few `-ping` calls."""
    runs = [Run(p, Workload(IDLE_JOBS), probe) for p in peer_list]
    try:
        start_all(runs, ping=False)
        before = footprint(runs)
        print(f"bench: idle window {seconds:g} s", file=sys.stderr, flush=True)
        idle_res = idle(runs, seconds)
        client_calls([r for r in runs if r.peer.control], 3, probe["meter"], flags=("-ping",))
        after = {n: v for n, v in footprint(runs).items()
                 if next(r for r in runs if r.peer.name == n).peer.control}
        return idle_res, before, after
    finally:
        for run in runs:
            run.close()
        common.reap_orphans()


# -- 3: client calls --------------------------------------------------------------

def call(meter: str, argv: List[str], env: dict) -> tuple:
    """(seconds, peak RSS KiB of the call's largest process, exit status),
    measured by call-meter (bench/peers.py)."""
    done = subprocess.run([meter, *argv], env=env, capture_output=True, text=True, timeout=60)
    ns, rss, code = done.stdout.split()
    return int(ns) / 1e9, int(rss), int(code)


def client_calls(runs: List[Run], calls: int, meter: str, flags=None) -> Dict[tuple, dict]:
    plan = []
    for run in runs:
        allowed = CP_CALLS if run.peer.kind == "containerpilot" else tuple(CALLS)
        for flag in [f for f in allowed if flags is None or f in flags]:
            argv = [*run.peer.command, "-config", str(run.config), flag, *CALLS[flag]]
            plan.append(((run.peer.name, flag), argv, run.env))
    samples: Dict[tuple, dict] = {key: {"s": [], "rss": [], "failed": 0} for key, _, _ in plan}
    for _ in range(calls):
        for key, argv, env in plan:
            seconds, rss, code = call(meter, argv, env)
            if code != 0:
                samples[key]["failed"] += 1
                continue
            samples[key]["s"].append(seconds)
            samples[key]["rss"].append(rss)
    return samples


# -- 4: restart storm -------------------------------------------------------------

def storm(peer, probe, jobs: int, pings: int) -> dict:
    with Run(peer, Workload(jobs, crash=True), probe) as run:
        common.wait_for(lambda: control_ready(run), 30, f"{peer.name}'s control socket")
        common.wait_for(lambda: run.files.stamps.exists() and run.files.stamps.stat().st_size > 10 * jobs,
                        30, f"{peer.name}: restarts under way")
        sock, latencies, failed = str(run.files.socket), [], 0
        runs0, t0 = run.files.stamps.stat().st_size, time.monotonic()
        for _ in range(pings):
            began = time.perf_counter()
            try:
                ok = control_request(sock, "GET", "/v3/ping")[0] == 200
            except OSError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                failed += 1
            time.sleep(0.01)
        restarts = (run.files.stamps.stat().st_size - runs0) / (time.monotonic() - t0)
        pids = run.supervisor_pids()
        cpu0 = peers.cpu(pids)
        time.sleep(1)
        return {"ms": [x * 1000 for x in latencies], "failed": failed, "restarts": restarts,
                "cpu": (peers.cpu(pids) - cpu0) * 100}


# -- report -------------------------------------------------------------------

def ms(values: List[float], p: int) -> str:
    return f"{common.percentile(values, p) * 1000:.1f}" if values else "—"


def report_footprint(names, idle_res, before, after, seconds) -> str:
    rows = []
    for n in names:
        i, b, a = idle_res[n], before[n], after.get(n)
        rows.append((n, b["processes"], i["threads"], f"{i['voluntary']:.0f}", f"{i['involuntary']:.0f}",
                     f"{i['cpu_ms']:.1f}", common.mib(b["rss"]), common.mib(b["tmpdir"]),
                     common.mib(b["rss"] + b["tmpdir"]),
                     common.mib(a["rss"] + a["tmpdir"]) if a else "—"))
    return common.table(
        ["supervisor (10 idle jobs)", "processes", "threads",
         "wake-ups/min (voluntary switches)", "involuntary/min", "CPU ms/min",
         "RSS (MiB)", "in $TMPDIR (MiB)", "container total (MiB)",
         "total after the client calls (MiB)"], rows)


def report_calls(samples) -> str:
    rows = []
    for (name, flag), s in samples.items():
        rss = s["rss"]
        rows.append((name, f"`{flag}`", len(s["s"]), ms(s["s"], 50), ms(s["s"], 99),
                     common.mib(statistics.median(rss)) if rss else "—",
                     common.mib(max(rss)) if rss else "—", s["failed"] or ""))
    return common.table(["client", "call", "calls", "p50 (ms)", "p99 (ms)", "peak RSS p50 (MiB)",
                         "peak RSS max (MiB)", "failed"], rows, right_from=2)


def report_storm(results, jobs) -> str:
    rows = []
    for name, r in results.items():
        v = r["ms"]
        rows.append((name, len(v), f"{common.percentile(v, 50):.1f}" if v else "—",
                     f"{common.percentile(v, 99):.1f}" if v else "—", f"{max(v):.1f}" if v else "—",
                     r["failed"] or "", f"{r['restarts']:.0f}", f"{r['cpu']:.0f}"))
    return common.table(["supervisor", "pings", "p50 (ms)", "p99 (ms)", "max (ms)", "failed",
                         f"restarts/s ({jobs} jobs)", "supervisor CPU (% of a core)"], rows)


# -- main ---------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--storm-jobs", type=int, default=50)
    parser.add_argument("--only", help="peer kinds or names, comma-separated")
    parser.add_argument("--full", action="store_true", help="--calls 100 --idle-seconds 60 --pings 500")
    args = parser.parse_args(argv)
    if args.full:
        args.calls, args.idle_seconds, args.pings = max(args.calls, 100), max(args.idle_seconds, 60), max(args.pings, 500)
    common.become_subreaper()
    probe = peers.build_probe()
    peers.warm_bytecode()
    peer_list = peers.available_peers(args.only.split(",") if args.only else None,
                                      warn=lambda m: print(m, file=sys.stderr))
    began, load_before = time.monotonic(), peers.load()
    idle_res, before, after = footprint_phase(peer_list, probe, args.idle_seconds)
    with ConsulAgent() as agent:
        runs = [Run(p, Workload(IDLE_JOBS), probe, telemetry=telemetry(), consul=agent.http_addr)
                for p in peer_list if p.control]
        try:
            start_all(runs, ping=True)
            print(f"bench: {args.calls} rounds of client calls", file=sys.stderr, flush=True)
            samples = client_calls(runs, args.calls, probe["meter"])
        finally:
            for run in runs:
                run.close()
            common.reap_orphans()
    storms = {}
    for peer in [p for p in peer_list if p.control]:
        print(f"bench: restart storm under {peer.name} (load {peers.load()})", file=sys.stderr, flush=True)
        storms[peer.name] = storm(peer, probe, args.storm_jobs, args.pings)
        common.reap_orphans()
    names = [p.name for p in peer_list]
    print(f"Client calls and footprint ({datetime.date.today()}, {os.cpu_count()} CPUs; load average "
          f"before {load_before}, after {peers.load()}; {time.monotonic() - began:.0f} s)\n")
    print(f"**Idle footprint** ({IDLE_JOBS} sleep-like jobs, no checks, no telemetry; a quiet "
          f"window of {args.idle_seconds:g} s scaled to a minute; the last column after three "
          f"`-ping` calls)\n")
    print(report_footprint(names, idle_res, before, after, args.idle_seconds))
    print(f"\n**Client calls from outside** ({args.calls} of each, interleaved; the supervisors "
          f"run 10 jobs with telemetry; dist/pilot reuses the running copy; peak RSS is the "
          f"call's largest process)\n")
    print(report_calls(samples))
    print(f"\n**Control socket during a restart storm** ({args.storm_jobs} jobs exiting 1 at once, "
          f"restarted for ever; `GET /v3/ping`, a new connection each, 10 ms apart)\n")
    print(report_storm(storms, args.storm_jobs))
    return 0


if __name__ == "__main__":
    common.run_main(main)
