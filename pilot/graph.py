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
