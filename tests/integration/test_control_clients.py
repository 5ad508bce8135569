"""Clients of a running Pilot's control socket, and the socket's path, under
pressure: a thousand calls at once, another user holding the path, a file
that is not a socket where the socket should go. Pilot runs as PID 1 of its
own PID namespace (`python pilot.py`), clients are real processes."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

from tests.integration.pilot_proc import ENTRY, PYTHON, ROOT, Pilot
from tests.support import free_port

pytestmark = pytest.mark.timeout(300)

WORKERS = """
import json, sys, threading
from pilot import client
from pilot.errors import ControlError
path, count = sys.argv[1], int(sys.argv[2])
go, failures = threading.Event(), []


def call():
    go.wait()
    try:
        client.putmetric(path, {"load_calls": "1"})
    except ControlError as exc:
        failures.append(str(exc))


threads = [threading.Thread(target=call) for _ in range(count)]
for thread in threads:
    thread.start()
print("ready", flush=True)
sys.stdin.read()  # the starting signal: stdin closes
go.set()
for thread in threads:
    thread.join()
print(json.dumps(failures), flush=True)
"""


def _counter(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        exposed = r.read().decode()
    found = re.search(rf"^{name}(?:_total)? (\S+)$", exposed, re.M)
    return float(found.group(1)) if found else None


def test_a_thousand_simultaneous_putmetric_calls_all_arrive(tmp_path):
    """1,000 `-putmetric` calls at once overflow the control socket's pool and
    listen backlog; each call waits for a slot instead of failing at once with
    EAGAIN. 980 calls are pilot.client in fresh interpreters (4 processes of
    245 threads, released together: 1,000 CLI processes would need ~8 GB) and
    20 are `pilot.py -putmetric` processes started at the same moment. Every
    call succeeds and the counter reads 1000."""
    port = free_port()
    p = Pilot(tmp_path, """{
      consul: "127.0.0.1:1",
      telemetry: {port: %d, interfaces: ["static:127.0.0.1"],
                  metrics: [{namespace: "load", name: "calls", help: "calls", type: "counter"}]},
      jobs: [],
    }""" % port).start()
    workers = []
    try:
        p.wait_log(r"telemetry: serving at")
        for _ in range(4):
            workers.append(subprocess.Popen(
                [PYTHON, "-c", WORKERS, str(p.socket), "245"], cwd=str(ROOT),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for worker in workers:
            assert worker.stdout.readline() == "ready\n", worker.stderr.read()
        for worker in workers:
            worker.stdin.close()
        clis = [subprocess.Popen([PYTHON, ENTRY, "-config", str(p.config), "-putmetric",
                                  "load_calls=1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(20)]
        failures = []
        for worker in workers:
            out, err = worker.communicate(timeout=240)
            assert worker.returncode == 0, err
            failures += json.loads(out)
        for cli in clis:
            out, err = cli.communicate(timeout=240)
            if cli.returncode != 0:
                failures.append(err.strip())
        assert failures == [], f"{len(failures)} of 1000 calls failed, e.g. {failures[:3]}"
        assert _counter(port, "load_calls") == 1000
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        p.stop()


# --- the socket path --------------------------------------------------------------------

SQUATTER = """
import os, socket, sys
path, stop = sys.argv[1:3]
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen(8)
listener.settimeout(0.1)
print("listening", flush=True)
while not os.path.exists(stop):
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        continue
    conn.settimeout(5)
    received = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    except socket.timeout:
        pass
    print(repr(received), flush=True)
    conn.close()
"""


@pytest.fixture
def shared_tmp():
    """A directory like a host /tmp: sticky, writable by everyone."""
    path = tempfile.mkdtemp(prefix="shared-tmp-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_squatted_socket_path_stops_pilot_at_once_and_gets_no_secret(tmp_path, shared_tmp):
    """User 65534 binds the socket path first (a shared /tmp): Pilot, as root,
    stops with one line saying whose socket it is (it used to retry 10 x 1 s
    and fail with "Address already in use"), and `-putenv DB_PASSWORD=...`
    refuses that socket instead of sending the secret to its owner."""
    if os.geteuid() != 0:
        pytest.skip("playing another user needs root")
    path, stop = os.path.join(shared_tmp, "containerpilot.socket"), os.path.join(shared_tmp, "stop")
    squatter = subprocess.Popen(["/usr/bin/python3", "-c", SQUATTER, path, stop], user=65534,
                                group=65534, extra_groups=[], stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline() == "listening\n"
        p = Pilot(tmp_path, '{control: {socket: "%s"}, jobs: []}' % path).start()
        try:
            status = p.wait()
        finally:
            p.stop()
        putenv = p.cli("-putenv", "DB_PASSWORD=hunter2")
    finally:
        open(stop, "w").close()
        try:
            received, _ = squatter.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            squatter.kill()
            raise
    assert (status, p.log.strip()) == (1, (
        f"pilot: error listening to socket at {path}: a socket owned by uid 65534 is there "
        "and in use; Pilot (uid 0) does not take over another user's socket"))
    assert (putenv.returncode, putenv.stderr) == (1, (
        f"pilot: -putenv: failed to run subcommand: control socket {path} is owned by uid "
        "65534, not by you (0) or root; refusing to send\n"))
    assert "hunter2" not in received and os.lstat(path).st_uid == 65534


def test_a_file_named_as_control_socket_is_kept_and_named(tmp_path):
    """A typo makes `control.socket` the config file itself: Pilot exits 1 with
    one line naming the path and what is there; the file is not deleted."""
    config = tmp_path / "containerpilot.json5"
    text = '{control: {socket: "%s"}, jobs: []}' % config
    p = Pilot(tmp_path, text, name=config.name).start()
    try:
        status = p.wait()
    finally:
        p.stop()
    assert (status, p.log.strip()) == (1, (
        f"pilot: error listening to socket at {config}: a regular file is there, not a "
        "socket (only a stale socket is replaced; nothing was deleted)"))
    assert config.read_text() == text
