"""Heartbeats that never hold up a job: a ServiceDefinition whose calls run
in a greenlet of their own."""
from __future__ import annotations

from typing import Optional

import gevent
import gevent.lock

from pilot.discovery.service import ServiceDefinition
from pilot.log import log_bug


class BackgroundService:
    """A ServiceDefinition whose heartbeats never hold up its job.

    A job's event loop must keep restarting and checking its process while
    the agent is down or hung (a stopped agent makes every call wait for its
    timeout), so registration and TTL updates run in a greenlet of their own:
    at most one at a time, and a heartbeat due while one is in flight is
    skipped (the one in flight refreshes the same TTL). Deregistration stays
    synchronous and abandons the call in flight, so no late registration
    from Pilot follows it.
    """

    def __init__(self, svc: ServiceDefinition):
        self.svc = svc
        self._lock = gevent.lock.Semaphore()
        self._epoch = 0  # bumped by deregister: calls queued before it are void
        self._busy: Optional[gevent.Greenlet] = None

    def __getattr__(self, name):
        return getattr(self.svc, name)

    def send_heartbeat(self) -> None:
        """Register if needed and refresh the TTL, in the background."""
        self._soon(self.svc.send_heartbeat)

    def register_with_initial_status(self) -> bool:
        """True once registered; else start an attempt (the job asks again)."""
        if self.svc.registered:
            return True
        self._soon(self.svc.register_with_initial_status)
        return False

    def mark_for_reregistration(self) -> None:
        self.svc.mark_for_reregistration()

    def deregister(self) -> None:
        """Deregister now; void the calls queued and abandon the one in
        flight (on a hung agent it would hold up a shutdown for its whole
        timeout), so nothing is sent after the deregistration."""
        self._epoch += 1
        self.svc.registered = False
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.kill(block=True, timeout=1)
        with self._lock:
            self.svc.deregister()

    def _soon(self, call) -> None:
        if self._busy is not None and not self._busy.dead:
            return
        self._busy = gevent.spawn(self._run, call, self._epoch)

    def _run(self, call, epoch) -> None:
        with self._lock:
            if epoch != self._epoch:
                return
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill supervision
                log_bug(self.log, f"consul: unexpected error for {self.svc.name}", exc)
