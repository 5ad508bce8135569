"""The Consul agent Pilot talks to: the four calls it makes (register, TTL
update, deregister, health query) and what their failures mean.

Consul being unreachable is an *outage*: the first failure is reported as a
warning, later failures stay quiet (`ConsulError.repeated`) until a call works
again, which logs one `consul: ADDRESS recovered` line.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import gevent
import requests

from pilot.config.model import ConsulConfig
from pilot.discovery import transport

CALL_TIMEOUT = 5.0  # seconds, for every call that is not a blocking query
BLOCKING_MARGIN = 5.0  # seconds added to a blocking query's wait
CONSUL_DEFAULT_WAIT = 300.0  # what Consul waits when a query gives no wait
DEFAULT_ADDRESS = "127.0.0.1:8500"


class ConsulError(Exception):
    """A Consul call failed; the message is one line fit for a log.

    `repeated` is true when Consul is already known to be unreachable and
    someone has reported it, so callers log it quietly. `unknown_check` is
    true when the agent does not know the check (it restarted or forgot us).
    """

    def __init__(self, message, repeated=False, unknown_check=False, outage=None):
        super().__init__(message)
        self.repeated = repeated
        self.unknown_check = unknown_check
        self._outage = outage

    def claim_warning(self) -> bool:
        """True if the caller is the one to warn about this failure.

        For an outage, only the first caller to ask (while it lasts) is told
        yes, so an outage is reported once however many components fail;
        a caller that retries quietly first simply does not ask.
        """
        if self._outage is None:
            return not self.repeated
        return self._outage.claim()


@dataclass(frozen=True)
class Instance:
    """One passing instance of a service, as a watch compares them."""

    id: str
    address: str
    port: int
    tags: Tuple[str, ...] = ()


class _Outage:
    """Remembers whether Consul is down, and whether anyone said so, so an
    outage is reported by one warning and one recovery line."""

    def __init__(self, address, log):
        self.address = address
        self.log = log
        self.down = False
        self.reported = False

    def failed(self) -> None:
        """Note a failed call."""
        self.down = True

    def claim(self) -> bool:
        """True once per outage: the caller warns about it."""
        if not self.down or self.reported:
            return False
        self.reported = True
        return True

    def reachable(self):
        """Note that Consul answered; logs the recovery of a reported outage."""
        if self.down:
            self.down = False
            if self.reported:
                self.log.info("consul: %s recovered", self.address)
            self.reported = False


class Consul:
    """The Consul agent Pilot talks to, built from the `consul` config."""

    def __init__(self, cfg: ConsulConfig, log: Optional[logging.Logger] = None):
        self.cfg = cfg
        self.log = log or logging.getLogger("pilot.discovery")
        self.address = cfg.address or DEFAULT_ADDRESS
        self._outage = _Outage(self.address, self.log)
        _check_tls_files(cfg)
        self._clients = {}  # request timeout -> python-consul2 client
        self._api = self._client(CALL_TIMEOUT)
        # Services whose deregistration met an outage: retried once Consul
        # answers again, or a job removed by a reload would stay for ever.
        self._leftover = set()
        self._retrier: Optional[gevent.Greenlet] = None

    # -- the four calls -------------------------------------------------

    def register(self, svc: "ServiceDefinition", status: str = "passing") -> None:
        """PUT /v1/agent/service/register with the service's TTL check."""
        self._leftover.discard(svc.id)
        self._call(lambda: self._api.agent.service.register(
            svc.name, service_id=svc.id, address=svc.address or None,
            port=svc.port or None, tags=list(svc.tags) or None,
            check=svc.check(status),
            enable_tag_override=svc.enable_tag_override))

    def update_ttl(self, check_id: str, status="passing", output="ok") -> None:
        """PUT /v1/agent/check/update/<id> (python-consul2 has no wrapper)."""
        body = json.dumps({"Status": status, "Output": output})
        self._call(lambda: self._api.http.put(
            transport.raise_for_status, "/v1/agent/check/update/%s" % check_id,
            data=body, headers=self._headers()))

    def deregister(self, service_id: str) -> None:
        """PUT /v1/agent/service/deregister/<id>; retried after an outage."""
        try:
            self._call(lambda: self._api.agent.service.deregister(service_id))
        except ConsulError as e:
            if e._outage is not None:
                self._leftover.add(service_id)
            else:  # Consul answered: nothing left to retry
                self._leftover.discard(service_id)
            raise
        self._leftover.discard(service_id)

    def health_service(self, name, tag="", dc="", index=None, wait=None
                       ) -> Tuple[int, List[Instance]]:
        """Passing instances of `name` and the Consul index of the answer.

        With `index`, this is a blocking query: it returns when the answer
        changes after that index or when `wait` (seconds) has passed.
        """
        api = self._api
        wait_text = None
        if index:
            seconds = CONSUL_DEFAULT_WAIT if wait is None else float(wait)
            wait_text = None if wait is None else _go_seconds(seconds)
            # Consul adds up to wait/16 of jitter before answering.
            api = self._client(seconds + seconds / 16 + BLOCKING_MARGIN)
        got_index, entries = self._call(lambda: api.health.service(
            name, index=index or None, wait=wait_text, passing=True,
            tag=tag or None, dc=dc or None))
        return _index(got_index), _instances(entries or [])

    # -- plumbing -------------------------------------------------------

    def _headers(self):
        return {"X-Consul-Token": self.cfg.token} if self.cfg.token else {}

    def _call(self, request):
        """Run one request; turn every failure into a one-line ConsulError."""
        try:
            result = request()
        except (requests.RequestException, OSError) as e:
            self._outage.failed()
            raise ConsulError(_unreachable_text(e, self.address),
                              repeated=self._outage.reported,
                              outage=self._outage) from None
        except transport.APIError as e:
            self._outage.reachable()
            code, body = transport.http_error(e)
            raise ConsulError("Unexpected response code: %d (%s)" % (code, body),
                              unknown_check=_is_unknown_check(code, body)) from None
        except ValueError as e:  # an answer that is not the JSON we expect
            self._outage.reachable()
            raise ConsulError("unreadable answer from consul: %s" % e) from None
        self._outage.reachable()
        if self._leftover and (self._retrier is None or self._retrier.dead):
            self._retrier = gevent.spawn(self._deregister_leftovers)
        return result

    def _deregister_leftovers(self):
        """Deregister the services an outage kept us from removing."""
        for service_id in sorted(self._leftover):
            if service_id not in self._leftover:
                continue  # registered again meanwhile
            try:
                self.deregister(service_id)
            except ConsulError:
                return  # down again: the next answer retries
            self.log.info("consul: deregistered %s after the outage", service_id)

    def close(self) -> None:
        """Close the keep-alive connections this client holds to the agent.

        A reload that changes the `consul` section replaces the client; its
        pooled connections are not closed when it is dropped, so each such
        reload kept one or more sockets open for the container's life."""
        for client in self._clients.values():
            client.http.session.close()

    def _client(self, timeout):
        """The python-consul2 client whose requests time out after `timeout`."""
        client = self._clients.get(timeout)
        if client is None:
            client = transport.Client(transport.http_client(self.cfg, self.address, timeout),
                                      self.cfg.token)
            self._clients[timeout] = client
        return client


def _check_tls_files(cfg):
    """TLS material that cannot be read fails now, not at the first call."""
    tls = cfg.tls
    for label, path in (("CA file", tls.cafile), ("CA path", tls.capath),
                        ("client certificate", tls.clientcert),
                        ("client key", tls.clientkey)):
        if path and not os.access(path, os.R_OK):
            raise ConsulError("consul TLS %s %s cannot be read" % (label, path))


# -- answers and errors -------------------------------------------------------

def _is_unknown_check(code, body):
    body = body.lower()
    return code == 404 or "does not have associated ttl" in body \
        or "unknown check" in body


def _unreachable_text(err, address):
    """'consul at ADDR unreachable: REASON', without urllib3's nesting."""
    if isinstance(err, requests.Timeout):
        return "consul at %s unreachable: timed out" % address
    reason = _root_cause(err)
    return "consul at %s unreachable: %s" % (address, reason)


def _root_cause(err):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.strerror:
            return err.strerror
        nxt = getattr(err, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = err.__cause__ or err.__context__
        if nxt is None and err.args and isinstance(err.args[0], BaseException):
            nxt = err.args[0]
        if nxt is None:
            break
        err = nxt
    return " ".join(str(err).split()) or type(err).__name__


def _index(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _instances(entries) -> List[Instance]:
    """Instances sorted by service ID; a service without an address has its node's."""
    found = []
    for entry in entries:
        svc = entry.get("Service") or {}
        node = entry.get("Node") or {}
        found.append(Instance(
            id=svc.get("ID", ""),
            address=svc.get("Address") or node.get("Address", ""),
            port=int(svc.get("Port") or 0),
            tags=tuple(svc.get("Tags") or ())))
    return sorted(found, key=lambda i: i.id)


def _go_seconds(seconds: float) -> str:
    """A wait for Consul's query string: whole seconds, else milliseconds."""
    if seconds == int(seconds):
        return "%ds" % seconds
    return "%dms" % round(seconds * 1000)
