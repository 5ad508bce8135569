"""A real, throw-away Consul agent for tests.

`ConsulAgent` runs `consul agent -dev` on loopback with free ports and its own
temporary data dir, and is ready (has a leader) when `start()` returns. Tests
that emulate an agent restart stop one agent and start another on the same
HTTP port: the new one knows nothing, like a real agent that lost its state.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 20.0  # seconds; a 2-core CI box under load can be slow
POLL = 0.05


_PORT_TAKEN = "address already in use"


class PortTaken(RuntimeError):
    """The agent exited because one of its ports was bound by someone else."""


class ConsulUnavailable(Exception):
    """No consul binary: build/install-consul.sh has not been run."""


def consul_binary():
    """The consul to run: one on PATH first, else the one the installer cached."""
    found = shutil.which("consul")
    if found:
        return found
    cached = os.path.join(ROOT, ".cache", "consul", "usr", "bin", "consul")
    if os.access(cached, os.X_OK):
        return cached
    raise ConsulUnavailable("no consul binary; run build/install-consul.sh")


_GIVEN = set()  # ports handed out by this test process, never handed out twice


def _free_for_tcp_and_udp(port):
    """True if nobody holds `port` on loopback for TCP or UDP (serf uses both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port():
    """A loopback port nobody listens on right now, for TCP and UDP alike.

    A port the kernel offers is only free until someone binds it, and the
    agent binds its ports after all of them were chosen: without `_GIVEN`
    two successive calls can return the same port (CI once saw an agent refuse
    to start because its serf WAN port was also its HTTP port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN and _free_for_tcp_and_udp(port):
            _GIVEN.add(port)
            return port


class ConsulAgent:
    """One `consul agent -dev` process; `start()` waits until it has a leader."""

    def __init__(self, http_port=None, node="pilot-test", extra_args=()):
        self.http_port = http_port or free_port()
        self.node = node
        self.extra_args = tuple(extra_args)
        self.proc = None
        self.data_dir = None

    @property
    def http_addr(self):
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self):
        return f"http://{self.http_addr}"

    def command(self):
        return [
            consul_binary(), "agent", "-dev",
            "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-node", self.node, "-data-dir", self.data_dir,
            "-http-port", str(self.http_port),
            "-serf-lan-port", str(free_port()),
            "-serf-wan-port", str(free_port()),
            "-server-port", str(free_port()),
            "-dns-port", "-1", "-grpc-port", "-1",
            "-log-level", "warn",
        ] + list(self.extra_args)

    def start(self, timeout=START_TIMEOUT):
        """Run the agent and return once `/v1/status/leader` names a leader.

        An agent that exits at once because another process took one of its
        serf/server ports in the meantime is started again on fresh ones."""
        if self.proc is not None:
            return self
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except PortTaken:
                if attempt == 2:
                    raise
        return self

    def _start_once(self, timeout):
        self.data_dir = tempfile.mkdtemp(prefix="pilot-consul-")
        log = open(os.path.join(self.data_dir, "agent.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        try:
            self._wait_for_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_leader(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                kind = PortTaken if _PORT_TAKEN in tail else RuntimeError
                raise kind(f"consul exited with {self.proc.returncode}: {tail}")
            if self.leader():
                return
            time.sleep(POLL)
        raise RuntimeError(f"consul had no leader after {timeout}s: {self.log_tail()}")

    def leader(self):
        """The leader address, or '' while there is none or no answer."""
        try:
            with urllib.request.urlopen(self.url + "/v1/status/leader", timeout=1) as r:
                return r.read().decode().strip().strip('"')
        except (OSError, urllib.error.URLError, ValueError):
            return ""

    def log_tail(self, lines=5):
        try:
            with open(os.path.join(self.data_dir, "agent.log"), "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self):
        """Kill the agent (its whole session) and remove its data dir. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc is not None:
            proc.wait(timeout=10)
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def client(self):
        """A python-consul2 client on this agent, for assertions."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import consul
            return consul.Consul(host="127.0.0.1", port=self.http_port)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def agent_get(agent, path):
    """The JSON an agent's HTTP API answers at `path`."""
    with urllib.request.urlopen(agent.url + path, timeout=5) as r:
        return json.load(r)


def agent_put(agent, path, body=None):
    """PUT `body` (JSON) to an agent's HTTP API."""
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(agent.url + path, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()
