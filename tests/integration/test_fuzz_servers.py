"""Both HTTP servers under 10,000 generated requests each, Pilot as PID 1
with `logging: {format: "json", level: "DEBUG"}` and a real Consul.

Requests come from a seeded generator (a failure names the seed): valid ones
to every endpoint, and broken ones: unknown versions (`HTTP/9`), more than
100 headers, header lines past 64 KiB, request lines past 8 KiB, bad or
lying Content-Length, broken chunking, junk bytes, requests cut short, a
few that stall past the request deadline. Every connection is answered or
closed in time (no hang), no answer is a 5xx, every error body is one line
of JSON, and every line Pilot writes parses as JSON (nothing bypasses the
log format, no traceback). Afterwards Pilot's jobs still run and its open
files and memory are back where they were.
"""
import json
import os
import random
import signal
import socket

import gevent
import gevent.pool
import pytest

from tests.integration.pilot_proc import control_request
from tests.support import DEADLINE, free_port, open_fds, wait_for

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]

COUNT = int(os.environ.get("PILOT_FUZZ_REQUESTS", "10000"))  # per server
SEED = int(os.environ.get("PILOT_FUZZ_SEED", "20261205"))
CONCURRENCY = 16
ANSWER_TIMEOUT = DEADLINE  # for an answer or a close (Pilot's request deadline is 5 s): longer is a hang
RSS_SLACK_KIB = 8 * 1024  # allocator noise; a leak of a few hundred bytes a request is more

CONTROL_PATHS = ["/v3/ping", "/v3/status", "/v3/environ", "/v3/env", "/v3/metric",
                 "/v3/maintenance/enable", "/v3/maintenance/disable", "/v3/reload"]
TELEMETRY_PATHS = ["/metrics", "/status", "/metrics?x=1", "/"]
ODD_PATHS = ["/", "/v3", "/v3/", "/v3/ping/", "//v3//ping", "/v3/%00", "/v3/%ff%fe", "/v3/..%2f..",
             "*", "http://x/v3/ping", "/" + "a" * 3000, "/v3/ping?" + "q=1&" * 200, "/\u00e9"]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get", "CONNECT", "X" * 40]
VERSIONS = ["HTTP/1.1"] * 6 + ["HTTP/1.0"] * 3 + ["HTTP/9", "HTTP/2.0", "HTTP/1", "HTTP/1.x",
                                                   "HTTP/0.9", "http/1.1", "", "HTTP/1.1 extra"]
BODIES = [b'{"FUZZ_A": "1"}', b'{"FUZZ_B": null}', b'{"hits": 1}', b'{"hits": "x"}', b"{}", b"[]",
          b"null", b'{"1BAD": "x"}', b'{"FUZZ_C": 5}', b"{", b'"\xff"', b"\x00" * 10,
          b'{"hits": 1e999}', b'{"a": ' * 50, json.dumps({"FUZZ_D": "v" * 500}).encode()]


def request(rng, paths):
    """One generated request as bytes, and whether to stall before finishing it."""
    roll = rng.random()
    if roll < 0.04:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))), False
    method = rng.choice(METHODS) if rng.random() < 0.3 else rng.choice(["GET", "POST"])
    path = rng.choice(ODD_PATHS) if rng.random() < 0.15 else rng.choice(paths)
    if path == "/v3/reload" and rng.random() < 0.9:
        path = "/v3/ping"  # each reload forks a loader: keep them to a few dozen
    version = rng.choice(VERSIONS)
    line = f"{method} {path} {version}".rstrip().encode("utf-8")
    if rng.random() < 0.01:
        line = b"GET /" + b"a" * 9000 + b" HTTP/1.1"
    headers = [b"Host: fuzz"]
    if rng.random() < 0.03:
        headers += [b"X-%d: %d" % (i, i) for i in range(rng.randint(90, 140))]
    if rng.random() < 0.01:
        headers.append(b"X-Long: " + b"b" * 70000)
    if rng.random() < 0.05:
        headers.append(rng.choice([b"bad header line", b": empty", b"X-\xff: \xfe", b"X-A:\x00"]))
    body = rng.choice(BODIES) if method != "GET" or rng.random() < 0.1 else b""
    framing = rng.random()
    if framing < 0.6:
        headers.append(b"Content-Length: %d" % len(body))
    elif framing < 0.7:
        headers.append(b"Content-Length: " + rng.choice([b"abc", b"-1", b"99999999999999999999",
                                                         b"%d" % (len(body) + 5), b"1, 2"]))
    elif framing < 0.8:
        headers.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n") if rng.random() < 0.7 \
            else rng.choice([b"zz\r\nab\r\n", b"5\r\nab", b"ffffffffffffffffff\r\n"])
    if rng.random() < 0.03:
        headers.append(b"Expect: 100-continue")
    data = line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    if rng.random() < 0.03:
        data = data[:rng.randrange(len(data))]  # cut short, then the client closes its side
    stall = rng.random() < 0.002  # hold the connection open without finishing: the deadline
    return data, stall


def exchange(address, data, stall):
    """Send, then read until the server closes. (status or None, body, problem or None)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(ANSWER_TIMEOUT)
    out = b""
    try:
        s.connect(address)
        try:
            s.sendall(data)
            if not stall:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before the whole request was sent
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        return None, out, "hang"
    except ConnectionResetError:
        pass
    finally:
        s.close()
    while out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        out = out[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if not out:
        return None, b"", None
    head, _, body = out.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body, None
    except (IndexError, ValueError):
        return None, out, "not HTTP"


def fuzz(address, paths, count, seed, json_errors=True):
    """Send `count` generated requests; returns the problems found. Error
    bodies are one line: JSON on the control socket; the telemetry routes
    answer as Go's net/http did for 3.8 (`404 page not found`), and
    requests that cannot be parsed get JSON there too."""
    rng = random.Random(seed)
    work = [request(rng, paths) for _ in range(count)]
    problems, statuses = [], {}
    pool = gevent.pool.Pool(CONCURRENCY)

    def one(n, data, stall):
        status, body, problem = exchange(address, data, stall)
        statuses[status] = statuses.get(status, 0) + 1
        if problem:
            problems.append((n, problem, data[:200]))
        elif status is not None and status >= 500:
            problems.append((n, f"status {status}", data[:200], body[:200]))
        elif status is not None and status >= 400 and body.strip():
            if body.strip().count(b"\n") or (json_errors and not _json_error(body)):
                problems.append((n, "error body is not one line (of JSON)", data[:200], body[:200]))
    for n, (data, stall) in enumerate(work):
        pool.spawn(one, n, data, stall)
    pool.join()
    return problems, statuses


def _json_error(body):
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, str) and "\n" not in error


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1])


def test_fuzzed_requests_to_both_servers(pilot, consul_agent):
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}",
      logging: {{format: "json", level: "DEBUG"}},
      jobs: [{{name: "web", exec: ["sleep", "3600"]}},
             {{name: "tick", exec: ["echo", "tick"], when: {{interval: "1s"}}}}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"],
        metrics: [{{name: "hits", type: "counter", help: "hits"}}]}}}}""")
    control, telemetry = str(p.socket), ("127.0.0.1", port)
    web = wait_for(lambda: p.running_pids(["web"]), what="web running")
    wait_for(lambda: exchange(telemetry, b"GET /metrics HTTP/1.0\r\n\r\n", False)[0] == 200, 20,
             "the telemetry port")

    # Warm up (HTTP stack imported, caches filled, the Consul client's two
    # keep-alive connections opened: calls and deregistrations), then take
    # the baseline.
    for action in ("enable", "disable"):
        assert control_request(p.socket, "POST", f"/v3/maintenance/{action}")[0] == 200
    assert not fuzz(control, CONTROL_PATHS, 300, SEED - 1)[0]
    assert not fuzz(telemetry, TELEMETRY_PATHS + CONTROL_PATHS[:2], 300, SEED - 2, False)[0]
    fds, rss = open_fds(p.pid, consul_agent.http_port), rss_kib(p.pid)
    ticks = len(p.lines('"msg":"tick"'))

    problems, statuses = fuzz(control, CONTROL_PATHS, COUNT, SEED)
    assert not problems, f"seed {SEED}, control: {len(problems)} problems, first: {problems[:5]}"
    problems, tel_statuses = fuzz(telemetry, TELEMETRY_PATHS + CONTROL_PATHS[:2], COUNT, SEED + 1,
                                  json_errors=False)
    assert not problems, f"seed {SEED + 1}, telemetry: {len(problems)} problems, first: {problems[:5]}"
    assert statuses.get(200) and statuses.get(400) and tel_statuses.get(200) and tel_statuses.get(404)

    # Pilot still serves, its jobs still run, and what the fuzz held is let go.
    assert control_request(p.socket, "POST", "/v3/maintenance/disable")[0] == 200
    assert p.running_pids(["web"]) == web
    wait_for(lambda: len(p.lines('"msg":"tick"')) > ticks + 1, what="the periodic job to run again")
    wait_for(lambda: open_fds(p.pid, consul_agent.http_port) <= fds,
             what=lambda: f"open files back to {fds} (now {open_fds(p.pid, consul_agent.http_port)})")
    grown = rss_kib(p.pid) - rss
    print(f"fuzz: control {statuses}, telemetry {tel_statuses}; open files {fds} -> "
          f"{open_fds(p.pid, consul_agent.http_port)}; RSS {rss} KiB -> {rss + grown} KiB")
    assert grown < RSS_SLACK_KIB, f"RSS grew by {grown} KiB over {2 * COUNT} requests"

    # Every line Pilot wrote is one JSON object: nothing bypassed the log format.
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    lines = [ln for ln in p.log.splitlines() if ln.strip()]
    bad = [ln for ln in lines if not _is_json_object(ln)]
    assert not bad, f"{len(bad)} of {len(lines)} log lines are not JSON, first: {bad[:5]}"
    assert not any("Traceback" in ln for ln in lines)
    http_lines = [ln for ln in lines if '"msg":"control: ' in ln or '"msg":"telemetry: ' in ln]
    assert len(http_lines) <= 2 * COUNT + 1200, len(http_lines)  # at most one line a request


def _is_json_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
