"""pilot.events: the bus's guard around synchronous listeners."""
import logging

from pilot.events import Bus, Event
from tests.test_log import assert_bug_logged


def test_a_broken_listener_is_logged_as_a_bug_and_delivery_goes_on(caplog):
    """A listener that raises is a bug: one ERROR line naming the event, its
    traceback at DEBUG; later listeners and every mailbox still get the event."""
    bus = Bus()
    box = bus.subscribe("job")
    heard = []

    def broken(event):
        raise ZeroDivisionError("division by zero")
    bus.listen(broken)
    bus.listen(heard.append)
    caplog.set_level(logging.DEBUG, "pilot.events")
    event = Event("healthy", "web")
    bus.publish(event)
    assert heard == [event]
    assert box.get(timeout=1) == event
    assert_bug_logged(caplog, "event listener failed on healthy{web}: ZeroDivisionError: division by zero",
                      ZeroDivisionError)
