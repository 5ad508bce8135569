"""pilot.consul_reads.Follow (with `read` faked; the reads themselves run
against a real agent in tests/integration/test_templates_consul.py), and
KeyWatch, which is one Follow publishing `changed`."""
import logging

import gevent
import gevent.event
import pytest

import pilot.consul_reads as reads
from pilot import events as ev
from pilot.config.model import WatchConfig
from pilot.consul_reads import KEY, PREFIX, Follow, Query, next_index
from pilot.discovery import ConsulError
from pilot.events import Bus, Event
from pilot.watches import KeyWatch
from tests.support import DEADLINE

pytestmark = pytest.mark.timeout(120)
LOGGER = "pilot.consul_reads.test"


class Answers:
    """Stands in for `read`: each call pops the next (index, data) or error."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def __call__(self, consul, query, index=None, wait=None):
        self.asked.append((query, index, wait))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def answers(monkeypatch):
    def install(*items):
        fake = Answers(*items)
        monkeypatch.setattr(reads, "read", fake)
        return fake
    return install


def follow(query=Query(KEY, "a"), wait=30.0, retry=2.0):
    f = Follow(None, query, wait=wait, retry=retry, log=logging.getLogger(LOGGER))
    told = []
    f.listeners.append(lambda got: told.append(got.data))
    return f, told


def test_listeners_hear_the_first_answer_and_each_change_only(answers):
    """The first answer (even "no key") and every different answer reach
    the listeners; the same data at a new index does not."""
    fake = answers((5, None), (6, "v1"), (7, "v1"), (9, "v2"))
    f, told = follow()
    for _ in range(4):
        f.poll()
    assert told == [None, "v1", "v2"]
    assert [index for _, index, _ in fake.asked] == [None, 5, 6, 7]
    assert all(wait == 30.0 for _, _, wait in fake.asked)


def test_an_index_that_goes_backwards_starts_again(answers):
    fake = answers((50, "x"), (3, "x"), (4, "x"))
    f, _ = follow()
    f.poll(), f.poll(), f.poll()
    assert [index for _, index, _ in fake.asked] == [None, 50, None]
    assert next_index(10, 0) == 0 and next_index(0, 0) == 1


def test_an_early_answer_without_news_pauses(answers):
    """A blocking query that comes back at once with the same index: pause
    (a misbehaving agent cannot make the follow spin)."""
    answers((5, "x"), (5, "x"))
    f, _ = follow(wait=30.0)
    assert f.poll() == 0.0
    assert f.poll() == reads.NOT_ADVANCING_PAUSE


def test_failures_retry_quietly_once_then_warn_once_and_keep_the_data(answers, caplog):
    """An outage: the first failure is retried at once and quietly, the next
    ones after `retry` with one warning; the last data stays."""
    down = ConsulError("consul at c:8500 unreachable: connection refused")
    answers((5, "x"), down, down, down, (8, "x"))
    f, told = follow(retry=2.0)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        pauses = [f.poll() for _ in range(5)]
    assert pauses[1:4] == [reads.RETRY_SOON, 2.0, 2.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["failed to query key a: consul at c:8500 unreachable: connection refused"]
    assert f.data == "x" and told == ["x"]


def test_follow_runs_in_its_own_greenlet_until_stopped(monkeypatch):
    """start() asks at once in a greenlet; stop() ends it mid-query."""
    answered = gevent.event.Event()

    def slow_read(consul, query, index=None, wait=None):
        if index:
            answered.set()
            gevent.sleep(60)
        return 1, "x"

    monkeypatch.setattr(reads, "read", slow_read)
    f, told = follow()
    f.start()
    assert answered.wait(DEADLINE)
    assert told == ["x"]
    f.stop()
    f.stop()  # idempotent
    assert f._greenlet is None


def test_query_descriptions():
    assert [str(q) for q in (Query("service", "web", "blue", "dc2"), Query(reads.SERVICES),
                             Query(KEY, "a/b"), Query(PREFIX, "cfg/"))] == [
        "service web tagged blue in dc2", "services", "key a/b", "keys under cfg/"]


# --- KeyWatch -----------------------------------------------------------------------


def key_watch(key):
    bus = Bus()
    seen = []
    bus.listen(seen.append)
    watch = KeyWatch(WatchConfig("app-config", 5, key=key), None, bus, log=logging.getLogger(LOGGER))
    return watch, seen


def test_a_prefix_watch_publishes_changed_on_add_change_and_remove(answers):
    """Keys under the prefix added, changed, removed: changed{watch.NAME}
    each time; the same keys again: nothing. The watch asks with its interval."""
    fake = answers((3, ()), (4, (("config/app/a", "1"),)), (5, (("config/app/a", "2"),)),
                   (6, (("config/app/a", "2"),)), (7, ()))
    watch, seen = key_watch("config/app/")
    for _ in range(5):
        watch.follow.poll()
    assert seen == [Event(ev.CHANGED, "watch.app-config")] * 3
    assert fake.asked[0][0] == Query(PREFIX, "config/app/") and fake.asked[1][2] == 5


def test_keys_there_at_start_are_a_change_nothing_there_is_not(answers):
    """As for a service watch, the state before the first answer is empty."""
    answers((3, (("config/app/a", "1"),)))
    watch, seen = key_watch("config/app/")
    watch.follow.poll()
    assert seen == [Event(ev.CHANGED, "watch.app-config")]
    answers((3, None), (4, ""))
    watch, seen = key_watch("config/flag")
    watch.follow.poll()
    assert seen == []
    watch.follow.poll()  # the key now exists, empty
    assert seen == [Event(ev.CHANGED, "watch.app-config")]
    assert watch.follow.query == Query(KEY, "config/flag")
