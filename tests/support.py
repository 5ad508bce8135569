"""Helpers every test module may use; each exists here once.

Nothing here measures speed. Tests run on CI boxes whose two cores are shared
with other work, so waiting is always "until this condition holds, or give up
after a generous DEADLINE", never "sleep this long and hope".
"""
from __future__ import annotations

import contextlib
import http.client
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple, TypeVar, Union

from pilot.config.model import HealthConfig, JobConfig

T = TypeVar("T")

# Seconds a condition may take before the test gives up. Generous on purpose:
# a condition that holds arrives as soon as it holds, and only a failing test
# ever waits this long.
DEADLINE = 30.0


def wait_for(cond: Callable[[], T], timeout: float = DEADLINE,
             what: Union[str, Callable[[], str]] = "condition", interval: float = 0.02) -> T:
    """Poll `cond` until it returns something truthy and return that; fail
    the test naming `what` once `timeout` seconds have passed (`what` may be
    a function, called then, so a log quoted in it is the log at the deadline).

    `time.sleep` is gevent's under the test suite's monkey-patching, so other
    greenlets (servers under test, watches) run while this waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {told}")
        time.sleep(interval)


# -- ports -------------------------------------------------------------------------

_GIVEN = set()  # ports handed out by this test process, never handed out twice


def _free_for_tcp_and_udp(port: int) -> bool:
    """True if nobody holds `port` on loopback for TCP or UDP (Consul's serf uses both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on right now, for TCP and UDP alike.

    A port the kernel offers is only free until someone binds it, and a
    Consul agent binds its ports after all of them were chosen: without
    `_GIVEN` two successive calls can return the same port (CI once saw an
    agent refuse to start because its serf WAN port was also its HTTP port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN and _free_for_tcp_and_udp(port):
            _GIVEN.add(port)
            return port


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback TCP port someone else listens on, for as long as the block runs."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        yield taken.getsockname()[1]
    finally:
        taken.close()


# -- files and processes -----------------------------------------------------------


def count_lines(path) -> int:
    """Lines a job appended to `path` so far (0 while it does not exist)."""
    try:
        return len(Path(path).read_text().splitlines())
    except FileNotFoundError:
        return 0


def proc_stat(pid: int) -> Optional[Tuple[str, int]]:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # the name may hold spaces and ")"
    return fields[0].decode(), int(fields[1])


def alive(pid: Optional[int]) -> bool:
    """True while `pid` is a live process (a zombie has already died)."""
    st = proc_stat(pid) if pid else None
    return st is not None and st[0] != "Z"


# -- HTTP ---------------------------------------------------------------------------


def http_request(url: str, method: str = "GET", body: Optional[bytes] = None,
                 timeout: float = 10.0) -> Optional[Tuple[int, Dict[str, str], str]]:
    """(status, headers, body text) of one plain HTTP request, whatever the
    status; None while nothing answers at `url` (not listening yet, or gone)."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    except OSError:
        return None
    finally:
        conn.close()


def sample(text: str, line_start: str) -> str:
    """The value of the Prometheus exposition line starting with `line_start`."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"no line {line_start!r} in:\n{text}")


# -- configs -------------------------------------------------------------------------


def advertised_job(**fields):
    """An advertised job's config as the loader builds it (`app` on port 8000,
    a 5 s health check, a 10 s TTL); `fields` replace any of its fields."""
    values = dict(name="app", port=8000,
                  health=HealthConfig(exec=("true",), interval=5, ttl=10, timeout=None))
    values.update(fields)
    return JobConfig(**values)
