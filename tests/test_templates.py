"""pilot.templates: rendering, writing and publishing, with a fake Follow
that the test answers (the real one is in tests/integration/test_templates_consul.py)."""
import logging
import os
import stat

import gevent
import pytest

from pilot import events as ev
from pilot.config.model import TemplateConfig
from pilot.consul_reads import KEY, PREFIX, SERVICE, Query, ServiceEntry
from pilot.events import Event
from pilot.templates import (
    FAILED, PENDING, RENDERED, WAITING, WaitingForKey, Store, Template, Templates, render_once,
    write_if_changed,
)
from tests.support import published, wait_for

pytestmark = pytest.mark.timeout(120)
LOGGER = "pilot.templates.test"


class FakeFollow:
    """A Follow whose answers the test gives (`answer(data)`)."""

    made = []

    def __init__(self, consul, query, **kw):
        self.query = query
        self.listeners = []
        self.ready = False
        self.data = None
        self.started = self.stopped = False
        FakeFollow.made.append(self)

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def answer(self, data):
        self.ready, self.data = True, data
        for listener in list(self.listeners):
            listener(self)


@pytest.fixture(autouse=True)
def fresh_follows():
    FakeFollow.made = []


def follow_of(query):
    live = [f for f in FakeFollow.made if f.query == query and not f.stopped]
    assert len(live) == 1, f"{len(live)} live follows of {query}"
    return live[0]


def web(i, address="10.0.0.1", port=80, node="n1"):
    return ServiceEntry(id=f"web-{i}", name="web", address=address, port=port, tags=("a",),
                        node=node, node_address="10.9.9.9")


def config(tmp_path, text, name="t", **kw):
    return TemplateConfig(name=name, text=text, destination=str(tmp_path / f"{name}.out"), **kw)


@pytest.fixture
def make(bus):
    """Templates over a fake Follow; all stopped afterwards."""
    made = []

    def build(*cfgs, previous=None, environ=None):
        comp = Templates(cfgs, consul=None, bus=bus, environ=environ or {"HOME": "/root"},
                         previous=previous, log=logging.getLogger(LOGGER), follow=FakeFollow)
        made.append(comp)
        return comp

    yield build
    for comp in made:
        comp.stop()


WEB = Query(SERVICE, "web")
MAX = Query(KEY, "config/max")


def rendered(make, cfg, instances):
    """Templates over `cfg`, started, its file written once `web` answered `instances`."""
    comp = make(cfg)
    comp.start()
    wait_for(lambda: FakeFollow.made, what="the first lookup")
    follow_of(WEB).answer(instances)
    wait_for(lambda: os.path.exists(cfg.destination), what="the first file")
    return comp


def test_renders_when_its_lookups_answer_then_writes_and_publishes(tmp_path, bus, make):
    """Nothing is written while a lookup has no answer; the first complete
    render writes the file with its perms and publishes changed{template.NAME}."""
    seen = published(bus)
    cfg = config(tmp_path, '{{range service "web"}}{{.Address}}:{{.Port}};{{end}} max={{key "config/max"}}',
                 perms=0o600)
    comp = make(cfg)
    comp.start()
    wait_for(lambda: FakeFollow.made, what="the first lookup")
    rendered = comp.templates[0].renders
    follow_of(WEB).answer((web(1),))
    wait_for(lambda: comp.templates[0].renders > rendered, what="the render after web's answer")
    gevent.idle()
    assert not os.path.exists(cfg.destination) and seen == []
    follow_of(MAX).answer("10")
    wait_for(lambda: os.path.exists(cfg.destination), what="the file")
    assert open(cfg.destination).read() == "10.0.0.1:80; max=10"
    assert stat.S_IMODE(os.stat(cfg.destination).st_mode) == 0o600
    assert seen == [Event(ev.CHANGED, "template.t")]
    assert comp.status() == [{"name": "t", "destination": cfg.destination, "state": RENDERED,
                              "renders": comp.templates[0].renders, "writes": 1}]


def test_a_change_rewrites_and_an_unchanged_output_does_not(tmp_path, bus, make):
    """New data that changes the output: one write, one changed. New data
    that renders the same text: no write, no event."""
    cfg = config(tmp_path, '{{range service "web"}}{{.Address}} {{end}}')
    comp = rendered(make, cfg, (web(1),))
    seen = published(bus)
    follow_of(WEB).answer((web(1), web(2, address="10.0.0.2")))
    wait_for(lambda: seen, what="changed")
    assert open(cfg.destination).read() == "10.0.0.1 10.0.0.2 "
    inode = os.stat(cfg.destination).st_ino
    follow_of(WEB).answer((web(1, port=81), web(2, address="10.0.0.2")))  # port not rendered
    wait_for(lambda: comp.templates[0].renders >= 3, what="the third render")
    gevent.idle()
    assert seen == [Event(ev.CHANGED, "template.t")]
    assert os.stat(cfg.destination).st_ino == inode
    assert comp.templates[0].writes == 2


def test_lookups_are_shared_and_released(tmp_path, make):
    """Two templates reading one service share one Follow; a lookup no
    template reads any more is stopped."""
    a = config(tmp_path, '{{if service "web"}}{{key "flag"}}{{end}}', name="a")
    b = config(tmp_path, '{{service "web"}}', name="b")
    comp = make(a, b)
    comp.start()
    wait_for(lambda: all(t.renders >= 1 for t in comp.templates), what="both first renders")
    gevent.idle()
    assert [f.query for f in FakeFollow.made] == [WEB]
    assert len(follow_of(WEB).listeners) == 2
    follow_of(WEB).answer((web(1),))
    wait_for(lambda: any(f.query == Query(KEY, "flag") for f in FakeFollow.made))
    follow_of(Query(KEY, "flag")).answer("on")
    wait_for(lambda: os.path.exists(a.destination))
    follow_of(WEB).answer(())  # `if` is false: template a no longer reads the key
    wait_for(lambda: open(a.destination).read() == "")
    assert [f.query for f in FakeFollow.made if f.stopped] == [Query(KEY, "flag")]
    comp.stop()
    assert all(f.stopped for f in FakeFollow.made)


def test_a_missing_key_waits_and_is_logged_once(tmp_path, bus, make, caplog):
    """`key` of a key that does not exist: nothing written, one log line
    naming the key; once it exists the file is written. keyOrDefault does
    not wait."""
    seen = published(bus)
    cfg = config(tmp_path, '{{key "config/max"}} {{keyOrDefault "config/min" "1"}}')
    comp = make(cfg)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        comp.start()
        wait_for(lambda: len(FakeFollow.made) == 2)
        follow_of(Query(KEY, "config/min")).answer(None)
        for _ in range(3):  # told again and again: still one line
            rendered = comp.templates[0].renders
            follow_of(MAX).answer(None)
            wait_for(lambda: comp.templates[0].renders > rendered, what="a render")
        assert comp.templates[0].state == WAITING
        assert not os.path.exists(cfg.destination) and seen == []
        follow_of(MAX).answer("10")
        wait_for(lambda: os.path.exists(cfg.destination))
    assert open(cfg.destination).read() == "10 1"
    waiting = [r.getMessage() for r in caplog.records if "waiting for key" in r.getMessage()]
    assert waiting == ["template t: waiting for key config/max (it does not exist yet)"]


def test_a_render_error_keeps_the_last_good_file(tmp_path, bus, make, caplog):
    """A render that fails (here: index out of range) leaves the file as it
    was, logs one line naming the template and the line, publishes nothing;
    a later good answer renders again."""
    cfg = config(tmp_path, 'first\n{{index (service "web") 1}}')
    comp = rendered(make, cfg, (web(1), web(2)))
    good = open(cfg.destination).read()
    seen = published(bus)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        follow_of(WEB).answer((web(1),))
        wait_for(lambda: comp.templates[0].state == FAILED)
        follow_of(WEB).answer((web(3),))  # the same error again: not logged twice
        wait_for(lambda: comp.templates[0].renders >= 3)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"template t: render error at line 2: at <index (service \"web\"...>:"
                      f" error calling index: index out of range: 1 (keeping the last good {cfg.destination})"]
    assert open(cfg.destination).read() == good and seen == []
    follow_of(WEB).answer((web(1), web(5, address="10.0.0.5")))
    wait_for(lambda: seen == [Event(ev.CHANGED, "template.t")])


def test_an_unwritable_destination_logs_once_and_is_retried(tmp_path, bus, make, caplog, monkeypatch):
    """A destination that cannot be written: one line, the previous file
    stays, nothing is published; it is tried again without waiting for a change."""
    import pilot.templates as templates
    monkeypatch.setattr(templates, "WRITE_RETRY", 0.05)
    cfg = config(tmp_path, '{{range service "web"}}{{.Address}}{{end}}')
    comp = rendered(make, cfg, (web(1),))
    seen = published(bus)
    real_rename = os.rename
    monkeypatch.setattr(templates.os, "rename", lambda *a: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        follow_of(WEB).answer((web(2, address="10.0.0.2"),))
        wait_for(lambda: comp.templates[0].renders >= 5, what="retries")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"template t: cannot write {cfg.destination}: permission denied (the previous file stays)"]
    assert open(cfg.destination).read() == "10.0.0.1" and seen == []
    assert sorted(os.listdir(tmp_path)) == ["t.out"]  # no temporary file left
    monkeypatch.setattr(templates.os, "rename", real_rename)
    wait_for(lambda: open(cfg.destination).read() == "10.0.0.2", what="the retry to succeed")
    assert seen == [Event(ev.CHANGED, "template.t")]


def test_wait_holds_a_burst_of_changes_into_one_render(tmp_path, bus, make):
    """With `wait`, changes closer together than it make one render after
    the burst (the first render is not held)."""
    cfg = config(tmp_path, '{{len (service "web")}}', wait=1.0)
    rendered(make, cfg, ())
    seen = published(bus)
    for n in range(1, 6):  # each change heard before the next: no wait would render each
        follow_of(WEB).answer(tuple(web(i) for i in range(n)))
        gevent.idle()
    wait_for(lambda: open(cfg.destination).read() == "5", what="the render after the burst")
    gevent.idle()
    assert open(cfg.destination).read() == "5"
    assert seen == [Event(ev.CHANGED, "template.t")]


def test_first_render_publishes_even_when_the_file_is_already_right(tmp_path, bus, make):
    """A restarted container finds its file already rendered: nothing is
    written, but changed is published once so jobs waiting for it start."""
    cfg = config(tmp_path, "static {{.HOME}}")
    with open(cfg.destination, "w") as f:
        f.write("static /root")
    inode = os.stat(cfg.destination).st_ino
    seen = published(bus)
    comp = make(cfg)
    comp.start()
    wait_for(lambda: seen)
    assert seen == [Event(ev.CHANGED, "template.t")]
    assert os.stat(cfg.destination).st_ino == inode and comp.templates[0].writes == 0


def test_reload_keeps_an_unchanged_template_quiet(tmp_path, bus, make):
    """A new Templates built with the previous one: an identical template
    keeps its state and publishes nothing for the same text; a changed one
    renders and publishes."""
    same = config(tmp_path, "same {{.HOME}}", name="same")
    edited = config(tmp_path, "old", name="edited")
    first = make(same, edited)
    first.start()
    wait_for(lambda: os.path.exists(same.destination) and os.path.exists(edited.destination))
    first.stop()
    seen = published(bus)
    second = make(same, config(tmp_path, "new", name="edited"), previous=first)
    assert second.rendered_sources() == {"template.same"}
    rendered = [t.renders for t in second.templates]  # an adopted template keeps its count
    second.start()
    wait_for(lambda: all(t.renders > n for t, n in zip(second.templates, rendered)),
             what="both templates rendered")
    gevent.idle()
    assert seen == [Event(ev.CHANGED, "template.edited")]
    assert second.rendered_sources() == {"template.same", "template.edited"}


def test_a_long_render_lets_other_greenlets_run(tmp_path, bus, make):
    """A render of many steps yields now and then: the supervisor's other
    greenlets run while it renders."""
    cfg = config(tmp_path, '{{range loop 100000}}{{.}}{{end}}')
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0)

    other = gevent.spawn(ticker)
    try:
        comp = make(cfg)
        template = comp.templates[0]
        template.render()
    finally:
        other.kill()
    assert os.path.getsize(cfg.destination) > 100000
    assert len(ticks) > 10


def test_write_if_changed_is_atomic_and_keeps_the_owner(tmp_path):
    """The new text goes to a temporary file renamed over the old one (a
    reader never sees half a file), with the perms asked, the owner kept."""
    path = tmp_path / "out"
    path.write_text("old")
    os.chown(path, 1234, 5678)
    assert write_if_changed(str(path), b"new", 0o640) is True
    st = os.stat(path)
    assert (path.read_text(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == ("new", 0o640, 1234, 5678)
    assert write_if_changed(str(path), b"new", 0o640) is False
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_render_once_reads_each_lookup_once_and_reports_a_missing_key(monkeypatch):
    """`-render`: every lookup read once without blocking; a missing
    required key is an error naming it."""
    import pilot.templates as templates
    asked = []

    def fake_read(consul, query, index=None, wait=None):
        asked.append((query, index, wait))
        return 5, {WEB: (web(1),), MAX: None, Query(PREFIX, "cfg/"): (("cfg/a", "1"),)}[query]

    monkeypatch.setattr(templates, "read", fake_read)
    cfg = TemplateConfig(name="t", text='{{range service "web"}}{{.ID}}{{end}} {{range ls "cfg"}}'
                                        '{{.Key}}={{.Value}}{{end}} {{len (service "web")}}', destination="x")
    assert render_once(cfg, object(), {}) == "web-1 a=1 1"
    assert asked == [(WEB, None, None), (Query(PREFIX, "cfg/"), None, None)]
    with pytest.raises(WaitingForKey, match="config/max"):
        render_once(TemplateConfig(name="t", text='{{key "config/max"}}', destination="x"), object(), {})


def test_store_follows_a_query_once_for_many_readers():
    """Store.use starts one Follow per query; drop by the last reader stops it."""
    store = Store(None, logging.getLogger(LOGGER), follow=FakeFollow)
    a, b = object.__new__(Template), object.__new__(Template)
    store.use(WEB, a)
    store.use(WEB, b)
    store.use(WEB, a)
    assert len(FakeFollow.made) == 1 and FakeFollow.made[0].started
    assert len(FakeFollow.made[0].listeners) == 2
    store.drop(WEB, a)
    assert not FakeFollow.made[0].stopped
    store.drop(WEB, b)
    assert FakeFollow.made[0].stopped and store.follows == {}


def test_pending_state_until_answers(tmp_path, make):
    """Until its lookups answer, a template is `pending` and writes nothing."""
    cfg = config(tmp_path, '{{service "web"}}')
    comp = make(cfg)
    comp.start()
    wait_for(lambda: comp.templates[0].renders >= 1)
    assert comp.templates[0].state == PENDING and not os.path.exists(cfg.destination)
