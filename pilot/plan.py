"""The reload plan: which running jobs a new config keeps, stops and starts.

Pure (no processes, no clock): `plan(old, new, running)` decides, the App
applies. A job is kept untouched (same process, same registration, a
completed one stays completed) only when nothing that shapes its life
changed: its own definition, the pre-stop hook it waits for, the jobs it
waits for at shutdown, and, for an advertised job, the Consul section.
A job that stops takes its pre-/post-stop hooks with it, so the new job
gets hooks armed for it (docs/behaviour.md §16.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, FrozenSet, Tuple

from pilot.config.model import Config
from pilot.graph import dependents, hooks_of, is_stop_hook, stop_order


@dataclass(frozen=True)
class ReloadPlan:
    keep: Tuple[str, ...]  # running jobs left untouched
    stop: Tuple[str, ...]  # running jobs to stop: changed, removed, and their hooks
    hooks: FrozenSet[str]  # among `stop`, hooks that may run once more as their job stops
    start: Tuple[str, ...]  # jobs of the new config to build and start, in config order


def plan(old: Config, new: Config, running: Collection[str]) -> ReloadPlan:
    """What applying `new` over `old` does to the jobs named in `running`
    (every job of the old config that has a runner, complete or not)."""
    old_deps, new_deps = dependents(old.jobs), dependents(new.jobs)
    old_order, new_order = stop_order(old.jobs), stop_order(new.jobs)
    keep, stop = [], []
    for name in running:
        was, now = old.job(name), new.job(name)
        same_consul = old.consul == new.consul or not was.advertised
        unchanged = (now == was and same_consul
                     and new_deps.get(name) == old_deps.get(name)
                     and new_order.get(name) == old_order.get(name))
        (keep if unchanged else stop).append(name)
    stop += hooks_of(stop, [old.job(name) for name in keep])
    keep = [name for name in keep if name not in stop]
    stopping = set(stop)
    hooks = frozenset(name for name in stop if is_stop_hook(old.job(name), stopping))
    start = tuple(j.name for j in new.jobs if j.name not in keep)
    return ReloadPlan(keep=tuple(keep), stop=tuple(stop), hooks=hooks, start=start)
