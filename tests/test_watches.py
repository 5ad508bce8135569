"""pilot.watches against a fake Consul that answers blocking queries like the agent."""
import logging
import time

import gevent
import gevent.event
import gevent.queue
import pytest

from pilot import events as ev
from pilot.config.model import WatchConfig
from pilot.discovery import ConsulError, Instance
from pilot.events import Event
from pilot.watches import RETRY_SOON, Watch, changed, next_index
from tests.support import DEADLINE, assert_bug_logged, published, wait_for

pytestmark = pytest.mark.timeout(120)
LOGGER = "pilot.watches.test"


class FakeConsul:
    """`health_service` as the agent has it: a global index that grows on every
    change, and blocking queries that return when it passes the asked index
    or when `wait` runs out. `fail` makes every call raise it."""

    def __init__(self):
        self.index = 10
        self.services = {}  # name -> [Instance]
        self.calls = []
        self.fail = None
        self.index_override = None
        self._news = gevent.event.Event()

    def put(self, name, *instances):
        self.services[name] = list(instances)
        self.touch()

    def touch(self):
        """Something else changed in the catalog: blocking queries return."""
        self.index += 1
        self._news.set()
        self._news = gevent.event.Event()

    def health_service(self, name, tag="", dc="", index=None, wait=None):
        self.calls.append(dict(name=name, tag=tag, dc=dc, index=index, wait=wait))
        if self.fail is not None:
            raise self.fail
        if index:
            deadline = time.monotonic() + wait
            while index >= self.index and time.monotonic() < deadline:
                self._news.wait(deadline - time.monotonic())
        found = [i for i in self.services.get(name, []) if not tag or tag in i.tags]
        got = self.index if self.index_override is None else self.index_override
        return got, list(reversed(found))  # unsorted on purpose


class FakeTelemetry:
    def __init__(self):
        self.counts = []

    def set_watch_instances(self, service, n):
        self.counts.append((service, n))


def inst(id, address="10.0.0.1", port=80, tags=()):
    return Instance(id=id, address=address, port=port, tags=tuple(tags))


@pytest.fixture
def consul():
    return FakeConsul()


def make_watch(consul, bus, name="db", interval=1, tag="", dc="", report=None):
    cfg = WatchConfig(name=name, interval=interval, tag=tag, dc=dc)
    return Watch(cfg, consul, bus, report, log=logging.getLogger(LOGGER))


def test_first_answer_with_instances_is_a_change_to_healthy(consul, bus):
    """Initially the list is empty, so instances in the first answer publish changed then healthy."""
    seen = published(bus)
    consul.put("db", inst("db-1"), inst("db-2"))
    watch = make_watch(consul, bus)
    watch.poll()
    assert seen == [Event(ev.CHANGED, "watch.db"), Event(ev.HEALTHY, "watch.db")]
    assert watch.status() == {"name": "db", "tag": "", "instances": 2}


def test_a_service_that_never_existed_publishes_nothing(consul, bus):
    """An absent service matches the initial empty list: no event, ever."""
    seen = published(bus)
    watch = make_watch(consul, bus)
    for _ in range(3):
        consul.put("other", inst("other-1"))
        watch.poll()
    assert seen == []


def test_an_unchanged_answer_publishes_nothing(consul, bus):
    """Same instances again (even a new index, other tags): nothing is published."""
    consul.put("db", inst("db-1"))
    watch = make_watch(consul, bus)
    watch.poll()
    seen = published(bus)
    consul.put("db", inst("db-1", tags=("new-tag",)))
    watch.poll()
    assert seen == []


def test_every_change_while_healthy_republishes_healthy(consul, bus):
    """2 -> 3 instances is a change: changed and healthy again."""
    consul.put("db", inst("db-1"), inst("db-2"))
    watch = make_watch(consul, bus)
    watch.poll()
    seen = published(bus)
    consul.put("db", inst("db-1"), inst("db-2"), inst("db-3"))
    watch.poll()
    assert seen == [Event(ev.CHANGED, "watch.db"), Event(ev.HEALTHY, "watch.db")]


@pytest.mark.parametrize("moved", [inst("db-2", address="10.0.0.9"), inst("db-2", port=81)])
def test_same_count_with_a_moved_instance_is_a_change(consul, bus, moved):
    """Sorted by ID, an address or a port that differs is a change."""
    consul.put("db", inst("db-1"), inst("db-2"))
    watch = make_watch(consul, bus)
    watch.poll()
    seen = published(bus)
    consul.put("db", inst("db-1"), moved)
    watch.poll()
    assert seen == [Event(ev.CHANGED, "watch.db"), Event(ev.HEALTHY, "watch.db")]


def test_last_instance_gone_publishes_unhealthy(consul, bus):
    """Going to 0 passing instances publishes changed then unhealthy."""
    consul.put("db", inst("db-1"))
    watch = make_watch(consul, bus)
    watch.poll()
    seen = published(bus)
    consul.put("db")
    watch.poll()
    assert seen == [Event(ev.CHANGED, "watch.db"), Event(ev.UNHEALTHY, "watch.db")]
    assert watch.status()["instances"] == 0


def test_change_detection_rule():
    """Count, then address/port after sorting by ID; order and tags do not matter."""
    a, b = inst("a", "10.0.0.1"), inst("b", "10.0.0.2")
    assert not changed([a, b], [b, a])
    assert not changed([a], [inst("a", "10.0.0.1", tags=("x",))])
    assert changed([a], [a, b])
    assert changed([a, b], [inst("a", "10.0.0.2"), inst("b", "10.0.0.1")])
    assert not changed([], [])


def test_query_is_a_blocking_one_past_the_last_index(consul, bus):
    """The first query is plain; later ones block past the last index, waiting `interval`."""
    consul.put("db", inst("db-1"))
    watch = make_watch(consul, bus, interval=7, tag="primary", dc="dc2")
    consul.services["db"] = [inst("db-1", tags=("primary",))]
    watch.poll()
    consul.put("db", inst("db-1", tags=("primary",)))
    watch.poll()
    assert consul.calls[0] == dict(name="db", tag="primary", dc="dc2", index=None, wait=7)
    assert consul.calls[1] == dict(name="db", tag="primary", dc="dc2", index=11, wait=7)


def test_watches_are_keyed_by_name_and_tag(consul, bus):
    """Two watches on one service with different tags each keep their own state:
    each publishes its own change once, then nothing (3.8 would flip-flop)."""
    consul.put("db", inst("db-1", tags=("primary",)), inst("db-2"), inst("db-3"))
    primary = make_watch(consul, bus, tag="primary")
    every = make_watch(consul, bus)
    seen = published(bus)
    for _ in range(3):
        primary.poll()
        every.poll()
        consul.touch()
    assert seen.count(Event(ev.CHANGED, "watch.db")) == 2
    assert (primary.status()["instances"], every.status()["instances"]) == (1, 3)


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_consul_failure_warns_once_keeps_state_and_waits_interval(consul, bus, caplog):
    """On errors: one quick retry, then one WARN `failed to query NAME: <error>`
    per outage, no event, the previous state kept, retries `interval` apart."""
    consul.put("db", inst("db-1"))
    watch = make_watch(consul, bus, interval=3)
    watch.poll()
    seen = published(bus)
    caplog.set_level(logging.DEBUG, LOGGER)
    consul.fail = ConsulError("consul at x:1 unreachable: Connection refused")
    delays = [watch.poll(), watch.poll(), watch.poll(), watch.poll()]
    assert warnings_in(caplog) == ["failed to query db: consul at x:1 unreachable: Connection refused"]
    assert delays == [RETRY_SOON, 3, 3, 3]
    assert seen == [] and watch.status()["instances"] == 1
    consul.fail = None
    assert watch.poll() == 0 and seen == []  # the same instance after the outage: no change


def test_a_single_failure_is_retried_at_once_without_a_warning(consul, bus, caplog):
    """A blocking query cut by a server failover fails once; the quick retry
    works, so nothing is logged above DEBUG and nothing is published."""
    consul.put("db", inst("db-1"))
    watch = make_watch(consul, bus, interval=30)
    watch.poll()
    seen = published(bus)
    caplog.set_level(logging.DEBUG, LOGGER)
    consul.fail = ConsulError("Unexpected response code: 500 (rpc error making call: EOF)")
    assert watch.poll() == RETRY_SOON
    consul.fail = None
    watch.poll()
    consul.fail = ConsulError("Unexpected response code: 500 (rpc error making call: EOF)")
    assert watch.poll() == RETRY_SOON  # a new streak: again one quick retry
    assert warnings_in(caplog) == [] and seen == []


def test_an_outage_reported_elsewhere_is_not_reported_again(consul, bus, caplog):
    """When a job's heartbeat already warned (the error is `repeated`), the watch stays quiet."""
    watch = make_watch(consul, bus)
    caplog.set_level(logging.DEBUG, LOGGER)
    consul.fail = ConsulError("consul at x:1 unreachable: Connection refused", repeated=True)
    for _ in range(3):
        watch.poll()
    assert warnings_in(caplog) == []


def test_an_error_that_is_not_an_outage_warns_once_until_recovery(consul, bus, caplog):
    """A lasting HTTP error (repeated=False) is told once, and again after a success."""
    watch = make_watch(consul, bus)
    caplog.set_level(logging.DEBUG, LOGGER)
    consul.fail = ConsulError("Unexpected response code: 500 (boom)")
    watch.poll(), watch.poll(), watch.poll()
    consul.fail = None
    watch.poll()
    consul.fail = ConsulError("Unexpected response code: 500 (boom)")
    watch.poll(), watch.poll()
    assert len(warnings_in(caplog)) == 2


def test_after_an_error_the_next_query_starts_afresh(consul, bus):
    """A failure may be an agent restart (lower index): the next query is a plain one."""
    watch = make_watch(consul, bus)
    watch.poll()
    consul.fail = ConsulError("down", repeated=True)
    watch.poll()
    consul.fail = None
    watch.poll()
    assert consul.calls[-1]["index"] is None


def test_index_going_backwards_resets_to_zero(consul, bus):
    """An answer with a lower index is used, and the next query is a plain one."""
    watch = make_watch(consul, bus)
    watch.poll()
    consul.put("db", inst("db-1"))
    consul.index_override = 3
    seen = published(bus)
    watch.poll()
    assert watch.index == 0 and seen[0] == Event(ev.CHANGED, "watch.db")
    consul.index_override = None
    watch.poll()
    assert consul.calls[-1]["index"] is None


def test_next_index_rules():
    """Backwards -> 0; zero or negative -> 1; otherwise the new index."""
    assert next_index(50, 40) == 0
    assert next_index(0, 0) == 1
    assert next_index(5, 5) == 5
    assert next_index(5, 9) == 9


def test_an_early_answer_without_news_is_paced(consul, bus):
    """An index that did not advance on an early return pauses the watch, so it cannot spin."""
    watch = make_watch(consul, bus, interval=30)
    watch.poll()
    consul.index_override = consul.index  # the agent answers at once with the same index
    consul.index = 1000  # ... and the fake does not block
    assert 0 < watch.poll() <= 1.0


def test_instance_count_goes_to_telemetry_on_every_answer(consul, bus):
    """Each successful answer sets the gauge for the service, changed or not."""
    telemetry = FakeTelemetry()
    consul.put("db", inst("db-1"), inst("db-2"))
    watch = make_watch(consul, bus, report=telemetry.set_watch_instances)
    watch.poll()
    consul.touch()
    watch.poll()
    assert telemetry.counts == [("db", 2), ("db", 2)]


def test_a_change_reaches_the_bus_without_waiting_for_the_interval(consul, bus):
    """Started, the watch blocks on Consul: a change is published at once,
    not after `interval`."""
    box = gevent.queue.Queue()
    bus.subscribe(box.put, {"watch.db"})
    watch = make_watch(consul, bus, interval=30)
    watch.start()
    try:
        wait_for(lambda: blocking(consul), what="the watch's blocking query")
        # Each answer within 20 s: sooner than the 30 s a poll would take.
        consul.put("db", inst("db-1"))
        assert box.get(timeout=DEADLINE) == Event(ev.CHANGED, "watch.db")
        assert box.get(timeout=DEADLINE) == Event(ev.HEALTHY, "watch.db")
        consul.put("db")
        assert [box.get(timeout=DEADLINE), box.get(timeout=DEADLINE)] == [
            Event(ev.CHANGED, "watch.db"), Event(ev.UNHEALTHY, "watch.db")]
    finally:
        watch.stop()


def blocking(consul):
    """True once the watch has a blocking query in flight."""
    return any(call["index"] for call in consul.calls)


def test_stop_ends_the_greenlet_and_is_idempotent(consul, bus):
    """stop() kills the watch inside a blocking query; calling it again is harmless."""
    watch = make_watch(consul, bus, interval=30)
    watch.stop()  # before start: nothing to do
    watch.start()
    wait_for(lambda: blocking(consul), what="the watch's blocking query")
    greenlet = watch._greenlet
    watch.stop()
    watch.stop()
    assert greenlet.dead
    calls = len(consul.calls)
    consul.put("db", inst("db-1"))
    gevent.idle()  # a watch still alive would query again now
    assert len(consul.calls) == calls


def test_a_bug_while_polling_is_logged_and_the_watch_goes_on(consul, bus, caplog):
    """An unexpected exception is a bug: one ERROR line and the traceback at
    DEBUG; the watch waits `interval` and asks again from a fresh index."""
    caplog.set_level(logging.DEBUG, LOGGER)
    watch = make_watch(consul, bus, interval=3)
    consul.fail = ValueError("boom")
    assert watch.poll() == 3
    assert watch.index == 0
    assert_bug_logged(caplog, "watch db: unexpected error: ValueError: boom", ValueError)
    consul.fail = None
    consul.put("db", inst("db-1"))
    watch.poll()
    assert [i.id for i in watch.instances] == ["db-1"]


def test_polling_variant_waits_interval_and_never_blocks(consul, bus):
    """The bench's 3.8 comparison (a Watch made to poll, bench/watch_latency.py)
    sends plain queries only, `interval` apart."""
    from bench.watch_latency import polling_watch_class

    watch = polling_watch_class()(WatchConfig(name="db", interval=5), consul, bus)
    consul.put("db", inst("db-1"))
    assert watch.poll() == 5
    assert watch.poll() == 5
    assert [c["index"] for c in consul.calls] == [None, None]


def real_consul():
    """pilot.discovery's real Consul client; the `agent` fixture
    (tests/conftest.py) answers its HTTP calls."""
    import pilot.discovery as discovery
    from pilot.config.model import ConsulConfig
    return discovery.Consul(ConsulConfig(address="consul:8500"), log=logging.getLogger(LOGGER))


def test_an_outage_first_met_by_a_quiet_retry_is_still_reported(bus, caplog, agent):
    """Against a real outage record: a watch's quiet first retry does not
    count as reporting. A reload replaces the watch after that one failure;
    the new watch still warns once (and not twice with a third watch meeting
    the same outage), and the recovery is logged once."""
    real = real_consul()
    real.health_service("anything")  # it answered before: this is an outage
    caplog.set_level(logging.DEBUG)
    replaced, second, third = (make_watch(real, bus) for _ in range(3))
    agent.down = True
    replaced.poll()  # quiet retry, then the reload drops this watch
    for _ in range(3):
        second.poll(), third.poll()
    agent.down = False
    second.poll(), third.poll()
    assert warnings_in(caplog) == [
        "failed to query db: consul at consul:8500 unreachable: Connection refused"]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert [r.levelno for r in recovered] == [logging.INFO]


def test_a_failure_fixed_by_the_quick_retry_logs_no_recovery(bus, caplog, agent):
    """One failed query, then success: no warning, and no recovery line for
    an outage nobody was told about."""
    real = real_consul()
    caplog.set_level(logging.INFO)
    watch = make_watch(real, bus)
    agent.down = True
    watch.poll()
    agent.down = False
    watch.poll()
    assert [r.getMessage() for r in caplog.records] == []


def test_a_watch_before_consul_is_up_says_once_that_it_waits(bus, caplog, agent):
    """Consul never answered yet and refuses the connection (its agent is a
    job still starting): the watch says once that it waits for Consul, at
    INFO, never `failed to query`; retries come a second apart; when Consul
    answers, one line says it is up."""
    real = real_consul()
    caplog.set_level(logging.INFO)
    watch = make_watch(real, bus, interval=5)
    agent.down = True
    delays = [watch.poll() for _ in range(5)]
    agent.down = False
    watch.poll()
    watch.poll()
    assert [r.getMessage() for r in caplog.records] == [
        "watch db: waiting for Consul at consul:8500", "consul: consul:8500 is up"]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert delays[1:] == [1.0] * 4


def test_consul_that_never_comes_up_is_warned_about_after_the_grace(bus, caplog, agent, monkeypatch):
    """Waiting lasts START_GRACE after start: then a refused connection is an
    outage like any other and the watch warns."""
    from pilot.discovery import agent as consul_agent
    monkeypatch.setattr(consul_agent, "START_GRACE", 0.0)
    real = real_consul()
    caplog.set_level(logging.INFO)
    watch = make_watch(real, bus)
    agent.down = True
    watch.poll(), watch.poll()
    assert warnings_in(caplog) == [
        "failed to query db: consul at consul:8500 unreachable: Connection refused"]


def test_no_watch_error_is_logged_once_shutdown_began(bus, caplog, agent):
    """From `shutdown{global}` on, Consul failing is expected (its agent may
    be one of the stopping jobs): the watch logs no warning."""
    real = real_consul()
    real.health_service("anything")
    watch = make_watch(real, bus)
    watch.start()
    try:
        caplog.set_level(logging.INFO)
        bus.publish(ev.GLOBAL_SHUTDOWN)
        agent.down = True
        for _ in range(3):
            watch.poll()
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    finally:
        watch.stop()
