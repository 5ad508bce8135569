"""Pilot as a supervisor, side by side with supervisord running the same
programs; prints markdown tables.

1. Restart latency: a job that exits at once (status 1) and is restarted
   for ever (Pilot: `restarts: "unlimited"`; supervisord:
   `autorestart=true`, `startsecs=0`, a huge `startretries`). The job is a
   tiny static C program, compiled with gcc into .cache/bench/ at bench
   time, that appends a CLOCK_MONOTONIC reading when it starts and another
   just before it exits. The gap from one run's exit reading to the next
   run's start reading is the supervisor's restart latency (reap, decide,
   spawn, exec). C because the probe must cost next to nothing: python
   needs ~15 ms to start, `sh` + `date` forks again, and `/proc/uptime` has
   10 ms resolution. A bare `posix_spawn` + `waitpid` loop running the same
   probe is the floor.
2. Idle cost: 10 long-running jobs (`sleep`), with and without 10 health
   checks (`/bin/true` every 5 s), supervisord with the same 10 programs
   (it has no health checks). CPU time of the supervisor process over the
   idle window (and with its reaped children, i.e. the checks), RSS of the
   supervisor, and RSS/PSS of its whole process tree.

    .venv/bin/python bench/supervisor.py [--restarts 200] [--max-seconds 60]
        [--idle-seconds 60] [--profile]

`--profile` samples Pilot with py-spy (installed into .cache/bench-venv)
during the restart loop and prints where its time goes.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is not a package)
from common import mib, percentile, table, wait_for  # noqa: E402

PROBE_SOURCE = r"""
/* Appends "S <monotonic>" at start and "E <monotonic>" before exit to
   argv[1], then exits with status argv[2] (default 1). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void stamp(int fd, char tag) {
    struct timespec ts;
    char buf[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(buf, sizeof buf, "%c %lld.%09ld\n", tag, (long long)ts.tv_sec, ts.tv_nsec);
    if (write(fd, buf, n) != n) _exit(3);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 2;
    stamp(fd, 'S');
    stamp(fd, 'E');
    _exit(argc > 2 ? atoi(argv[2]) : 1);
}
"""

JOBS = 10
CHECK_INTERVAL = 5
PROFILE_RESTARTS = 3000
WARMUP = 5  # restarts discarded while the supervisor warms up


# -- the probe ----------------------------------------------------------------

def build_probe() -> str:
    """The probe, static: no dynamic loader work in the measured gap."""
    return str(common.compile_static("restart-probe", PROBE_SOURCE))


def read_stamps(path: Path):
    """[(tag, seconds)] in file order; a torn last line is left for later."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("S", "E"):
            try:
                out.append((parts[0], float(parts[1])))
            except ValueError:
                pass
    return out


def gaps(stamps) -> list:
    """Exit of one run -> start of the next, in seconds."""
    return [b[1] - a[1] for a, b in zip(stamps, stamps[1:]) if a[0] == "E" and b[0] == "S"]


def starts(path: Path) -> int:
    return sum(1 for tag, _ in read_stamps(path) if tag == "S")


# -- supervisors under test -----------------------------------------------------

def pilot_config(tmp: Path, jobs: list) -> Path:
    import json
    path = tmp / "pilot.json5"
    path.write_text(json.dumps({
        "control": {"socket": str(tmp / "pilot.sock")},
        "logging": {"level": "INFO"},
        "jobs": jobs,
    }, indent=1))
    return path


def start_pilot(tmp: Path, jobs: list) -> subprocess.Popen:
    config = pilot_config(tmp, jobs)
    with open(tmp / "pilot.log", "wb") as log:
        return subprocess.Popen([common.PYTHON, common.PILOT, "-config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(tmp))


def supervisord_config(tmp: Path, programs: dict) -> Path:
    lines = ["[supervisord]", "nodaemon=true", f"logfile={tmp / 'supervisord.log'}",
             f"pidfile={tmp / 'supervisord.pid'}", f"childlogdir={tmp}", "loglevel=info", ""]
    for name, (command, extra) in programs.items():
        lines += [f"[program:{name}]", f"command={command}", "autostart=true",
                  f"stdout_logfile={tmp / (name + '.log')}", "redirect_stderr=true", *extra, ""]
    path = tmp / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


def start_supervisord(tmp: Path, programs: dict) -> subprocess.Popen:
    exe = common.bench_venv_tool("supervisord", "supervisor")
    config = supervisord_config(tmp, programs)
    with open(tmp / "supervisord.out", "wb") as log:
        return subprocess.Popen([exe, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=str(tmp))


# -- 1. restart latency ---------------------------------------------------------

def wait_first_run(proc: subprocess.Popen, stamps_file: Path, timeout: float = 30) -> None:
    """Until the probe has run once; else stop with the supervisor's log."""
    try:
        wait_for(lambda: proc.poll() is not None or starts(stamps_file) >= 1, timeout,
                 "the first run of the probe")
    except SystemExit as failure:
        tail = "".join(p.read_text(errors="replace")[-2000:] for p in stamps_file.parent.glob("*.log"))
        raise SystemExit(f"{failure}; log:\n{tail}") from None
    if proc.poll() is not None:
        raise SystemExit(f"bench: supervisor exited early with status {proc.returncode}")


def collect_restarts(proc: subprocess.Popen, stamps_file: Path, restarts: int,
                     max_seconds: float, warmup: int = WARMUP) -> list:
    """Let the supervisor restart the probe `restarts` (+ `warmup`) times,
    or until `max_seconds` pass; the gaps after warm-up."""
    wanted = restarts + warmup + 1
    wait_first_run(proc, stamps_file)
    deadline = time.monotonic() + max_seconds
    while starts(stamps_file) < wanted and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: supervisor exited early with status {proc.returncode}")
        time.sleep(0.05)
    return gaps(read_stamps(stamps_file))[warmup:][:restarts]


def restart_pilot(probe: str, restarts: int, max_seconds: float, profile: bool = False,
                  job: Optional[dict] = None):
    """Gaps of `python pilot.py` restarting the probe (its job also given the
    fields in `job`, e.g. `user`); with `profile`, a py-spy report instead
    (sampling slows the process it samples)."""
    with tempfile.TemporaryDirectory(prefix="pilot-bench-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o777)  # a probe run as another user writes its stamps here
        stamps_file = tmp / "stamps"
        proc = start_pilot(tmp, [{"name": "flap", "exec": [probe, str(stamps_file)],
                                  "restarts": "unlimited", **(job or {})}])
        profiler = None
        try:
            if profile:
                wait_first_run(proc, stamps_file)
                profiler = common.start_profiler(proc.pid, tmp / "profile.txt")
            values = collect_restarts(proc, stamps_file, restarts, max_seconds)
        finally:
            if profiler is not None:
                common.stop_profiler(profiler)
            common.stop(proc)
        if profile:
            return f"{len(values)} restarts; " + common.profile_report(tmp / "profile.txt")
        return values


def restart_supervisord(probe: str, restarts: int, max_seconds: float, more: Sequence[str] = ()):
    with tempfile.TemporaryDirectory(prefix="pilot-bench-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o777)
        stamps_file = tmp / "stamps"
        extra = ["autorestart=true", "startsecs=0", "startretries=1000000000", "exitcodes=0", *more]
        proc = start_supervisord(tmp, {"flap": (f"{probe} {stamps_file}", extra)})
        try:
            # one restart a second: a long warm-up would eat the time budget
            return collect_restarts(proc, stamps_file, restarts, max_seconds, warmup=1)
        finally:
            common.stop(proc)


def restart_floor(probe: str, restarts: int):
    """The same probe restarted by the tightest loop Python can write."""
    with tempfile.TemporaryDirectory(prefix="pilot-bench-") as name:
        stamps_file = Path(name) / "stamps"
        for _ in range(restarts + WARMUP + 1):
            pid = os.posix_spawn(probe, [probe, str(stamps_file)], os.environ, setpgroup=0)
            os.waitpid(pid, 0)
        return gaps(read_stamps(stamps_file))[WARMUP:][:restarts]


def restart_table(results: dict) -> str:
    rows = []
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        if not ms:
            rows.append((name, 0, "-", "-", "-", "-"))
            continue
        rows.append((name, len(ms), f"{percentile(ms, 50):.2f}", f"{percentile(ms, 99):.2f}",
                     f"{min(ms):.2f}", f"{max(ms):.2f}"))
    return table(["restarted by", "restarts", "p50 (ms)", "p99 (ms)", "min (ms)", "max (ms)"], rows)


# -- 2. idle cost -------------------------------------------------------------

def idle_jobs(checks: bool) -> list:
    jobs = []
    for i in range(JOBS):
        job = {"name": f"app{i}", "exec": ["sleep", "1000000"], "restarts": "unlimited"}
        if checks:
            job["health"] = {"exec": ["/bin/true"], "interval": CHECK_INTERVAL,
                             "ttl": 2 * CHECK_INTERVAL}
        jobs.append(job)
    return jobs


def sleeps_running(pid: int) -> bool:
    return sum(1 for p in common.tree(pid) if common.comm(p) == "sleep") >= JOBS


def measure_idle(idle_seconds: float) -> list:
    """Start each variant (one at a time, timing its start-up), then let
    them all sit idle together for `idle_seconds` and read their costs."""
    variants = [
        ("Pilot, 10 jobs + 10 health checks", lambda t: start_pilot(t, idle_jobs(True))),
        ("Pilot, 10 jobs", lambda t: start_pilot(t, idle_jobs(False))),
        ("supervisord, 10 programs", lambda t: start_supervisord(
            t, {f"app{i}": ("sleep 1000000", ["autorestart=true"]) for i in range(JOBS)})),
    ]
    tmps, running = [], []
    try:
        for name, start in variants:
            tmp = tempfile.TemporaryDirectory(prefix="pilot-bench-")
            tmps.append(tmp)
            began = time.monotonic()
            proc = start(Path(tmp.name))
            running.append((name, proc))
            wait_for(lambda: proc.poll() is not None or sleeps_running(proc.pid), 60,
                     f"{name}: {JOBS} jobs running")
            if proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with status {proc.returncode}")
            startup_ms = (time.monotonic() - began) * 1000
            running[-1] = (name, proc, startup_ms)
        time.sleep(2)  # let start-up work (imports, first checks' set-up) settle
        before = {proc.pid: (common.on_cpu_seconds(proc.pid),
                            common.reaped_children_cpu_seconds(proc.pid))
                  for _, proc, _ in running}
        time.sleep(idle_seconds)
        rows = []
        for name, proc, startup_ms in running:
            own0, reaped0 = before[proc.pid]
            own = common.on_cpu_seconds(proc.pid) - own0
            everything = own + common.reaped_children_cpu_seconds(proc.pid) - reaped0
            pids = common.tree(proc.pid)
            rows.append((name, f"{startup_ms:.0f}", f"{own * 1000:.0f}",
                         f"{own / idle_seconds * 100:.2f}", f"{everything * 1000:.0f}",
                         mib(common.rss_kib(proc.pid)), mib(sum(map(common.rss_kib, pids))),
                         mib(sum(map(common.pss_kib, pids))), len(pids)))
        return rows
    finally:
        for entry in running:
            common.stop(entry[1])
        for tmp in tmps:
            tmp.cleanup()


def idle_table(rows: list, idle_seconds: float) -> str:
    return table(["supervisor", "start → all running (ms)", f"CPU over {idle_seconds:g} s (ms)",
                  "CPU (% of a core)", "CPU incl. reaped children (ms)", "RSS (MiB)",
                  "tree RSS (MiB)", "tree PSS (MiB)", "processes"], rows)


# -- main -----------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=200, help="restarts measured per supervisor")
    parser.add_argument("--max-seconds", type=float, default=60,
                        help="stop collecting restarts of one supervisor after this long")
    parser.add_argument("--idle-seconds", type=float, default=60, help="length of the idle window")
    parser.add_argument("--profile", action="store_true", help="sample Pilot with py-spy")
    parser.add_argument("--skip-idle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.become_subreaper()
    probe = build_probe()
    results = {
        "bare loop (posix_spawn + waitpid, Python)": restart_floor(probe, args.restarts),
        "Pilot (`python pilot.py`, restarts: unlimited)": restart_pilot(
            probe, args.restarts, args.max_seconds),
        "supervisord 4 (autorestart, startsecs=0)": restart_supervisord(
            probe, args.restarts, args.max_seconds),
    }
    if os.geteuid() == 0:  # jobs that set `dir` or `user` start by fork+exec in C
        results["Pilot, job with `dir` (vfork+exec)"] = restart_pilot(
            probe, args.restarts, args.max_seconds, job={"dir": "/"})
        results["Pilot, job with `user: \"65534:65534\"` (fork+exec)"] = restart_pilot(
            probe, args.restarts, args.max_seconds, job={"user": "65534:65534"})
        results["supervisord 4, program with `user=nobody`"] = restart_supervisord(
            probe, args.restarts, args.max_seconds, more=["user=nobody"])
    print(f"Restart latency: job exit -> next exec, static C probe "
          f"({datetime.date.today()}, {os.cpu_count()} CPUs)\n")
    print(restart_table(results))
    if args.profile:
        print("\nWhere Pilot's time goes while it restarts the probe (a separate run, "
              "sampled by py-spy; idle time not counted)\n")
        print(restart_pilot(probe, PROFILE_RESTARTS, args.max_seconds, profile=True))
    if not args.skip_idle:
        print(f"\nIdle cost: {JOBS} `sleep` jobs; health checks are `/bin/true` every "
              f"{CHECK_INTERVAL} s (supervisord has none)\n")
        print(idle_table(measure_idle(args.idle_seconds), args.idle_seconds))
    return 0


if __name__ == "__main__":
    common.run_main(main)
