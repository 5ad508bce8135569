"""A real Consul cluster on a private network of network namespaces.

Layout (all created here, all removed in the fixture's finalizer):

    switch namespace  PFX-sw : bridge br0
    node namespaces   PFX-s1 PFX-s2 PFX-s3 (servers), PFX-c1 PFX-c2 (client agents)
    each node         eth0 = one end of a veth pair, the other end on br0,
                      address 10.210.0.N/24 (only inside these namespaces)

Every agent serves HTTP on 127.0.0.1:8500 of its own namespace, as an agent
in a container's pod would. The test process reaches it by creating its
socket inside that namespace (setns), so nothing is exposed outside.
"""
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid

import pytest

from tests.consul_agent import consul_binary
from tests.integration.pilot_proc import ENTRY, PYTHON, Pilot
from tests.support import DEADLINE, wait_for

SUBNET = "10.210.0"
SERVERS = {"s1": 11, "s2": 12, "s3": 13}
CLIENTS = {"c1": 21, "c2": 22}
HTTP_PORT = 8500
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs root: a Consul cluster in network namespaces")


def sh(*args):
    """Run a setup command; a failure names the command and its error."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name):
    """Run the body in network namespace `name` (sockets made there stay there)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


class _NetnsHTTP(http.client.HTTPConnection):
    """An HTTP connection whose socket is created inside a network namespace."""

    def __init__(self, netns, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self.netns = netns

    def connect(self):
        with in_netns(self.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Node:
    """One namespace with one Consul agent."""

    def __init__(self, cluster, name, host):
        self.cluster = cluster
        self.name = name
        self.netns = f"{cluster.prefix}-{name}"
        self.ip = f"{SUBNET}.{host}"
        self.server = name in SERVERS
        self.proc = None
        self.data_dir = os.path.join(cluster.tmp, name)

    def request(self, method, path, body=None, timeout=5.0):
        """(status, decoded JSON or None) from this node's agent."""
        conn = _NetnsHTTP(self.netns, "127.0.0.1", HTTP_PORT, timeout)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, (json.loads(data) if data.strip() else None)
        finally:
            conn.close()

    def get(self, path):
        """The JSON at `path`, or None when the agent does not answer (yet)."""
        try:
            status, data = self.request("GET", path)
        except (OSError, ValueError, http.client.HTTPException):
            return None
        return data if status == 200 else None

    def agent_command(self):
        cmd = [consul_binary(), "agent", "-node", self.name, "-data-dir", self.data_dir,
               "-bind", self.ip, "-client", "127.0.0.1", "-disable-host-node-id",
               "-dns-port", "-1", "-grpc-port", "-1", "-log-level", "warn",
               "-hcl", "performance { raft_multiplier = 1 }", "-retry-interval", "1s"]
        for ip in self.cluster.server_ips:
            cmd += ["-retry-join", ip]
        if self.server:
            cmd += ["-server", "-bootstrap-expect", str(len(SERVERS))]
        return cmd

    def start_agent(self):
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.cluster.tmp, f"{self.name}.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns] + self.agent_command(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop_agent(self):
        """Kill the agent's whole session and wait for it. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class NetnsPilot(Pilot):
    """Pilot as PID 1 of a PID namespace inside a node's network namespace."""

    def __init__(self, tmp_path, config, netns, **kw):
        super().__init__(tmp_path, config, **kw)
        self.netns = netns

    def start(self):
        cmd = ["ip", "netns", "exec", self.netns, "unshare", "--pid", "--fork", "--mount-proc",
               PYTHON, ENTRY, "-config", str(self.config)] + self.args
        self.proc = subprocess.Popen(
            cmd, stdout=open(self.log_path, "wb"), stderr=open(self.err_path, "wb"),
            stdin=subprocess.DEVNULL, env=self.env, cwd=str(self.tmp))
        self.pid = wait_for(self._namespace_init, what="pilot to start as pid 1")
        return self


class Cluster:
    """Three servers and two client agents, each in its own namespace."""

    def __init__(self):
        self.prefix = "pilot-" + uuid.uuid4().hex[:6]
        self.switch = self.prefix + "-sw"
        self.tmp = tempfile.mkdtemp(prefix="pilot-cluster-")
        self.server_ips = [f"{SUBNET}.{h}" for h in SERVERS.values()]
        self.nodes = {name: Node(self, name, host)
                      for name, host in {**SERVERS, **CLIENTS}.items()}
        self.pilots = []
        self._namespaces = []

    # -- network --------------------------------------------------------------

    def build_network(self):
        self._add_netns(self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for node in self.nodes.values():
            self._add_netns(node.netns)
            port = "v-" + node.name
            sh("ip", "-n", self.switch, "link", "add", port, "type", "veth",
               "peer", "name", "eth0", "netns", node.netns)
            sh("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", node.netns, "link", "set", "lo", "up")
            sh("ip", "-n", node.netns, "addr", "add", node.ip + "/24", "dev", "eth0")
            sh("ip", "-n", node.netns, "link", "set", "eth0", "up")

    def _add_netns(self, name):
        sh("ip", "netns", "add", name)
        self._namespaces.append(name)

    # -- consul ---------------------------------------------------------------

    def start(self, timeout=2 * DEADLINE):
        """Build the network, start every agent, wait for a leader and all members."""
        self.build_network()
        for node in self.nodes.values():
            node.start_agent()
        client = self.nodes["c1"]
        wait_for(lambda: self.leader(), timeout,
                 lambda: f"a cluster leader; {self.log_tail()}", 0.1)
        wait_for(lambda: self.alive_members(client) == len(self.nodes), timeout,
                 lambda: f"every agent to join; {self.log_tail()}", 0.1)
        return self

    def leader(self, via="c1"):
        """The leader's IP as node `via` sees it ('' if none)."""
        found = self.nodes[via].get("/v1/status/leader")
        return found.rsplit(":", 1)[0] if found else ""

    def alive_members(self, node):
        members = node.get("/v1/agent/members") or []
        return sum(1 for m in members if m.get("Status") == 1)

    def server_named_by_ip(self, ip):
        return next(n for n in self.nodes.values() if n.server and n.ip == ip)

    def log_tail(self):
        tails = []
        for name in self.nodes:
            with contextlib.suppress(OSError), open(os.path.join(self.tmp, f"{name}.log"), "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
                if lines:
                    tails.append(f"{name}: {lines[-1]}")
        return " | ".join(tails) or "(agents logged nothing)"

    # -- pilots ---------------------------------------------------------------

    def pilot(self, node_name, tmp_path, config):
        pilot = NetnsPilot(tmp_path, config, self.nodes[node_name].netns)
        self.pilots.append(pilot)
        return pilot.start()

    def close(self):
        """Stop every process, then remove every namespace (their veths and bridge go too)."""
        for pilot in self.pilots:
            with contextlib.suppress(Exception):
                pilot.stop()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop_agent()
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def cluster():
    """A running 3-server Consul cluster with client agents c1 and c2."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("network namespaces need root and iproute2")
    found = Cluster()
    try:
        yield found.start()
    finally:
        found.close()
