"""What the event timeline costs the supervisor, watched or not.

    .venv/bin/python bench/timeline.py [--events 200000] [--seconds 20]

1. **Per event, in-process.** The same stream of events (a job's exit and
   restart, a check result, a watch change) published on a bare bus, on a
   bus with the timeline listening (Pilot as it runs when nobody watches),
   and with 1 and 10 readers waiting on it (`-events` clients): µs per
   event, median of 5 rounds.
2. **A running Pilot.** One Pilot with ten jobs, a check every second on
   each and a periodic job, sits for `--seconds`: its CPU time with nobody
   watching, with one `-events` and with one `-status -follow` (not on a
   terminal: it reads the status on every change). Peers side by side in one
   run; each figure is Pilot's own CPU (its jobs' not counted).

Benchmarks assert nothing: they print tables.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
from common import table  # noqa: E402


def per_event(count: int) -> list:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from pilot.events import Bus, Event
    from pilot.timeline import Timeline
    stream = [Event("exitFailed", "web"), Event("error", "web: exit status 1"),
              Event("exitSuccess", "check.web"), Event("healthy", "web"),
              Event("changed", "watch.db", 3), Event("healthy", "watch.db", 3)]

    def run(readers: int, listen: bool) -> float:
        bus = Bus()
        timeline = Timeline()
        if listen:
            bus.listen(timeline.record)
        bus.subscribe(lambda e: None, {"web", "check.web", "watch.db"})
        waiting = [gevent.spawn(_reader, timeline) for _ in range(readers)]
        gevent.sleep(0)
        began = time.perf_counter()
        for n in range(count):
            bus.publish(stream[n % len(stream)])
            if readers and n % 64 == 0:
                gevent.sleep(0)  # let the readers run, as the hub would
        took = time.perf_counter() - began
        gevent.killall(waiting)
        return took / count * 1e6

    rows = []
    for label, readers, listen in (("bus alone", 0, False), ("bus + timeline (nobody watching)", 0, True),
                                   ("bus + timeline, 1 reader", 1, True),
                                   ("bus + timeline, 10 readers", 10, True)):
        rounds = [run(readers, listen) for _ in range(5)]
        rows.append((label, f"{statistics.median(rounds):.2f}", f"{min(rounds):.2f}"))
    return rows


def _reader(timeline) -> None:
    cursor = timeline.last
    while True:
        if timeline.wait(cursor, 1.0):
            cursor = timeline.entries(after=cursor)[-1].seq if timeline.entries(after=cursor) \
                else timeline.last


JOBS = [{"name": f"app{n}", "exec": ["sleep", "3600"],
         "health": {"exec": ["true"], "interval": 1, "ttl": 5}} for n in range(10)] + \
       [{"name": "tick", "exec": ["true"], "when": {"interval": "2s"}}]


def watched(seconds: float) -> list:
    rows = []
    for label, flags in (("nobody watching", None), ("one `-events`", ["-events"]),
                         ("one `-status -follow` (a pipe)", ["-status", "-follow"])):
        with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
            tmp = Path(tmp)
            import json
            config = tmp / "pilot.json5"
            config.write_text(json.dumps({"control": {"socket": str(tmp / "pilot.sock")},
                                          "logging": {"level": "INFO"}, "jobs": JOBS}))
            pilot = subprocess.Popen([common.PYTHON, common.PILOT, "-config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
            client = None
            try:
                common.wait_for(lambda: (tmp / "pilot.sock").exists(), 30, "pilot's socket")
                time.sleep(2)  # start-up done: every job running, checks ticking
                if flags:
                    client = subprocess.Popen([common.PYTHON, common.PILOT, "-config", str(config),
                                               *flags], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
                    time.sleep(1)
                before = common.cpu_seconds(pilot.pid)
                client_before = common.cpu_seconds(client.pid) if client else 0.0
                time.sleep(seconds)
                own = common.cpu_seconds(pilot.pid) - before
                theirs = (common.cpu_seconds(client.pid) - client_before) if client else 0.0
                rows.append((label, f"{own * 1000:.0f}", f"{own / seconds * 100:.2f}",
                             f"{theirs * 1000:.0f}" if client else "-"))
            finally:
                if client is not None:
                    common.stop(client)
                common.stop(pilot)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)
    print(f"### The timeline per event ({args.events} events, median and best of 5 rounds)\n")
    print(table(["publishing on", "µs per event (median)", "best"], per_event(args.events)))
    print(f"\n### A running Pilot: 10 jobs, 10 checks a second, a periodic job; {args.seconds:g} s\n")
    print(table(["watched by", "Pilot CPU (ms)", "Pilot CPU (%)", "client CPU (ms)"],
                watched(args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
