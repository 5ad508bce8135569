"""Heartbeats that never hold up a job: a ServiceDefinition whose calls run
in a greenlet of their own."""
from __future__ import annotations

from typing import Optional

import gevent
import gevent.lock

from pilot.discovery.service import ServiceDefinition
from pilot.log import log_bug


class BackgroundService:
    """A ServiceDefinition whose Consul calls never hold up its job.

    A job's rules must keep restarting and checking its process while the
    agent is down or hung (a stopped agent makes every call wait for its
    timeout), so every call runs in a greenlet of this object's: at most one
    registration or TTL update at a time (a heartbeat due while one is in
    flight is skipped: the one in flight refreshes the same TTL), and a
    deregistration that voids the calls queued before it and abandons the
    one in flight, so nothing is sent after it. `leaving` is the
    deregistration in flight, for Pilot's exit to wait on.
    """

    def __init__(self, svc: ServiceDefinition):
        self.svc = svc
        self._lock = gevent.lock.Semaphore()
        self._epoch = 0  # bumped by deregister: calls queued before it are void
        self._busy: Optional[gevent.Greenlet] = None
        self._next = None  # a call that must run after the one in flight
        self.leaving: Optional[gevent.Greenlet] = None
        self._withdrawn = False  # Pilot is stopping: never registered again

    def __getattr__(self, name):
        return getattr(self.svc, name)

    def send_heartbeat(self) -> None:
        """Register if needed and refresh the TTL, in the background."""
        self._soon(self.svc.send_heartbeat)

    def send_critical(self, output: str) -> None:
        """Mark the check critical, in the background; never skipped: it
        runs after the call in flight, if any."""
        self._soon(lambda: self.svc.send_critical(output), must=True)

    def register_with_initial_status(self) -> bool:
        """True once registered; else start an attempt (the job asks again)."""
        if self.svc.registered or self._withdrawn:
            return True
        self._soon(self.svc.register_with_initial_status)
        return False

    def mark_for_reregistration(self) -> None:
        self.svc.mark_for_reregistration()

    def deregister(self) -> None:
        """Deregister in the background, starting now: the call in flight
        is abandoned (on a hung agent it would hold up a shutdown for its
        whole timeout) and the deregistration takes the lock before any
        call made after it."""
        self._epoch += 1
        self.svc.registered = False
        self._next = None
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.kill(block=False)
        self.leaving = gevent.spawn(self._deregister)

    def _deregister(self) -> None:
        with self._lock:
            try:
                self.svc.deregister()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill supervision
                log_bug(self.log, f"consul: unexpected error for {self.svc.name}", exc)

    def withdraw(self) -> None:
        """Deregister for good (the drain at shutdown): heartbeats that
        follow do not register the service again."""
        self._withdrawn = True
        self.deregister()

    def _soon(self, call, must: bool = False) -> None:
        """Run `call` in the background; while another call is in flight a
        heartbeat is dropped (the one in flight refreshes the same TTL) and a
        call that `must` happen runs next. Nothing runs once withdrawn."""
        if self._withdrawn:
            return
        if self._busy is not None and not self._busy.dead:
            if must:
                self._next = call
            return
        self._busy = gevent.spawn(self._run, call, self._epoch)

    def _run(self, call, epoch) -> None:
        while call is not None:
            with self._lock:
                if epoch != self._epoch:
                    return
                try:
                    call()
                except Exception as exc:  # noqa: BLE001 - a bug must not kill supervision
                    log_bug(self.log, f"consul: unexpected error for {self.svc.name}", exc)
            call, self._next = self._next, None
