"""Config load time for 10 KB / 100 KB / 1 MB configs, before and after the
reload path stopped blocking the event loop.

    .venv/bin/python bench/config_load.py [--repeat 3] [--sizes 10,100,1000]

Each size comes in two forms with the same jobs: JSON5 as people write it
(comments, unquoted keys, trailing commas) and plain JSON as generators
write it.

* **before**: the previous path, emulated exactly: `config.load` in the
  supervisor's process with every file read by the pure-Python json5 parser
  (the plain-JSON fast path switched off). The event loop is stalled for the
  whole load.
* **after, start-up**: `config.load` in-process as Pilot starts (nothing to
  supervise yet): plain JSON goes through the C parser.
* **after, reload**: `config.load_in_child`, what a reload does now: the load
  runs in a forked child; the parent only unpickles the result.
* **loop stall**: the longest gap seen by a greenlet that wakes every 5 ms
  while the load runs, i.e. how long nothing else in Pilot could run.

Times are the best of `--repeat` runs (the 1 MB rows run once). A benchmark,
not a test: it prints a table and asserts nothing.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from pilot import config  # noqa: E402
from pilot.config import syntax  # noqa: E402


def job_json5(i: int) -> str:
    return f"""    // job {i}: a web worker
    {{
      name: "web-{i}",
      exec: ["/usr/local/bin/worker", "--port", "{8000 + i}", "--verbose"],
      restarts: "unlimited",
      when: {{source: "setup", once: "exitSuccess"}},
      stopTimeout: "5s",
    }},
"""


def job_data(i: int) -> dict:
    return {"name": f"web-{i}", "exec": ["/usr/local/bin/worker", "--port", str(8000 + i), "--verbose"],
            "restarts": "unlimited", "when": {"source": "setup", "once": "exitSuccess"},
            "stopTimeout": "5s"}


def configs(kib: int):
    """(JSON5 text, JSON text) of about `kib` KB (1000 bytes) each."""
    def sized(render):
        n = 1
        while len(render(n * 2)) <= kib * 1000:
            n *= 2
        step = n // 2
        while step:  # the most jobs that still fit
            if len(render(n + step)) <= kib * 1000:
                n += step
            step //= 2
        return render(n)

    setup = '    {name: "setup", exec: "true"},\n'
    return (sized(lambda n: "{\n  // generated for the benchmark\n  jobs: [\n" + setup
                  + "".join(job_json5(i) for i in range(n)) + "  ],\n}\n"),
            sized(lambda n: json.dumps({"jobs": [{"name": "setup", "exec": "true"}]
                                        + [job_data(i) for i in range(n)]}, indent=2)))


def stall_during(fn):
    """(seconds fn took, longest gap in seconds between a 5 ms ticker's wake-ups)."""
    gaps, last = [0.0], [time.monotonic()]

    def tick():
        while True:
            gevent.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last[0] - 0.005)
            last[0] = now
    ticker = gevent.spawn(tick)
    gevent.sleep(0.02)
    start = time.monotonic()
    last[0] = start
    fn()
    took = time.monotonic() - start
    gevent.sleep(0.01)  # let the ticker see the end of a stall
    ticker.kill()
    return took, max(max(gaps), 0.0)


def best(repeat: int, fn):
    runs = [stall_during(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def before(path: str):
    """The old path: json5 for every file, in the supervisor's process."""
    fast = syntax._plain_json
    syntax._plain_json = lambda text: syntax._NOT_JSON
    try:
        config.load(path, {})
    finally:
        syntax._plain_json = fast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="10,100,1000", help="KB, comma-separated")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kib in (int(s) for s in args.sizes.split(",")):
            repeat = 1 if kib >= 1000 else args.repeat
            for form, text in zip(("JSON5", "JSON"), configs(kib)):
                path = Path(tmp) / f"c{kib}.{form.lower()}"
                path.write_text(text)
                old, old_stall = best(repeat, lambda: before(str(path)))
                start, _ = best(repeat, lambda: config.load(str(path), {}))
                new, new_stall = best(repeat, lambda: config.load_in_child(str(path), {}))
                rows.append((f"{kib} KB {form}", f"{len(text):,}", f"{old:.3f}", f"{old_stall:.3f}",
                             f"{start:.3f}", f"{new:.3f}", f"{new_stall * 1000:.1f}"))
                print(f"bench: {rows[-1][0]} done", file=sys.stderr, flush=True)
    print(common.table(
        ("config", "bytes", "before: load s", "before: loop stalled s", "after: start-up load s",
         "after: reload s", "after: loop stalled ms"), rows))


if __name__ == "__main__":
    main()
