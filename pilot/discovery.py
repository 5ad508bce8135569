"""Consul: registering advertised jobs and asking who is healthy.

`Consul` wraps python-consul2 for the four calls Pilot makes (register, TTL
update, deregister, health query). `ServiceDefinition` is one advertised job's
registration: it knows its IDs and TTL check, registers on demand, and comes
back by itself after an agent restart or maintenance (SPEC §0, §12).

Consul being unreachable is an *outage*: the first failure is reported as a
warning, later failures stay quiet (`ConsulError.repeated`) until a call works
again, which logs one `consul: ADDRESS recovered` line.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import gevent
import gevent.lock
import requests
import urllib3
from requests.adapters import HTTPAdapter

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import consul.base
    import consul.std

from pilot.config.model import ConsulConfig, JobConfig

CALL_TIMEOUT = 5.0  # seconds, for every call that is not a blocking query
BLOCKING_MARGIN = 5.0  # seconds added to a blocking query's wait
CONSUL_DEFAULT_WAIT = 300.0  # what Consul waits when a query gives no wait
TELEMETRY_TTL = 15  # the `containerpilot` service has no health block (SPEC §13.3)
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
            _raise_for_status, "/v1/agent/check/update/%s" % check_id,
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
        except consul.base.ConsulException as e:
            self._outage.reachable()
            code, body = _http_error(e)
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
            client = _Client(_http_client(self.cfg, self.address, timeout),
                             self.cfg.token)
            self._clients[timeout] = client
        return client


class ServiceDefinition:
    """One advertised job's registration in Consul (SPEC §12)."""

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
        deregistered us) register again at once and retry (SPEC §0).
        """
        if not self.registered and not self._register("passing"):
            return
        try:
            self.consul.update_ttl(self.check_id)
            return
        except ConsulError as e:
            if not e.unknown_check:
                self._warn("service update TTL failed: %s", e)
                return
        self.registered = False
        if self._register("passing"):
            try:
                self.consul.update_ttl(self.check_id)
            except ConsulError as e:
                self._warn("service update TTL failed: %s", e)

    def mark_for_reregistration(self) -> None:
        """Forget we are registered (after maintenance) so the next heartbeat registers."""
        self.registered = False

    def deregister(self) -> None:
        """Remove the service from the agent; the next heartbeat would register again."""
        self.registered = False
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
        """Warn, unless this is one more failure of an outage already reported."""
        (self.log.warning if err.claim_warning() else self.log.debug)(fmt, err)


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
        self.leaving: Optional[gevent.Greenlet] = None
        self._withdrawn = False  # Pilot is stopping: never registered again

    def __getattr__(self, name):
        return getattr(self.svc, name)

    def send_heartbeat(self) -> None:
        """Register if needed and refresh the TTL, in the background."""
        self._soon(self.svc.send_heartbeat)

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
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.kill(block=False)
        self.leaving = gevent.spawn(self._deregister)

    def _deregister(self) -> None:
        with self._lock:
            try:
                self.svc.deregister()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill supervision
                self.log.error("consul: unexpected error for %s: %r", self.svc.name, exc)

    def withdraw(self) -> None:
        """Deregister for good (the drain at shutdown): heartbeats that
        follow do not register the service again."""
        self._withdrawn = True
        self.deregister()

    def _soon(self, call) -> None:
        if self._withdrawn or (self._busy is not None and not self._busy.dead):
            return
        self._busy = gevent.spawn(self._run, call, self._epoch)

    def _run(self, call, epoch) -> None:
        with self._lock:
            if epoch != self._epoch:
                return
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill supervision
                self.log.error("consul: unexpected error for %s: %r", self.svc.name, exc)


# -- python-consul2 set-up ---------------------------------------------------

class _Client(consul.base.Consul):
    """python-consul2's API objects over an HTTP client built here.

    Its own constructor re-reads CONSUL_HTTP_ADDR/TOKEN/SSL* (the config
    loader has already applied them, and an odd CONSUL_HTTP_ADDR would even
    raise), so only the parts Pilot uses are set up.
    """

    def __init__(self, http, token):  # noqa: super().__init__ skipped on purpose
        self.http = http
        self.token = token or None
        self.scheme = http.scheme
        self.dc = None
        self.consistency = "default"
        self.agent = consul.base.Consul.Agent(self)
        self.health = consul.base.Consul.Health(self)


def endpoint(address: str, scheme: str) -> Tuple[str, str, str]:
    """(address, scheme, unix socket path) as Consul's Go client reads them.

    A `http://`, `https://` or `unix://` prefix on the address wins over the
    configured scheme, whichever way the address came (object form,
    CONSUL_HTTP_ADDR, `https://https://…` in the string form): users write
    CONSUL_HTTP_ADDR=http://127.0.0.1:8500 as Consul's own docs do.
    """
    scheme = scheme or "http"
    prefix, sep, rest = address.partition("://")
    if sep and prefix in ("http", "https"):
        return rest, prefix, ""
    if sep and prefix == "unix":
        return address, "http", rest
    return address, scheme, ""


def _http_client(cfg: ConsulConfig, address: str, timeout: float):
    """A requests-based HTTP client for `address` (host:port or unix:///path)."""
    address, scheme, socket_path = endpoint(address, cfg.scheme)
    if socket_path:
        host, port = "localhost", 80
    else:
        host, port = _split_host_port(address, scheme)
    verify = _verify(cfg)
    cert = _client_cert(cfg)
    http = consul.std.HTTPClient(host, port, scheme, verify, cert, timeout)
    if socket_path:
        http.session.mount("http://", _UnixSocketAdapter(socket_path))
    if scheme == "https" and cfg.tls.servername:
        http.session.mount("https://", _ServerNameAdapter(cfg.tls.servername))
    if scheme == "https" and verify is False:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    if cfg.auth:
        user, _, password = cfg.auth.partition(":")
        http.session.auth = (user, password)
    return http


def _split_host_port(address, scheme):
    """host:port → (host, port); without a port, the scheme's (as Go's client)."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        return address, 443 if scheme == "https" else 80
    return host, port


def _verify(cfg):
    """requests' `verify`: off unless asked for (SPEC §6), else the CA given."""
    if not cfg.tls.verify:
        return False
    return cfg.tls.cafile or cfg.tls.capath or True


def _client_cert(cfg):
    if cfg.tls.clientcert and cfg.tls.clientkey:
        return (cfg.tls.clientcert, cfg.tls.clientkey)
    return cfg.tls.clientcert or None


def _check_tls_files(cfg):
    """TLS material that cannot be read fails now, not at the first call."""
    tls = cfg.tls
    for label, path in (("CA file", tls.cafile), ("CA path", tls.capath),
                        ("client certificate", tls.clientcert),
                        ("client key", tls.clientkey)):
        if path and not os.access(path, os.R_OK):
            raise ConsulError("consul TLS %s %s cannot be read" % (label, path))


class _ServerNameAdapter(HTTPAdapter):
    """Use `tls.servername` for SNI and certificate verification."""

    def __init__(self, server_name):
        self._server_name = server_name.rsplit(":", 1)[0] if "]" not in server_name \
            else server_name
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self._server_name
        kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


class _UnixSocketConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args, socket_path="", **kwargs):
        super().__init__(*args, **kwargs)
        self._socket_path = socket_path

    def _new_conn(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, (int, float)):
            sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        return sock


class _UnixSocketPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixSocketConnection


class _UnixSocketAdapter(HTTPAdapter):
    """Send every http:// request over one unix socket (`unix:///path`)."""

    def __init__(self, socket_path):
        super().__init__()
        self._pool = _UnixSocketPool("localhost", maxsize=10,
                                     socket_path=socket_path)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self._pool

    def get_connection(self, url, proxies=None):
        return self._pool

    def close(self):
        self._pool.close()
        super().close()


# -- answers and errors -------------------------------------------------------

def _raise_for_status(response):
    """python-consul2 callback: errors as its ConsulException("CODE body")."""
    if response.code >= 400:
        raise consul.base.ConsulException("%d %s" % (response.code, response.body))
    return None


_CODE_OF = {  # python-consul2 exceptions whose text lost the status code
    consul.base.ACLDisabled: 401,
    consul.base.ACLPermissionDenied: 403,
    consul.base.NotFound: 404,
}


def _http_error(err):
    """(status code, one-line body) of a python-consul2 HTTP error."""
    text = str(err)
    code = _CODE_OF.get(type(err))
    if code is None:
        m = re.match(r"(\d{3}) ?(.*)", text, re.S)
        code, text = (int(m.group(1)), m.group(2)) if m else (0, text)
    return code, " ".join(text.split())


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
