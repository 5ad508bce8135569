"""Pilot as PID 1 of its own PID namespace: reaping, signals, shutdown
order, restarts, timeouts and exit statuses, with real processes."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import DEADLINE, count_lines, proc_stat, wait_for

from tests.integration.pilot_proc import (ENTRY, ORPHAN_JOBS, ORPHANS, PYTHON, ROOT, ZOMBIE_BOUND, Pilot,
                                      orphan_storm_is_reaped)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")


def test_orphans_are_reaped_and_exit_status_is_not_stolen(pilot):
    """Hundreds of orphaned children: zombies never pile up (at most
    ZOMBIE_BOUND at one sample, however busy the machine), none is left,
    no `no child processes`, and the job's own exit code still arrives."""
    orphan_storm_is_reaped(pilot(ORPHAN_JOBS))


def test_zombie_sampler_sees_zombies_under_a_non_reaping_init(tmp_path):
    """Negative control: the same workload under a PID 1 that never reaps
    piles up more than ZOMBIE_BOUND zombies, so the test above can fail."""
    init = ("import os, signal, time; "
            f"os.posix_spawn('/bin/sh', ['sh', '-c', {ORPHANS!r}], dict(os.environ)); "
            "time.sleep(600)")
    p = Pilot(tmp_path, "{}")
    p.proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", init])
    p.pid = wait_for(p._namespace_init, what="the non-reaping init")
    try:
        wait_for(lambda: len(p.zombies()) > ZOMBIE_BOUND, what=f"more than {ZOMBIE_BOUND} zombies")
    finally:
        p.proc.kill()
        p.proc.wait()


def test_prestop_then_stop_then_poststop_on_sigterm(pilot, tmp_path):
    """SIGTERM: the pre-stop hook runs before the app is stopped, the
    post-stop hook after; Pilot exits 0."""
    p = pilot("""{
      jobs: [
        {name: "app", exec: ["sh", "-c", "trap 'echo app-got-term; exit 0' TERM; echo app-up; while :; do sleep 0.05; done"]},
        {name: "prestop", exec: ["echo", "prestop-ran"], when: {source: "app", once: "stopping"}},
        {name: "poststop", exec: ["echo", "poststop-ran"], when: {source: "app", once: "stopped"}},
      ]}""")
    p.wait_log("app-up")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    log = p.log
    assert log.index("prestop-ran") < log.index("app-got-term") < log.index("poststop-ran")


def test_job_ignoring_sigterm_is_killed_after_stop_timeout(pilot):
    """A job that ignores SIGTERM is SIGKILLed after the top-level stopTimeout,
    and Pilot's exit status says so (137, 128+SIGKILL), with a log line
    naming the job: an orchestrator can tell a forced kill from a clean stop."""
    p = pilot("""{
      stopTimeout: 1,
      jobs: [{name: "stubborn", exec: ["sh", "-c", "trap '' TERM; echo stubborn-up; while :; do sleep 0.05; done"]}]
    }""")
    p.wait_log("stubborn-up")
    kids = p.descendants()
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait() == 137
    assert time.monotonic() - t0 >= 0.9
    assert p.lines('killing processes for job "stubborn"')
    assert all(proc_stat(k) is None for k in kids)


@pytest.mark.parametrize("restarts,runs", [('"never"', 1), ("0", 1), ("2", 3), ('"3"', 4)])
def test_exact_run_counts_for_restarts(pilot, tmp_path, restarts, runs):
    """restarts N / never: exactly N+1 / 1 runs, then Pilot exits 0."""
    out = tmp_path / "runs"
    p = pilot(f"""{{jobs: [{{name: "task", restarts: {restarts},
                   exec: ["sh", "-c", "echo run >> {out}; exit 1"]}}]}}""")
    assert p.wait() == 0
    assert count_lines(out) == runs


def test_unlimited_restarts_keep_running_until_shutdown(pilot, tmp_path):
    """restarts: unlimited restarts after every exit until SIGTERM."""
    out = tmp_path / "runs"
    p = pilot(f"""{{jobs: [{{name: "task", restarts: "unlimited",
                   exec: ["sh", "-c", "echo run >> {out}"]}}]}}""")
    wait_for(lambda: count_lines(out) >= 20, what="20 runs")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_interval_with_restarts_runs_n_plus_one_times(pilot, tmp_path):
    """interval 200ms + restarts 3: exactly 4 runs, then complete."""
    out = tmp_path / "runs"
    # A run may take longer than the interval on a busy machine: `timeout`
    # keeps it from being killed before it has written its line.
    p = pilot(f"""{{jobs: [{{name: "tick", restarts: 3, when: {{interval: "200ms"}}, timeout: "{DEADLINE:g}s",
                   exec: ["sh", "-c", "echo run >> {out}"]}}]}}""")
    assert p.wait() == 0
    assert count_lines(out) == 4


def test_timeout_kills_the_whole_process_group(pilot, tmp_path):
    """A run past `timeout` is killed with its background children. Checked
    while Pilot still runs: once PID 1 exits the kernel kills whatever is
    left in its namespace, which would hide a child the timeout missed.
    (The child says it started in a file: the test may look only after the
    3 s timeout on a busy machine.)"""
    marker, started = f"pilot-bg-{os.getpid()}", tmp_path / "child-started"
    p = pilot(f"""{{jobs: [
        {{name: "keepalive", exec: ["sleep", "1000"]}},
        {{name: "slow", timeout: "3s",
          exec: ["sh", "-c", "bash -c 'echo $$ > {started}; exec -a {marker} sleep 100' & exec sleep 101"]}}]}}""")
    wait_for(lambda: count_lines(started), what="the background child")
    p.wait_log(r"slow timeout after 3s: '\[sh -c")
    p.wait_log("slow exited with error: signal: killed")
    wait_for(lambda: not _with_marker(marker), what="the background child killed with its group")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_event_chain_runs_in_order(pilot):
    """a → b on exitSuccess{a} → c on exitSuccess{b}."""
    p = pilot("""{jobs: [
        {name: "a", exec: ["echo", "step-a"]},
        {name: "b", exec: ["echo", "step-b"], when: {source: "a", once: "exitSuccess"}},
        {name: "c", exec: ["echo", "step-c"], when: {source: "b", once: "exitSuccess"}},
    ]}""")
    assert p.wait() == 0
    log = p.log
    assert log.index("step-a") < log.index("step-b") < log.index("step-c")


def test_sighup_and_sigusr2_trigger_their_jobs(pilot, tmp_path):
    """Each SIGHUP / SIGUSR2 sent to PID 1 runs the job on that source."""
    hup, usr2 = tmp_path / "hup", tmp_path / "usr2"
    p = pilot(f"""{{jobs: [
        {{name: "keepalive", exec: ["sh", "-c", "echo alive; exec sleep 1000"]}},
        {{name: "onhup", exec: ["sh", "-c", "echo x >> {hup}"], when: {{source: "SIGHUP"}}}},
        {{name: "onusr2", exec: ["sh", "-c", "echo x >> {usr2}"], when: {{source: "SIGUSR2"}}}},
    ]}}""")
    p.wait_log("alive")
    for n in (1, 2, 3):
        p.signal(signal.SIGHUP)
        wait_for(lambda: count_lines(hup) == n, what=f"{n} SIGHUP runs")
    p.signal(signal.SIGUSR2)
    wait_for(lambda: count_lines(usr2) == 1, what="SIGUSR2 run")
    assert count_lines(hup) == 3
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


@pytest.mark.parametrize("script,code", [("exit 3", 3), ("kill -KILL $$", 137), ("exit 0", 0)])
def test_main_job_exit_code_becomes_pilots(pilot, tmp_path, script, code):
    """`main: true`: when it ends, Pilot shuts down with its exit code (the
    main job ends once the server is up, however long that takes)."""
    up = tmp_path / "server-up"
    p = pilot(f"""{{jobs: [
        {{name: "server", exec: ["sh", "-c", "echo server-up; touch {up}; exec sleep 1000"]}},
        {{name: "main", main: true,
          exec: ["sh", "-c", "while [ ! -e {up} ]; do sleep 0.05; done; {script}"]}},
    ]}}""")
    assert p.wait() == code
    assert p.lines("server-up")


def test_no_stray_process_after_shutdown_as_pid1(pilot, tmp_path):
    """A daemon that escaped its job's process group is still killed."""
    marker = f"pilot-stray-{os.getpid()}-1"
    p = pilot(f"""{{jobs: [{{name: "daemonizer",
        exec: ["sh", "-c", "setsid bash -c 'exec -a {marker} sleep 1000' & echo spawned; exec sleep 1000"]}}]}}""")
    p.wait_log("spawned")
    wait_for(lambda: _with_marker(marker), what="the escaped daemon")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    wait_for(lambda: not _with_marker(marker), what="no stray process")


def test_no_stray_process_after_shutdown_as_ordinary_process(pilot, tmp_path):
    """Not PID 1: Pilot is a subreaper and still kills escaped daemons."""
    marker = f"pilot-stray-{os.getpid()}-2"
    p = pilot(f"""{{jobs: [{{name: "daemonizer",
        exec: ["sh", "-c", "setsid bash -c 'exec -a {marker} sleep 1000' & echo spawned; exec sleep 1000"]}}]}}""",
              pid1=False)
    p.wait_log("spawned")
    wait_for(lambda: _with_marker(marker), what="the escaped daemon")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    wait_for(lambda: not _with_marker(marker), what="no stray process")


def _with_marker(marker):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if f.read().startswith(marker.encode()):
                        found.append(int(name))
            except OSError:
                pass
    return found


def test_sigusr1_reopens_log_file(pilot, tmp_path):
    """With logging to a file, SIGUSR1 lets go of a rotated file."""
    logf = tmp_path / "out.log"
    p = pilot(f"""{{logging: {{output: "{logf}"}}, jobs: [
        {{name: "ticker", exec: ["sh", "-c", "echo tick"], when: {{interval: "100ms"}}}}]}}""")
    wait_for(lambda: logf.exists() and "tick" in logf.read_text(), what="ticks in the log file")
    rotated = tmp_path / "out.log.1"
    os.rename(logf, rotated)
    p.signal(signal.SIGUSR1)
    wait_for(lambda: logf.exists() and "tick" in logf.read_text(), what="ticks in the new file")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_children_see_pilot_and_job_pids(pilot, tmp_path):
    """CONTAINERPILOT_PID is Pilot's pid (1 here); a job's own
    CONTAINERPILOT_<JOB>_PID is visible to processes spawned meanwhile."""
    p = pilot("""{jobs: [
        {name: "long-one", exec: ["sh", "-c", "echo long-up; exec sleep 1000"]},
        {name: "show", exec: ["sh", "-c", "echo pid=$CONTAINERPILOT_PID job=$CONTAINERPILOT_LONG_ONE_PID"],
         when: {source: "long-one", once: "exitFailed"}},
        {name: "trigger", exec: ["sh", "-c", "sleep 0.3; kill $CONTAINERPILOT_LONG_ONE_PID"]},
    ]}""")
    assert p.wait() == 0
    line = p.lines("pid=1 job=")
    assert line and line[0].split("job=")[1].strip() == "", p.log


def test_shutdown_in_dependency_order(pilot):
    """SIGTERM: the app gated on the agent's health stops before the agent."""
    p = pilot("""{jobs: [
        {name: "agent", exec: ["sh", "-c", "trap 'echo agent-got-term; exit 0' TERM; while :; do sleep 0.05; done"],
         health: {exec: "true", interval: 1, ttl: 5}},
        {name: "app", exec: ["sh", "-c", "trap 'sleep 0.3; echo app-got-term; exit 0' TERM; echo app-up; while :; do sleep 0.05; done"],
         when: {source: "agent", once: "healthy"}},
    ]}""")
    p.wait_log("app-up")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert p.log.index("app-got-term") < p.log.index("agent-got-term")


def _blocks_sigterm(pid):
    """True once `pid` runs Pilot (not unshare's forked child before its exec:
    unshare blocks SIGTERM there too, and a SIGTERM sent then is dropped by the
    kernel for a namespace's init) and holds SIGTERM."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        if args[1:2] != [ENTRY.encode()]:  # still `unshare --pid … python pilot.py`
            return False
        with open(f"/proc/{pid}/status") as f:
            mask = next(ln for ln in f if ln.startswith("SigBlk:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def _open_for_writing(fifo):
    """A write end of `fifo` once someone has opened it for reading, else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def test_sigterm_during_start_up_is_not_lost(tmp_path):
    """A SIGTERM sent during start-up (imports, config, before Pilot's
    handlers exist) still shuts Pilot down gracefully, exit 0. (Before the
    interpreter runs pilot.py no program can catch it; as PID 1 the kernel
    drops it.) The config is a FIFO the test writes only after the signal,
    so start-up waits at reading it for as long as the test needs: the
    signal cannot arrive too late, however slow the machine."""
    p = Pilot(tmp_path, """{jobs: [{name: "long", exec: ["sleep", "1000"]}]}""")
    text = p.config.read_text()
    p.config.unlink()
    os.mkfifo(p.config)
    p.proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *p.command, "-config", str(p.config)],
        stdout=open(p.log_path, "wb"), stderr=open(p.err_path, "wb"))
    p.pid = wait_for(p._namespace_init, what="pid 1 to exist", interval=0.001)
    try:
        wait_for(lambda: _blocks_sigterm(p.pid), what="pilot.py to hold signals", interval=0.001)
        p.signal(signal.SIGTERM)
        fd = wait_for(lambda: _open_for_writing(p.config), what="pilot to open its config")
        with os.fdopen(fd, "w") as config:
            config.write(text)
        assert p.wait() == 0
    finally:
        p.stop()


def test_sigquit_is_a_graceful_shutdown(pilot, tmp_path):
    """`STOPSIGNAL SIGQUIT` (nginx images): Pilot stops its jobs as for
    SIGTERM (pre-stop hook runs, socket file removed) and exits 0, instead
    of dying at once."""
    p = pilot("""{jobs: [
        {name: "app", exec: ["sh", "-c", "echo app-up; exec sleep 1000"]},
        {name: "pre", exec: ["sh", "-c", "echo pre-stop-ran"], when: {source: "app", once: "stopping"}}]}""")
    p.wait_log("app-up")
    wait_for(lambda: p.socket.exists(), what="the control socket")
    p.signal(signal.SIGQUIT)
    assert p.wait() == 0
    assert p.lines("pre-stop-ran") and not p.socket.exists()


# Run as PID 1 of a PID namespace that shares the host's /proc: /proc then
# numbers processes as the host does, and our own pids differ from them.
DESCENDANTS_PROBE = r"""
import json, os, subprocess, sys, time
from pilot import supervisor
orphan = int(subprocess.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
                            capture_output=True, text=True).stdout)
kid = subprocess.Popen(["sh", "-c", "sleep 1001 & echo started; exec sleep 1002"],
                       stdout=subprocess.PIPE, text=True)
kid.stdout.readline()  # its background child exists now
before = sorted(supervisor.descendants(os.getpid()))
below_kid = sorted(supervisor.descendants(kid.pid))
supervisor.kill_descendants()
killed_by = None
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    pid, status = os.waitpid(orphan, os.WNOHANG)
    if pid:
        killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        break
    time.sleep(0.01)
print(json.dumps({"me": os.getpid(), "orphan": orphan, "kid": kid.pid, "before": before,
                  "below_kid": below_kid, "orphan_killed_by": killed_by}))
"""


def test_descendants_as_pid1_with_the_hosts_proc(tmp_path):
    """As PID 1 of a namespace without its own /proc (`unshare --pid
    --fork`, no `--mount-proc`), Pilot's view of the processes below it is
    in its own pid numbers: exactly its children and their children, not
    the host's process tree; kill_descendants() kills an orphan that came
    to it."""
    done = subprocess.run(["unshare", "--pid", "--fork", PYTHON, "-c", DESCENDANTS_PROBE],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["me"] == 1
    grandchild = set(seen["below_kid"])
    assert len(grandchild) == 1 and grandchild.isdisjoint({seen["kid"], seen["orphan"]})
    assert set(seen["before"]) == {seen["orphan"], seen["kid"]} | grandchild
    assert seen["orphan_killed_by"] == signal.SIGKILL


def test_no_stray_process_as_pid1_with_the_hosts_proc(tmp_path):
    """PID 1 of a namespace that shares the host's /proc: SIGTERM still
    ends with exit 0 and the escaped daemon gone."""
    marker = f"pilot-stray-{os.getpid()}-3"
    p = Pilot(tmp_path, f"""{{jobs: [{{name: "daemonizer",
        exec: ["sh", "-c", "setsid bash -c 'exec -a {marker} sleep 1000' & echo spawned; exec sleep 1000"]}}]}}""")
    p.proc = subprocess.Popen(["unshare", "--pid", "--fork", *p.command, "-config", str(p.config)],
                              stdout=open(p.log_path, "wb"), stderr=open(p.err_path, "wb"),
                              stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        p.pid = wait_for(p._namespace_init, 10, "pilot to start as pid 1")
        p.wait_log("spawned")
        wait_for(lambda: _with_marker(marker), 10, "the escaped daemon")
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
        wait_for(lambda: not _with_marker(marker), 5, "no stray process")
    finally:
        p.stop()
