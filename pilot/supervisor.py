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
from typing import Dict, List, Optional, Set

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
    """Every live process below `root` (a pid as this process sees it), as
    pids this process can signal; empty if /proc cannot tell.

    /proc numbers processes as the PID namespace that mounted it sees them,
    which is not ours when Pilot is PID 1 of a namespace sharing the host's
    /proc (`unshare --pid --fork` without `--mount-proc`): there the host's
    pid 1 would be taken for us and host pids would be signalled by number
    inside our namespace. So the walk goes in /proc's numbering and each
    process found is translated back through its `NSpid` line.
    """
    view = _ProcView.open()
    if view is None:
        return set()
    start = view.proc_pid(root)
    if start is None:
        return set()
    found: Set[int] = set()
    todo = [start]
    while todo:
        for child in view.children(todo.pop()):
            live_pid = view.our_pid(child)
            if live_pid is not None and live_pid not in found:
                found.add(live_pid)
                todo.append(child)
    return found


class _ProcView:
    """/proc read in its own numbering, translated to ours.

    `depth` is how many PID namespaces lie between /proc's and ours: the
    index of our pid in every `NSpid` line (0 when /proc is our own)."""

    def __init__(self, me: int, depth: int):
        self.me = me  # our pid in /proc's numbering
        self.depth = depth
        self._scan: Optional[Dict[int, List[int]]] = None  # without children files

    @classmethod
    def open(cls) -> Optional["_ProcView"]:
        try:
            me = int(os.readlink("/proc/self"))
        except (OSError, ValueError):
            return None  # no /proc, or one of a namespace that cannot see us
        nspid = _nspid(me)
        if nspid is None:
            return None
        if not nspid:  # kernel without NSpid: assume /proc is our own
            return cls(me, 0) if me == os.getpid() else None
        if nspid[-1] != os.getpid():
            return None
        return cls(me, len(nspid) - 1)

    def proc_pid(self, pid: int) -> Optional[int]:
        """`pid` (ours) in /proc's numbering: ourself, or found below us."""
        if pid == os.getpid():
            return self.me
        if self.depth == 0:
            return pid
        todo = [self.me]
        while todo:
            for child in self.children(todo.pop()):
                if self.our_pid(child) == pid:
                    return child
                todo.append(child)
        return None

    def our_pid(self, proc_pid: int) -> Optional[int]:
        """The pid we can signal, or None for a zombie or a vanished one."""
        nspid = _nspid(proc_pid, live_only=True)
        if nspid is None:
            return None
        if not nspid:
            return proc_pid
        return nspid[self.depth] if len(nspid) > self.depth else None

    def children(self, proc_pid: int) -> List[int]:
        """Direct children, from the kernel's per-thread children lists
        (only the subtree is read), else from one scan of /proc."""
        if self._scan is None:
            kids = _children_files(proc_pid)
            if kids is not None:
                return kids
            self._scan = _scan_parents()
        return self._scan.get(proc_pid, [])


def _nspid(pid: int, live_only: bool = False) -> Optional[List[int]]:
    """The `NSpid` numbers of a process (outermost first, [] when the
    kernel has no such line); None when it is gone, or a zombie and
    `live_only`."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    nspid = []
    for line in text.splitlines():
        if line.startswith("State:") and live_only and line.split()[1] in ("Z", "X"):
            return None
        if line.startswith("NSpid:"):
            nspid = [int(x) for x in line.split()[1:]]
    return nspid


def _children_files(pid: int) -> Optional[List[int]]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None  # kernel built without the children files
        except OSError:
            continue
    return kids


def _scan_parents() -> Dict[int, List[int]]:
    parents: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return parents
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(name))
    return parents


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
