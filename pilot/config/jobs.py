"""`jobs` (docs/behaviour.md §8): each job object → a frozen JobConfig.

The checks run in 3.8's order (§8.2) so that a config with several mistakes
reports the same first one; every message keeps 3.8's wording and adds what
was expected or the bad value. Errors are prefixed `unable to parse jobs: `.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from pilot import datatypes
from pilot.config.decode import Fields, fail, prefixed
from pilot import users
from pilot.config.model import (DEFAULT_INTERFACES, UNLIMITED, Condition, HealthConfig, JobConfig,
                                Launch, SecretFile, When)
from pilot.datatypes import Invalid, kind, show

JOB_KEYS = (
    "name", "exec", "logging", "when", "timeout", "stopTimeout", "restarts", "health",
    "port", "initial_status", "tags", "interfaces", "consul",
    # Beyond 3.8:
    "stopSignal", "restartDelay", "restartDelayMax", "restartResetAfter", "main",
    "user", "dir", "env", "envFile",
)
WHEN_KEYS = ("interval", "source", "once", "each", "timeout", "all", "any")
WHEN_SCALARS = ("interval", "source", "once", "each", "timeout")
CONDITION_KEYS = ("source", "once", "each", "atLeast")
HEALTH_KEYS = ("exec", "timeout", "interval", "ttl", "logging",
               "http", "tcp", "startPeriod", "failureThreshold", "successThreshold", "onUnhealthy")
ON_UNHEALTHY = ("none", "restart")
LOGGING_KEYS = ("raw",)
SECRET_KEYS = ("file",)
JOB_CONSUL_KEYS = ("enableTagOverride", "deregisterCriticalServiceAfter")
INITIAL_STATUSES = ("passing", "warning", "critical")
SIGNAL_SOURCES = ("SIGHUP", "SIGUSR2")
ONE_MS = 0.001


@dataclass(frozen=True)
class Built:
    """A job and the `when` sources the user wrote, for the cross-checks."""

    job: JobConfig
    label: str
    sources: Tuple[str, ...]


def build_jobs(value: Any, has_consul: bool) -> Tuple[List[Built], Tuple[str, ...]]:
    """The `jobs` array (`null` elements are skipped, as in 3.8), and the
    warnings the config deserves without being refused."""
    if value is None:
        return [], ()
    if not isinstance(value, list):
        # Beyond 3.8, which silently ignores a non-array `jobs` (and so runs nothing).
        raise fail(f"jobs must be an array of job objects (got {kind(value)} {show(value)})", "jobs")
    with prefixed("unable to parse jobs: "):
        items = [(index, item) for index, item in enumerate(value) if item is not None]
        for index, item in items:
            _decode_job(item, index)
        built = [_build_job(item, index, has_consul) for index, item in items]
        built, warnings = _last_definition_wins(built)
    return built, warnings


def _last_definition_wins(built: List[Built]) -> Tuple[List[Built], Tuple[str, ...]]:
    """Two jobs with one name: the last definition is kept, with a warning.

    3.8 runs both, sharing one name for events and one Consul service ID (so
    one registration, two health checks feeding it). A public blueprint does
    this (autopilotpattern/nginx with ACME_DOMAIN), so refusing would break a
    config that works; running both under one name would make `-status`,
    reload and events ambiguous. As with a JSON object's repeated key, the
    last one wins."""
    names = [item.job.name for item in built]
    last = {name: index for index, name in enumerate(names)}
    repeated = [name for index, name in enumerate(names) if names.index(name) == index and names.count(name) > 1]
    warnings = tuple(
        f"job[{name}] is defined {names.count(name)} times: only its last definition is used"
        " (ContainerPilot 3.8 ran every definition under the one name)"
        for name in repeated)
    return [item for index, item in enumerate(built) if last[item.job.name] == index], warnings


def _decode_job(item: Any, index: int) -> None:
    """3.8 decodes the whole `jobs` array before it validates any job, so a
    misspelt key or a value of the wrong type anywhere is reported before
    a job's semantic mistakes (docs/behaviour.md §3.3 before §8.2)."""
    label = _label(item, index)
    fields = Fields(item, label, JOB_KEYS)
    for key in ("name", "timeout", "stopTimeout", "initial_status",
                "restartDelay", "restartDelayMax", "restartResetAfter", "user", "dir", "envFile"):
        fields.string(key)
    fields.integer("port")
    fields.boolean("main")
    fields.strings("tags")
    _raw_logging(fields)
    health = fields.block("health", HEALTH_KEYS)
    if health is not None:
        health.seconds("interval")
        health.seconds("ttl")
        health.integer("failureThreshold")
        health.integer("successThreshold")
        for key in ("timeout", "http", "tcp", "startPeriod", "onUnhealthy"):
            health.string(key)
        _raw_logging(health)
    when = fields.block("when", WHEN_KEYS)
    for key in WHEN_SCALARS if when is not None else ():
        when.string(key)
    for key in ("all", "any") if when is not None else ():
        for item in _condition_items(when, key):
            item.string("source"), item.string("once"), item.string("each")
            item.integer("atLeast")
    consul = fields.block("consul", JOB_CONSUL_KEYS)
    if consul is not None:
        consul.boolean("enableTagOverride")
        consul.string("deregisterCriticalServiceAfter")


def _build_job(item: Any, index: int, has_consul: bool) -> Built:
    label = _label(item, index)
    fields = Fields(item, label, JOB_KEYS)
    name = fields.string("name", "")
    port = fields.integer("port", 0)
    if not 0 <= port <= 65535:
        # Beyond 3.8: Consul rejects such a port at registration.
        raise fail(f"{label}.port must be between 0 and 65535 (got {port})", f"{label}.port")
    raw_logging = _raw_logging(fields)
    health = _health(fields, label, name, port)
    discovery = _discovery(fields, label, name, port, has_consul)
    when, sources = _when(fields, label)
    stop_timeout = _job_duration(fields, label, "stopTimeout")
    restarts = _restarts(fields, label, when)
    timeout = _exec_timeout(fields, label)
    exec_args = _exec(fields.raw("exec"), label, "exec") if "exec" in fields else None
    job = JobConfig(
        name=name, exec=exec_args, raw_logging=raw_logging, when=when, timeout=timeout,
        stop_timeout=max(stop_timeout or 0.0, 0.0), restarts=restarts, health=health, port=port,
        tags=fields.strings("tags"), **discovery, **_extensions(fields, label),
        launch=_launch(fields, label),
    )
    return Built(job, label, sources)


def _label(item: Any, index: int) -> str:
    """`job[NAME]` as 3.8 names a job, or `jobs[INDEX]` while it has no usable name."""
    if isinstance(item, dict):
        for key in sorted(item, key=lambda k: k != "name"):
            if isinstance(key, str) and key.lower() == "name":
                try:
                    name = datatypes.to_string(item[key]) if item[key] is not None else ""
                except Invalid:
                    name = ""
                if name:
                    return f"job[{name}]"
                break
    return f"jobs[{index}]"


def _raw_logging(fields: Fields) -> bool:
    block = fields.block("logging", LOGGING_KEYS)
    return bool(block and block.boolean("raw", False))


# --- step 1: health -------------------------------------------------------------


def _health(fields: Fields, label: str, name: str, port: int) -> Optional[HealthConfig]:
    block = fields.block("health", HEALTH_KEYS)
    if block is None:
        if port != 0 and name != "containerpilot":
            raise fail(f"{label}.health must be set if 'port' is set", f"{label}.health")
        return None
    interval = block.seconds("interval", 0)
    ttl = block.seconds("ttl", 0)
    raw_logging = _raw_logging(block)
    if interval < 1:
        raise fail(f"{label}.health.interval must be > 0 (got {interval})", f"{label}.health.interval")
    if ttl < 1:
        raise fail(f"{label}.health.ttl must be > 0 (got {ttl})", f"{label}.health.ttl")
    text = block.string("timeout", "")
    try:
        timeout = datatypes.flexible_duration(text)
    except Invalid as error:
        raise fail(f"could not parse {label}.health.timeout '{text}': {error}", f"{label}.health.timeout") from None
    if timeout is None:
        timeout = float(interval)
    check = _exec(block.raw("exec"), label, "health.exec") if "exec" in block else None
    # A negative timeout cannot bound anything: like "0" it means no timeout.
    return HealthConfig(exec=check, interval=interval, ttl=ttl, timeout=max(timeout, 0.0),
                        raw_logging=raw_logging, **_probes(block, f"{label}.health"))


# --- beyond 3.8: probes, thresholds, start period, liveness ---------------------------


def _probes(block: Fields, where: str) -> dict:
    kinds = [key for key in ("exec", "http", "tcp") if key in block]
    if len(kinds) > 1:
        raise fail(f"{where} can have only one of exec, http or tcp (got {' and '.join(kinds)})",
                   f"{where}.{kinds[1]}")
    result = {}
    if "http" in block:
        result["http"] = _http_url(block.string("http"), f"{where}.http")
    if "tcp" in block:
        result["tcp"] = _tcp_address(block.string("tcp"), f"{where}.tcp")
    for key, attr in (("failureThreshold", "failure_threshold"),
                      ("successThreshold", "success_threshold")):
        value = block.integer(key)
        if value is not None:
            if value < 1:
                raise fail(f"{where}.{key} must be at least 1 (got {value})", f"{where}.{key}")
            result[attr] = value
    text = block.string("startPeriod", "")
    if text:
        try:
            period = datatypes.flexible_duration(text)
        except Invalid as error:
            raise fail(f"unable to parse {where}.startPeriod '{text}': {error}"
                       " (expected a duration like \"30s\")", f"{where}.startPeriod") from None
        if period is None or period < 0:
            raise fail(f"{where}.startPeriod must not be negative (got '{text}')", f"{where}.startPeriod")
        result["start_period"] = period
    action = block.string("onUnhealthy")
    if action is not None:
        if action not in ON_UNHEALTHY:
            raise fail(f"{where}.onUnhealthy must be \"none\" or \"restart\" (got {show(action)})",
                       f"{where}.onUnhealthy")
        result["on_unhealthy"] = action
    return result


def _http_url(text: str, path: str) -> str:
    """An http:// or https:// URL with a host (and a valid port, if any)."""
    from urllib.parse import urlsplit
    expected = "an http:// or https:// URL with a host, like http://127.0.0.1:8080/healthz"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as error:
        raise fail(f"{path} must be {expected} ({error}; got {show(text)})", path) from None
    if url.scheme not in ("http", "https") or not url.hostname or port == 0:
        raise fail(f"{path} must be {expected} (got {show(text)})", path)
    return text


def _tcp_address(text: str, path: str) -> str:
    """`host:port` (`[::1]:5432` for IPv6), port 1-65535."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise fail(f"{path} must be host:port with a port from 1 to 65535, like 127.0.0.1:5432"
                   f" (got {show(text)})", path)
    return text


# --- step 2: discovery ------------------------------------------------------------


def _discovery(fields: Fields, label: str, name: str, port: int, has_consul: bool) -> dict:
    """What registering the job in Consul needs; checked only for advertised jobs.

    As in 3.8, a job with port 0 and a name skips these checks (an invalid
    `initial_status` there is ignored); a blank name is therefore always caught.
    """
    consul = fields.block("consul", JOB_CONSUL_KEYS)
    tag_override = bool(consul and consul.boolean("enableTagOverride", False))
    interfaces = _interfaces(fields, label, strict=port != 0)
    result = dict(interfaces=interfaces, enable_tag_override=tag_override)
    if port == 0 and name != "":
        return result
    status = fields.string("initial_status", "")
    if status and status not in INITIAL_STATUSES:
        raise fail(
            f"{label}.initialStatus must be one of 'passing', 'warning' or 'critical' (got {show(status)})",
            f"{label}.initial_status",
        )
    if name == "":
        raise fail(f"{label}: 'name' must not be blank", f"{label}.name")
    try:
        datatypes.service_name(name)
    except Invalid as error:
        raise fail(f"{label}.name: {error}", f"{label}.name") from None
    if not has_consul:
        # Pilot runs without Consul (docs/behaviour.md §0), but then nothing can be advertised.
        raise fail(f"{label}.port is {port} but there is no 'consul' section to register it in", f"{label}.port")
    result["ip"] = _resolve(interfaces, f"{label}.interfaces")
    result["initial_status"] = status or None
    result["deregister_critical_service_after"] = _deregister_after(consul, label)
    return result


def _interfaces(fields: Fields, label: str, strict: bool) -> Tuple[str, ...]:
    """A spec string or a list of them; empty means the default list."""
    value = fields.raw("interfaces")
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        specs = fields.strings("interfaces")
        return specs or DEFAULT_INTERFACES
    if value is None or not strict:
        return DEFAULT_INTERFACES  # 3.8 does not look at a non-advertised job's interfaces
    raise fail(
        f"{label}.interfaces: unexpected argument type: {kind(value)}"
        f" (expected a string or an array of strings, got {show(value)})",
        f"{label}.interfaces",
    )


def resolve_ip(specs: Tuple[str, ...], path: str) -> str:
    """The IP that `specs` select on this machine (docs/behaviour.md §8.7), or a ConfigError."""
    return _resolve(specs, path)


def _resolve(specs: Tuple[str, ...], path: str) -> str:
    # Imported for an advertised job only: it loads socket (~2 ms), which a
    # one-shot action (`pilot -putmetric`) on a config without one never needs.
    from pilot import interfaces

    try:
        return interfaces.resolve(list(specs))
    except interfaces.InterfaceError as error:
        raise fail(f"{path}: {str(error).replace(chr(10), '; ')}", path) from None


def _deregister_after(consul: Optional[Fields], label: str) -> Optional[str]:
    """A strict Go duration; absent is fine (3.8 wrongly demanded it, docs/behaviour.md §0)."""
    text = consul.string("deregisterCriticalServiceAfter", "") if consul else ""
    if text == "":
        return None
    try:
        datatypes.strict_duration(text)
    except Invalid as error:
        path = f"{label}.consul.deregisterCriticalServiceAfter"
        raise fail(f"unable to parse {path}: {error} (expected a duration like \"10m\")", path) from None
    return text


# --- step 3: when -------------------------------------------------------------------


def _when(fields: Fields, label: str) -> Tuple[When, Tuple[str, ...]]:
    """The `when` table (docs/behaviour.md §8.3) → When; also the sources as
    written, for the cross-checks."""
    block = fields.block("when", WHEN_KEYS)
    if block is None:
        return When(), ()
    if "all" in block or "any" in block:
        return _when_conditions(block, label)
    text = {key: block.string(key, "") for key in WHEN_SCALARS}
    if sum(1 for key in ("interval", "once", "each") if text[key]) > 1:
        raise fail(f"{label}.when can have only one of 'interval', 'once', or 'each'", f"{label}.when")
    interval = _when_interval(text["interval"], label)
    timeout = _when_timeout(text["timeout"], label)
    for key in ("once", "each"):
        if text[key]:
            _event_name(text[key], f"{label}.when.event", f"{label}.when.{key}")
    if interval is not None:
        return When(interval=interval), ()  # source and timeout are ignored, as in 3.8
    source, event = text["source"], text["once"] or text["each"]
    written = (source,) if source else ()
    if source in SIGNAL_SOURCES:
        return When(source=source, event="signal", each=True, timeout=timeout), written
    if not source or not event:
        return When(source=None, event=None, timeout=timeout), written
    return When(source=source, event=event, each=bool(text["each"]), timeout=timeout), written


def _event_name(name: str, shown: str, path: str) -> str:
    try:
        return datatypes.event_name(name)
    except Invalid as error:
        raise fail(
            f"unable to parse {shown}: {error} (expected one of {', '.join(datatypes.EVENT_NAMES)})",
            path,
        ) from None


# --- beyond 3.8: several conditions -------------------------------------------------


def _condition_items(block: Fields, key: str) -> List[Fields]:
    """The objects of `when.all` / `when.any`, each checked for its keys."""
    value = block.raw(key)
    path = block.path(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"{path} must be an array of conditions like {{source: \"db\", once: \"healthy\"}}"
                   f" (got {kind(value)} {show(value)})", path)
    return [Fields(item, f"{path}[{index}]", CONDITION_KEYS) for index, item in enumerate(value)]


def _when_conditions(block: Fields, label: str) -> Tuple[When, Tuple[str, ...]]:
    """`when: {all: [...]}` or `when: {any: [...]}` (plus an optional timeout)."""
    path = f"{label}.when"
    if "all" in block and "any" in block:
        raise fail(f"{path} can have only one of 'all' or 'any'", path)
    key = "all" if "all" in block else "any"
    for other in ("source", "once", "each", "interval"):
        if other in block:
            raise fail(f"{path}.{key} cannot be combined with '{other}' (put each source in the list)",
                       f"{path}.{other}")
    items = _condition_items(block, key)
    if not items:
        raise fail(f"{path}.{key} must list at least one condition (got an empty list)", f"{path}.{key}")
    conditions = tuple(_condition(item, key) for item in items)
    timeout = _when_timeout(block.string("timeout", ""), label)
    when = When(source=None, event=None, timeout=timeout, **{key: conditions})
    return when, tuple(c.source for c in conditions)


def _condition(item: Fields, group: str) -> Condition:
    where = item.where
    source = item.string("source", "")
    once, each = item.string("once", ""), item.string("each", "")
    if not source:
        raise fail(f"{where}.source must name a job, watch.NAME, check.JOB, global, SIGHUP or SIGUSR2",
                   f"{where}.source")
    if once and each:
        raise fail(f"{where} can have only one of 'once' or 'each'", where)
    if group == "all" and each:
        raise fail(f"{where}.each: every condition of 'all' happens once; use 'once' (got each: {show(each)})",
                   f"{where}.each")
    at_least = item.integer("atLeast")
    if source in SIGNAL_SOURCES:
        if once or each:
            raise fail(f"{where}: a signal source takes no 'once' or 'each'", where)
        event, each_flag = "signal", group == "any"
    else:
        event = once or each
        if not event:
            raise fail(f"{where} needs 'once' or 'each' (the event of {source} to wait for)", where)
        _event_name(event, f"{where}.{'once' if once else 'each'}", f"{where}.{'once' if once else 'each'}")
        each_flag = bool(each)
    if at_least is not None:
        if not source.startswith("watch."):
            raise fail(f"{where}.atLeast counts a watch's instances: the source must be watch.NAME"
                       f" (got source {show(source)})", f"{where}.atLeast")
        if at_least < 1:
            raise fail(f"{where}.atLeast must be at least 1 (got {at_least})", f"{where}.atLeast")
        if event not in ("healthy", "unhealthy"):
            raise fail(f"{where}.atLeast applies to 'healthy' or 'unhealthy' (got {show(event)})",
                       f"{where}.atLeast")
    return Condition(source=source, event=event, each=each_flag, at_least=at_least)


def _when_interval(text: str, label: str) -> Optional[float]:
    path = f"{label}.when.interval"
    try:
        interval = datatypes.flexible_duration(text)
    except Invalid as error:
        raise fail(f"unable to parse {path} '{text}': {error}", path) from None
    if interval is not None and interval < ONE_MS:
        raise fail(f"{path} '{text}' cannot be less than 1ms", path)
    return interval


def _when_timeout(text: str, label: str) -> Optional[float]:
    path = f"{label}.when.timeout"
    try:
        timeout = datatypes.flexible_duration(text)
    except Invalid as error:
        raise fail(f"unable to parse {path}: {error} (got '{text}')", path) from None
    return timeout if timeout and timeout > 0 else None


# --- steps 4 to 6 ---------------------------------------------------------------------


def _job_duration(fields: Fields, label: str, key: str) -> Optional[float]:
    """A flexible duration field of the job, with 3.8's `unable to parse` wording."""
    text = fields.string(key, "")
    try:
        return datatypes.flexible_duration(text)
    except Invalid as error:
        raise fail(f"unable to parse {label}.{key} '{text}': {error}", f"{label}.{key}") from None


def _restarts(fields: Fields, label: str, when: When) -> int:
    value = fields.raw("restarts")
    if value is None:
        return UNLIMITED if when.interval is not None else 0
    each_set = _each_written(fields) or any(c.each and not c.is_signal for c in when.any)
    try:
        return datatypes.restarts(value, each_set)
    except Invalid as error:
        shown = datatypes.go_value(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise fail(f"{label}.restarts field '{shown}' invalid: {error}", f"{label}.restarts") from None


def _each_written(fields: Fields) -> bool:
    """Whether the user wrote `when.each` (a signal source also has each=True)."""
    block = fields.block("when", WHEN_KEYS)
    return bool(block and block.string("each", ""))


def _exec_timeout(fields: Fields, label: str) -> Optional[float]:
    timeout = _job_duration(fields, label, "timeout")
    if timeout is not None and timeout < ONE_MS:
        text = fields.string("timeout", "")
        raise fail(f"{label}.timeout '{text}' cannot be less than 1ms", f"{label}.timeout")
    return timeout


def _exec(value: Any, label: str, key: str) -> Tuple[str, ...]:
    try:
        return datatypes.exec_args(value)
    except Invalid as error:
        # The reason may already show the bad element: one "(got …)" is enough.
        got = "" if "(got " in str(error) else f" (got {show(value)})"
        raise fail(f"unable to create {label}.{key}: {error}{got}", f"{label}.{key}") from None


# --- beyond 3.8 -------------------------------------------------------------------------


def _extensions(fields: Fields, label: str) -> dict:
    """Pilot's own job fields: stop signal, restart back-off, the main job."""
    result = {"main": fields.boolean("main", False)}
    if "stopSignal" in fields:
        try:
            result["stop_signal"] = datatypes.signal_number(fields.raw("stopSignal"))
        except Invalid as error:
            raise fail(f"{label}.stopSignal: {error}", f"{label}.stopSignal") from None
    for key, attr in (("restartDelay", "restart_delay"), ("restartDelayMax", "restart_delay_max"),
                      ("restartResetAfter", "restart_reset_after")):
        seconds = _job_duration(fields, label, key)
        if seconds is None:
            continue
        if seconds < 0:
            raise fail(f"{label}.{key} must not be negative (got '{fields.string(key)}')", f"{label}.{key}")
        result[attr] = seconds
    delay, cap = result.get("restart_delay", 0.0), result.get("restart_delay_max", 0.0)
    if 0 < cap < delay:
        raise fail(
            f"{label}.restartDelayMax '{fields.string('restartDelayMax')}' must not be less than"
            f" restartDelay '{fields.string('restartDelay')}'",
            f"{label}.restartDelayMax",
        )
    return result


def _launch(fields: Fields, label: str) -> Launch:
    """`user`, `dir`, `env`, `envFile`: resolved and checked now, so that a
    start can only fail on what changes at run time (files, directories)."""
    user = None
    if "user" in fields:
        try:
            user = users.resolve(fields.string("user"))
        except Invalid as error:
            raise fail(f"{label}.user: {error}", f"{label}.user") from None
    return Launch(user=user, dir=_absolute(fields, label, "dir"), env=_env(fields, label),
                  env_file=_absolute(fields, label, "envFile"))


def _absolute(fields: Fields, label: str, key: str) -> Optional[str]:
    if key not in fields:
        return None
    path = fields.string(key)
    if not path.startswith("/"):
        raise fail(f"{label}.{key} must be an absolute path (got {show(path)})", f"{label}.{key}")
    return path


def _env(fields: Fields, label: str) -> Tuple[Tuple[str, Any], ...]:
    """`env: {NAME: "value", NAME: {file: "/run/secrets/x"}}`. Values are
    never shown in an error, only their kind: they may be secrets."""
    value = fields.raw("env")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise fail(f"{label}.env must be an object of NAME: value (got {kind(value)})", f"{label}.env")
    return tuple((_env_name(name, label), _env_value(item, f"{label}.env.{name}"))
                 for name, item in value.items())


def _env_name(name: Any, label: str) -> str:
    try:
        return datatypes.env_name(name if isinstance(name, str) else datatypes.go_value(name))
    except Invalid as error:
        raise fail(f"{label}.env: {error}", f"{label}.env") from None


def _env_value(value: Any, path: str):
    if value is None:
        return ""
    if isinstance(value, dict):
        secret = Fields(value, path, SECRET_KEYS)
        file = secret.string("file", "")
        if not file.startswith("/"):
            raise fail(f"{path}.file must be an absolute path (got {show(file)})", f"{path}.file")
        return SecretFile(file)
    if isinstance(value, (str, int, float, bool)):
        # As written: `true`, not the "1" 3.8's weak decoding makes of it.
        text = ("true" if value else "false") if isinstance(value, bool) else datatypes.to_string(value)
        if "\0" in text:
            raise fail(f"{path} must not hold a NUL character", path)
        return text
    raise fail(f'{path} must be a string or {{file: "/path"}} (got {kind(value)})', path)
