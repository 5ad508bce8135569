"""The control-socket client (`pilot.client`): the bytes it sends, how it reads
answers, and its one-line errors. A tiny stdlib HTTP server on a unix socket
plays the server (it answers canned bytes and records each request); one test
talks to the real `ControlServer` from a fresh interpreter."""
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from pilot import client
from pilot.control import ControlServer
from pilot.errors import ControlError
from tests.support import FakeSupervisor

pytestmark = pytest.mark.timeout(30)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def http_answer(status=200, body=b"", headers=None, length=True):
    """Raw answer bytes; `length=False` leaves Content-Length out (read to EOF)."""
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class FakeControl:
    """Accepts connections on a unix socket, records each request, answers `answer`."""

    def __init__(self, path):
        self.path, self.answer, self.requests = path, http_answer(), []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.requests.append(self._read_request(conn))
                conn.sendall(self.answer)

    @staticmethod
    def _read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("Content-Length", 0)):
            body += conn.recv(4096)
        return lines[0], headers, body

    def close(self):
        self.listener.close()


@pytest.fixture
def fake(tmp_path):
    server = FakeControl(str(tmp_path / "control.sock"))
    yield server
    server.close()


# --- what the client sends -------------------------------------------------------------


def test_ping_is_a_get_with_a_host_and_no_body(fake):
    """-ping sends `GET /v3/ping` with a Host header and no body."""
    client.ping(fake.path)
    line, headers, body = fake.requests[0]
    assert line == "GET /v3/ping HTTP/1.0"
    assert headers["Host"] == "control" and "Content-Length" not in headers and body == b""


def test_putmetric_and_putenv_post_a_json_object_of_strings(fake):
    """The pairs go as one JSON object with Content-Type and an exact Content-Length."""
    client.putmetric(fake.path, {"my_metric": "42"})
    client.putenv(fake.path, {"A": "1", "B": "", "Ü": "ö"})
    (metric_line, metric_headers, metric_body), (env_line, env_headers, env_body) = fake.requests
    assert metric_line == "POST /v3/metric HTTP/1.0" and json.loads(metric_body) == {"my_metric": "42"}
    assert metric_headers["Content-Type"] == "application/json"
    assert int(metric_headers["Content-Length"]) == len(metric_body)
    assert env_line == "POST /v3/environ HTTP/1.0" and json.loads(env_body) == {"A": "1", "B": "", "Ü": "ö"}
    assert int(env_headers["Content-Length"]) == len(env_body)


def test_reload_and_maintenance_post_an_empty_body(fake):
    """Bodiless POSTs say Content-Length: 0, as http.client did."""
    client.reload(fake.path)
    client.maintenance(fake.path, True)
    client.maintenance(fake.path, False)
    assert [r[0] for r in fake.requests] == [
        "POST /v3/reload HTTP/1.0", "POST /v3/maintenance/enable HTTP/1.0",
        "POST /v3/maintenance/disable HTTP/1.0"]
    assert all(r[1]["Content-Length"] == "0" and r[2] == b"" for r in fake.requests)


# --- how it reads answers -----------------------------------------------------------------


STATUS = {"jobs": [{"name": "web", "state": "running", "pid": 7}], "maintenance": False}


@pytest.mark.parametrize("answer", [
    http_answer(body=json.dumps(STATUS).encode()),
    http_answer(body=json.dumps(STATUS).encode(), length=False),
], ids=["content-length", "read-to-eof"])
def test_status_body_is_read_by_length_or_to_the_end(fake, answer):
    """The body ends at Content-Length, or where the server closes the stream."""
    fake.answer = answer
    assert client.status(fake.path) == STATUS


def test_bytes_past_content_length_are_not_part_of_the_body(fake):
    """Content-Length wins over whatever else the stream carries."""
    body = json.dumps(STATUS).encode()
    fake.answer = http_answer(body=body) + b"garbage"
    assert client.status(fake.path) == STATUS


def test_a_chunked_answer_is_decoded(fake):
    """Transfer-Encoding: chunked bodies are joined (any server may chunk)."""
    body = json.dumps(STATUS).encode()
    chunked = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:])
    fake.answer = http_answer(body=chunked, headers={"Transfer-Encoding": "chunked"}, length=False)
    assert client.status(fake.path) == STATUS


def test_an_error_status_fails_with_the_servers_reason(fake):
    """A 4xx answer fails, naming the status and the JSON error text."""
    fake.answer = http_answer(422, json.dumps({"error": "metric 'x' is not a number"}).encode())
    with pytest.raises(ControlError) as info:
        client.putmetric(fake.path, {"x": "y"})
    assert str(info.value) == "control server answered 422: metric 'x' is not a number"


def test_an_error_without_json_quotes_the_plain_body(fake):
    """A non-JSON error body is quoted as text; an empty one says so."""
    fake.answer = http_answer(500, b"  boom \n")
    with pytest.raises(ControlError, match=r"^control server answered 500: boom$"):
        client.ping(fake.path)
    fake.answer = http_answer(503)
    with pytest.raises(ControlError, match=r"^control server answered 503: no detail$"):
        client.ping(fake.path)


def test_a_status_that_is_not_json_fails_clearly(fake):
    """-status with a non-JSON 200 body is one clear error."""
    fake.answer = http_answer(body=b"<html>")
    with pytest.raises(ControlError, match="^control server sent a status that is not JSON$"):
        client.status(fake.path)


@pytest.mark.parametrize("answer, reason", [
    (b"", "Remote end closed connection without response"),
    (b"SMTP ready\r\n\r\n", "bad status line: 'SMTP ready'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "answer ended inside its headers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "answer shorter than its Content-Length 10"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size in answer"),
])
def test_a_broken_answer_is_one_line_naming_the_socket(fake, answer, reason):
    """Answers that are not readable HTTP fail as `control socket PATH: reason`."""
    fake.answer = answer
    with pytest.raises(ControlError) as info:
        client.ping(fake.path)
    assert str(info.value) == f"control socket {fake.path}: {reason}"


# --- when nothing answers ---------------------------------------------------------------


def test_no_socket_file_means_pilot_is_not_running(tmp_path):
    """A missing socket file: `pilot is not running: no socket at PATH`."""
    path = str(tmp_path / "none.sock")
    with pytest.raises(ControlError) as info:
        client.ping(path)
    assert str(info.value) == f"pilot is not running: no socket at {path}"


def test_a_socket_nobody_listens_on_means_pilot_is_not_running(tmp_path):
    """A stale socket file (bound, then closed): `nothing listens on PATH`."""
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(ControlError) as info:
        client.ping(path)
    assert str(info.value) == f"pilot is not running: nothing listens on {path}"


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    """A listener that accepts and stays silent fails after TIMEOUT, not never."""
    path = str(tmp_path / "silent.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(1)
    monkeypatch.setattr(client, "TIMEOUT", 0.2)
    try:
        with pytest.raises(ControlError, match=f"^control socket {path}: timed out$"):
            client.ping(path)
    finally:
        silent.close()


BUSY_SCRIPT = """
import sys
from pilot import client
real = client._new_socket


class Spy:
    \"\"\"The client's socket, saying on stdout each time connect() finds no slot.\"\"\"
    def __init__(self, sock):
        self.sock = sock

    def connect(self, path):
        try:
            return self.sock.connect(path)
        except BlockingIOError:
            print("full", flush=True)
            raise

    def __getattr__(self, name):
        return getattr(self.sock, name)


client._new_socket = lambda: Spy(real())
client.ping(sys.argv[1])
print("ok", flush=True)
"""


def test_a_call_waits_for_a_free_slot_instead_of_failing(tmp_path):
    """With the server's listen backlog full, connect() on a unix socket fails
    with EAGAIN at once (it does not queue); a fresh client process (no gevent,
    as the CLI runs) keeps trying within its timeout and gets its answer once
    the server accepts again."""
    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)  # room for one waiting connection
    listener.settimeout(20)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    filler.connect(path)
    call = subprocess.Popen([sys.executable, "-c", BUSY_SCRIPT, path], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert call.stdout.readline() == "full\n", call.stderr.read()
        listener.accept()[0].close()  # the filler's turn: a slot is free
        conn, _ = listener.accept()
        with conn:
            assert FakeControl._read_request(conn)[0] == "GET /v3/ping HTTP/1.0"
            conn.sendall(http_answer(200, b"\n"))
        out, err = call.communicate(timeout=20)
    finally:
        filler.close()
        listener.close()
        if call.poll() is None:
            call.kill()
            call.wait()
    assert (call.returncode, out.splitlines()[-1]) == (0, "ok"), err


def test_a_call_that_finds_no_slot_within_its_timeout_fails_in_one_line(tmp_path):
    """The wait for a slot is bounded by the client's timeout, then one line says so."""
    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    filler.connect(path)
    script = "import sys; from pilot import client; client.TIMEOUT = 0.3; client.ping(sys.argv[1])"
    try:
        done = subprocess.run([sys.executable, "-c", script, path], cwd=REPO,
                              capture_output=True, text=True, timeout=20)
    finally:
        filler.close()
        listener.close()
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"pilot.errors.ControlError: control socket {path}: "
                                            "no free connection slot within 0.3 s (Pilot is busy)")


# --- sockets of other users ---------------------------------------------------------------

SQUATTER = """
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
print("listening", flush=True)
conn, _ = listener.accept()
conn.settimeout(30)
received = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    received += chunk
print(repr(received), flush=True)
"""


def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("playing another user needs root")


def test_a_socket_file_of_another_user_gets_nothing(fake):
    """A socket owned by neither the caller nor root (someone bound the path
    first) is refused before connecting, in one line saying whose it is."""
    _needs_root()
    os.chown(fake.path, 65534, 65534)
    with pytest.raises(ControlError) as info:
        client.putenv(fake.path, {"DB_PASSWORD": "hunter2"})
    assert str(info.value) == (f"control socket {fake.path} is owned by uid 65534, not by you "
                               "(0) or root; refusing to send")
    assert fake.requests == []


def test_a_listener_of_another_user_gets_nothing_even_behind_a_file_of_ours(tmp_path):
    """The file can change between the check and connect(): after connecting,
    the listening process's own uid (SO_PEERCRED) is checked before a byte is
    sent. Here the file is root's but user 65534 listens on it."""
    import shutil
    import tempfile
    _needs_root()
    shared = tempfile.mkdtemp(dir="/tmp")  # user 65534 cannot reach tmp_path
    os.chmod(shared, 0o1777)
    path = os.path.join(shared, "pilot.socket")
    squatter = subprocess.Popen(["/usr/bin/python3", "-c", SQUATTER, path], user=65534,
                                group=65534, extra_groups=[], stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline() == "listening\n"
        os.chown(path, 0, 0)
        with pytest.raises(ControlError) as info:
            client.putenv(path, {"DB_PASSWORD": "hunter2"})
        received, _ = squatter.communicate(timeout=20)
    finally:
        if squatter.poll() is None:
            squatter.kill()
            squatter.wait()
        shutil.rmtree(shared)
    assert str(info.value) == (f"control socket {path} is served by uid 65534, not by you (0) "
                               "or root; refusing to send")
    assert received == "b''\n"


# --- against the real server, from a fresh interpreter --------------------------------------


CLIENT_SCRIPT = """
import json, sys
from pilot import client
path = sys.argv[1]
client.ping(path)
client.putenv(path, {"GREETING": "hello"})
heavy = ("socket", "http.client", "email", "ssl", "gevent")
print(json.dumps({"status": client.status(path),
                  "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_a_fresh_client_process_talks_to_the_real_control_server(tmp_path):
    """ControlServer answers a new interpreter's client, which loads no heavy module."""
    app, path = FakeSupervisor(), str(tmp_path / "pilot.sock")
    server = ControlServer(app, path, attempts=2, delay=0.05)
    server.start()
    try:
        done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, path], cwd=REPO,
                              capture_output=True, text=True, timeout=20)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"status": app.status(), "loaded": []}
    assert app.env == {"GREETING": "hello"}


# --- the event stream ------------------------------------------------------------------


def read_all_events(stream):
    got = []
    with pytest.raises(client.StreamEnded):
        while True:
            got += stream.read(10)
    return got


def serve_in_pieces(path, pieces, seen):
    """A server that answers one connection with `pieces`, one send each."""
    import time
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            seen.append(FakeControl._read_request(conn))
            for piece in pieces:
                conn.sendall(piece)
                time.sleep(0.02)
        listener.close()
    threading.Thread(target=serve, daemon=True).start()


def test_an_event_stream_asks_with_since_and_reads_lines_as_they_come(tmp_path):
    """GET /v3/events?since=N; events are the JSON lines of the body, read
    right wherever the bytes are cut (inside the head, inside a line); the
    end of the stream is StreamEnded."""
    path, seen = str(tmp_path / "s.sock"), []
    answer = http_answer(headers={"Content-Type": "application/x-ndjson"}, length=False) \
        + b'{"message": "one"}\n{"message": "two"}\n'
    serve_in_pieces(path, [answer[:10], answer[10:60], answer[60:-12], answer[-12:]], seen)
    stream = client.EventStream(path, since=300)
    assert [d["message"] for d in read_all_events(stream)] == ["one", "two"]
    stream.close()
    assert seen[0][0] == "GET /v3/events?since=300 HTTP/1.0"


def test_an_event_stream_refused_is_the_servers_reason(fake):
    """A 503 (too many streams) or any error answer is a ControlError with
    the server's reason, as for every other request."""
    body = json.dumps({"error": "too many event streams open (16)"}).encode()
    fake.answer = http_answer(503, body, {"Content-Type": "application/json"})
    stream = client.EventStream(fake.path)
    with pytest.raises(ControlError, match="control server answered 503: too many event streams"):
        while True:
            stream.read(10)
    stream.close()


def test_an_event_stream_without_pilot_says_it_is_not_running(tmp_path):
    with pytest.raises(ControlError, match="pilot is not running: no socket at"):
        client.EventStream(str(tmp_path / "none.sock"))
