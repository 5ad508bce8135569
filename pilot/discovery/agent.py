"""The Consul agent Pilot talks to: the four calls it makes (register, TTL
update, deregister, health query) and what their failures mean.

Consul being unreachable is an *outage*: the first failure is reported as a
warning, later failures stay quiet (`ConsulError.repeated`) until a call works
again, which logs one `consul: ADDRESS recovered` line.

Before Consul has ever answered, a refused connection is no outage: the agent
is often one of Pilot's own jobs, still starting. For START_GRACE seconds such
failures are `waiting` (told once, as waiting, by whoever meets one first).

A call the agent answers late is not a failure: it logs `consul: ADDRESS
slow: … took 6.2s` (once per slow spell) and its result counts when it comes.
Only a call that gets no answer at all within HUNG_AFTER fails (a
deregistration, made while stopping, waits DEREGISTER_WITHIN).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import gevent
import requests

from pilot.config.model import ConsulConfig
from pilot.discovery import transport

CALL_TIMEOUT = 5.0  # seconds to connect, for every call that is not a blocking query
HUNG_AFTER = 15.0  # seconds without an answer after which such a call fails
# A deregistration happens while Pilot stops: it is not worth a long wait.
DEREGISTER_WITHIN = 5.0
SLOW_AFTER = 2.0  # seconds: a call answered later than this is logged as slow
START_GRACE = 30.0  # seconds after start a refused connection means "not up yet"
BLOCKING_MARGIN = 5.0  # seconds added to a blocking query's wait
CONSUL_DEFAULT_WAIT = 300.0  # what Consul waits when a query gives no wait
DEFAULT_ADDRESS = "127.0.0.1:8500"


class ConsulError(Exception):
    """A Consul call failed; the message is one line fit for a log.

    `repeated` is true when Consul is already known to be unreachable and
    someone has reported it, so callers log it quietly. `unknown_check` is
    true when the agent does not know the check (it restarted or forgot us).
    """

    def __init__(self, message, repeated=False, unknown_check=False, outage=None, waiting=False):
        super().__init__(message)
        self.repeated = repeated
        self.unknown_check = unknown_check
        self._outage = outage
        # Consul has never answered and refused the connection: its agent is
        # (probably) still starting. Callers say they wait, once.
        self.waiting = waiting

    @property
    def address(self) -> str:
        return self._outage.address if self._outage is not None else ""

    def claim_waiting(self) -> bool:
        """True once while Consul has never answered: the caller says it waits."""
        return self.waiting and self._outage is not None and self._outage.claim_waiting()

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

    def __init__(self, address, log, clock=time.monotonic):
        self.address = address
        self.log = log
        self.down = False
        self.reported = False
        self.answered = False  # Consul has answered at least once
        self.waiting_told = False
        self.slow = False  # the last answer was slow (a slow spell was told)
        self._clock = clock
        self._born = clock()

    def waiting(self, refused: bool) -> bool:
        """A refused connection before Consul ever answered, early on."""
        return refused and not self.answered and self._clock() - self._born < START_GRACE

    def claim_waiting(self) -> bool:
        if self.waiting_told:
            return False
        self.waiting_told = True
        return True

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
        """Note that Consul answered; logs the recovery of a reported outage,
        or the end of a wait that someone told."""
        if not self.answered:
            self.answered = True
            if self.waiting_told:
                self.log.info("consul: %s is up", self.address)
        if self.down:
            self.down = False
            if self.reported:
                self.log.info("consul: %s recovered", self.address)
            self.reported = False

    def answered_in(self, seconds: float, what: str) -> None:
        """A call took `seconds`: a slow answer is told once per slow spell."""
        if seconds >= SLOW_AFTER:
            (self.log.debug if self.slow else self.log.warning)(
                "consul: %s slow: %s took %.1fs", self.address, what, seconds)
            self.slow = True
        else:
            self.slow = False


class Consul:
    """The Consul agent Pilot talks to, built from the `consul` config."""

    def __init__(self, cfg: ConsulConfig, log: Optional[logging.Logger] = None):
        self.cfg = cfg
        self.log = log or logging.getLogger("pilot.discovery")
        self.address = cfg.address or DEFAULT_ADDRESS
        self._outage = _Outage(self.address, self.log)
        _check_tls_files(cfg)
        self._clients = {}  # request timeout -> python-consul2 client
        # Connect within CALL_TIMEOUT (else Consul is unreachable); then an
        # answer may take up to HUNG_AFTER (a slow agent is slow, not down).
        self._api = self._client((CALL_TIMEOUT, HUNG_AFTER))
        self._leaving_api = self._client((CALL_TIMEOUT, DEREGISTER_WITHIN))
        # Services whose deregistration met an outage: retried once Consul
        # answers again, or a job removed by a reload would stay for ever.
        self._leftover = set()
        self._retrier: Optional[gevent.Greenlet] = None

    # -- the four calls -------------------------------------------------

    def register(self, svc: "ServiceDefinition", status: str = "passing") -> None:
        """PUT /v1/agent/service/register with the service's TTL check."""
        self._leftover.discard(svc.id)
        self._call(f"registering {svc.name}", lambda: self._api.agent.service.register(
            svc.name, service_id=svc.id, address=svc.address or None,
            port=svc.port or None, tags=list(svc.tags) or None,
            check=svc.check(status),
            enable_tag_override=svc.enable_tag_override))

    def update_ttl(self, check_id: str, status="passing", output="ok") -> None:
        """PUT /v1/agent/check/update/<id> (python-consul2 has no wrapper)."""
        body = json.dumps({"Status": status, "Output": output})
        self._call(f"the TTL update of {check_id}", lambda: self._api.http.put(
            transport.raise_for_status, "/v1/agent/check/update/%s" % check_id,
            data=body, headers=self._headers()))

    def deregister(self, service_id: str) -> None:
        """PUT /v1/agent/service/deregister/<id>; retried after an outage."""
        try:
            self._call(f"deregistering {service_id}",
                       lambda: self._leaving_api.agent.service.deregister(service_id))
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
        got_index, entries = self._call(None if index else f"the health query of {name}",
                                        lambda: api.health.service(
            name, index=index or None, wait=wait_text, passing=True,
            tag=tag or None, dc=dc or None))
        return _index(got_index), _instances(entries or [])

    # -- plumbing -------------------------------------------------------

    def _headers(self):
        return {"X-Consul-Token": self.cfg.token} if self.cfg.token else {}

    def _call(self, what, request):
        """Run one request; turn every failure into a one-line ConsulError.
        `what` names a call that should be quick (None: a blocking query,
        whose answer takes as long as it takes)."""
        began = time.monotonic()
        try:
            result = request()
        except (requests.RequestException, OSError) as e:
            self._outage.failed()
            raise ConsulError(_unreachable_text(e, self.address, time.monotonic() - began),
                              repeated=self._outage.reported, outage=self._outage,
                              waiting=self._outage.waiting(_refused(e))) from None
        except transport.APIError as e:
            self._outage.reachable()
            code, body = transport.http_error(e)
            raise ConsulError("Unexpected response code: %d (%s)" % (code, body),
                              unknown_check=_is_unknown_check(code, body)) from None
        except ValueError as e:  # an answer that is not the JSON we expect
            self._outage.reachable()
            raise ConsulError("unreadable answer from consul: %s" % e) from None
        self._outage.reachable()
        if what is not None:
            self._outage.answered_in(time.monotonic() - began, what)
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


def _refused(err) -> bool:
    """The agent is not listening (yet): refused, or no unix socket file."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionRefusedError, FileNotFoundError)):
            return True
        nxt = getattr(err, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = err.__cause__ or err.__context__
        if nxt is None and err.args and isinstance(err.args[0], BaseException):
            nxt = err.args[0]
        err = nxt
    return False


def _unreachable_text(err, address, waited=0.0):
    """'consul at ADDR unreachable: REASON', without urllib3's nesting; an
    agent that took the connection but never answered did not answer."""
    if isinstance(err, requests.ReadTimeout):
        return "consul at %s did not answer within %.0fs" % (address, waited)
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
