"""Run Pilot as users do: `python pilot.py -config FILE`, as PID 1 of its
own PID namespace (`unshare --pid --fork --mount-proc`) or as an ordinary
process, and watch its log, its process tree and its exit.

Everything here waits on conditions with deadlines, never bare sleeps.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

from tests.support import DEADLINE, proc_stat, wait_for

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv/bin/python").exists() else sys.executable
ENTRY = str(ROOT / "pilot.py")


CONTROL_KEY = re.compile(r"""\bcontrol["']?\s*:""")  # a config's own `control` section


def config_text(jobs, consul: Optional[str] = None, watches=(), **top) -> str:
    """A config as users write it (JSON is JSON5), for `Pilot`: `jobs` and
    `watches` are lists of dicts, `consul` an agent's address, `top` any
    other top-level field (`logging`, `stopTimeout`...). Pilot gives it the
    test's own control socket."""
    doc = dict(top, jobs=list(jobs))
    if consul is not None:
        doc["consul"] = consul
    if watches:
        doc["watches"] = list(watches)
    return json.dumps(doc, indent=2)


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over the control socket, as a job's own client would speak it."""

    def __init__(self, path):
        super().__init__("control", timeout=DEADLINE)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(str(self.unix_path))


def control_request(path, method: str, url: str, body: Optional[bytes | str] = None):
    """(status, body bytes) of one request on the control socket at `path`,
    as `curl --unix-socket` sends it."""
    conn = UnixHTTP(path)
    try:
        conn.request(method, url, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def answers_ping(path) -> bool:
    """True when a control socket at `path` answers GET /v3/ping with 200;
    False while nothing listens there (no file yet, or bound and not yet
    listening: connect() is refused in between)."""
    try:
        return control_request(path, "GET", "/v3/ping")[0] == 200
    except OSError:
        return False


def children(pid: int) -> List[int]:
    """Direct children of `pid`, read in one go from the kernel."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def fast_tree(root: int) -> List[int]:
    """Like `tree`, but walks only the subtree: short enough to sample
    zombies without smearing a whole /proc scan over many milliseconds."""
    out, todo = [], [root]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def tree(root: int) -> List[int]:
    """Every process below `root` (host pids), zombies included."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                children.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def is_pilot(pid: int) -> bool:
    """True if process `pid` runs Pilot (its command line names a config):
    Pilot itself, or a copy of it loading a config aside."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"-config" in f.read()
    except OSError:
        return False


class Pilot:
    """One Pilot run with its log file; `pid` is Pilot's own host pid."""

    def __init__(self, tmp_path: Path, config: str, *, pid1: bool = True,
                 env: Optional[dict] = None, name: str = "pilot.json5",
                 args: Optional[List[str]] = None, command: Optional[List[str]] = None):
        self.tmp = Path(tmp_path)
        self.config = self.tmp / name
        self.socket = self.tmp / "pilot.sock"
        self._write(config, name)
        self.log_path = self.tmp / "pilot.log"
        self.err_path = self.tmp / "pilot.err"
        self.pid1 = pid1
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = args or []
        self.command = command or [PYTHON, ENTRY]  # e.g. [dist/pilot]
        self.proc: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None

    def _write(self, config: str, name: str) -> None:
        if not CONTROL_KEY.search(config) and name.endswith(".json5"):
            # Tests run side by side: each Pilot gets its own control socket.
            config = config.replace("{", f'{{control: {{socket: "{self.socket}"}}, ', 1)
        self.config.write_text(config)

    def rewrite_config(self, config: str) -> None:
        """Replace the config file as a user would before a reload (the
        test's control socket is kept unless `config` names one)."""
        self._write(config, self.config.name)

    def start(self) -> "Pilot":
        cmd = self.command + ["-config", str(self.config)] + self.args
        if self.pid1:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc"] + cmd
        self.proc = subprocess.Popen(
            cmd, stdout=open(self.log_path, "wb"), stderr=open(self.err_path, "wb"),
            stdin=subprocess.DEVNULL, env=self.env, cwd=str(self.tmp))
        if self.pid1:
            found = wait_for(self._namespace_init, what="pilot to start as pid 1")
            self.pid = found if isinstance(found, int) else None
        else:
            self.pid = self.proc.pid
        return self

    def _namespace_init(self):
        """Pilot's host pid once it runs; "exited" when it has already
        ended (a config whose jobs all complete at once may end before the
        first look), so that the test can read its exit status and log."""
        kids = [p for p in tree(self.proc.pid) if proc_stat(p) and proc_stat(p)[1] == self.proc.pid]
        if kids:
            return kids[0]
        return "exited" if self.proc.poll() is not None else None

    # -- observing --------------------------------------------------------

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def lines(self, pattern: str) -> List[str]:
        rx = re.compile(pattern)
        return [ln for ln in self.log.splitlines() if rx.search(ln)]

    def wait_log(self, pattern: str, count: int = 1, timeout: float = DEADLINE) -> List[str]:
        return wait_for(lambda: len(self.lines(pattern)) >= count and self.lines(pattern),
                        timeout, lambda: f"{count} log line(s) matching {pattern!r}; log:\n{self.log[-3000:]}")

    def descendants(self) -> List[int]:
        return tree(self.pid)

    def host_pid(self, ns_pid: int) -> Optional[int]:
        """The host pid of a process Pilot reports (in -status, /v3/status)
        by its pid inside Pilot's namespace; None when there is none."""
        if not self.pid1:
            return ns_pid
        for pid in [self.pid] + self.descendants():
            try:
                with open(f"/proc/{pid}/status") as f:
                    nspid = next(ln for ln in f if ln.startswith("NSpid:")).split()
            except (OSError, StopIteration):
                continue
            if int(nspid[-1]) == ns_pid:
                return pid
        return None

    # -- asking its control socket -------------------------------------------

    def ping(self) -> bool:
        """-ping's request, made directly (the config file may be broken on
        purpose): True when the control socket answers 200."""
        return answers_ping(self.socket)

    def _get(self, url: str):
        """(status, body) of GET `url` on the control socket, once it answers."""
        def ask():
            try:
                return control_request(self.socket, "GET", url)
            except OSError:
                return None  # not listening yet, or moved by a reload under way
        return wait_for(ask, what=lambda: f"the control socket to answer GET {url}; log:\n{self.log[-3000:]}")

    def status(self) -> dict:
        """GET /v3/status: jobs, maintenance, watches, templates."""
        code, body = self._get("/v3/status")
        assert code == 200, body
        return json.loads(body)

    def jobs(self) -> dict:
        """name → that job's entry of GET /v3/status."""
        return {j["name"]: j for j in self.status()["jobs"]}

    def job(self, name: str) -> dict:
        """GET /v3/jobs/NAME: one job's status."""
        code, body = self._get(f"/v3/jobs/{name}")
        assert code == 200, body
        return json.loads(body)

    def running_pids(self, names) -> Optional[dict]:
        """{name: pid} once every named job has a live exec, else None."""
        now = self.jobs()
        pids = {n: now.get(n, {}).get("pid") for n in names}
        return pids if all(pids.values()) else None

    def zombies(self) -> List[int]:
        """Zombies Pilot is responsible for: its own children (and, when
        PID 1 is the executable's launcher, the launcher's children)."""
        mine = children(self.pid)
        mine += [c for p in list(mine) if self.command[0] != PYTHON for c in children(p)
                 if proc_stat(p) and proc_stat(p)[0] != "Z" and is_pilot(p)]
        return [p for p in mine if (proc_stat(p) or ("", 0))[0] == "Z"]

    # -- acting -----------------------------------------------------------

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`python pilot.py -config CONFIG ARGS`: a client flag against this Pilot."""
        return run_cli("-config", str(self.config), *args, **kw)

    def signal(self, sig: int) -> None:
        assert self.pid is not None, f"pilot had already exited; log:\n{self.log[-3000:]}"
        os.kill(self.pid, sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pilot did not exit within {timeout}s; log:\n{self.log[-3000:]}")

    def stop(self) -> None:
        """Test clean-up: whatever happened, leave nothing running."""
        if self.proc is None or self.proc.poll() is not None or self.pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
                self.proc.wait(timeout=15)
                return
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        for p in self.descendants():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def output_lines(result: subprocess.CompletedProcess) -> List[str]:
    """The non-empty lines a CLI run wrote (stdout, then stderr): a refusal is
    one of them, never a traceback."""
    return [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]


def sleeper(name: str, tag: str = "v1") -> str:
    """A job (config text) that says `NAME-TAG-up` and then runs until stopped."""
    return f'{{name: "{name}", exec: ["sh", "-c", "echo {name}-{tag}-up; exec sleep 1000"]}}'


def run_cli(*args: str, env: Optional[dict] = None, timeout: float = DEADLINE,
            cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """`python pilot.py ARGS` as a user types it."""
    return subprocess.run([PYTHON, ENTRY, *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout, cwd=cwd)


# A job that leaves 300 orphans behind, one every few milliseconds, then exits 7;
# with a job that keeps Pilot running and one that says when the storm is over.
ORPHANS = "for i in $(seq 300); do (sleep 0.01 &); sleep 0.005; done; exit 7"
ORPHAN_JOBS = f"""{{jobs: [
    {{name: "keepalive", exec: ["sleep", "1000"]}},
    {{name: "orphans", exec: ["sh", "-c", "{ORPHANS}"]}},
    {{name: "witness", exec: ["echo", "orphans-exit-failed-seen"],
      when: {{source: "orphans", once: "exitFailed"}}}}]}}"""

# The most zombies one sample may show while Pilot reaps. An orphan dies
# every few milliseconds and a busy machine can keep Pilot off the CPU for a
# while (two busy loops beside the suite let 5 pile up), so the bound is
# loose; an init that does not reap shows all 300 (test_pid1's negative control).
ZOMBIE_BOUND = 50


def sample_zombies(p: Pilot, until: Callable[[], object], timeout: float = 2 * DEADLINE) -> int:
    """The most zombies Pilot's own children showed at one sample, sampled
    until `until()` holds (failing the test after `timeout`)."""
    worst = 0
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"sampled zombies for {timeout}s"
        worst = max(worst, len(p.zombies()))
        time.sleep(0.002)
    return worst


def orphan_storm_is_reaped(p: Pilot) -> None:
    """Run ORPHAN_JOBS' storm under Pilot `p`: zombies never pile up, none
    is left, the orphans' parent still gets its own exit status, and SIGTERM
    then ends Pilot with status 0."""
    worst = sample_zombies(p, lambda: p.lines("orphans-exit-failed-seen"))
    assert worst <= ZOMBIE_BOUND, f"saw {worst} zombies at once"
    wait_for(lambda: not p.zombies(), what=lambda: f"every orphan reaped (left: {p.zombies()})")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert "no child processes" not in p.log
    assert p.lines("orphans exited with error: exit status 7")
