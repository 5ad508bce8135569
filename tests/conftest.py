"""Test-wide set-up. Monkey-patching comes first, as in pilot.py."""
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import traceback  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from pilot import log as pilot_log  # noqa: E402
from pilot.discovery import transport  # noqa: E402
from pilot.events import Bus  # noqa: E402
from tests.support import FakeConsulAgent, FakeConsulHTTP  # noqa: E402

# Property tests judge what they generate, never how fast: no per-example
# deadline and no "too slow" health check, which a busy machine would trip.
# (A test's own @settings keeps these unless it names them.)
settings.register_profile("pilot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pilot")


def _signals_as_a_terminal_gives_them() -> None:
    """A shell without job control starts a background command with SIGINT
    and SIGQUIT ignored (`nohup` adds SIGHUP), and every process the tests
    start would inherit that: a Ctrl-C sent to a client would do nothing.
    The suite runs as if started from a terminal, however it was started."""
    import signal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGQUIT, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)


_signals_as_a_terminal_gives_them()


@pytest.fixture
def bus():
    """A fresh event bus."""
    return Bus()


@pytest.fixture
def agent(monkeypatch):
    """A fake Consul agent (tests.support.FakeConsulAgent) behind pilot.discovery's
    real client: every Consul made during the test talks to it."""
    fake = FakeConsulAgent()
    monkeypatch.setattr(transport, "http_client",
                        lambda cfg, address, timeout: FakeConsulHTTP(fake, timeout))
    return fake


@pytest.fixture
def pilot_logger():
    """Pilot's root logger, given back as it was (handlers, level,
    propagation): configure() changes all three, and tests that run later
    must not inherit a level or a handler from this one."""
    root = logging.getLogger(pilot_log.ROOT)
    saved = (list(root.handlers), root.level, root.propagate)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in saved[0]:
            handler.close()
    handlers, root.level, root.propagate = saved
    for handler in handlers:
        root.addHandler(handler)


@pytest.fixture(autouse=True)
def greenlet_errors():
    """Fail the test when a greenlet (or a hub callback) dies of an exception
    while it runs: a bug in a background greenlet must not pass unnoticed.

    gevent reports every such death to the hub's `handle_error`, which only
    prints it; this records each one and then lets gevent report it as usual.
    GreenletExit and SystemExit are how greenlets are stopped, not errors.
    A death during the test fails the test (pytest_runtest_makereport below);
    one during the teardown of other fixtures is an error at teardown.
    A test that provokes a death on purpose asks for this fixture by name and
    removes from the list what it expected."""
    hub = gevent.get_hub()
    died = []

    def handle_error(context, kind, value, tb):
        if kind is not None and not issubclass(kind, hub.NOT_ERROR):
            died.append((context, kind, value, tb))
        return type(hub).handle_error(hub, context, kind, value, tb)

    hub.handle_error = handle_error
    try:
        yield died
        gevent.idle()  # deaths already scheduled belong to this test too
    finally:
        del hub.handle_error
    if died:
        pytest.fail(_deaths(died), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that passed while one of its greenlets died is a failed test."""
    died = item.funcargs.get("greenlet_errors") if call.when == "call" else None
    if died is not None:
        gevent.idle()  # let deaths already scheduled happen now
    outcome = yield
    report = outcome.get_result()
    if died and report.passed:
        report.outcome = "failed"
        report.longrepr = _deaths(died)
        died.clear()  # told once: the fixture's teardown need not tell it again


def _deaths(died):
    reports = "\n".join(f"{context!r} died:\n" + "".join(
        traceback.format_exception(kind, value, tb)) for context, kind, value, tb in died)
    return f"{len(died)} greenlet(s) died of an exception during the test:\n{reports}"
