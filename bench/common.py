"""Helpers the benchmarks share: percentiles, markdown tables, /proc
readings (CPU time, RSS, PSS, process trees), a throwaway venv for peers
such as supervisord, and clean-up of every process a bench started.

Benchmarks are not tests: they print numbers and assert nothing.
"""
from __future__ import annotations

import collections
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv/bin/python").exists() else sys.executable
PILOT = str(ROOT / "pilot.py")
CACHE = ROOT / ".cache" / "bench"
BENCH_VENV = ROOT / ".cache" / "bench-venv"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PR_SET_CHILD_SUBREAPER = 36


# -- numbers and tables ---------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], right_from: int = 1) -> str:
    """A markdown table; columns from `right_from` on are right-aligned."""
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.01):
    """Poll `cond` until truthy; give up with one clear line at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# -- /proc ----------------------------------------------------------------------

def _stat_fields(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rfind(b")") + 2:].decode().split()


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` (10 ms ticks)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLOCK_TICK


def reaped_children_cpu_seconds(pid: int) -> float:
    """CPU its children used once reaped (cutime+cstime), e.g. the health
    checks a supervisor ran."""
    f = _stat_fields(pid)
    return (int(f[13]) + int(f[14])) / CLOCK_TICK


def on_cpu_seconds(pid: int) -> float:
    """Time every thread of `pid` spent on a CPU, in nanoseconds from
    schedstat (utime/stime tick only every 10 ms: too coarse for an idle
    process); falls back to utime+stime."""
    total, found = 0, False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
                found = True
    except OSError:
        pass
    return total / 1e9 if found else cpu_seconds(pid)


def children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree(root: int) -> List[int]:
    """`root` and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children(pid))
    return out


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    """Resident set size; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except OSError:
        return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among their users, so a
    tree's sum does not count shared libraries once per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


# -- processes ------------------------------------------------------------------

def compile_static(name: str, source: str) -> Path:
    """A static build of `source` under .cache/bench/ (rebuilt when the text
    changes): no loader work in what is measured."""
    CACHE.mkdir(parents=True, exist_ok=True)
    src, exe = CACHE / f"{name}.c", CACHE / name
    if not exe.exists() or not src.exists() or src.read_text() != source:
        src.write_text(source)
        for flags in (["-static"], []):
            done = subprocess.run(["gcc", "-O2", *flags, "-o", str(exe), str(src)],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                break
        else:
            raise SystemExit(f"bench: gcc could not build {name}: {done.stderr.strip()}")
    return exe


def become_subreaper() -> None:
    """Orphans of what this bench starts come back to it, so clean-up can
    find and kill them even after their supervisor is gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def stop(proc: subprocess.Popen, timeout: float = 15.0, spare: Iterable[int] = ()) -> None:
    """SIGTERM the supervisor, SIGKILL if it lingers, then kill and reap
    every process left below this bench (orphans came to us), except the
    children in `spare` (e.g. a Consul agent the bench still needs)."""
    if proc.poll() is None:
        leftovers = tree(proc.pid)[1:]
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill(leftovers)
    reap_orphans(spare)


def reap_orphans(spare: Iterable[int] = ()) -> None:
    """Kill and reap children of this process that no Popen owns, but `spare`."""
    spare = set(spare)
    for _ in range(50):
        kids = [pid for pid in children(os.getpid()) if pid not in spare]
        if not kids:
            return
        _kill(kids)
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # a Popen of ours reaps it


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- peers ----------------------------------------------------------------------

def bench_venv_tool(tool: str, package: str) -> str:
    """Path of `tool` from a throwaway venv under .cache/bench-venv,
    installing `package` there with pip when missing (never in .venv)."""
    path = BENCH_VENV / "bin" / tool
    if path.exists():
        return str(path)
    boot = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    if not (BENCH_VENV / "bin" / "python").exists():
        subprocess.run([boot, "-m", "venv", str(BENCH_VENV)], check=True)
    print(f"bench: installing {package} into {BENCH_VENV}", file=sys.stderr)
    subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q",
                    "--disable-pip-version-check", package], check=True)
    return str(path)


# -- profiling ------------------------------------------------------------------

def start_profiler(pid: int, out: Path, rate: int = 1000) -> subprocess.Popen:
    """py-spy (from the bench venv) sampling `pid` into `out` (collapsed
    stacks), idle samples left out; stop it with `stop_profiler`."""
    spy = bench_venv_tool("py-spy", "py-spy")
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()


def profile_report(path: Path, top: int = 25) -> str:
    """Inclusive and own share of samples per function, from py-spy's
    collapsed stacks (`frame;frame;frame count`)."""
    if not path.exists():
        return "(py-spy wrote no profile: is ptrace allowed here?)"
    inclusive, own, total = collections.Counter(), collections.Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return "(no samples)"
    rows = [(f"`{frame}`", f"{n / total * 100:.1f}", f"{own[frame] / total * 100:.1f}")
            for frame, n in inclusive.most_common(top)]
    return f"py-spy, {total} samples\n\n" + table(["function (file:line)", "inclusive %", "own %"], rows)


def run_main(main) -> None:
    """Exit with `main()`'s status; on Ctrl-C, kill and reap what the bench
    started and exit 130."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        reap_orphans()
        sys.exit(130)
