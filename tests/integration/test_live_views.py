"""Watching Pilot work, as a person does: `-events`, `GET /v3/events`,
`-status` and `-status -follow` (through a pseudo-terminal) against a real
Pilot running as PID 1 of its own PID namespace."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from tests.integration.pilot_proc import ENTRY, PYTHON, UnixHTTP, run_cli, wait_for

pytestmark = pytest.mark.timeout(120)

JOBS = """{jobs: [
  {name: "setup", exec: ["sh", "-c", "echo setup done"]},
  {name: "app", exec: ["sh", "-c", "echo up; exec sleep 600"],
   when: {source: "setup", once: "exitSuccess"}},
  {name: "on-hup", exec: ["true"], when: {source: "SIGHUP"}},
  {name: "sensor", exec: ["true"], when: {interval: "30s"}},
]}"""


class Reader:
    """A client process whose output lines are read as they come."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([PYTHON, ENTRY, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))
        self.text = ""

    def read_until(self, pattern: str, timeout: float = 20.0) -> str:
        """Output so far once `pattern` appears in it."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while not rx.search(self.text):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in:\n{self.text}")
            self.read_for(min(left, 0.5))
        return self.text

    def read_for(self, seconds: float) -> str:
        """What the process writes within `seconds` (added to `text`)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        if ready:
            chunk = os.read(self.proc.stdout.fileno(), 65536).decode()
            if not chunk:
                raise AssertionError(f"output ended:\n{self.text}{self.proc.stderr.read().decode()}")
            self.text += chunk
            return chunk
        return ""

    def shows(self, pattern: str) -> bool:
        """True once `pattern` is in the output (reading for up to 1 s)."""
        self.read_for(1.0)
        return re.search(pattern, self.text, re.M) is not None

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(20)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def reader():
    started = []

    def start(*args, **kw):
        started.append(Reader(*args, **kw))
        return started[-1]
    yield start
    for r in started:
        r.stop()


LINE = r"^\d\d:\d\d:\d\d\.\d{3} "


def test_events_prints_what_happens_after_it_started(pilot, reader):
    """`-events` prints each event as it happens, one timed line in words;
    it does not print what happened before it started; Ctrl-C ends it (0)."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    r = reader("-config", str(p.config), "-events")
    # The stream is open once a SIGHUP shows up (a signal sent before it
    # connected is not shown: send again until one is).
    wait_for(lambda: p.signal(signal.SIGHUP) or r.shows("SIGHUP received"), 30,
             "-events to show a SIGHUP sent after it started")
    text = r.read_until(LINE + r"on-hup exited 0, waiting for: SIGHUP$")
    assert re.search(LINE + r"on-hup started \(trigger: SIGHUP\)$", text, re.M), text
    assert "setup" not in text and "pilot started" not in text, text
    assert r.interrupt() == 0


def test_events_since_shows_what_happened_before_then_follows(pilot, reader):
    """`-events -since 5m` first prints the kept events of the last five
    minutes (start-up included), then the new ones as they happen."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    r = reader("-config", str(p.config), "-events", "-since", "5m")
    text = r.read_until(LINE + r"app started \(trigger: setup exitSuccess\)$")
    lines = [ln[13:] for ln in text.splitlines()]
    assert lines[:3] == ["pilot started", "setup started (trigger: startup)",
                         "sensor started (trigger: startup)"] or \
        lines[0] == "pilot started", text
    for expected in ("setup exited 0, done", "setup stopping", "setup stopped",
                     "app started (trigger: setup exitSuccess)"):
        assert expected in lines, text
    assert lines.index("setup exited 0, done") < lines.index("setup stopping")
    p.signal(signal.SIGHUP)
    r.read_until(LINE + r"on-hup started \(trigger: SIGHUP\)$")
    assert r.interrupt() == 0


def test_events_ends_with_status_0_when_pilot_stops(pilot, reader):
    """Pilot shutting down ends the stream: the last lines say so, and
    `-events` exits 0 by itself."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    r = reader("-config", str(p.config), "-events", "-since", "5m")
    r.read_until(r"app started")
    p.signal(signal.SIGTERM)
    text = r.read_until(LINE + r"app stopped$")
    assert re.search(LINE + r"pilot shutting down$", text, re.M), text
    assert r.proc.wait(20) == 0
    assert p.wait(20) == 0


def open_stream(sock_path, query=""):
    """GET /v3/events as any HTTP client sends it: (connection, response);
    the answer's head comes at once, its lines as events happen."""
    conn = UnixHTTP(str(sock_path))
    conn.timeout = 20
    conn.request("GET", "/v3/events" + query)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/x-ndjson"
    return conn, resp


def test_v3_events_streams_ndjson_and_survives_clients_that_leave(pilot):
    """GET /v3/events: one JSON object per line (time, code, source,
    message). 100 clients that connect and leave mid-stream leave Pilot
    with the file descriptors it had; it goes on answering."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    conn, resp = open_stream(p.socket, "?since=300")
    lines = [json.loads(resp.readline()) for _ in range(2)]
    conn.close()
    assert lines[0]["message"] == "pilot started" and lines[0]["code"] == "startup"
    assert set(lines[1]) == {"time", "code", "source", "message"}
    assert abs(lines[0]["time"] - time.time()) < 300
    fd_dir = f"/proc/{p.pid}/fd"
    wait_for(lambda: run_cli("-config", str(p.config), "-ping").returncode == 0, 20, "pilot to answer")
    baseline = len(os.listdir(fd_dir))
    for n in range(100):
        conn = UnixHTTP(str(p.socket))
        conn.request("GET", "/v3/events?since=300")
        if n % 2:  # half read some of the stream first, half leave before a byte came
            resp = conn.getresponse()
            assert json.loads(resp.readline())["message"] == "pilot started"
        conn.close()
    wait_for(lambda: len(os.listdir(fd_dir)) <= baseline, 30,
             f"pilot's file descriptors back to {baseline}")
    conn, resp = open_stream(p.socket)  # a new event reaches a new client
    p.signal(signal.SIGHUP)
    assert json.loads(resp.readline())["message"] == "SIGHUP received"
    conn.close()


def test_status_table_tells_what_each_job_does_next(pilot):
    """`-status` on a running Pilot: a periodic job between runs is
    `scheduled` with `next run in …` under it, a job without health check
    shows `-`, every job since when it is in its state; 80 columns."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    wait_for(lambda: "scheduled" in run_cli("-config", str(p.config), "-status").stdout, 20,
             "the sensor's first run to end")
    out = run_cli("-config", str(p.config), "-status").stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    rows = {line.split()[0]: line.split() for line in lines[1:] if not line.startswith(" ")}
    assert rows["sensor"][1] == "scheduled" and rows["sensor"][4] == "-", out
    assert re.match(r"\d+[smhd]$", rows["sensor"][6]), out
    under = lines[lines.index(next(ln for ln in lines if ln.startswith("sensor"))) + 1]
    assert re.match(r"  next run in \d+(\.\d)?s$", under), out
    assert rows["app"][1] == "running" and rows["app"][2].isdigit(), out


def pty_run(args, env=None):
    """Start `pilot ARGS` on a new pseudo-terminal (its controlling
    terminal, as in a shell); returns (pid, master fd)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execve(PYTHON, [PYTHON, ENTRY, *args], dict(os.environ, TERM="xterm", **(env or {})))
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80x24
    return pid, master


def read_pty(master, until, timeout=30.0):
    out = b""
    deadline = time.monotonic() + timeout
    while not until(out):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"terminal showed:\n{out!r}")
        ready, _, _ = select.select([master], [], [], min(left, 0.5))
        if ready:
            try:
                out += os.read(master, 65536)
            except OSError:  # the child ended
                break
    return out


def exit_status(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the live view did not end")


@pytest.mark.parametrize("no_color", [False, True])
def test_status_follow_redraws_in_place_and_ctrl_c_ends_it_with_0(pilot, no_color):
    """`-status -follow` on a terminal: the table drawn at the top, redrawn
    in place (cursor home, lines cleared) every second and on an event,
    state and health in colour (none with NO_COLOR); Ctrl-C (the terminal's
    interrupt character) ends it with status 0."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    pid, master = pty_run(["-config", str(p.config), "-status", "-follow"],
                          env={"NO_COLOR": "1"} if no_color else {})
    try:
        shown = read_pty(master, lambda out: out.count(b"\x1b[H") >= 3 and b"JOB" in out)
        assert shown.count(b"\x1b[H\x1b[2J") == 1  # cleared once, then drawn over in place
        assert b"\x1b[K" in shown and b"pilot -status -follow" in shown
        plain = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown)
        assert b"app" in plain and b"running" in plain
        assert (b"\x1b[32mrunning" in shown) is (not no_color)
        assert (b"\x1b[" in plain.replace(b"\x1b[", b"")) is False
        os.write(master, b"\x03")  # Ctrl-C, as typed
        assert exit_status(pid) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(master)


def test_status_follow_without_a_terminal_prints_each_change(pilot, reader):
    """Not on a terminal (a pipe), `-status -follow` prints the table again
    under a time line whenever something happens, without escape codes."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    r = reader("-config", str(p.config), "-status", "-follow")
    r.read_until(r"^-- \d\d:\d\d:\d\d\nJOB ")
    wait_for(lambda: p.signal(signal.SIGHUP) or r.shows(r"(?s)^-- .*^-- "), 30,
             "a second table after an event")
    assert "\x1b" not in r.text
    assert r.interrupt() == 0


def test_status_follow_ends_with_0_when_pilot_stops(pilot, reader):
    """Pilot stopping while watched: the last table stays, `pilot has
    stopped` under it, and the view ends by itself with status 0."""
    p = pilot(JOBS)
    p.wait_log(r"app \d+ up")
    r = reader("-config", str(p.config), "-status", "-follow")
    r.read_until(r"^JOB ")
    p.signal(signal.SIGTERM)
    r.read_until(r"^pilot has stopped$", timeout=30)
    assert r.proc.wait(20) == 0
    assert p.wait(20) == 0
