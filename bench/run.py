"""Run every benchmark in bench/ one after another and print each table.

Modest settings by default, so the whole run takes a few minutes; `--full`
gives every bench its own (longer) defaults. Names select benches:

    .venv/bin/python bench/run.py [--full] [supervisor control ...]

Each bench cleans up what it starts; this runner is also a child
subreaper, so anything a bench left behind comes back here, is reported
and killed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# name -> arguments for a run of a few minutes in all
BENCHES = {
    "supervisor": ["--restarts", "200", "--max-seconds", "20", "--idle-seconds", "30"],
    "control": ["1"],
    "watch_latency": ["--changes", "10", "--interval", "1"],
    "templates": ["--changes", "200"],
    "executable": [],
    "config_load": ["--repeat", "1"],
    "timeline": ["--events", "100000", "--seconds", "15"],
    "scale": ["--jobs", "10,100", "--window", "5"],
    "health": ["--jobs", "100", "--window", "5"],
    "client": ["--calls", "20", "--idle-seconds", "20", "--pings", "100"],
}


def leftovers() -> list:
    """Processes that came to this runner after their parent exited."""
    return [(pid, common.comm(pid)) for pid in common.children(os.getpid())]


def run_one(name: str, args: list) -> bool:
    script = Path(__file__).resolve().parent / f"{name}.py"
    print(f"\n## {name}\n", flush=True)
    print(f"`bench/{name}.py {' '.join(args)}`\n", flush=True)
    began = time.monotonic()
    done = subprocess.run([common.PYTHON, str(script), *args], cwd=str(common.ROOT))
    took = time.monotonic() - began
    left = leftovers()
    if left:
        print(f"\nbench: {name} left {len(left)} process(es) running: "
              + ", ".join(f"{pid} ({c})" for pid, c in left) + "; killed", file=sys.stderr)
        common.reap_orphans()
    status = "ok" if done.returncode == 0 else f"FAILED (status {done.returncode})"
    print(f"\n({name}: {took:.0f} s, {status})", flush=True)
    return done.returncode == 0 and not left


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"benches to run (default: all of {', '.join(BENCHES)})")
    parser.add_argument("--full", action="store_true", help="each bench with its own defaults")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench: {', '.join(unknown)}")
    here = Path(__file__).resolve().parent
    names = [n for n in (args.names or BENCHES) if (here / f"{n}.py").exists()]
    for name in sorted(set(args.names or BENCHES) - set(names)):
        print(f"bench: skipped {name} (bench/{name}.py not present)", file=sys.stderr)
    common.become_subreaper()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    failed = [n for n in names if not run_one(n, [] if args.full else BENCHES[n])]
    if failed:
        print(f"\nbench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    common.run_main(main)
