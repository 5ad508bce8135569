"""What the jobs of one config mean to each other: who starts whom, who
waits for whom when stopping, which jobs are pre-/post-stop hooks.

Pure functions over `JobConfig`s (docs/behaviour.md §9.7, §16): the App
uses them to wire jobs, the reload plan to decide what a new config
changes, and `-graph` to draw the picture.
"""
from __future__ import annotations

from typing import Collection, Dict, FrozenSet, Iterable, List

from pilot import events as ev
from pilot.config.model import JobConfig

HOOK_EVENTS = (ev.STOPPING, ev.STOPPED)


def is_stop_hook(job: JobConfig, of: Collection[str]) -> bool:
    """True when `job` runs on `stopping`/`stopped` of a job named in `of`."""
    w = job.when
    return w.source in of and w.interval is None and w.event in HOOK_EVENTS


def dependents(jobs: Iterable[JobConfig]) -> Dict[str, str]:
    """For each job, the job it waits for when it halts: the last in config
    order whose trigger is that job's `stopping` (its pre-stop hook)."""
    out = {}
    for j in jobs:
        w = j.when
        if w.event == ev.STOPPING and w.source and w.interval is None:
            out[w.source] = j.name
    return out


def stop_order(jobs: Iterable[JobConfig]) -> Dict[str, FrozenSet[str]]:
    """For each job, the jobs its events start (hooks aside): at shutdown
    they stop first, so an app stops before the agent it was gated on.
    Two jobs started by each other's events wait for neither."""
    jobs = list(jobs)
    after: Dict[str, set] = {j.name: set() for j in jobs}
    for j in jobs:
        w = j.when
        if w.source in after and w.source != j.name and w.interval is None \
                and w.event not in HOOK_EVENTS:
            after[w.source].add(j.name)
    mutual = [(a, b) for a, deps in after.items() for b in deps if a in after.get(b, ())]
    for a, b in mutual:
        after[a].discard(b)
    return {k: frozenset(v) for k, v in after.items()}


def hooks_of(stopping: Collection[str], others: Iterable[JobConfig]) -> List[str]:
    """The jobs among `others` that are pre-/post-stop hooks of a job in
    `stopping`, transitively (a hook of a hook), in the order found."""
    others = list(others)
    found: List[str] = []
    names = set(stopping)
    grew = True
    while grew:
        grew = False
        for job in others:
            if job.name not in names and is_stop_hook(job, names):
                found.append(job.name)
                names.add(job.name)
                grew = True
    return found


# -- the picture (`pilot -graph`) -------------------------------------------------------


def edges(cfg) -> List[tuple]:
    """(from, to, label, kind) for every way one thing starts a job, from the
    config alone: kind is "start", "hook" (pre-/post-stop) or "group" (into
    an all/any node named `all:JOB` / `any:JOB`)."""
    found = []
    for job in cfg.jobs:
        w = job.when
        if w.interval is not None:
            found.append((ev.STARTUP, job.name, f"every {_duration(w.interval)}", "start"))
            continue
        group = "all" if w.all else "any" if w.any else ""
        target = f"{group}:{job.name}" if group else job.name
        for c in w.conditions:
            source = ev.STARTUP if (c.source, c.event) == (ev.GLOBAL, ev.STARTUP) else c.source
            if c.source == ev.GLOBAL and c.event in (ev.ENTER_MAINTENANCE, ev.EXIT_MAINTENANCE):
                source = c.event
            kind = "hook" if c.event in HOOK_EVENTS and not group else "start"
            found.append((source, target, _label(c), kind))
        if group:
            found.append((target, job.name, "", "group"))
    return found


def _label(c) -> str:
    if c.event == ev.SIGNAL:
        return "each"
    text = ("each " if c.each else "") + c.event
    if c.at_least is not None:
        text += f" (≥{c.at_least})"
    if c.event == ev.STOPPING:
        text += " (pre-stop)"
    elif c.event == ev.STOPPED:
        text += " (post-stop)"
    return text


def _duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def draw(cfg, fmt: str = "dot") -> str:
    """The job graph as Graphviz DOT, a Mermaid flowchart or plain text."""
    return {"mermaid": _mermaid, "text": _text}.get(fmt, _dot)(cfg, edges(cfg))


def _kind_of(name: str, cfg) -> str:
    if ":" in name and name.split(":", 1)[0] in ("all", "any"):
        return "group"
    if cfg.job(name) is not None:
        return "job"
    if name.startswith("watch."):
        return "watch"
    if name in ("SIGHUP", "SIGUSR2"):
        return "signal"
    return "event"


def _nodes(cfg, found) -> List[str]:
    names = [j.name for j in cfg.jobs] + [w.source for w in cfg.watches]
    for a, b, _, _ in found:
        names += [a, b]
    return list(dict.fromkeys(names))


def _job_label(name: str, cfg) -> str:
    job = cfg.job(name)
    notes = []
    if job is not None:
        if job.main:
            notes.append("main")
        if job.advertised:
            notes.append(f"port {job.port}")
        if job.always_healthy:
            notes.append("telemetry service")
        elif job.health is not None and job.health.exec:
            notes.append("health-checked")
    return name + (f"\n({', '.join(notes)})" if notes else "")


_DOT_SHAPES = {"job": 'shape=box, style="rounded"', "watch": "shape=ellipse",
               "signal": "shape=diamond", "event": "shape=plaintext",
               "group": "shape=circle, width=0.3, fixedsize=false"}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(cfg, found) -> str:
    lines = ["digraph pilot {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name in _nodes(cfg, found):
        kind = _kind_of(name, cfg)
        label = name.split(":", 1)[0] if kind == "group" else _job_label(name, cfg)
        lines.append(f"  {_dot_quote(name)} [label={_dot_quote(label)}, {_DOT_SHAPES[kind]}];")
    for a, b, label, kind in found:
        style = ", style=dashed" if kind == "hook" else ""
        lines.append(f"  {_dot_quote(a)} -> {_dot_quote(b)} [label={_dot_quote(label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _text(cfg, found) -> str:
    """One line per edge, for a terminal: `setup --exitSuccess--> consul-agent`;
    a pre-/post-stop hook `web ..stopping (pre-stop)..> web-prestop`; a job
    nothing starts, on a line of its own."""
    shown = set()

    def node(name: str) -> str:  # a job's notes at its first mention only
        if _kind_of(name, cfg) == "group":
            return name.replace(":", " of ", 1)  # `all of web`
        text = name if name in shown else _job_label(name, cfg).replace("\n", " ")
        shown.add(name)
        return text
    lines = []
    for a, b, label, kind in found:
        line, head = ("..", "..>") if kind == "hook" else ("--", "-->")
        plain = not label or (a == ev.STARTUP and label == ev.STARTUP)
        arrow = f" {head} " if plain else f" {line}{label}{head} "
        lines.append(node(a) + arrow + node(b))
    started = {b for _, b, _, _ in found}
    lines += [f"{node(j.name)}: nothing starts it" for j in cfg.jobs if j.name not in started]
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


_MERMAID_SHAPES = {"job": ("(", ")"), "watch": ("([", "])"), "signal": ("{", "}"),
                   "event": (">", "]"), "group": ("((", "))")}


def _mermaid(cfg, found) -> str:
    ids = {name: f"n{i}" for i, name in enumerate(_nodes(cfg, found))}
    lines = ["flowchart LR"]
    for name, node in ids.items():
        kind = _kind_of(name, cfg)
        label = name.split(":", 1)[0] if kind == "group" else _job_label(name, cfg)
        left, right = _MERMAID_SHAPES[kind]
        lines.append(f"  {node}{left}{_mermaid_text(label)}{right}")
    for a, b, label, kind in found:
        arrow = "-.->" if kind == "hook" else "-->"
        lines.append(f"  {ids[a]} {arrow}|{_mermaid_text(label)}| {ids[b]}")
    return "\n".join(lines) + "\n"
