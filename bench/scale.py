"""Scale: 10 / 100 / 1,000 jobs under Pilot, ContainerPilot 3.8, supervisord
and tini, side by side in one run, each as PID 1 of its own PID namespace,
Pilot and ContainerPilot on the same config file (see bench/peers.py).

Two workloads per job count: sleep-like jobs without health checks, and the
same jobs each with an exec health check every 1 s (Pilot and ContainerPilot
only: supervisord and tini have none). Rounds are interleaved (every peer
once per round, the order rotated each round) so other load on the machine
falls on all of them alike. Per peer and workload:

* exec -> first job running, exec -> all running (the jobs' own clocks);
* over a window of --window seconds once all run: the supervisor's CPU
  (every thread, schedstat), the same plus its reaped children's (checks),
  checks actually run per second against those scheduled (jobs/interval);
* the supervisor's RSS (every process that is not a job or a check: both
  ContainerPilot processes, dist/pilot's launcher and Python, tini and its
  shell);
* SIGTERM to PID 1 -> PID 1 exited (capped at --stop-cap seconds).

    .venv/bin/python bench/scale.py [--jobs 10,100] [--rounds 1] [--window 5]
        [--stop-cap 30] [--full] [--only pilot,containerpilot]
    .venv/bin/python bench/scale.py --profile 1000   # py-spy on python pilot.py

`--full` is --jobs 10,100,1000 --rounds 2 --window 10 (about 20 minutes).
`--profile N` runs only python pilot.py with N jobs and checks and prints
where its time goes (py-spy from .cache/bench-venv).
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is not a package)
import peers  # noqa: E402
from peers import Run, Workload  # noqa: E402

SETTLE = {False: 1.0, True: 3.0}  # seconds after all run: checks start one interval in


def measure(peer, workload: Workload, probe, window: float, stop_cap: float,
            checks_run=lambda run: run.files.checks_run()) -> Dict[str, object]:
    """One start, window and stop of one peer on one workload; `checks_run`
    counts the checks run so far (by default, the bytes scale-check wrote)."""
    with Run(peer, workload, probe) as run:
        started = run.wait_jobs(timeout=60 + workload.jobs * 0.3)
        out: Dict[str, object] = {"first": started[0], "all": started[-1]}
        time.sleep(SETTLE[workload.checks])
        pids = run.supervisor_pids()
        cpu0, reaped0, checks0 = peers.cpu(pids), peers.reaped_cpu(pids), checks_run(run)
        t0 = time.monotonic()
        time.sleep(window)
        cpu1, reaped1, checks1 = peers.cpu(pids), peers.reaped_cpu(pids), checks_run(run)
        took = time.monotonic() - t0
        out["rss"] = peers.rss_kib(pids) / 1024
        out["cpu_pct"] = (cpu1 - cpu0) / took * 100
        if workload.checks:
            ran = checks1 - checks0
            out["checks_s"] = ran / took
            out["checks_pct"] = ran / (workload.jobs * took / peers.CHECK_INTERVAL) * 100
            out["cpu_check"] = (cpu1 - cpu0) / ran * 1000 if ran else None
            out["cpu_check_all"] = ((cpu1 - cpu0) + (reaped1 - reaped0)) / ran * 1000 if ran else None
        out["stop"] = run.stop(stop_cap)
        return out


def run_rounds(peer_list, job_counts, rounds, window, stop_cap, probe):
    """{(jobs, checks): {peer name: [result per round]}}, interleaved."""
    results: Dict[tuple, Dict[str, List[dict]]] = {}
    for r in range(rounds):
        for n in job_counts:
            for checks in (False, True):
                w = Workload(n, checks)
                todo = [p for p in peer_list if p.runs(w)]
                shift = r % len(todo)
                for peer in todo[shift:] + todo[:shift]:
                    print(f"bench: round {r + 1}/{rounds}, {n} jobs{' + checks' if checks else ''}: "
                          f"{peer.name} (load {peers.load()})", file=sys.stderr, flush=True)
                    res = measure(peer, w, probe, window, stop_cap)
                    results.setdefault((n, checks), {}).setdefault(peer.name, []).append(res)
                    common.reap_orphans()
    return results


# -- report -------------------------------------------------------------------

def cell(values: List[object], fmt: str, scale: float = 1.0, cap: Optional[float] = None) -> str:
    """Median of the rounds, with the range when they differ."""
    if not values:
        return "—"
    if cap is not None and any(v is None for v in values):
        done = [v for v in values if v is not None]
        return f"> {cap:g}" if not done else f"{fmt.format(min(done) * scale)}–> {cap:g}"
    nums = [v * scale for v in values if v is not None]
    if not nums:
        return "—"
    lo, hi = min(nums), max(nums)
    if len(nums) == 1 or fmt.format(lo) == fmt.format(hi):
        return fmt.format(statistics.median(nums))
    return f"{fmt.format(lo)}–{fmt.format(hi)}"


ROWS = [  # (label, key, format, scale, which workload)
    ("exec → first job running (ms)", "first", "{:.0f}", 1000, False),
    ("exec → all running (ms)", "all", "{:.0f}", 1000, False),
    ("idle CPU, no checks (% of a core)", "cpu_pct", "{:.2f}", 1, False),
    ("RSS, no checks (MiB)", "rss", "{:.1f}", 1, False),
    ("SIGTERM → exit, no checks (s)", "stop", "{:.2f}", 1, False),
    ("with checks: exec → all running (ms)", "all", "{:.0f}", 1000, True),
    ("checks run per second", "checks_s", "{:.0f}", 1, True),
    ("checks run, % of scheduled (goal ≥ 95)", "checks_pct", "{:.0f}", 1, True),
    ("supervisor CPU with checks (% of a core)", "cpu_pct", "{:.1f}", 1, True),
    ("supervisor CPU per check, own (ms)", "cpu_check", "{:.2f}", 1, True),
    ("supervisor CPU per check, with children (ms)", "cpu_check_all", "{:.2f}", 1, True),
    ("RSS with checks (MiB)", "rss", "{:.1f}", 1, True),
    ("SIGTERM → exit, with checks (s)", "stop", "{:.2f}", 1, True),
]


def report(results, peer_list, job_counts, stop_cap) -> str:
    out = []
    names = [p.name for p in peer_list]
    for n in job_counts:
        rows = []
        for label, key, fmt, scale, checks in ROWS:
            by_peer = results.get((n, checks), {})
            row = [label]
            for name in names:
                values = [r.get(key) for r in by_peer.get(name, [])]
                row.append(cell(values, fmt, scale, stop_cap if key == "stop" else None))
            rows.append(row)
        out.append(f"**{n} jobs** (health checks: `scale-check` every {peers.CHECK_INTERVAL} s, "
                   f"{n / peers.CHECK_INTERVAL:g} scheduled per second)\n")
        out.append(common.table(["measure", *names], rows))
        out.append("")
    return "\n".join(out)


# -- profile ------------------------------------------------------------------

def _in(name):
    return lambda frames: any(f.startswith(name + " ") for f in frames)


def _eq_called_from(name):
    return lambda frames: frames[-1].startswith("__create_fn__.<locals>.__eq__") and \
        len(frames) > 1 and frames[-2].startswith(name + " ")


# Parts of Pilot's work per health check, by the frames of a sample (first
# match wins; names as in pilot/ today: a renamed function lands in "other").
PARTS = [
    ("Event equality (dataclass __eq__) in Mailbox.put", _eq_called_from("Mailbox.put")),
    ("Event equality (dataclass __eq__) in Job rules", lambda f: f[-1].startswith("__create_fn__.<locals>.__eq__")),
    ("posix_spawn (py-spy also counts the loop blocked until the child execs)", _in("Command._spawn")),
    ("output pumps (pipe readers)", _in("Command._pump")),
    ("Mailbox.put, the rest (every publish reaches every mailbox)", _in("Mailbox.put")),
    ("Job.handle, the rest (rules run for every event)", _in("Job.handle")),
    ("Mailbox.get (wake-up of a job's greenlet)", _in("Mailbox.get")),
    ("exit supervision (Command._supervise)", _in("Command._supervise")),
    ("timers (Timers._tick)", _in("Timers._tick")),
    ("job loop, the rest", _in("JobRunner._loop")),
    ("gevent hub", _in("Hub.run")),
]


def parts_report(path: Path) -> str:
    """Samples per part of the work (PARTS), from py-spy's collapsed stacks."""
    counts, total = {label: 0 for label, _ in PARTS}, 0
    counts["other"] = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames, total = stack.split(";"), total + int(n)
        label = next((lbl for lbl, match in PARTS if match(frames)), "other")
        counts[label] += int(n)
    rows = [(label, f"{n / total * 100:.1f}") for label, n in counts.items() if total]
    return common.table(["part", "% of samples"], rows)


def profile(n: int, seconds: float, probe) -> str:
    """py-spy on python pilot.py with `n` jobs and checks, once all run; the
    collapsed stacks stay in .cache/bench/profile-N.txt."""
    peer = peers.available_peers(["python pilot.py"], warn=lambda *_: None)[0]
    w = Workload(n, checks=True)
    with Run(peer, w, probe) as run:
        run.wait_jobs(timeout=60 + n * 0.3)
        time.sleep(SETTLE[True])
        pid = run.init  # python pilot.py is PID 1 itself
        checks0, cpu0 = run.files.checks_run(), peers.cpu([pid])
        out = common.CACHE / f"profile-{n}.txt"
        spy = common.start_profiler(pid, out, rate=250)
        time.sleep(seconds)
        common.stop_profiler(spy)
        ran, used = run.files.checks_run() - checks0, peers.cpu([pid]) - cpu0
        head = (f"python pilot.py, {n} jobs with checks, {seconds:g} s under py-spy (250 Hz; "
                f"sampling slows it): {ran / seconds:.0f} checks/s, "
                f"{used / max(ran, 1) * 1000:.2f} ms CPU per check; stacks in {out}\n\n")
        return head + parts_report(out) + "\n\n" + common.profile_report(out, top=30)


# -- main ---------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="10,100", help="job counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--window", type=float, default=5, help="seconds measured once all run")
    parser.add_argument("--stop-cap", type=float, default=30, help="give up waiting for an exit after this")
    parser.add_argument("--only", help="peer kinds or names, comma-separated")
    parser.add_argument("--full", action="store_true", help="--jobs 10,100,1000 --rounds 2 --window 10")
    parser.add_argument("--profile", type=int, metavar="N", help="py-spy python pilot.py with N jobs")
    args = parser.parse_args(argv)
    common.become_subreaper()
    probe = peers.build_probe()
    peers.warm_bytecode()
    if args.profile:
        print(profile(args.profile, max(args.window, 10), probe))
        return 0
    if args.full:
        args.jobs, args.rounds, args.window = "10,100,1000", max(args.rounds, 2), max(args.window, 10)
    job_counts = [int(x) for x in args.jobs.split(",")]
    peer_list = peers.available_peers(args.only.split(",") if args.only else None,
                                      warn=lambda m: print(m, file=sys.stderr))
    began, load_before = time.monotonic(), peers.load()
    results = run_rounds(peer_list, job_counts, args.rounds, args.window, args.stop_cap, probe)
    print(f"Scale ({datetime.date.today()}, {os.cpu_count()} CPUs, {args.rounds} round(s), "
          f"{args.window:g} s windows; load average before {load_before}, after {peers.load()}; "
          f"{time.monotonic() - began:.0f} s)\n")
    print(report(results, peer_list, job_counts, args.stop_cap))
    return 0


if __name__ == "__main__":
    common.run_main(main)
