"""Run Pilot from a checkout: `python pilot.py -config FILE`.

The supervisor monkey-patches gevent before anything else imports socket,
subprocess or threading (bottle and python-consul2 rely on it). The client
flags (`-putmetric` and friends, run by jobs every few seconds) need no
gevent at all, so they skip that import and start faster.
"""
import sys

CLIENT_FLAGS = {"version", "template", "reload", "maintenance", "putenv",
                "putmetric", "ping", "status", "help", "h"}


def _client_only(argv):
    """True when the flags ask for a client action, not the supervisor."""
    args = iter(argv)
    for arg in args:
        if arg == "--" or not arg.startswith("-"):
            return False
        name = arg.lstrip("-").split("=", 1)[0]
        if name in CLIENT_FLAGS:
            return True
        if name in ("config", "out") and "=" not in arg:
            next(args, None)
    return False


if not _client_only(sys.argv[1:]):
    import signal

    # Hold the signals Pilot handles until its handlers are in place
    # (pilot.supervisor unblocks them): a SIGTERM during start-up is then
    # handled, not lost (PID 1 ignores unhandled signals) nor fatal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                              signal.SIGUSR1, signal.SIGUSR2})

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
