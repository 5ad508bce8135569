"""PID 1 duties: child subreaper, signals translated into app calls, and
no process left behind.

Pilot is a subreaper whether or not it is PID 1 (in the one-file
executable the bootloader is PID 1), so orphans are re-parented to it and
gevent's loop reaps them along with everything else. No waitpid(-1) here.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
from typing import Dict, Set

import gevent

from pilot import log as pilot_log

log = logging.getLogger("pilot")

PR_SET_CHILD_SUBREAPER = 36
# The same set pilot.py blocks at its first line (it cannot import this
# module before gevent is patched).
HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGUSR2}


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def install_signal_handlers(app) -> None:
    """Handlers run in their own greenlet and only translate (STYLE)."""
    gevent.signal_handler(signal.SIGTERM, app.shutdown, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, app.shutdown, signal.SIGINT)
    # nginx-style images stop their container with SIGQUIT (`STOPSIGNAL`):
    # a graceful shutdown too, not Python's default (die, leaving the socket
    # file and the Consul registrations behind).
    gevent.signal_handler(signal.SIGQUIT, app.shutdown, signal.SIGQUIT)
    gevent.signal_handler(signal.SIGHUP, app.signal_event, "SIGHUP")
    gevent.signal_handler(signal.SIGUSR2, app.signal_event, "SIGUSR2")
    gevent.signal_handler(signal.SIGUSR1, pilot_log.reopen)
    # pilot.py held these since start-up; pending ones are delivered now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


def descendants(root: int) -> Set[int]:
    """Every live process below `root`, from /proc (empty if unreadable)."""
    children: Dict[int, list] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_descendants(grace: float = 0.0) -> int:
    """SIGKILL whatever still runs below Pilot (daemons that escaped their
    job's process group) and let gevent reap them. Returns how many."""
    me = os.getpid()
    killed = 0
    with gevent.Timeout(max(grace, 2.0), False):
        while True:
            pids = descendants(me)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            gevent.sleep(0.01)
    return killed
