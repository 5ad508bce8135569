"""Imports flow downward only.

Every module under pilot/ is parsed, imports inside functions included
(a lazy import is still a dependency): a module may import modules of its
own layer or of a layer below it, and no chain of imports may come back
to where it started.

LAYERS is Pilot's layering, bottom to top. A layer is a module or package
directly under pilot/ (a package's modules share its layer). A new module
gets its line at the level it belongs to: above everything it imports,
below everything that imports it.
"""
import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PILOT = Path(__file__).resolve().parents[1] / "pilot"

LAYERS = [
    "__init__",     # the version
    "errors",       # ConfigError and friends
    "strconv",      # Go's spelling of strings and floats
    "frozen",       # what the one-file executable changes in the environment
    "log",          # formats, outputs, reopening, log_bug
    "datatypes",    # config value converters
    "users",        # a job's `user`: the image's /etc/passwd and /etc/group
    "template",     # Go's text/template subset that renders the config
    "interfaces",   # `interfaces` specs -> an IP address
    "config",       # path -> frozen Config
    "events",       # Event(code, source), the Bus, timers
    "triggers",     # when a job starts: its `when` as a small state
    "graph",        # the job graph over a config (stop order, hooks, -graph)
    "plan",         # the reload plan (pure)
    "environment",  # a job's environment at each start: envFile, env, secret files
    "forkexec",     # starting a job as another user or in another directory
    "commands",     # one exec in its own process group
    "health",       # HTTP and TCP health probes
    "httpcommon",   # HTTP's body limit and one-line JSON errors
    "httphandler",  # pywsgi handler: malformed requests as one-line JSON 4xx
    "httpserver",   # HTTP serving for the control socket and telemetry
    "discovery",    # Consul: the calls, registrations, heartbeats
    "consul_reads", # KV, catalog and health reads; Follow (blocking queries)
    "jobs",         # Job: the life of one `jobs` entry
    "watches",      # Watch: Consul changes -> events
    "templates",    # files rendered from Consul
    "telemetry",    # metrics and their HTTP server
    "timeline",     # the event timeline: the bus and job moments in the user's words
    "tables",       # the text of -status and -health (the CLI and the control server print it)
    "control_api",  # the control socket's endpoints (bottle)
    "control",      # the control socket's life
    "client",       # the control socket's client (one-shot actions)
    "views",        # what a terminal shows: the status table, -status -follow, -events
    "supervisor",   # PID 1 duties: subreaper, signals
    "app",          # builds every component from the Config and runs them
    "run",          # supervisor mode
    "cli",          # flags and dispatch
]

Edge = Tuple[str, str, int]  # (importer, imported, line)


def modules(root: Path) -> Dict[str, Path]:
    """Dotted name -> file, for every module of the package at `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def edges(root: Path) -> List[Edge]:
    """Every import of one of the package's modules, wherever it is written."""
    known = modules(root)
    out = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package, root.name):
                out.append((name, _module_of(target, known), node.lineno))
    return sorted({e for e in out if e[1] is not None})


def _targets(node, package: str, top: str) -> Iterator[str]:
    """The dotted names an import statement reaches for (`from a import b`
    may import the module a.b, or the name b of a)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        if base == top or base.startswith(top + "."):
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _module_of(target: str, known: Dict[str, Path]):
    """The module an import name lands in: itself, or the longest known prefix."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward(found: List[Edge], layers: List[str]) -> List[str]:
    rank = {name: i for i, name in enumerate(layers)}
    return [f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)}, higher) "
            f"at line {line}"
            for src, dst, line in found
            if rank[layer_of(dst)] > rank[layer_of(src)]]


def cycles(found: List[Edge]) -> List[List[str]]:
    """Each group of modules that import each other, directly or not
    (Tarjan's strongly connected components of more than one module, or a
    module importing itself)."""
    graph: Dict[str, Set[str]] = {}
    for src, dst, _ in found:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    groups = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


# --- Pilot itself ----------------------------------------------------------------------


def test_every_module_has_a_layer():
    """A module whose layer is not in LAYERS (a new one) must be given its
    place; a LAYERS entry with no module behind it is stale."""
    present = {layer_of(m) for m in modules(PILOT)}
    missing = sorted(present - set(LAYERS))
    assert not missing, (f"add {missing} to LAYERS in tests/test_layering.py, "
                         "above what it imports and below what imports it")
    stale = sorted(set(LAYERS) - present)
    assert not stale, f"LAYERS names {stale}, which pilot/ no longer has"
    assert len(LAYERS) == len(set(LAYERS))


def test_imports_flow_downward():
    """No module imports one of a higher layer, not even inside a function."""
    assert upward(edges(PILOT), LAYERS) == []


def test_no_import_cycles():
    """No module reaches itself through imports (cycles inside a package too)."""
    assert cycles(edges(PILOT)) == []


# --- the checks can fail ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """A small package whose imports the checks must find at fault."""
    def write(rel, text):
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    write("__init__.py", "")
    write("low.py", "def f():\n    from pkg import high  # lazy, but upward\n")
    write("high.py", "from pkg.low import f\n")
    write("sub/__init__.py", "from .a import x\n")
    write("sub/a.py", "from pkg.sub import y\nx = 1\n")
    return tmp_path / "pkg"


def test_the_checks_find_an_upward_lazy_import_and_cycles(tree):
    found = edges(tree)
    assert ("pkg.low", "pkg.high", 2) in found
    assert ("pkg.sub", "pkg.sub.a", 1) in found  # a relative import, resolved
    assert upward(found, ["__init__", "low", "high", "sub"]) == [
        "pkg.low (layer low) imports pkg.high (layer high, higher) at line 2"]
    assert cycles(found) == [["pkg.high", "pkg.low"], ["pkg.sub", "pkg.sub.a"]]
