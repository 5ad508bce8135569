"""One advertised job's registration in Consul (docs/behaviour.md §12): its IDs and TTL
check; it registers on demand and comes back by itself after an agent
restart or maintenance (docs/behaviour.md §0).
"""
from __future__ import annotations

import logging
import socket
from typing import Optional

from pilot.config.model import JobConfig
from pilot.discovery.agent import Consul, ConsulError

TELEMETRY_TTL = 15  # the `containerpilot` service has no health block (docs/behaviour.md §13.3)


class ServiceDefinition:
    """One advertised job's registration in Consul (docs/behaviour.md §12)."""

    def __init__(self, job: JobConfig, consul: Consul, hostname: Optional[str] = None,
                 log: Optional[logging.Logger] = None):
        self.consul = consul
        self.log = log or consul.log
        self.name = job.name
        self.id = "%s-%s" % (job.name, hostname or socket.gethostname())
        self.check_id = "service:" + self.id
        self.ttl = job.health.ttl if job.health else TELEMETRY_TTL
        self.tags = tuple(job.tags)
        self.port = job.port
        self.address = job.ip or ""
        self.enable_tag_override = job.enable_tag_override
        self.deregister_critical_service_after = job.deregister_critical_service_after
        self.initial_status = job.initial_status
        self.registered = False

    def check(self, status: str = "passing") -> dict:
        """The TTL check sent inside the registration.

        A raw dict: python-consul2's Check.ttl() drops
        DeregisterCriticalServiceAfter.
        """
        check = {"TTL": "%ds" % self.ttl,
                 "Notes": "TTL for %s set by containerpilot" % self.name}
        if status:
            check["Status"] = status
        if self.deregister_critical_service_after:
            check["DeregisterCriticalServiceAfter"] = self.deregister_critical_service_after
        return check

    def register_with_initial_status(self) -> bool:
        """Register before the job has run, with `initial_status`; True on success."""
        self.log.info("Registering service %s with initial status set to %s",
                      self.name, self.initial_status)
        return self._register(self.initial_status or "")

    def send_heartbeat(self) -> None:
        """Register if needed, then mark the TTL check passing.

        If the agent no longer knows the check (it restarted, or someone
        deregistered us) register again at once and retry (docs/behaviour.md §0).
        """
        self._set_check("passing", "ok")

    def send_critical(self, output: str) -> None:
        """Mark the TTL check critical now, with the check's output as its
        note (3.8 only stopped heartbeating and let the TTL run out)."""
        self._set_check("critical", output or "unhealthy")

    def _set_check(self, status: str, output: str) -> None:
        """Register if needed, then set the TTL check; if the agent no
        longer knows the check, register again at once and retry."""
        if not self.registered and not self._register(status):
            return
        try:
            self.consul.update_ttl(self.check_id, status, output)
            return
        except ConsulError as e:
            if not e.unknown_check:
                self._warn("service update TTL failed: %s", e)
                return
        self.registered = False
        if self._register(status):
            try:
                self.consul.update_ttl(self.check_id, status, output)
            except ConsulError as e:
                self._warn("service update TTL failed: %s", e)

    def mark_for_reregistration(self) -> None:
        """Forget we are registered (after maintenance) so the next heartbeat registers."""
        self.registered = False

    def deregister(self) -> None:
        """Remove the service from the agent; the next heartbeat would register again."""
        self.registered = False
        self.log.debug("deregistering: %s", self.id)
        try:
            self.consul.deregister(self.id)
        except ConsulError as e:
            log = self.log.info if e.claim_warning() else self.log.debug
            log("deregistering failed: %s", e)

    def _register(self, status: str) -> bool:
        try:
            self.consul.register(self, status)
        except ConsulError as e:
            self._warn("service registration failed: %s", e)
            return False
        self.registered = True
        self.log.info("Service registered: %s", self.name)
        return True

    def _warn(self, fmt, err):
        """Warn, unless this is one more failure of an outage already
        reported, or Consul has not come up yet (said once, as waiting)."""
        if err.waiting:
            if err.claim_waiting():
                self.log.info("%s: waiting for Consul at %s", self.name, err.address)
            self.log.debug(fmt, err)
            return
        (self.log.warning if err.claim_warning() else self.log.debug)(fmt, err)
