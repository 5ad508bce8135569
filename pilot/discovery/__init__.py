"""Consul: registering advertised jobs and asking who is healthy.

One module per concern:

- `agent`: `Consul`, the four calls Pilot makes (register, TTL update,
  deregister, health query), `ConsulError` and the outage book-keeping (one
  warning per outage, one recovery line);
- `service`: `ServiceDefinition`, one advertised job's registration;
- `background`: `BackgroundService`, heartbeats that never hold up the job;
- `transport`: the HTTP under the calls (python-consul2 over requests, TLS,
  unix sockets).

The App imports this package only when the config has `consul`: it brings
requests, urllib3 and python-consul2.
"""
from pilot.discovery.agent import Consul, ConsulError, Instance
from pilot.discovery.background import BackgroundService
from pilot.discovery.service import ServiceDefinition

__all__ = ["BackgroundService", "Consul", "ConsulError", "Instance", "ServiceDefinition"]
