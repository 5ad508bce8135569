"""Job-graph knowledge over a config: stop order, pre-stop dependents, hooks."""
from pilot import events as ev
from pilot.config.model import JobConfig, When
from pilot.graph import dependents, hooks_of, is_stop_hook, stop_order


def job(name, source=None, event=None, **kw):
    when = When(source=source, event=event, **kw) if source else When()
    return JobConfig(name=name, exec=("true",), when=when)


def test_stop_order_lists_jobs_started_by_a_jobs_events():
    """web (gated on agent healthy) stops before agent; hooks are excluded."""
    jobs = [job("agent"), job("web", "agent", ev.HEALTHY),
            job("pre", "web", ev.STOPPING), job("post", "web", ev.STOPPED),
            job("tick", "agent", ev.HEALTHY, interval=1.0)]
    order = stop_order(jobs)
    assert order["agent"] == {"web"}
    assert order["web"] == frozenset()


def test_stop_order_breaks_two_job_cycles():
    """Two jobs started by each other's events wait for neither."""
    order = stop_order([job("a", "b", ev.HEALTHY), job("b", "a", ev.HEALTHY)])
    assert order == {"a": frozenset(), "b": frozenset()}


def test_dependents_pick_the_last_prestop_job():
    """Several jobs on A's stopping: only the last in config is waited for."""
    deps = dependents([job("a"), job("p1", "a", ev.STOPPING), job("p2", "a", ev.STOPPING)])
    assert deps == {"a": "p2"}


def test_is_stop_hook_only_for_stopping_or_stopped_of_named_jobs():
    """A hook runs on stopping/stopped of one of the named jobs; a periodic
    job or another event is not a hook."""
    assert is_stop_hook(job("pre", "app", ev.STOPPING), {"app"})
    assert is_stop_hook(job("post", "app", ev.STOPPED), {"app"})
    assert not is_stop_hook(job("post", "app", ev.STOPPED), {"other"})
    assert not is_stop_hook(job("web", "app", ev.HEALTHY), {"app"})


def test_hooks_of_a_stopping_job_are_found_transitively():
    """On reload a pre-/post-stop hook of a job being replaced is replaced
    too (a hook of that hook as well), so the new job has armed hooks."""
    others = [job("pre", "app", ev.STOPPING), job("prepre", "pre", ev.STOPPED),
              job("web", "app", ev.HEALTHY)]
    assert hooks_of(["app"], others) == ["pre", "prepre"]
