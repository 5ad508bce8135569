"""What the control server does for dist/pilot's launcher, which answers client
calls without Python: the record of its socket and config in the unpacked copy,
and `format=text` answers printed exactly as the CLI prints them."""
import json
import os
import stat

import pytest

from pilot import config, tables
from pilot.control import RECORD, RECORD_MAGIC, ControlServer, record_bytes
from tests.support import FakeSupervisor
from tests.test_control import call

pytestmark = pytest.mark.timeout(30)

STATUS = {"jobs": [{"name": "web", "state": "running", "pid": 12, "restarts": 1,
                    "status": "healthy", "health_checked": True, "last_exit": "signal: killed",
                    "since": 1.0, "detail": "next check in 5s"},
                   {"name": "a-very-long-job-name-that-does-not-fit-in-the-table-" * 2,
                    "state": "stopped-by-order", "pid": None, "since": 2.5}],
          "maintenance": True, "watches": [{"name": "db", "tag": "primary", "instances": 2}]}


class HealthyApp(FakeSupervisor):
    def __init__(self, healthy=True):
        super().__init__()
        self.healthy = healthy

    def status(self):
        return STATUS

    def health(self):
        jobs = {"web": {"healthy": self.healthy, "state": "running", "status": "unhealthy",
                        "output": "connection refused\nmore"},
                "db": {"healthy": self.healthy, "state": "backing-off", "status": "unknown"}}
        return {"healthy": self.healthy, "jobs": jobs}


def test_status_as_text_is_what_pilot_status_prints():
    """`GET /v3/status?format=text` is tables.status_text of the JSON answer,
    as UTF-8 (the `…` of a cut name included); without format, JSON as before."""
    server = ControlServer(HealthyApp(), "/nonexistent/s")
    status, headers, body = call(server, "GET", "/v3/status", headers={"QUERY_STRING": "format=text"})
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    _, _, as_json = call(server, "GET", "/v3/status")
    expected = tables.status_text(json.loads(as_json))
    assert body.decode("utf-8") == expected and "\u2026" in expected
    assert call(server, "GET", "/v3/status", headers={"QUERY_STRING": "format=json"})[2] == as_json


@pytest.mark.parametrize("healthy, code", [(True, 200), (False, 503)])
def test_health_as_text_is_what_pilot_health_prints(healthy, code):
    """`GET /v3/health?format=text`: 200 and `healthy`, or 503 and one line per
    job that is not healthy, as tables.health_text makes them."""
    server = ControlServer(HealthyApp(healthy), "/nonexistent/s")
    status, _, body = call(server, "GET", "/v3/health", headers={"QUERY_STRING": "format=text"})
    _, _, as_json = call(server, "GET", "/v3/health")
    assert status == code
    assert body.decode() == tables.health_text(healthy, json.loads(as_json))
    assert body == (b"healthy\n" if healthy else
                    b"db   backing-off  unknown\nweb  running      connection refused\n")


def test_an_unknown_format_is_400_json():
    server = ControlServer(HealthyApp(), "/nonexistent/s")
    status, _, body = call(server, "GET", "/v3/status", headers={"QUERY_STRING": "format=xml"})
    assert status == 400 and json.loads(body) == {"error": "format must be json or text (got 'xml')"}


# --- the record ---------------------------------------------------------------------------


def fields(path):
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\0")
    return [os.fsdecode(x) for x in raw[:-1].split(b"\0")]


@pytest.fixture
def loaded(tmp_path):
    """A config whose template reads SOCK, loaded as Pilot loads it."""
    path = tmp_path / "pilot.json5"
    path.write_text('{control: {socket: "%s/{{ .SOCK }}"}, jobs: []}' % tmp_path)
    return config.load(str(path), {"SOCK": "c.sock"})


def test_binding_records_the_socket_and_the_config_and_stopping_removes_it(tmp_path, loaded):
    """Once the socket listens, RECORD (mode 0600) names it (path, device,
    inode), the config's file and identity, the digest and the variables;
    a stopped server leaves no record."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    server = ControlServer(HealthyApp(), loaded.control.socket, attempts=1, delay=0,
                           source=loaded.source, record_in=str(bundle))
    server.start()
    try:
        record = bundle / RECORD
        st, sock = os.stat(record), os.stat(loaded.control.socket)
        assert stat.S_IMODE(st.st_mode) == 0o600
        source = loaded.source
        assert fields(record) == [
            RECORD_MAGIC, loaded.control.socket, str(sock.st_dev), str(sock.st_ino), source.path,
            str(source.device), str(source.inode), str(source.size), str(source.mtime_ns),
            str(source.ctime_ns), source.digest, str(len(source.env)), *source.env]
        assert "SOCK" in source.env and os.listdir(bundle) == [RECORD]
    finally:
        server.stop()
    assert os.listdir(bundle) == []


def test_a_reload_that_keeps_the_socket_rewrites_the_record(tmp_path, loaded):
    """serves(): the config was loaded anew (edited, other values): the record
    says so; a config whose template may read anything gets no record."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    server = ControlServer(HealthyApp(), loaded.control.socket, attempts=1, delay=0,
                           source=loaded.source, record_in=str(bundle))
    server.start()
    try:
        path = loaded.source.path
        with open(path, "a") as f:
            f.write("\n// edited\n")
        again = config.load(path, {"SOCK": "c.sock"})
        server.serves(again.source)
        assert fields(bundle / RECORD)[6:9] == [str(again.source.inode), str(again.source.size),
                                               str(again.source.mtime_ns)]
        with open(path, "a") as f:
            f.write("// {{ range $k, $v := . }}{{ $k }}{{ end }}\n")
        server.serves(config.load(path, {"SOCK": "c.sock"}).source)
        assert not (bundle / RECORD).exists()
    finally:
        server.stop()


def test_no_record_outside_the_executable(tmp_path, loaded):
    """`python pilot.py` has no unpacked copy: nothing is written anywhere."""
    server = ControlServer(HealthyApp(), loaded.control.socket, attempts=1, delay=0,
                           source=loaded.source)
    server.start()
    try:
        assert sorted(os.listdir(tmp_path)) == ["c.sock", "pilot.json5"]
    finally:
        server.stop()


def test_record_bytes_end_every_field_with_nul(loaded):
    data = record_bytes("/s", (1, 2), loaded.source)
    assert data.startswith(RECORD_MAGIC.encode() + b"\0/s\0" + b"1\0" + b"2\0") and data.endswith(b"\0")
