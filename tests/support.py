"""Helpers every test module may use; each exists here once.

Nothing here measures speed. Tests run on CI boxes whose two cores are shared
with other work, so waiting is always "until this condition holds, or give up
after a generous DEADLINE", never "sleep this long and hope".
"""
from __future__ import annotations

import contextlib
import http.client
import inspect
import json
import logging
import os
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, Union

from pilot.config.model import HealthConfig, JobConfig
from pilot.errors import UnknownJob

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


def open_fds(pid: int, consul_port: Optional[int] = None) -> int:
    """How many file descriptors process `pid` holds right now, not counting
    its keep-alive connections to the Consul agent on `consul_port`: the
    client's pools hold one or two of them, as the agent and the pools
    decide; that is not a leak."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed while we looked
    to_consul = _sockets_to(consul_port) if consul_port else set()
    return sum(1 for link in links if link not in to_consul)


def _sockets_to(port: int) -> set:
    """`socket:[INODE]` of every TCP connection to `port` on this host."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[2].rsplit(":", 1)[1], 16) == port:
                        found.add(f"socket:[{fields[9]}]")
        except OSError:
            pass  # no IPv6 table here
    return found


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


# -- logs ----------------------------------------------------------------------------


def assert_bug_logged(caplog, message: str, exc_type: type) -> None:
    """A barrier reported one bug the log_bug way: `message` as the only
    ERROR record, and one DEBUG record carrying the exception's traceback.
    (Used by the tests of every barrier.)"""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [message]
    tracebacks = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert [type(r.exc_info[1]) for r in tracebacks] == [exc_type]
    assert tracebacks[0].exc_info[2] is not None


# -- the bus -------------------------------------------------------------------------


def published(bus) -> list:
    """Every event published on `bus` from now on, in order."""
    seen = []
    bus.listen(seen.append)
    return seen


# -- fakes and the interfaces they stand for -----------------------------------------


def _public(cls) -> dict:
    return {name: member for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member)}


def assert_implements(cls, protocol) -> None:
    """Every method `protocol` declares exists on `cls` with the same
    parameters: a fake that drifts from the production interface fails
    here, not silently in the tests that use it."""
    for name, declared in _public(protocol).items():
        real = getattr(cls, name, None)
        assert callable(real), f"{cls.__name__} lacks {name}()"
        assert list(inspect.signature(real).parameters) == list(inspect.signature(declared).parameters), \
            f"{cls.__name__}.{name}{inspect.signature(real)} != {protocol.__name__}.{name}{inspect.signature(declared)}"


class FakeSupervisor:
    """The running Pilot as the control socket sees it
    (`pilot.control.Supervisor`), recording what it was told.

    `reload_error` is what reload() answers (a PilotError instance is
    raised instead); `telemetry` is what a test hands the ControlServer as
    its metrics (`metrics=lambda: app.telemetry`), None when off."""

    def __init__(self, reload_error=None, telemetry=None):
        self.env: Dict[str, str] = {}
        self.maintenance: List[bool] = []
        self.reloads = 0
        self.reload_error = reload_error
        self.telemetry = telemetry
        self.jobs = [{"name": "app", "state": "running"}]
        self.orders: List[Tuple[str, str]] = []
        self.signals: List[Tuple[str, int]] = []

    def putenv(self, values):
        self.env.update(values)

    def set_maintenance(self, enabled):
        self.maintenance.append(enabled)

    def reload(self):
        self.reloads += 1
        if isinstance(self.reload_error, Exception):
            raise self.reload_error
        return self.reload_error

    def status(self):
        return {"jobs": [dict(j) for j in self.jobs],
                "maintenance": bool(self.maintenance and self.maintenance[-1]), "watches": []}

    def health(self):
        return {"healthy": True, "jobs": {}}

    def job_status(self, name):
        return dict(self._job(name))

    def order_job(self, name, action):
        self._job(name)
        self.orders.append((name, action))
        return None

    def signal_job(self, name, sig):
        self._job(name)
        self.signals.append((name, sig))
        return None

    def state(self):
        """Everything a request could have changed, to compare before and after."""
        return (dict(self.env), list(self.maintenance), self.reloads, list(self.orders),
                list(self.signals))

    def _job(self, name):
        for job in self.jobs:
            if job["name"] == name:
                return job
        raise UnknownJob(name)


class FakeConsulAgent:
    """Just enough of a Consul agent's HTTP API: services, TTL checks,
    health answers; it records every request and can be `down`."""

    def __init__(self):
        self.requests = []  # (method, path, params, body, headers, timeout)
        self.services = {}
        self.checks = {}
        self.down = False
        self.status_for = {}  # path prefix -> (code, body) forced answer
        self.health = []  # entries returned by /v1/health/service
        self.index = 7

    def answer(self, method, path, params, body):
        for prefix, forced in self.status_for.items():
            if path.startswith(prefix):
                return forced
        if path == "/v1/agent/service/register":
            svc = json.loads(body)
            self.services[svc["id"]] = svc
            self.checks["service:" + svc["id"]] = svc["check"].get("Status", "critical")
        elif path.startswith("/v1/agent/check/update/"):
            check_id = path.rsplit("/", 1)[1]
            if check_id not in self.checks:
                return 500, 'CheckID "%s" does not have associated TTL' % check_id
            self.checks[check_id] = json.loads(body)["Status"]
        elif path.startswith("/v1/agent/service/deregister/"):
            sid = path.rsplit("/", 1)[1]
            self.services.pop(sid, None)
            self.checks.pop("service:" + sid, None)
        elif path.startswith("/v1/health/service/"):
            return 200, json.dumps(self.health)
        return 200, ""


class FakeConsulHTTP:
    """Stands in for python-consul2's requests-based HTTPClient, in front of
    a FakeConsulAgent (the `agent` fixture puts it behind pilot.discovery)."""

    scheme = "http"

    def __init__(self, agent: FakeConsulAgent, timeout):
        self.agent = agent
        self.timeout = timeout

    def _do(self, method, callback, path, params=None, data="", headers=None):
        # Imported here: bench scripts import this module (through
        # tests/consul_agent.py) before they monkey-patch, and requests
        # brings ssl with it.
        import requests
        from pilot.discovery import transport
        self.agent.requests.append(
            (method, path, list(params or []), data, dict(headers or {}), self.timeout))
        if self.agent.down:
            raise requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
        code, body = self.agent.answer(method, path, params, data)
        response = transport.consul.base.Response(
            code, {"X-Consul-Index": str(self.agent.index)}, body, body.encode())
        return callback(response)

    def get(self, callback, path, params=None, headers=None):
        return self._do("GET", callback, path, params, "", headers)

    def put(self, callback, path, params=None, data="", headers=None):
        return self._do("PUT", callback, path, params, data, headers)
