"""The reload plan: pure decisions on which running jobs a new config keeps,
stops (with their hooks) and starts. Milliseconds, no processes."""
from pilot import events as ev
from pilot.config.model import Config, ConsulConfig, JobConfig, When
from pilot.plan import plan


def job(name, source=None, event=None, exec_=("true",), **kw):
    when = When(source=source, event=event) if source else When()
    return JobConfig(name=name, exec=exec_, when=when, **kw)


def config(*jobs, consul=None):
    return Config(path="x", jobs=tuple(jobs), consul=consul)


def names(jobs):
    return [j.name for j in jobs]


def test_an_unchanged_job_is_kept_and_nothing_starts():
    """Same definition, same graph around it: kept untouched, not restarted."""
    old = config(job("a"), job("b", "a", ev.HEALTHY))
    p = plan(old, old, names(old.jobs))
    assert p.keep == ("a", "b") and p.stop == () and p.start == ()


def test_a_changed_job_is_restarted_with_its_hooks():
    """A changed job stops and starts again, and so do its pre-/post-stop
    hooks (which run once more as it stops: `hooks`)."""
    old = config(job("app"), job("pre", "app", ev.STOPPING), job("post", "app", ev.STOPPED),
                 job("other"))
    new = config(job("app", exec_=("sleep", "1")), job("pre", "app", ev.STOPPING),
                 job("post", "app", ev.STOPPED), job("other"))
    p = plan(old, new, names(old.jobs))
    assert p.keep == ("other",)
    assert set(p.stop) == {"app", "pre", "post"}
    assert p.hooks == {"pre", "post"}
    assert p.start == ("app", "pre", "post")


def test_a_removed_job_is_stopped_and_an_added_one_started():
    """Removed: stopped (not a hook, so at once); added: started."""
    old = config(job("a"), job("gone"))
    new = config(job("a"), job("added"))
    p = plan(old, new, names(old.jobs))
    assert p.keep == ("a",) and p.stop == ("gone",) and p.hooks == frozenset()
    assert p.start == ("added",)


def test_a_job_whose_dependent_changed_is_restarted():
    """A job whose pre-stop hook is now another job waits for a different
    job when it halts: it restarts, though its own definition is the same."""
    old = config(job("app"), job("pre1", "app", ev.STOPPING))
    new = config(job("app"), job("pre1", "app", ev.STOPPING), job("pre2", "app", ev.STOPPING))
    p = plan(old, new, names(old.jobs))
    assert "app" in p.stop and "app" in p.start


def test_a_job_whose_stop_order_changed_is_restarted():
    """A new job gated on `agent` makes agent wait for it at shutdown: agent
    restarts to learn it."""
    old = config(job("agent"))
    new = config(job("agent"), job("web", "agent", ev.HEALTHY))
    p = plan(old, new, names(old.jobs))
    assert p.stop == ("agent",) and p.start == ("agent", "web")


def test_a_consul_change_restarts_advertised_jobs_only():
    """A changed `consul` section re-registers advertised jobs (they restart);
    jobs that are not advertised are kept."""
    a = ConsulConfig(address="127.0.0.1:8500")
    b = ConsulConfig(address="127.0.0.1:8501")
    web = job("web", port=80, ip="10.0.0.1")
    old = config(web, job("worker"), consul=a)
    new = config(web, job("worker"), consul=b)
    p = plan(old, new, names(old.jobs))
    assert p.keep == ("worker",) and p.stop == ("web",) and p.start == ("web",)


def test_only_running_jobs_are_considered():
    """A job of the old config without a runner (never built) is neither
    kept nor stopped; the new config starts it."""
    old = config(job("a"), job("b"))
    p = plan(old, old, ["a"])
    assert p.keep == ("a",) and p.stop == () and p.start == ("b",)
