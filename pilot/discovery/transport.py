"""The HTTP under the Consul calls: python-consul2's API objects over a
requests session that Pilot builds itself, for `host:port`, `https://` (TLS
files, `tls.servername`) and `unix:///path` agent addresses, and the shape
of python-consul2's HTTP errors.
"""
from __future__ import annotations

import re
import socket
import warnings
from typing import Tuple

import urllib3
from requests.adapters import HTTPAdapter

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import consul.base
    import consul.std

from pilot.config.model import ConsulConfig

APIError = consul.base.ConsulException  # what python-consul2 raises for an HTTP error


class Client(consul.base.Consul):
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


def http_client(cfg: ConsulConfig, address: str, timeout: float):
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
    """requests' `verify`: off unless asked for (docs/behaviour.md §6), else the CA given."""
    if not cfg.tls.verify:
        return False
    return cfg.tls.cafile or cfg.tls.capath or True


def _client_cert(cfg):
    if cfg.tls.clientcert and cfg.tls.clientkey:
        return (cfg.tls.clientcert, cfg.tls.clientkey)
    return cfg.tls.clientcert or None


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


# -- python-consul2's errors ------------------------------------------------------

def raise_for_status(response):
    """python-consul2 callback: errors as its ConsulException("CODE body")."""
    if response.code >= 400:
        raise consul.base.ConsulException("%d %s" % (response.code, response.body))
    return None


_CODE_OF = {  # python-consul2 exceptions whose text lost the status code
    consul.base.ACLDisabled: 401,
    consul.base.ACLPermissionDenied: 403,
    consul.base.NotFound: 404,
}


def http_error(err):
    """(status code, one-line body) of a python-consul2 HTTP error."""
    text = str(err)
    code = _CODE_OF.get(type(err))
    if code is None:
        m = re.match(r"(\d{3}) ?(.*)", text, re.S)
        code, text = (int(m.group(1)), m.group(2)) if m else (0, text)
    return code, " ".join(text.split())
