"""The bus: routing by source, one order for everyone, inline delivery,
held delivery, handler errors kept in."""
import logging

import gevent

from pilot.events import Bus, Event, Timers
from tests.support import assert_bug_logged, wait_for


def test_a_handler_hears_only_its_sources_and_everyone_hears_one_order():
    """Routed by source; events published by a handler are delivered after
    the current one reached every subscriber (one global order)."""
    bus, seen = Bus(), []
    bus.subscribe(lambda e: seen.append(("a", e.source)), {"x"})
    bus.subscribe(lambda e: seen.append(("all", e.source)))

    def echo(e):
        seen.append(("b", e.source))
        if e.source == "x":
            bus.publish(Event("changed", "y"))
    bus.subscribe(echo, {"x", "y"})
    bus.publish(Event("changed", "x"))
    assert seen == [("all", "x"), ("a", "x"), ("b", "x"), ("all", "y"), ("b", "y")]


def test_holding_delivers_nothing_until_the_block_ends():
    """Orders given together are all queued before anyone reacts."""
    bus, seen = Bus(), []
    sub = bus.subscribe(seen.append, {"x"})
    with bus.holding():
        bus.publish(Event("a", "x"))
        bus.send(sub, Event("b", "x"))
        assert seen == []
    assert [e.code for e in seen] == ["a", "b"]


def test_a_failing_handler_does_not_stop_delivery(caplog):
    """A handler's bug is logged; the others still get the event."""
    bus, seen = Bus(), []

    def broken(e):
        raise ValueError("bug")
    bus.subscribe(broken, {"x"})
    bus.subscribe(seen.append, {"x"})
    bus.publish(Event("a", "x"))
    assert seen == [Event("a", "x")] and "internal error" in caplog.text


def test_a_cancelled_subscription_hears_nothing_more():
    bus, seen = Bus(), []
    sub = bus.subscribe(seen.append, {"x"})
    sub.cancel()
    sub.cancel()  # idempotent
    bus.publish(Event("a", "x"))
    assert seen == [] and bus.subscribers == 0


def test_timers_tick_to_their_owner_only():
    """A timer's ticks go to its owner through the bus, never published."""
    bus, mine, others = Bus(), [], []
    sub = bus.subscribe(mine.append, {"job"})
    bus.subscribe(others.append)
    timers = Timers(bus, lambda: sub)
    timers.after("once", 0.01, Event("tick", "job"))
    wait_for(lambda: mine, what="the tick")
    assert mine == [Event("tick", "job")] and others == []
    assert "once" not in timers


def test_a_broken_listener_is_logged_as_a_bug_and_delivery_goes_on(caplog):
    """A listener that raises is a bug: one ERROR line naming the event, its
    traceback at DEBUG; later listeners and every subscriber still get the event."""
    bus, delivered = Bus(), []
    bus.subscribe(delivered.append, {"web"})
    heard = []

    def broken(event):
        raise ZeroDivisionError("division by zero")
    bus.listen(broken)
    bus.listen(heard.append)
    caplog.set_level(logging.DEBUG, "pilot.events")
    event = Event("healthy", "web")
    bus.publish(event)
    assert heard == [event] and delivered == [event]
    assert_bug_logged(caplog, "event listener failed on healthy{web}: ZeroDivisionError: division by zero",
                      ZeroDivisionError)


def test_debug_event_lines_in_38s_spelling_and_pilots(caplog):
    """At DEBUG each event is logged as 3.8 wrote it (`event: {StatusHealthy
    nginx}`, so existing greps keep working), then in Pilot's spelling."""
    caplog.set_level(logging.DEBUG, "pilot.events")
    bus = Bus()
    bus.publish(Event("healthy", "nginx"))
    bus.publish(Event("signal", "SIGHUP"))
    assert [r.getMessage() for r in caplog.records] == [
        "event: {StatusHealthy nginx}", "event: healthy{nginx}",
        "event: {Signal SIGHUP}", "event: signal{SIGHUP}"]
