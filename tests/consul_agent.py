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
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings

from tests.support import DEADLINE, free_port, wait_for  # noqa: F401 - free_port: bench/soak.py imports it from here

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = DEADLINE  # seconds; a 2-core CI box under load can be slow
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
        wait_for(self._has_leader, timeout, lambda: f"a consul leader: {self.log_tail()}", POLL)

    def _has_leader(self):
        if self.proc.poll() is not None:
            tail = self.log_tail()
            kind = PortTaken if _PORT_TAKEN in tail else RuntimeError
            raise kind(f"consul exited with {self.proc.returncode}: {tail}")
        return self.leader()

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
    with urllib.request.urlopen(agent.url + path, timeout=DEADLINE) as r:
        return json.load(r)


def agent_put(agent, path, body=None):
    """PUT `body` (JSON) to an agent's HTTP API."""
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(agent.url + path, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        r.read()


def register(agent, name, service_id, address, port, tags=()):
    """Register service instance `service_id` of `name` with the agent, as
    another container's Pilot would (no check: it is passing at once)."""
    agent_put(agent, "/v1/agent/service/register",
              {"ID": service_id, "Name": name, "Address": address, "Port": port, "Tags": list(tags)})


def kv_put(agent, key, value):
    """Set a key in the agent's KV store."""
    req = urllib.request.Request(f"{agent.url}/v1/kv/{key}", data=value.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        assert r.read().strip() == b"true"


def kv_delete(agent, key):
    """Remove a key from the agent's KV store."""
    req = urllib.request.Request(f"{agent.url}/v1/kv/{key}", method="DELETE")
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        r.read()


def registered(agent, service_id):
    """The agent's record of service `service_id`, or None (also while the
    agent does not answer)."""
    try:
        return agent_get(agent, "/v1/agent/services").get(service_id)
    except OSError:
        return None


def check_status(agent, check_id):
    """The status of check `check_id` (`service:<id>` for a job's TTL check),
    or None when the agent has no such check or does not answer."""
    try:
        check = agent_get(agent, "/v1/agent/checks").get(check_id)
    except OSError:
        return None
    return check and check["Status"]
