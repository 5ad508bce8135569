"""Loading a config in a forked child (pilot.config.isolated): the parent's
event loop keeps running, the outcome (a Config or a one-line ConfigError)
comes back whole, and a child that hangs or dies is a one-line error with
nothing left running."""
import os
import time

import gevent
import pytest

from pilot import config
from pilot.config import isolated
from pilot.errors import ConfigError
from tests.support import DEADLINE, wait_for

pytestmark = pytest.mark.timeout(120)

GOOD = '{jobs: [{name: "app", exec: ["sleep", "1"], restarts: "unlimited"}]}'


def write(tmp_path, text, name="pilot.json5"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return {int(pid) for pid in f.read().split()}


def test_the_child_returns_the_same_config_as_an_in_process_load(tmp_path):
    """Same frozen Config, field for field."""
    path = write(tmp_path, GOOD)
    assert config.load_in_child(path, {}) == config.load(path, {})


def test_a_config_error_comes_back_as_the_same_one_line_error(tmp_path):
    path = write(tmp_path, '{jobs: [{name: "app", exec: "x", restarts: "sometimes"}]}')
    with pytest.raises(ConfigError) as in_process:
        config.load(path, {})
    with pytest.raises(ConfigError) as in_child:
        config.load_in_child(path, {})
    assert str(in_child.value) == str(in_process.value)
    assert "\n" not in str(in_child.value)


def test_the_event_loop_runs_while_the_child_works(tmp_path):
    """A loader that keeps the CPU until the parent's greenlets have run ten
    times: it finishes only because they run meanwhile (in-process, they did
    not while json5 parsed, and this loader would spin to its deadline)."""
    ticks, ticked = [], tmp_path / "ticked"

    def busy(path, env):
        # Spins without yielding, as a long parse does; the deadline only
        # bounds a failing run.
        end = time.monotonic() + DEADLINE
        while not ticked.exists() and time.monotonic() < end:
            pass
        return config.load(path, env)

    def tick():
        while True:
            ticks.append(time.monotonic())
            if len(ticks) == 10:
                ticked.touch()
            gevent.sleep(0.01)
    ticker = gevent.spawn(tick)
    try:
        isolated.load_in_child(write(tmp_path, GOOD), {}, busy)
    finally:
        ticker.kill()
    assert len(ticks) >= 10


def test_a_child_past_the_time_limit_is_killed_with_a_one_line_error(tmp_path):
    before = children()

    def forever(path, env):
        while True:
            pass
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        isolated.load_in_child(path, {}, forever, timeout=0.5)
    assert str(info.value) == f"{path}: could not load the config within 0.5s"
    wait_for(lambda: not children() - before, what="the killed child reaped")
    assert children() - before == set()


@pytest.mark.parametrize("how, expected", [
    (lambda: os._exit(3), "the loading process exited with status 3"),
    (lambda: os.kill(os.getpid(), 9), "the loading process was killed by signal 9"),
])
def test_a_child_that_dies_is_a_one_line_error(tmp_path, how, expected):
    def die(path, env):
        how()
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        isolated.load_in_child(path, {}, die)
    assert str(info.value) == f"{path}: could not load the config: {expected}"


def test_an_unexpected_exception_in_the_child_is_one_line(tmp_path):
    def boom(path, env):
        raise MemoryError()
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        isolated.load_in_child(path, {}, boom)
    assert str(info.value) == f"{path}: internal error while loading the config: MemoryError"
