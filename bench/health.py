"""Health checks: what an HTTP check costs against an exec check, Pilot beside
ContainerPilot 3.8 in one run, each as PID 1 of its own PID namespace on the
same config file (see bench/peers.py).

Three kinds of check, every job one of them every 1 s:

* `exec`: the tiny static `scale-check` (appends a byte to a file, exits 0);
* `http`: Pilot's own GET (`health.http`), no process started;
* `curl`: an exec of `curl -fsS` on the same URL, which is how a 3.8 config
  (or Pilot without `http`) checks an HTTP endpoint.

The URL is served by `http-count`, a tiny static server outside the
namespaces that appends a byte to a file per request answered, so "checks
run" is a file size for every kind. Per peer, kind and job count, over a
window of --window seconds once all jobs run: checks run per second and as
a share of those scheduled, the supervisor's own CPU per 1,000 checks and
the same with its reaped children (the checks' processes), its RSS.

    .venv/bin/python bench/health.py [--jobs 100,1000] [--rounds 1] [--window 10]
        [--only pilot,containerpilot]
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is not a package)
import peers  # noqa: E402
from peers import Workload  # noqa: E402
import scale  # noqa: E402
from scale import cell  # noqa: E402

SERVER_SOURCE = r"""
/* http-count COUNTFILE: listen on 127.0.0.1 (a free port, printed on
   stdout), answer every request with 200 "ok" and close, append one byte to
   COUNTFILE per answer. One request at a time: a check's request is small
   and sent at once, and a client that stalls is given up after 2 s. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char ANSWER[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok";

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGPIPE, SIG_IGN);
    int count = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (count < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 65535) ||
        getsockname(ls, (struct sockaddr *)&a, &len)) return 3;
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    struct timeval limit = {2, 0};
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        char buf[4096];
        size_t got = 0;
        for (;;) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0) break;
            got += n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n") || got == sizeof buf - 1) break;
        }
        if (got && write(c, ANSWER, sizeof ANSWER - 1) == (ssize_t)(sizeof ANSWER - 1))
            if (write(count, "x", 1) != 1) return 4;
        close(c);
    }
}
"""
KINDS = ("exec", "http", "curl")


class Server:
    """http-count, for the whole bench: answers every peer's checks."""

    def __init__(self, tmp: Path):
        exe = common.compile_static("http-count", SERVER_SOURCE)
        self.count = tmp / "http-requests"
        self.proc = subprocess.Popen([str(exe), str(self.count)], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/health"

    def answered(self) -> int:
        try:
            return self.count.stat().st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(peer, workload: Workload, probe, window: float, server: Server) -> Dict[str, float]:
    """scale.py's measure, counting the requests http-count answered for
    the kinds that go through it."""
    counted = (lambda run: run.files.checks_run()) if workload.check == "exec" \
        else (lambda run: server.answered())
    out = scale.measure(peer, workload, probe, window, 30, checks_run=counted)
    return {"checks_s": out["checks_s"], "checks_pct": out["checks_pct"], "rss": out["rss"],
            "cpu_k": out["cpu_check"], "cpu_all_k": out["cpu_check_all"]}


def runs_kind(peer, kind: str) -> bool:
    return kind != "http" or peer.kind == "pilot"  # 3.8 has no HTTP check


def run_rounds(peer_list, job_counts, rounds, window, probe, server):
    """{(jobs, peer name, kind): [result per round]}, interleaved."""
    results: Dict[tuple, List[dict]] = {}
    for r in range(rounds):
        for n in job_counts:
            todo = [(p, k) for k in KINDS for p in peer_list if runs_kind(p, k)]
            shift = r % len(todo)
            for peer, kind in todo[shift:] + todo[:shift]:
                print(f"bench: round {r + 1}/{rounds}, {n} jobs, {kind} checks: {peer.name} "
                      f"(load {peers.load()})", file=sys.stderr, flush=True)
                w = Workload(n, checks=True, check=kind, check_url=server.url)
                results.setdefault((n, peer.name, kind), []).append(
                    measure(peer, w, probe, window, server))
                common.reap_orphans(spare=[server.proc.pid])
    return results


COLUMNS = [  # (heading, key, format)
    ("checks run per second", "checks_s", "{:.0f}"),
    ("% of scheduled", "checks_pct", "{:.0f}"),
    ("own CPU per 1,000 checks (s)", "cpu_k", "{:.2f}"),
    ("with children per 1,000 checks (s)", "cpu_all_k", "{:.2f}"),
    ("RSS (MiB)", "rss", "{:.1f}"),
]


def report(results, peer_list, job_counts) -> str:
    out = []
    for n in job_counts:
        rows = []
        for kind in KINDS:
            for peer in peer_list:
                values = results.get((n, peer.name, kind))
                if values:
                    rows.append([peer.name, kind] + [cell([v[key] for v in values], fmt)
                                                     for _, key, fmt in COLUMNS])
        out.append(f"**{n} jobs**, a check each every {peers.CHECK_INTERVAL} s "
                   f"({n / peers.CHECK_INTERVAL:g} scheduled per second)\n")
        out.append(common.table(["supervisor", "check", *(c[0] for c in COLUMNS)], rows, right_from=2))
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="100,1000", help="job counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--window", type=float, default=10, help="seconds measured once all run")
    parser.add_argument("--only", default="pilot,containerpilot", help="peer kinds or names, comma-separated")
    args = parser.parse_args(argv)
    common.become_subreaper()
    probe = peers.build_probe()
    peers.warm_bytecode()
    peer_list = [p for p in peers.available_peers(args.only.split(","), warn=lambda m: print(m, file=sys.stderr))
                 if p.health_checks]
    job_counts = [int(x) for x in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="pilot-bench-health-") as tmp:
        server = Server(Path(tmp))
        try:
            began, load_before = time.monotonic(), peers.load()
            results = run_rounds(peer_list, job_counts, args.rounds, args.window, probe, server)
        finally:
            server.close()
    print(f"Health checks ({datetime.date.today()}, {os.cpu_count()} CPUs, {args.rounds} round(s), "
          f"{args.window:g} s windows; load average before {load_before}, after {peers.load()}; "
          f"{time.monotonic() - began:.0f} s)\n")
    print(report(results, peer_list, job_counts))
    return 0


if __name__ == "__main__":
    common.run_main(main)
