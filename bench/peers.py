"""The supervisors that the scale and client benches run side by side, each
as PID 1 of its own PID namespace (`unshare --pid --fork --mount-proc`), on
the same workload:

* Pilot as `python pilot.py` and as `dist/pilot` (when `make dist` built it);
* ContainerPilot 3.8 (`$CP_BIN`, `containerpilot` on PATH, or
  `.cache/containerpilot/containerpilot`, which
  `../shared/tools/build-containerpilot.sh SOURCE_GIT_DIR .cache/containerpilot/containerpilot`
  builds from a git copy of its public source); Pilot and ContainerPilot
  read the very same config file;
* supervisord 4 from the throwaway venv (same programs, no health checks);
* tini (`tini -g` over a shell that starts the jobs and waits): the floor
  for starting N processes under an init that does nothing else.

Jobs and checks are one tiny static C program (`scale-job`, hard-linked as
`scale-check`): a job appends its CLOCK_MONOTONIC start time to a file and
waits for a signal; a check appends one byte to another file and exits 0
(`crash` appends a byte and exits 1, for restart storms). So "exec -> job
running" is read from the jobs' own clocks, and "checks run" is a file size.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import common

PROBE_SOURCE = r"""
/* scale-probe MODE FILE
   job:   append "<CLOCK_MONOTONIC seconds>\n" to FILE, then wait for a signal
   check: append one byte to FILE, exit 0
   crash: append one byte to FILE, exit 1 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 2;
    if (!strcmp(argv[1], "job")) {
        struct timespec ts;
        char buf[64];
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int n = snprintf(buf, sizeof buf, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
        if (write(fd, buf, n) != n) return 3;
        close(fd);
        for (;;) pause();
    }
    if (write(fd, "x", 1) != 1) return 3;
    return strcmp(argv[1], "crash") == 0 ? 1 : 0;
}
"""
METER_SOURCE = r"""
/* call-meter PROGRAM ARGS...: run it (stdin/stdout/stderr /dev/null), print
   "<wall ns> <peak RSS KiB> <exit status>". A tiny static process forks the
   call: the peak RSS the kernel reports for a child includes the memory of
   the process it was forked from (the bench's Python would add ~24 MB). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec a, b;
    struct rusage ru;
    int status;
    if (argc < 2) return 2;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0); dup2(null, 1); dup2(null, 2);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) return 2;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %ld %d\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec),
           ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
"""
JOB, CHECK = "scale-job", "scale-check"  # process names (comm) of jobs and checks
NOT_SUPERVISOR = (JOB, CHECK, "curl")  # what a supervisor runs (curl: bench/health.py's checks)
CHECK_INTERVAL = 1  # seconds


def build_probe() -> Dict[str, str]:
    """{"job": path, "check": path, "meter": path}: the probe under its two
    names, and call-meter."""
    exe = common.compile_static(JOB, PROBE_SOURCE)
    check = common.CACHE / CHECK
    if check.exists():
        check.unlink()
    os.link(exe, check)
    return {"job": str(exe), "check": str(check), "meter": str(common.compile_static("call-meter", METER_SOURCE))}


def containerpilot_binary() -> Optional[str]:
    """ContainerPilot 3.8 to compare with, or None (the bench says how to get it)."""
    for candidate in (os.environ.get("CP_BIN"), shutil.which("containerpilot"),
                      str(common.ROOT / ".cache" / "containerpilot" / "containerpilot")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CP_MISSING = ("bench: no ContainerPilot binary (set CP_BIN, put `containerpilot` on PATH, or "
              "build .cache/containerpilot/containerpilot with ../shared/tools/build-containerpilot.sh "
              "SOURCE_GIT_DIR .cache/containerpilot/containerpilot); its columns are left out")


def dist_pilot() -> Optional[str]:
    path = common.ROOT / "dist" / "pilot"
    return str(path) if path.exists() else None


def pilot_env(tmpdir: Path) -> dict:
    """The bench's environment with its own TMPDIR (where dist/pilot unpacks)
    and Python's bytecode cache allowed, as in an image built normally."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["TMPDIR"] = str(tmpdir)
    return env


def warm_bytecode() -> None:
    """Compile Pilot's modules once, so `python pilot.py` starts from .pyc
    files (the environment may forbid writing them)."""
    subprocess.run([common.PYTHON, "-m", "compileall", "-q", str(common.ROOT / "pilot")],
                   env=pilot_env(Path(tempfile.gettempdir())), check=True,
                   stdout=subprocess.DEVNULL)


# -- what runs ----------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    jobs: int
    checks: bool = False
    crash: bool = False  # jobs exit 1 at once and are restarted for ever
    # What a check is: "exec" (scale-check), "http" (Pilot's own GET of
    # check_url) or "curl" (an exec of curl on check_url, as 3.8 users write it).
    check: str = "exec"
    check_url: str = ""


@dataclass(frozen=True)
class Peer:
    name: str  # column heading
    kind: str  # pilot | containerpilot | supervisord | tini
    command: tuple  # argv before the per-run arguments
    health_checks: bool = True
    control: bool = True  # has a control socket for -ping & co

    def runs(self, workload: Workload) -> bool:
        return self.health_checks or not (workload.checks or workload.crash)


def available_peers(names: Optional[List[str]] = None, warn=print) -> List[Peer]:
    """Every peer found on this machine, or those whose kind or name is in
    `names`; `warn` hears about each one missing."""
    def wanted(kind: str, name: str) -> bool:
        return not names or kind in names or name in names

    out = []
    if wanted("pilot", "python pilot.py"):
        out.append(Peer("python pilot.py", "pilot", (common.PYTHON, common.PILOT)))
    if wanted("pilot", "dist/pilot"):
        dist = dist_pilot()
        if dist:
            out.append(Peer("dist/pilot", "pilot", (dist,)))
        else:
            warn("bench: no dist/pilot (`make dist`); its column is left out")
    if wanted("containerpilot", "ContainerPilot 3.8"):
        cp = containerpilot_binary()
        if cp:
            out.append(Peer("ContainerPilot 3.8", "containerpilot", (cp,)))
        else:
            warn(CP_MISSING)
    if wanted("supervisord", "supervisord 4"):
        out.append(Peer("supervisord 4", "supervisord",
                        (common.bench_venv_tool("supervisord", "supervisor"),),
                        health_checks=False, control=False))
    if wanted("tini", "tini + sh"):
        tini = shutil.which("tini")
        if tini:
            out.append(Peer("tini + sh", "tini", (tini, "-g", "--"), health_checks=False, control=False))
        else:
            warn("bench: no tini (Debian package `tini`); its column is left out")
    return out


class Files:
    """One run's private directory: config, stamps, checks, log, TMPDIR."""

    def __init__(self, tmp: Path, probe: Dict[str, str]):
        self.tmp = tmp
        self.probe = probe
        self.stamps = tmp / "stamps"
        self.checks = tmp / "checks"
        self.socket = tmp / "control.sock"
        self.log = tmp / "supervisor.log"
        self.tmpdir = tmp / "tmpdir"
        self.tmpdir.mkdir()

    def job_exec(self, workload: Workload) -> List[str]:
        if workload.crash:
            return [self.probe["check"], "crash", str(self.stamps)]
        return [self.probe["job"], "job", str(self.stamps)]

    def config(self, workload: Workload, consul: str = "127.0.0.1:8500",
               telemetry: Optional[dict] = None) -> Path:
        """One file for Pilot and ContainerPilot alike. 3.8 requires
        `consul`; nothing here talks to it unless `telemetry` is given."""
        jobs = []
        for i in range(workload.jobs):
            job = {"name": f"job{i}", "exec": self.job_exec(workload), "restarts": "unlimited"}
            if workload.checks:
                job["health"] = {**self.check(workload), "interval": CHECK_INTERVAL,
                                 "ttl": 5 * CHECK_INTERVAL}
            jobs.append(job)
        body = {"consul": consul, "control": {"socket": str(self.socket)},
                "logging": {"level": "INFO"}, "jobs": jobs}
        if telemetry:
            body["telemetry"] = telemetry
        path = self.tmp / "containerpilot.json5"
        path.write_text(json.dumps(body, indent=1))
        return path

    def check(self, workload: Workload) -> dict:
        """The `health` fields that say what a check runs."""
        if workload.check == "http":
            return {"http": workload.check_url}
        if workload.check == "curl":
            return {"exec": ["curl", "-fsS", "-o", "/dev/null", workload.check_url]}
        return {"exec": [self.probe["check"], "check", str(self.checks)]}

    def supervisord_config(self, workload: Workload) -> Path:
        lines = ["[supervisord]", "nodaemon=true", f"logfile={self.tmp / 'supervisord.log'}",
                 f"pidfile={self.tmp / 'supervisord.pid'}", f"childlogdir={self.tmp}",
                 "loglevel=info", f"minfds={max(1024, 4 * workload.jobs + 64)}", ""]
        command = " ".join(self.job_exec(workload))
        for i in range(workload.jobs):
            lines += [f"[program:job{i}]", f"command={command}", "autostart=true",
                      "autorestart=true", "startsecs=0", "startretries=1000000000",
                      "redirect_stderr=true", "stdout_logfile=NONE", ""]
        path = self.tmp / "supervisord.conf"
        path.write_text("\n".join(lines))
        return path

    def tini_script(self, workload: Workload) -> str:
        job = " ".join(self.job_exec(workload))
        return f"i=0; while [ $i -lt {workload.jobs} ]; do {job} & i=$((i+1)); done; wait"

    def stamps_seen(self) -> List[float]:
        try:
            text = self.stamps.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(float(line))
            except ValueError:
                pass  # a line being written
        return out

    def checks_run(self) -> int:
        try:
            return self.checks.stat().st_size
        except FileNotFoundError:
            return 0

    def tmpdir_kib(self) -> int:
        """What sits in TMPDIR (RAM when it is a tmpfs)."""
        total = 0
        for dirpath, _, names in os.walk(self.tmpdir):
            for n in names:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
                except OSError:
                    pass
        return total // 1024


class Run:
    """One peer as PID 1 of its own PID namespace, on one workload."""

    def __init__(self, peer: Peer, workload: Workload, probe: Dict[str, str],
                 telemetry: Optional[dict] = None, consul: str = "127.0.0.1:8500"):
        self.peer, self.workload = peer, workload
        self._dir = tempfile.TemporaryDirectory(prefix="pilot-bench-")
        self.files = Files(Path(self._dir.name), probe)
        self.argv = self._argv(telemetry, consul)
        self.env = pilot_env(self.files.tmpdir)
        self.proc: Optional[subprocess.Popen] = None
        self.init: Optional[int] = None  # host pid of the namespace's PID 1
        self.t0 = 0.0

    def _argv(self, telemetry, consul) -> List[str]:
        p, w, f = self.peer, self.workload, self.files
        if p.kind in ("pilot", "containerpilot"):
            return [*p.command, "-config", str(f.config(w, consul, telemetry))]
        if p.kind == "supervisord":
            return [*p.command, "-c", str(f.supervisord_config(w))]
        return [*p.command, "/bin/sh", "-c", f.tini_script(w)]

    @property
    def config(self) -> Path:
        return self.files.tmp / "containerpilot.json5"

    def start(self) -> "Run":
        with open(self.files.log, "wb") as log:
            self.t0 = time.monotonic()
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", *self.argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=str(self.files.tmp))
        self.init = common.wait_for(lambda: self._first_child(), 20, f"{self.peer.name} to start")
        return self

    def _first_child(self) -> Optional[int]:
        if self.proc.poll() is not None:
            raise SystemExit(f"bench: {self.peer.name} exited at once ({self.proc.returncode}): "
                             + self.log_tail())
        kids = common.children(self.proc.pid)
        return kids[0] if kids else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.files.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_jobs(self, timeout: float) -> List[float]:
        """Start times of the first `jobs` runs, as seconds after exec."""
        n = self.workload.jobs

        def enough():
            if not self.alive():
                raise SystemExit(f"bench: {self.peer.name} exited: {self.log_tail()}")
            seen = self.files.stamps_seen()
            return seen if len(seen) >= n else None
        stamps = common.wait_for(enough, timeout, f"{self.peer.name}: {n} jobs running", interval=0.005)
        return [s - self.t0 for s in sorted(stamps)[:n]]

    def supervisor_pids(self) -> List[int]:
        """The namespace's processes that are not jobs or checks, seen in
        two snapshots (so a check between fork and exec is not taken)."""
        def snapshot():
            return {p for p in common.tree(self.init) if common.comm(p) not in NOT_SUPERVISOR}
        first = snapshot()
        time.sleep(0.05)
        return sorted(first & snapshot())

    def stop(self, cap: float) -> Optional[float]:
        """SIGTERM to PID 1; seconds until it exited, or None after `cap`
        (then SIGKILL, which takes the whole namespace with it)."""
        if not self.alive():
            return None
        fd = os.pidfd_open(self.init)
        try:
            began = time.monotonic()
            os.kill(self.init, signal.SIGTERM)
            ready, _, _ = select.select([fd], [], [], cap)
            took = time.monotonic() - began if ready else None
        finally:
            os.close(fd)
        self.close()
        return took

    def close(self) -> None:
        """Leave nothing running: PID 1's death ends the namespace."""
        if self.proc is not None and self.proc.poll() is None:
            if self.init is not None:
                try:
                    os.kill(self.init, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()

    def __enter__(self) -> "Run":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# -- readings of a set of processes ---------------------------------------------

def cpu(pids: List[int]) -> float:
    """On-CPU seconds of every thread of `pids` (schedstat, ns resolution)."""
    return sum(common.on_cpu_seconds(p) for p in pids if os.path.exists(f"/proc/{p}"))


def reaped_cpu(pids: List[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            total += common.reaped_children_cpu_seconds(p)
        except OSError:
            pass
    return total


def rss_kib(pids: List[int]) -> int:
    return sum(common.rss_kib(p) for p in pids)


def context_switches(pids: List[int]) -> Dict[tuple, tuple]:
    """{(pid, tid): (voluntary, involuntary)} context switches per thread. A
    voluntary one means the thread blocked and was woken: a wake-up."""
    out = {}
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            counts = {}
            try:
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if "ctxt_switches:" in line:
                            key, value = line.split(":")
                            counts[key.strip()] = int(value)
            except OSError:
                continue
            out[(p, t)] = (counts.get("voluntary_ctxt_switches", 0),
                           counts.get("nonvoluntary_ctxt_switches", 0))
    return out


def switches_between(before: Dict[tuple, tuple], after: Dict[tuple, tuple]) -> tuple:
    """(voluntary, involuntary) switches between two readings; a thread born
    meanwhile counts from zero, one that ended is not seen."""
    vol = inv = 0
    for key, (v, i) in after.items():
        v0, i0 = before.get(key, (0, 0))
        vol, inv = vol + v - v0, inv + i - i0
    return vol, inv


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"
