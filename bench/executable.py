"""The one-file executable against `python pilot.py`, side by side, on one config.

    .venv/bin/python bench/executable.py [--starts 10] [--calls 30]

Needs `make dist` first (dist/pilot) and root for the scratch-image emulation
(tests/integration/scratch.py). Measures, for each way of running Pilot:

* size of the executable;
* exec → the first job's exec: Pilot is started, its first job (`sh -c 'date > FILE'`)
  writes a timestamp; median over --starts starts. The executable unpacks itself
  on every start here, as in a fresh container. sh+date add ~2 ms to both;
* RSS and PSS of every process of the tree (launcher, Pilot, the idle job), idle
  and again after the client calls (the control socket loads bottle and
  pywsgi on its first request);
* a client flag's round trip (`-ping`, median over --calls calls) from the host and,
  for the executable, from inside the emulated FROM-scratch image (nsenter, as
  `docker exec`; nsenter's own cost is shown on its own line);
* what each optional import costs in a fresh interpreter (time and RSS).

Goals: start-to-first-job ≤ 150 ms, whole-tree RSS ≤ 25 MB (supervisord 25 MB,
ContainerPilot 19 MB), client call ≤ 50 ms from inside the image. Prints a markdown
table; every process it starts is stopped before it exits.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.common import wait_for  # noqa: E402
from tests.integration.scratch import DOCKER_ENV, Container, Image  # noqa: E402

EXECUTABLE = os.path.join(REPO, "dist", "pilot")
OPTIONAL_IMPORTS = ("gevent", "bottle", "consul", "prometheus_client", "yaml", "json5",
                    "http.client")
CONFIG = """{
  control: { socket: "%(socket)s" },
  jobs: [
    { name: "first", exec: ["/bin/sh", "-c", "date +%%s.%%N > %(stamp)s"] },
    { name: "idle", exec: ["sleep", "600"] },
  ],
}
"""


def child_env(tmpdir):
    """The caller's environment with its own TMPDIR and bytecode caching on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["TMPDIR"] = tmpdir
    return env


def read_stamp(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return float(text) if text else None
    except (OSError, ValueError):
        return None


class Run:
    """One Pilot (command + config in a private directory), stopped on exit."""

    def __init__(self, command):
        self.dir = tempfile.mkdtemp(prefix="pilot-bench-")
        self.socket = os.path.join(self.dir, "pilot.sock")
        self.stamp = os.path.join(self.dir, "stamp")
        self.config = os.path.join(self.dir, "pilot.json5")
        with open(self.config, "w") as f:
            f.write(CONFIG % {"socket": self.socket, "stamp": self.stamp})
        self.command = command
        self.env = child_env(self.dir)
        self.process = None

    def start(self):
        """Start Pilot; return the seconds from exec to the first job's timestamp."""
        started = time.time()
        self.process = subprocess.Popen(self.command + ["-config", self.config], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        stamp = wait_for(lambda: read_stamp(self.stamp), 20, "first job timestamp")
        return stamp - started

    def client(self, *flags):
        return self.command + ["-config", self.config, *flags]

    def tree(self):
        """(pid, name) of Pilot's process and all its live descendants."""
        pids, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
                pids.append((pid, proc_name(pid)))
            except FileNotFoundError:  # it exited meanwhile
                continue
        return pids

    def stop(self):
        leftovers = self.tree() if self.process and self.process.poll() is None else []
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        kill_group(self.process)
        for pid, _ in leftovers:  # jobs have process groups of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_group(process):
    """Jobs run in process groups of their own; leave none behind."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def proc_name(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def memory_kb(pid, field):
    """VmRSS from status, or Pss from smaps_rollup, in kB."""
    path = f"/proc/{pid}/status" if field == "VmRSS" else f"/proc/{pid}/smaps_rollup"
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def timed_calls(argv, count, env=None):
    """Median wall time of `count` runs of argv that must succeed."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=20)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return statistics.median(times)


def measure(name, command, starts, calls):
    """Start-up, memory and client round trip of one way of running Pilot."""
    result = {"name": name, "starts": []}
    for i in range(starts):
        run = Run(command)
        try:
            result["starts"].append(run.start())
            if i == starts - 1:
                wait_for(lambda: os.path.exists(run.socket), 10, "control socket")
                wait_for(lambda: len(run.tree()) >= (3 if name == "dist/pilot" else 2), 10,
                         "idle job")
                time.sleep(0.5)  # let start-up allocations settle
                result["tree"] = [(pid, comm, memory_kb(pid, "VmRSS"), memory_kb(pid, "Pss"))
                                  for pid, comm in run.tree()]
                result["ping"] = timed_calls(run.client("-ping"), calls, run.env)
                # the control socket loads its HTTP stack on the first request
                result["tree_used"] = [(pid, comm, memory_kb(pid, "VmRSS"), memory_kb(pid, "Pss"))
                                       for pid, comm in run.tree()]
        finally:
            run.stop()
    return result


def in_image(calls):
    """-ping from inside the emulated FROM-scratch image, and nsenter's own cost."""
    root_parent = tempfile.mkdtemp(prefix="pilot-bench-image-")
    root = os.path.join(root_parent, "root")
    image = Image()
    image.build(root)
    container = Container(image, root)
    try:
        container.start()
        wait_for(lambda: os.path.exists(os.path.join(root, "var/run/containerpilot.socket")),
                 20, "control socket in the image")
        enter = ["nsenter", "-t", str(container.pid1), "--pid", "--mount", "--root", "--wd"]
        env = dict(DOCKER_ENV, **image.env)  # what `docker exec` gives the command
        ping = timed_calls(enter + ["/pilot", "-ping"], calls, env)
        nsenter = statistics.median(nsenter_cost(enter, env) for _ in range(calls))
        return ping, nsenter
    finally:
        container.stop()
        shutil.rmtree(root_parent, ignore_errors=True)


def nsenter_cost(enter, env):
    """nsenter into the image and fail to exec: what `docker exec` emulation adds."""
    started = time.perf_counter()
    subprocess.run(enter + ["/no-such-program"], env=env, capture_output=True, timeout=20)
    return time.perf_counter() - started


IMPORT_PROBE = """
import sys, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
before, started = rss(), time.perf_counter()
__import__(sys.argv[1])
print(time.perf_counter() - started, rss() - before)
"""


def import_cost(module, runs=5):
    """(median ms, median RSS kB) of importing `module` in a fresh interpreter."""
    samples = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, module], cwd=REPO,
                              env=child_env(tempfile.gettempdir()), capture_output=True,
                              text=True, timeout=60, check=True)
        seconds, kb = done.stdout.split()
        samples.append((float(seconds), int(kb)))
    return (statistics.median(s for s, _ in samples) * 1000,
            statistics.median(k for _, k in samples))


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def table(results, image_ping, nsenter):
    exe, py = results
    rows = [("| what | dist/pilot | python pilot.py | goal |"), "|---|---|---|---|",
            f"| size | {mb(os.path.getsize(EXECUTABLE) / 1024)} | — (needs Python + venv) | |"]
    rows.append(f"| exec → first job (median of {len(exe['starts'])}) | "
                f"{ms(statistics.median(exe['starts']))} | "
                f"{ms(statistics.median(py['starts']))} | ≤ 150 ms |")
    for label, index in (("whole-tree RSS", 2), ("whole-tree PSS", 3)):
        rows.append(f"| {label} | {mb(sum(p[index] for p in exe['tree']))} | "
                    f"{mb(sum(p[index] for p in py['tree']))} | ≤ 25 MB |")
    rows.append(f"| RSS per process | {tree_text(exe['tree'])} | {tree_text(py['tree'])} | |")
    rows.append(f"| whole-tree RSS after the `-ping` calls | {mb(sum(p[2] for p in exe['tree_used']))} | "
                f"{mb(sum(p[2] for p in py['tree_used']))} | |")
    rows.append(f"| `-ping` from the host (median) | {ms(exe['ping'])} | {ms(py['ping'])} | |")
    rows.append(f"| `-ping` inside the scratch image (median) | {ms(image_ping)} | — | ≤ 50 ms |")
    rows.append(f"| of which nsenter (`docker exec` emulation) | {ms(nsenter)} | — | |")
    return "\n".join(rows)


def tree_text(tree):
    return ", ".join(f"{comm} {mb(rss)}" for _, comm, rss, _ in tree)


def imports_table():
    rows = ["| optional import (fresh interpreter) | time | RSS |", "|---|---|---|"]
    for module in OPTIONAL_IMPORTS:
        seconds_ms, kb = import_cost(module)
        rows.append(f"| {module} | {seconds_ms:.1f} ms | +{mb(kb)} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    if not os.path.exists(EXECUTABLE):
        sys.exit("bench: dist/pilot is missing; run `make dist` first")
    results = [measure("dist/pilot", [EXECUTABLE], args.starts, args.calls),
               measure("python pilot.py", [sys.executable, os.path.join(REPO, "pilot.py")],
                       args.starts, args.calls)]
    image_ping, nsenter = in_image(args.calls)
    print(table(results, image_ping, nsenter))
    print()
    print(imports_table())
    print()
    print(json.dumps({"starts_s": {r["name"]: r["starts"] for r in results}}))


if __name__ == "__main__":
    main()
