"""The small top-level sections: `consul` (§6), `logging` (§7), `control` (§14.1)
and the top-level `stopTimeout` (§3.2)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

from pilot.config.decode import Fields, fail, prefixed
from pilot.config.model import ConsulConfig, ControlConfig, DEFAULT_SOCKET, LoggingConfig, TLSConfig
from pilot.datatypes import Invalid, flexible_duration, kind, show, to_int

CONSUL_KEYS = ("address", "scheme", "token", "tls", "drain")
TLS_KEYS = ("cafile", "capath", "clientcert", "clientkey", "servername", "verify")
LOGGING_KEYS = ("level", "format", "output")
CONTROL_KEYS = ("socket",)
DEFAULT_CONSUL_ADDRESS = "127.0.0.1:8500"

_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARN", "warning": "WARN",
           "error": "ERROR", "fatal": "FATAL", "panic": "PANIC"}
_FORMATS = ("default", "text", "json")
# Environment variables that replace a non-empty `tls` field (docs/behaviour.md §6).
_TLS_ENV = (("CONSUL_CACERT", "cafile"), ("CONSUL_CAPATH", "capath"),
            ("CONSUL_CLIENT_CERT", "clientcert"), ("CONSUL_CLIENT_KEY", "clientkey"),
            ("CONSUL_TLS_SERVER_NAME", "servername"))
# Every variable building a config reads besides its template's (a loaded
# config records their values: pilot.config.model.ConfigSource).
ENV_NAMES = ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL_VERIFY", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL",
             "CONSUL_HTTP_AUTH") + tuple(variable for variable, _ in _TLS_ENV)


# --- logging ------------------------------------------------------------------


def build_logging(value: Any) -> LoggingConfig:
    """`logging`: values are checked here, with 3.8's messages, not at log set-up."""
    if value is None:
        return LoggingConfig()
    fields = Fields(value, "logging", LOGGING_KEYS)
    level = fields.string("level", "INFO")
    if level.lower() not in _LEVELS:
        raise fail(
            f"Unknown log level '{level}': not a valid logrus Level: \"{level.lower()}\""
            " (expected debug, info, warn, error, fatal or panic)",
            "logging.level",
        )
    log_format = fields.string("format", "default")
    if log_format.lower() not in _FORMATS:
        raise fail(f"Unknown log format '{log_format}' (expected default, text or json)", "logging.format")
    output = fields.string("output", "stdout")
    if output.lower() in ("stdout", "stderr"):
        output = output.lower()
    elif output == "":
        raise fail('logging.output must be "stdout", "stderr" or a file path (got "")', "logging.output")
    return LoggingConfig(level=_LEVELS[level.lower()], format=log_format.lower(), output=output)


# --- stopTimeout ----------------------------------------------------------------


def build_stop_timeout(value: Any) -> int:
    """Top-level `stopTimeout`: integer seconds; absent or 0 means 5."""
    if value is None:
        return 5
    try:
        seconds = to_int(value)
    except Invalid as error:
        raise fail(f"cannot parse 'stopTimeout' as int: {error}", "stopTimeout") from None
    return seconds or 5


# --- control --------------------------------------------------------------------


def build_control(value: Any) -> ControlConfig:
    """`control: {socket}`; an empty socket path means the default one."""
    if value is None:
        return ControlConfig()
    with prefixed("unable to parse control: control config parsing error: "):
        fields = Fields(value, "control", CONTROL_KEYS)
        return ControlConfig(socket=fields.string("socket") or DEFAULT_SOCKET)


# --- consul ---------------------------------------------------------------------


def build_consul(value: Any, env: Mapping[str, str]) -> Optional[ConsulConfig]:
    """`consul` as a string address or an object, then the CONSUL_* overrides.

    Without a `consul` key (or with `null`) Pilot runs without Consul (docs/behaviour.md §0).
    """
    if value is None:
        return None
    if isinstance(value, str):
        address, scheme, token, tls = _from_string(value)
    elif isinstance(value, dict):
        address, scheme, token, tls = _from_object(value)
    else:
        raise fail(
            f"no discovery backend defined: consul must be an address string or an object"
            f" (got {kind(value)} {show(value)})",
            "consul",
        )
    config = _with_env(address, scheme, token, tls, env)
    if isinstance(value, dict):
        config = dataclasses.replace(config, drain=_drain(Fields(value, "consul", CONSUL_KEYS)))
    return config


def _drain(fields: Fields) -> float:
    """Beyond 3.8: `drain`, a duration ("5s", or whole seconds) >= 0."""
    text = fields.string("drain", "")
    try:
        seconds = flexible_duration(text)
    except Invalid as error:
        raise fail(f"consul.drain: unable to parse '{text}': {error} (expected a duration like \"5s\")",
                   "consul.drain") from None
    if seconds is not None and seconds < 0:
        raise fail(f"consul.drain must not be negative (got '{text}')", "consul.drain")
    return seconds or 0.0


def _from_string(value: str):
    """`"https://consul:8500"`: one http(s):// prefix is stripped and sets the scheme."""
    for scheme in ("https", "http"):
        if value.startswith(scheme + "://"):
            return value[len(scheme) + 3:], scheme, "", {}
    return value, "http", "", {}


def _from_object(value: dict):
    fields = Fields(value, "consul", CONSUL_KEYS)
    scheme = fields.string("scheme", "")
    if scheme not in ("", "http", "https"):
        # Beyond 3.8: any other scheme could only fail later, at every Consul call.
        raise fail(f'consul.scheme must be "http" or "https" (got {show(scheme)})', "consul.scheme")
    tls = {}
    block = fields.block("tls", TLS_KEYS)
    if block is not None:
        tls = {key: block.string(key, "") for key in TLS_KEYS[:-1]}
        tls["verify"] = block.boolean("verify", False)
    token = fields.string("token", "", secret=True)
    return fields.string("address", ""), scheme, token, tls


def _with_env(address: str, scheme: str, token: str, tls: dict, env: Mapping[str, str]) -> ConsulConfig:
    """Apply docs/behaviour.md §6's environment overrides, then check the TLS files exist."""
    token = env.get("CONSUL_HTTP_TOKEN") or token
    tls = dict(tls)
    for variable, key in _TLS_ENV:
        if env.get(variable):
            tls[key] = env[variable]
    verify = env.get("CONSUL_HTTP_SSL_VERIFY", "").lower()
    if verify in ("1", "true"):
        tls["verify"] = True
    elif verify in ("0", "false"):
        tls["verify"] = False
    address = address or env.get("CONSUL_HTTP_ADDR") or DEFAULT_CONSUL_ADDRESS
    if not scheme:
        scheme = "https" if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "t", "true") else "http"
    if tls.get("servername"):
        tls["servername"] = _without_port(tls["servername"])
    tls_config = TLSConfig(**tls)
    _check_tls_files(tls_config)
    return ConsulConfig(address=address, scheme=scheme, token=token, tls=tls_config,
                        auth=env.get("CONSUL_HTTP_AUTH", ""))


def _without_port(server: str) -> str:
    """`consul.example:8501` → `consul.example`: the name certificates carry."""
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.strip("[]")
    return server


def _check_tls_files(tls: TLSConfig) -> None:
    """3.8 fails the load when TLS material cannot be loaded; so do we, by name."""
    for key in ("cafile", "clientcert", "clientkey"):
        path = getattr(tls, key)
        if path and not os.path.isfile(path):
            raise fail(f"consul.tls.{key}: cannot load '{path}': no such file", f"consul.tls.{key}")
        if path and not os.access(path, os.R_OK):
            raise fail(f"consul.tls.{key}: cannot load '{path}': permission denied", f"consul.tls.{key}")
    if tls.capath and not os.path.isdir(tls.capath):
        raise fail(f"consul.tls.capath: cannot load '{tls.capath}': no such directory", "consul.tls.capath")
