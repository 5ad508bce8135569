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


def test_graph_as_text_is_one_line_per_edge_for_a_terminal():
    """`-graph text`: `source --event--> job`, a hook dotted, a job's notes
    at its first mention, an all/any group named, a job nothing starts."""
    from pilot.config import parse_text
    from pilot.graph import draw
    cfg = parse_text("""{consul: "c:8500", watches: [{name: "db", interval: 5}], jobs: [
        {name: "setup", exec: "x"},
        {name: "web", exec: "x", port: 80, interfaces: ["static:10.0.0.1"],
         health: {exec: "check", interval: 1, ttl: 5}, when: {source: "setup", once: "exitSuccess"}},
        {name: "drain", exec: "x", when: {source: "web", once: "stopping"}},
        {name: "report", exec: "x", when: {all: [{source: "web", once: "healthy"},
                                                {source: "watch.db", once: "healthy"}]}},
        {name: "tick", exec: "x", when: {interval: "3s"}},
        {name: "orphan", exec: "x", when: {source: "nothing"}}]}""", "c.json5", {})
    assert draw(cfg, "text").splitlines() == [
        "startup --> setup",
        "setup --exitSuccess--> web (port 80, health-checked)",
        "web ..stopping (pre-stop)..> drain",
        "web --healthy--> all of report",
        "watch.db --healthy--> all of report",
        "all of report --> report",
        "startup --every 3s--> tick",
        "orphan: nothing starts it",
    ]
