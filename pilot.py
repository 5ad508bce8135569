"""Run Pilot from a checkout: `python pilot.py -config FILE`.

The supervisor monkey-patches gevent before anything else imports socket,
subprocess or threading (bottle and python-consul2 rely on it). The client
flags (`-putmetric` and friends, run by jobs every few seconds) need no
gevent at all, so they skip that import and start faster.
"""
import signal
import sys

# Hold the signals Pilot handles until its handlers are in place (pilot.supervisor
# unblocks them): a SIGTERM during start-up is then handled, not lost (PID 1
# ignores unhandled signals) nor fatal. One-shot actions let them go at once.
HELD = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}
signal.pthread_sigmask(signal.SIG_BLOCK, HELD)

from pilot.cli import runs_supervisor  # noqa: E402 - imports neither gevent nor socket

if not runs_supervisor(sys.argv[1:]):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
else:
    import gevent.events
    from gevent import monkey

    # patch_all() announces itself to gevent plugins found through package
    # entry points; scanning for them imports importlib.metadata, email,
    # zipfile and csv (~37 ms, ~2.6 MB). Pilot ships no such plugin, so the
    # announcement goes to in-process subscribers only.
    gevent.events.notify_and_call_entry_points = gevent.events.notify

    # ssl is patched later, and only for an https Consul (pilot/run.py):
    # importing and patching it costs ~4 MB of RSS. Pilot never uses
    # subprocess (jobs are posix_spawn'ed).
    monkey.patch_all(ssl=False, subprocess=False)

from pilot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
